"""The scales of generated orgs: the existing ones keep their exact content (tests and benchmarks depend on it),
`xlarge` has ten million records across the ten data objects with the largest at five million."""

from __future__ import annotations

import hashlib
import itertools

import pytest

from sforg.catalogue import build_catalogue
from sforg.generate import EXTRA, SCALES, Generator, plan, weights

ANCHOR = 1_780_000_000.0  # a fixed start of day: generated timestamps hang off it
# sha256 of every generated row (the first ROWS of each object at `large`), from the generator before `xlarge`
DIGESTS = {
    "tiny": "6b97aad1c26ac480e02e18259c8e10b7717ce037805364f9464fc9f564ccdc55",
    "small": "4cac8ad4cfba4e20d603fd5019829f22fb8d47680eabf14e202cb4fa841b91c8",
    "large": "cf88aad7c29d0810cde1c4fe5f824dc0b75f454eed673a0a0192aa9e08d93f10",
}
ROWS = {"tiny": None, "small": None, "large": 3000}


def rows_digest(scale: str) -> str:
    total = SCALES[scale]
    cat = build_catalogue()
    gen = Generator(store=None, catalogue=cat, seed=3, total=total, anchor=ANCHOR)  # type: ignore[arg-type]
    digest = hashlib.sha256(repr(sorted(plan(total).items())).encode())
    for name, _ in [*weights(total), *EXTRA]:
        columns, rows = gen.rows(cat[name], gen.counts[name])
        digest.update(repr((name, columns)).encode())
        for row in itertools.islice(rows, ROWS[scale]):
            digest.update(repr(row).encode())
    digest.update(repr(gen.to_bin).encode())
    return digest.hexdigest()


@pytest.mark.parametrize("scale", ["tiny", "small", "large"])
def test_existing_scales_generate_the_same_rows(scale: str) -> None:
    assert rows_digest(scale) == DIGESTS[scale]


def test_xlarge_has_ten_million_records_in_ten_objects_the_largest_five_million() -> None:
    counts = plan(SCALES["xlarge"])
    ten = [name for name, _ in weights(SCALES["xlarge"])]
    assert len(ten) == 10
    assert sum(counts[name] for name in ten) == 10_000_000
    assert max(counts[name] for name in ten) == 5_000_000 == counts["Task"]
    # Account, Contact and Opportunity keep the share of the smaller scales (bench/restore.py relies on it)
    for total in (SCALES["large"], 2_000_000, SCALES["xlarge"]):
        assert sum(plan(total)[n] for n in ("Account", "Contact", "Opportunity")) == int(total * 0.4)
