"""pyproject.toml's mypy configuration (what `make check` runs): strict for the domain modules, the ports and the
canonical model, whatever the service, and only there (mypy's `strict` would leak to every module from an override)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LOOSE = "def f(x):\n    return x\n\n\ndef g(x: list) -> int:\n    return f(x)\n"
STRICT_ERRORS = ("[no-untyped-def]", "[type-arg]", "[no-untyped-call]")


@pytest.fixture(scope="module")
def mypy_errors(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    tree = tmp_path_factory.mktemp("mypy")
    modules = [
        "services/newservice/domain.py",
        "services/newservice/ports.py",
        "services/canonical.py",
        "services/newservice/application.py",
        "services/platform/bus.py",
    ]
    for module in modules:
        path = tree / module
        path.parent.mkdir(parents=True, exist_ok=True)
        for parent in path.relative_to(tree).parents:
            if parent != Path("."):
                (tree / parent / "__init__.py").touch()
        path.write_text(LOOSE)
    run = subprocess.run(
        [sys.executable, "-m", "mypy", "--config-file", str(ROOT / "pyproject.toml"), "--no-error-summary", "services"],
        cwd=tree,
        env={**os.environ, "MYPY_CACHE_DIR": str(tree / ".mypy_cache")},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode in (0, 1), run.stdout + run.stderr
    return {
        module: "\n".join(line for line in run.stdout.splitlines() if line.startswith(module)) for module in modules
    }


@pytest.mark.parametrize(
    "module", ["services/newservice/domain.py", "services/newservice/ports.py", "services/canonical.py"]
)
def test_domain_ports_and_canonical_are_strict(mypy_errors: dict[str, str], module: str) -> None:
    for code in STRICT_ERRORS:
        assert code in mypy_errors[module], mypy_errors[module]


@pytest.mark.parametrize("module", ["services/newservice/application.py", "services/platform/bus.py"])
def test_the_rest_keeps_the_ordinary_config(mypy_errors: dict[str, str], module: str) -> None:
    assert mypy_errors[module] == ""
