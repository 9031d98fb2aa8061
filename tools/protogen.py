"""Generate the Python protobuf/gRPC code for every contract in proto/ into gen/.

`--check` regenerates into a temporary directory and fails when gen/ differs: the committed code must
never be stale relative to proto/.
"""

from __future__ import annotations

import argparse
import filecmp
import shutil
import sys
import tempfile
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTO = ROOT / "proto"
GEN = ROOT / "gen"


def generate(out: Path) -> None:
    files = sorted(str(p.relative_to(PROTO)) for p in PROTO.rglob("*.proto"))
    if not files:
        raise SystemExit("no .proto files under proto/")
    out.mkdir(parents=True, exist_ok=True)
    include = str(Path(protoc.__file__).parent / "_proto")
    bindir = Path(sys.executable).parent
    args = [
        "protoc",
        f"--plugin=protoc-gen-mypy={bindir / 'protoc-gen-mypy'}",
        f"--plugin=protoc-gen-mypy_grpc={bindir / 'protoc-gen-mypy_grpc'}",
        f"-I{PROTO}",
        f"-I{include}",
        f"--python_out={out}",
        f"--grpc_python_out={out}",
        f"--mypy_out={out}",
        f"--mypy_grpc_out={out}",
        *files,
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    for d in [out / "sfvault", *[p for p in (out / "sfvault").rglob("*") if p.is_dir()]]:
        (d / "__init__.py").touch()
    (out / "sfvault" / "py.typed").touch()


def _tree(root: Path) -> dict[str, Path]:
    return {str(p.relative_to(root)): p for p in root.rglob("*") if p.is_file() and "__pycache__" not in p.parts}


def check() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        fresh = Path(tmp)
        generate(fresh)
        want, have = _tree(fresh), _tree(GEN)
        stale = sorted(
            name
            for name in set(want) | set(have)
            if name not in want or name not in have or not filecmp.cmp(want[name], have[name], shallow=False)
        )
    if stale:
        print("gen/ is stale relative to proto/ (run `make proto`):", *stale, sep="\n  ", file=sys.stderr)
        return 1
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="fail if gen/ is stale")
    args = parser.parse_args()
    if args.check:
        return check()
    if (GEN / "sfvault").exists():
        shutil.rmtree(GEN / "sfvault")
    generate(GEN)
    return 0


if __name__ == "__main__":
    sys.exit(main())
