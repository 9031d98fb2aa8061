"""`make demo`'s script end to end on a clean state (tiny org): both sessions end Success with the expected
counts, and nothing it logged holds a secret."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e


def test_demo_runs_twice_and_logs_no_secret(tmp_path: Path) -> None:
    home = tmp_path / "demo"
    report_file = tmp_path / "report.json"
    for _ in range(2):  # run twice in a row, it works twice (the second starts from a clean state again)
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "services.cli.demo",
                "--home",
                str(home),
                "--scale",
                "tiny",
                "--json-report",
                str(report_file),
            ],
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "sfvault services up --org tiny" in result.stdout  # where a newcomer goes next (README, "Using it")
    report = json.loads(report_file.read_text())
    initial, incremental, changes = report["initial"], report["incremental"], report["changes"]
    assert initial["session"]["status"] == "SESSION_STATUS_SUCCESS"
    assert incremental["session"]["status"] == "SESSION_STATUS_SUCCESS"
    totals = {k: int(v) for k, v in incremental["session"]["totals"].items()}
    assert int(initial["session"]["totals"]["new_versions"]) > 1000
    assert totals["deleted"] == changes["soft_deleted"] + changes["hard_deleted"] + changes["cascade_deleted"]
    assert 0 < totals["changed"] <= changes["updated"]
    assert totals["files"] == changes["file_versions"]
    assert totals["unchanged"] > 0

    # every secret of the run: the org's client secret, sforg's admin token, our signing key and admin token
    org = json.loads((home / "sforg" / "org.json").read_text())
    secrets = {
        "client secret": org["client_secret"],
        "sforg admin token": org["admin_token"],
        "signing key": (home / "auth.key").read_text().strip(),
        "admin token": (home / "admin.token").read_text().strip(),
    }
    logs = {p: p.read_text(errors="replace") for p in (home / "logs").glob("*.log")}
    logs[Path("demo stdout")] = result.stdout + result.stderr
    assert len(logs) >= 5
    for path, text in logs.items():
        for name, value in secrets.items():
            assert value not in text, f"{name} found in {path}"
        assert "Bearer " not in text, f"a bearer token in {path}"
