"""Run the benchmarks: every module of this package that defines `run()`, or those named on the command line."""

from __future__ import annotations

import importlib
import pkgutil
import sys
import time

import bench

# run only when named: `make bench-scale` generates a 10,000,000-record org and takes up to half an hour;
# `make bench-orgs` starts 50 sforg orgs
ON_REQUEST = {"scale", "orgs"}


def main(argv: list[str]) -> int:
    names = argv or sorted(
        m.name for m in pkgutil.iter_modules(bench.__path__) if not m.name.startswith("_") and m.name not in ON_REQUEST
    )
    for name in names:
        module = importlib.import_module(f"bench.{name}")
        if not hasattr(module, "run"):
            continue
        print(f"== bench {name}", flush=True)
        started = time.perf_counter()
        module.run()
        print(f"== bench {name} done in {time.perf_counter() - started:.1f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
