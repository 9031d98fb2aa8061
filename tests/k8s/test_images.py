"""The services' one Dockerfile and `make images`, read statically: no Docker engine is needed (nor here)."""

from __future__ import annotations

import importlib
import json
import os
import re
import subprocess
from pathlib import Path

import pytest

from tests.k8s.conftest import ROOT, SERVICE_PORTS, Obj, containers, of_kind

PINNED = re.compile(r"^[\w./-]+(:\d+\.\d+\.\d+[\w.-]*)?(@sha256:[0-9a-f]{64})?$")
DOCKERFILE = ROOT / "Dockerfile"


def instructions() -> list[tuple[str, str]]:
    text = DOCKERFILE.read_text().replace("\\\n", " ")
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in lines]


def stages() -> dict[str, tuple[str, list[tuple[str, str]]]]:
    """Each named stage: (what it is built FROM, its instructions); the last, unnamed one as "" ."""
    out: dict[str, tuple[str, list[tuple[str, str]]]] = {}
    steps: list[tuple[str, str]] = []
    for op, args in instructions():
        if op == "FROM":
            words = args.split()
            steps = []
            out[words[2] if len(words) == 3 and words[1].upper() == "AS" else ""] = (words[0], steps)
        else:
            steps.append((op, args))
    return out


def test_one_dockerfile_for_the_four_services() -> None:
    assert DOCKERFILE.exists()
    assert not list((ROOT / "services").glob("**/Dockerfile")), "a build argument picks the service, not a file"


def test_dockerfile_is_multistage_pinned_and_non_root() -> None:
    named = stages()
    bases = [base for base, _ in named.values() if base not in named]
    assert len(bases) >= 2, "multi-stage: dependencies are built apart from the runtime image"
    for base in bases:
        assert PINNED.match(base) and (":" in base or "@" in base), f"{base}: pin an exact version or a digest"
    # The dependencies: the image lock, every file checked against its hash.
    build = named["build"][1]
    assert ("COPY", "requirements/image.txt ./requirements.txt") in build
    assert any(op == "RUN" and "pip install --require-hashes -r requirements.txt" in args for op, args in build)
    base, runtime = named["runtime"]
    assert base in bases
    (user,) = [args for op, args in runtime if op == "USER"]
    uid = user.split(":")[0]
    assert uid.isdigit() and int(uid) > 0, f"USER {user}: numeric and not root, so runAsNonRoot can verify it"
    env = " ".join(args for op, args in runtime if op == "ENV")
    assert re.search(r"PYTHONPATH=/app:/app/gen\b", env)
    copied = [args.split()[-1] for op, args in runtime if op == "COPY" and "--from" not in args]
    assert {"./gen", "./services"} <= set(copied)
    assert set(named) == {"build", "runtime", ""}, "one service stage, SERVICE picking the service: nothing else"


def run_step(command: str, env: dict[str, str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """A shell step of the service stage, its `python` a stand-in that prints how it is called."""
    fake = tmp_path / "python"
    fake.write_text('#!/bin/sh\necho "python $*"\n')
    fake.chmod(0o755)
    path = f"{tmp_path}:{os.environ['PATH']}"
    return subprocess.run(["/bin/sh", "-c", command], env={**env, "PATH": path}, capture_output=True, text=True)


@pytest.mark.parametrize("name", sorted(SERVICE_PORTS))
def test_the_service_stage_starts_the_module_service_names_on_its_port(name: str, tmp_path: Path) -> None:
    base, steps = stages()[""]
    assert base == "runtime"
    assert ("ARG", "SERVICE") in steps and ("ENV", "SFVAULT_SERVICE=${SERVICE}") in steps
    assert not [args for op, args in steps if op == "USER"], "the runtime stage's non-root user"
    # the build refuses a name that is no service, and takes each service's
    (check,) = [args for op, args in steps if op == "RUN"]
    assert run_step(check, {"SERVICE": name}, tmp_path).returncode == 0
    assert run_step(check, {"SERVICE": "billing"}, tmp_path).returncode != 0
    assert run_step(check, {"SERVICE": ""}, tmp_path).returncode != 0
    # the entrypoint runs the service's module (exec: python is the container's first process)
    (entrypoint,) = [json.loads(args) for op, args in steps if op == "ENTRYPOINT"]
    assert entrypoint[:2] == ["/bin/sh", "-c"] and entrypoint[2].startswith("exec ")
    started = run_step(entrypoint[2], {"SFVAULT_SERVICE": name}, tmp_path)
    assert started.stdout.strip() == f"python -m services.{name}"
    # on its port: the image sets none, so the service's own default is the port the manifests name
    assert not [args for op, args in steps if op == "ENV" and "_PORT" in args]
    config = importlib.import_module(f"services.{name}.config")
    (settings,) = [v for k, v in vars(config).items() if k.endswith("Settings") and k != "ServiceSettings"]
    assert settings.model_fields[f"{name}_port"].default == SERVICE_PORTS[name]


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
        f"build --build-arg SERVICE={name} -t sfvault/{name}:dev ." for name in SERVICE_PORTS
    )
    built = {f"sfvault/{name}:dev" for name in SERVICE_PORTS}
    images = {c["image"] for w in of_kind(objects, "Deployment") for c in containers(w)}
    ours = {image for image in images if image.startswith("sfvault/")}
    assert {image.split(":")[0] for image in ours} == {image.split(":")[0] for image in built}
    if overlay == "dev":  # what `make images` tags by default is what dev runs
        assert ours == built
