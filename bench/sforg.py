"""sforg benchmark on the `large` org: records/s through Bulk 2.0 CSV and REST pages, server peak memory.

The org is built once into .state/sforg-bench-large (or $SFORG_BENCH_DIR) and reused by later runs.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import requests

from sforg.testing import ca_bundle, running_org

SCALE = os.environ.get("SFORG_BENCH_SCALE", "large")
STATE = Path(os.environ.get("SFORG_BENCH_DIR", ".state/sforg-bench-large"))
OBJECT = "Contact"


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def token(session: requests.Session, info: dict[str, Any]) -> str:
    resp = session.post(
        f"{info['login_url']}/services/oauth2/token",
        data={
            "grant_type": "client_credentials",
            "client_id": info["client_id"],
            "client_secret": info["client_secret"],
        },
    )
    resp.raise_for_status()
    return str(resp.json()["access_token"])


def fields(session: requests.Session, base: str) -> list[str]:
    describe = session.get(f"{base}/sobjects/{OBJECT}/describe").json()
    return [f["name"] for f in describe["fields"] if f["type"] not in ("address", "location", "base64")]


def bench_bulk(session: requests.Session, base: str, soql: str, encoding: str) -> tuple[int, float, int]:
    started = time.perf_counter()
    job = session.post(f"{base}/jobs/query", json={"operation": "queryAll", "query": soql}).json()
    state = session.get(f"{base}/jobs/query/{job['id']}").json()["state"]
    assert state == "JobComplete", state
    records = nbytes = 0
    locator = ""
    while locator != "null":
        params = {"maxRecords": 50000, **({"locator": locator} if locator else {})}
        headers = {"Accept": "text/csv", "Accept-Encoding": encoding}
        with session.get(f"{base}/jobs/query/{job['id']}/results", params=params, stream=True, headers=headers) as resp:
            resp.raise_for_status()
            for chunk in resp.iter_content(1 << 20):  # gunzipped here when the server compressed
                nbytes += len(chunk)
            records += int(resp.headers["Sforce-NumberOfRecords"])
            locator = resp.headers["Sforce-Locator"]
    return records, time.perf_counter() - started, nbytes


def bench_rest(session: requests.Session, info: dict[str, Any], base: str, soql: str) -> tuple[int, float, int]:
    started = time.perf_counter()
    resp = session.get(f"{base}/queryAll", params={"q": soql})
    records = nbytes = 0
    while True:
        resp.raise_for_status()
        nbytes += len(resp.content)
        page = json.loads(resp.content)
        records += len(page["records"])
        if page["done"]:
            break
        resp = session.get(info["instance_url"] + page["nextRecordsUrl"])
    return records, time.perf_counter() - started, nbytes


def run() -> None:
    started = time.perf_counter()
    with running_org(STATE, scale=SCALE, seed=1, timeout=900) as info:
        ready = time.perf_counter() - started
        print(f"org ready in {ready:.1f} s (state {STATE}; includes the build on a first run)", flush=True)
        session = requests.Session()
        session.verify = ca_bundle(info)
        # requests prefers REQUESTS_CA_BUNDLE over session.verify; point it at the org's bundle too.
        os.environ["REQUESTS_CA_BUNDLE"] = session.verify
        base = f"{info['instance_url']}/services/data/v{info['api_version']}"
        session.headers["Authorization"] = f"Bearer {token(session, info)}"
        names = fields(session, base)
        counts = session.get(f"{base}/limits/recordCount").json()["sObjects"]
        print(f"org: {sum(c['count'] for c in counts):,} live records over {len(counts)} objects", flush=True)
        soql = f"SELECT {', '.join(names)} FROM {OBJECT}"
        count = session.get(f"{base}/query", params={"q": f"SELECT COUNT() FROM {OBJECT}"}).json()["totalSize"]
        print(f"object {OBJECT}: {count} live records, {len(names)} fields per record", flush=True)
        for encoding in ("identity", "gzip"):
            n, secs, nbytes = bench_bulk(session, base, soql, encoding)
            print(
                f"bulk2 csv ({encoding}): {n} records in {secs:.2f} s = {n / secs:,.0f} records/s "
                f"({nbytes / secs / 1e6:.1f} MB/s of CSV)",
                flush=True,
            )
        n, secs, nbytes = bench_rest(session, info, base, soql)
        print(
            f"rest json pages (2,000 a page): {n} records in {secs:.2f} s = {n / secs:,.0f} records/s "
            f"({nbytes / secs / 1e6:.1f} MB/s)",
            flush=True,
        )
        print(f"server peak memory (VmHWM): {peak_rss_mb(info['pid']):.0f} MB", flush=True)
        print("targets: >= 100,000 records/s bulk csv, >= 20,000 records/s rest json, <= 2048 MB", flush=True)
