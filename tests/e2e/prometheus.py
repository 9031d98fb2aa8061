"""A real Prometheus for the tests: Debian's package (a static Go binary but for libc), fetched with
`apt-get download` and unpacked with `dpkg-deb -x` into the virtual environment once (nothing installed on the
system; `SFVAULT_PROMETHEUS` names another binary), started on a free port with a temporary store, and queried
through its HTTP API."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml

from devstack.embedded import free_port

VARIABLE = "SFVAULT_PROMETHEUS"


def binary() -> Path:
    """The prometheus executable: SFVAULT_PROMETHEUS, else Debian's, unpacked under the venv on first use."""
    given = os.environ.get(VARIABLE)
    if given:
        return Path(given)
    home = Path(sys.prefix) / "prometheus"
    exe = home / "usr" / "bin" / "prometheus"
    if exe.exists():
        return exe
    with tempfile.TemporaryDirectory() as tmp:
        fetch = ["apt-get", "download", "prometheus"]
        got = subprocess.run(fetch, cwd=tmp, capture_output=True, text=True, timeout=600)
        debs = sorted(Path(tmp).glob("prometheus_*.deb"))
        if got.returncode != 0 or not debs:
            raise RuntimeError(
                f"no Prometheus: `apt-get download prometheus` failed ({got.stderr.strip()[-300:]}); "
                f"set {VARIABLE} to a prometheus binary"
            )
        subprocess.run(["dpkg-deb", "-x", str(debs[0]), str(home)], check=True, capture_output=True, timeout=300)
    return exe


class Prometheus:
    def __init__(self, url: str) -> None:
        self.url = url

    def _get(self, path: str, **params: str) -> Any:
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        with urllib.request.urlopen(f"{self.url}{path}{query}", timeout=30) as reply:
            body = json.loads(reply.read())
        assert body.get("status") == "success", body
        return body["data"]

    def query(self, expr: str, at: float) -> list[dict[str, Any]]:
        """An instant query's result vector at `at` (epoch seconds)."""
        data = self._get("/api/v1/query", query=expr, time=f"{at:.3f}")
        return list(data["result"])

    def scraped_all_since(self, since: float, jobs: int) -> bool:
        """Whether each of the `jobs` targets is up and was scraped after `since` (epoch seconds)."""
        targets = self._get("/api/v1/targets")["activeTargets"]
        # lastScrape: RFC 3339 with nanoseconds, which fromisoformat takes (to the microsecond)
        scraped = [dt.datetime.fromisoformat(t["lastScrape"]).timestamp() for t in targets if t["health"] == "up"]
        return sum(1 for when in scraped if when > since) >= jobs

    def wait_scraped_since(self, since: float, jobs: int, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while not self.scraped_all_since(since, jobs):
            if time.monotonic() > deadline:
                raise TimeoutError(f"Prometheus did not scrape its {jobs} targets within {timeout:.0f} s")
            time.sleep(0.2)  # another process's scrape loop: no event to await


@contextlib.contextmanager
def prometheus(targets: Mapping[str, int], work: Path, interval_s: float = 1.0) -> Iterator[Prometheus]:
    """A Prometheus scraping each named local port's /metrics every `interval_s`, its series labelled
    `service` with the name (as the observability component's relabelling does in a cluster)."""
    work.mkdir(parents=True, exist_ok=True)
    config = {
        "global": {"scrape_interval": f"{interval_s:g}s", "evaluation_interval": f"{interval_s:g}s"},
        "scrape_configs": [
            {
                "job_name": "sfvault",
                "static_configs": [
                    {"targets": [f"127.0.0.1:{port}"], "labels": {"service": name}} for name, port in targets.items()
                ],
            }
        ],
    }
    (work / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    log = open(work / "prometheus.log", "wb")
    proc = subprocess.Popen(
        [
            str(binary()),
            f"--config.file={work / 'prometheus.yml'}",
            f"--storage.tsdb.path={work / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            with contextlib.suppress(OSError):
                with urllib.request.urlopen(f"{url}/-/ready", timeout=2) as reply:
                    if reply.status == 200:
                        break
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"Prometheus did not start: see {work / 'prometheus.log'}")
            time.sleep(0.1)  # another process starting: no event to await
        yield Prometheus(url)
    finally:
        proc.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(30)
        if proc.poll() is None:
            proc.kill()
        log.close()
