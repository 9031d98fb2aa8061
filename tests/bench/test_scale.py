"""bench/scale.py's parts that decide and cache: the verdict of each figure against issue 21's targets, and the
generated org built once then reused."""

from __future__ import annotations

from pathlib import Path

from bench.__main__ import ON_REQUEST
from bench.scale import Figures, cached_org, changes, table, verdicts
from sforg.generate import SCALES, plan


def figures(total: int, rate: float, rss: float, inc_seconds: float, inc_calls: int) -> Figures:
    return Figures(
        total=total,
        records=int(rate * 100),
        seconds=100.0,
        jobrunner_mb=rss,
        storage_mb=rss,
        changed=total // 1000,
        inc_seconds=inc_seconds,
        inc_calls=inc_calls,
    )


def test_linear_cost_is_met_when_the_larger_org_matches_the_reference_within_ten_percent() -> None:
    ref = figures(1_000_000, rate=40_000, rss=300, inc_seconds=10.0, inc_calls=200)
    big = figures(10_000_000, rate=37_000, rss=320, inc_seconds=10.5, inc_calls=200)
    met = {name: ok for name, _big, _ref, _target, ok in verdicts(big, ref)}
    assert met == {
        "initial records/s": True,
        "jobrunner peak RSS MB": True,
        "storage peak RSS MB": True,
        "incremental s (same change)": True,
        "incremental API calls": True,
        # 10.5 s of a 100 s initial is 10.5 %, above 2 x the 0.1 % changed
        "incremental / initial wall": False,
    }


def test_linear_cost_is_not_met_when_throughput_drops_memory_grows_or_the_incremental_follows_the_org() -> None:
    ref = figures(1_000_000, rate=40_000, rss=300, inc_seconds=1.0, inc_calls=200)
    big = figures(10_000_000, rate=35_000, rss=900, inc_seconds=10.0, inc_calls=2000)
    met = {name: ok for name, _big, _ref, _target, ok in verdicts(big, ref)}
    assert not any(met.values())
    printed = table(big, ref)
    assert printed.splitlines()[1].split()[:4] == ["initial", "records/s", "35,000", "40,000"]
    assert printed.count("NO") == len(met)


def test_the_change_is_a_tenth_of_a_percent_of_the_xlarge_org_and_fits_the_large_one() -> None:
    changed = changes(SCALES["xlarge"])
    assert sum(changed.values()) == 10_500  # the ten objects' 10,000 and the Events and contact roles on top
    assert changed["Task"] == 5_000
    large = plan(SCALES["large"])
    assert all(n <= large[name] // 10 for name, n in changed.items())  # the reference org changes as many


def test_the_scale_bench_runs_only_when_named() -> None:
    assert "scale" in ON_REQUEST


def test_a_generated_org_is_cached_and_reused(tmp_path: Path) -> None:
    folder = cached_org(300, seed=2, cache=tmp_path)
    built = (folder / "org.db").stat().st_mtime_ns
    assert cached_org(300, seed=2, cache=tmp_path) == folder
    assert (folder / "org.db").stat().st_mtime_ns == built  # not generated again
    # a build cut short (its marker left behind) is built again
    (folder / "building").touch()
    again = cached_org(300, seed=2, cache=tmp_path)
    assert again == folder and not (folder / "building").exists()
    assert (folder / "org.db").stat().st_mtime_ns != built
