"""The services' Dockerfiles and `make images`, read statically: no Docker engine is needed (nor here)."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from tests.k8s.conftest import ROOT, SERVICE_PORTS, Obj, containers, of_kind

PINNED = re.compile(r"^[\w./-]+(:\d+\.\d+\.\d+[\w.-]*)?(@sha256:[0-9a-f]{64})?$")


def instructions(name: str) -> list[tuple[str, str]]:
    text = (ROOT / "services" / name / "Dockerfile").read_text().replace("\\\n", " ")
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in lines]


@pytest.mark.parametrize("name", sorted(SERVICE_PORTS))
def test_dockerfile_is_multistage_pinned_and_non_root(name: str) -> None:
    steps = instructions(name)
    bases = [args.split()[0] for op, args in steps if op == "FROM"]
    assert len(bases) >= 2, "multi-stage: dependencies are built apart from the runtime image"
    for base in bases:
        assert PINNED.match(base) and (":" in base or "@" in base), f"{base}: pin an exact version or a digest"
    runtime = steps[max(i for i, (op, _) in enumerate(steps) if op == "FROM") :]
    (user,) = [args for op, args in runtime if op == "USER"]
    uid = user.split(":")[0]
    assert uid.isdigit() and int(uid) > 0, f"USER {user}: numeric and not root, so runAsNonRoot can verify it"
    env = " ".join(args for op, args in runtime if op == "ENV")
    assert re.search(r"PYTHONPATH=/app:/app/gen\b", env)
    assert f"SFVAULT_{name.upper()}_PORT={SERVICE_PORTS[name]}" in env
    assert ("EXPOSE", str(SERVICE_PORTS[name])) in runtime
    assert ("ENTRYPOINT", f'["python", "-m", "services.{name}"]') in runtime
    copied = [args.split()[-1] for op, args in runtime if op == "COPY" and "--from" not in args]
    assert {"./gen", "./services"} <= set(copied)


def test_dockerignore_keeps_local_state_out_of_the_build_context() -> None:
    ignored = set((ROOT / ".dockerignore").read_text().split())
    assert {".git", ".venv", "tests", "k8s"} <= ignored


def test_make_images_builds_the_images_the_dev_overlay_runs(objects: list[Obj], overlay: str, tmp_path: Path) -> None:
    # `make images` with a stand-in `docker` first on PATH, which records how it is called.
    log = tmp_path / "docker.log"
    fake = tmp_path / "docker"
    fake.write_text(f'#!/bin/sh\necho "$*" >> {log}\n')
    fake.chmod(0o755)
    env = {**os.environ, "PATH": f"{tmp_path}:{os.environ['PATH']}"}
    run = subprocess.run(["make", "images"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stdout + run.stderr
    calls = log.read_text().splitlines()
    assert sorted(calls) == sorted(
        f"build -f services/{name}/Dockerfile -t sfvault/{name}:dev ." for name in SERVICE_PORTS
    )
    built = {f"sfvault/{name}:dev" for name in SERVICE_PORTS}
    images = {c["image"] for w in of_kind(objects, "Deployment") for c in containers(w)}
    ours = {image for image in images if image.startswith("sfvault/")}
    assert {image.split(":")[0] for image in ours} == {image.split(":")[0] for image in built}
    if overlay == "dev":  # what `make images` tags by default is what dev runs
        assert ours == built
