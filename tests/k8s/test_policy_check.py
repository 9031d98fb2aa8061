"""checkov, offline, on the rendered overlays and the services' Dockerfile: no failed check at all.

Without a platform account checkov reports no severities, so "no HIGH issue" is held here as "no issue": every
check passes or is skipped with a reason, and k8s/README.md lists exactly the checks that are skipped.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.k8s.conftest import K8S, OVERLAYS, ROOT, render

CHECKOV = Path(sys.prefix) / "tools" / "bin" / "checkov"
# Skipped everywhere, on the command line (the others are skipped where they apply: checkov.io/skipN
# annotations in the manifests, `# checkov:skip=` comments in the Dockerfile).
GLOBAL_SKIPS = {"CKV_K8S_43"}
# No download of policies or mappings, no version check: the run needs no network.
OFFLINE = {"BC_SKIP_MAPPING": "TRUE", "CKV_SKIP_PACKAGE_UPDATE_CHECK": "true", "ANSI_COLORS_DISABLED": "true"}


@pytest.fixture(scope="module")
def checkov_reports(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    assert CHECKOV.exists(), f"{CHECKOV} is missing: `make install` creates it (target `tools`)"
    scan = tmp_path_factory.mktemp("checkov")
    for overlay in OVERLAYS:
        (scan / f"{overlay}.yaml").write_text(yaml.safe_dump_all(render(overlay), sort_keys=False))
    (scan / "image").mkdir()
    shutil.copy(ROOT / "Dockerfile", scan / "image" / "Dockerfile")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BC_API", "PRISMA_"))} | OFFLINE
    run = subprocess.run(
        [str(CHECKOV), "--directory", str(scan), "--framework", "kubernetes", "dockerfile", "--skip-download"]
        + [arg for check in sorted(GLOBAL_SKIPS) for arg in ("--skip-check", check)]
        + ["--output", "json", "--compact"],
        cwd=scan,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.stdout.strip(), f"checkov printed nothing (exit {run.returncode}):\n{run.stderr[-3000:]}"
    reports = json.loads(run.stdout)
    reports = reports if isinstance(reports, list) else [reports]
    assert {r["check_type"] for r in reports} == {"kubernetes", "dockerfile"}, run.stderr[-3000:]
    return reports


def test_checkov_finds_no_issue(checkov_reports: list[dict[str, Any]]) -> None:
    for report in checkov_reports:
        assert report["summary"]["parsing_errors"] == 0, report["check_type"]
        assert report["summary"]["passed"] > 0, report["check_type"]
    failed = [
        f"{c['check_id']} {c['check_name']}: {c['resource']} ({c['file_path']})"
        for report in checkov_reports
        for c in report["results"]["failed_checks"]
    ]
    assert not failed, "checkov:\n" + "\n".join(failed)


def test_every_skipped_check_is_documented_with_its_reason(checkov_reports: list[dict[str, Any]]) -> None:
    skipped = {c["check_id"] for report in checkov_reports for c in report["results"]["skipped_checks"]}
    readme = (K8S / "README.md").read_text()
    documented = dict(re.findall(r"^\|\s*`?(CKV\w+)`?\s*\|[^|]*\|\s*([^|]+?)\s*\|$", readme, flags=re.MULTILINE))
    assert set(documented) == skipped | GLOBAL_SKIPS, "k8s/README.md's table of skipped checks is out of date"
    assert all(len(reason) > 20 for reason in documented.values()), documented
