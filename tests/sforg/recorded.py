"""Real Salesforce responses recorded in public repositories (tests/sforg/fixtures/recorded/*.json, each naming its
source) and a key-for-key, type-for-type comparison of sforg's answers with them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

RECORDED = Path(__file__).parent / "fixtures" / "recorded"


def recorded(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((RECORDED / f"{name}.json").read_text())
    return data


def kind(v: Any) -> str:
    """JSON's types: JSON has one number type, so an int and a float are both a number."""
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "boolean"
    if isinstance(v, int | float):
        return "number"
    if isinstance(v, str):
        return "string"
    if isinstance(v, list):
        return "array"
    return "object"


def same_shape(real: Any, ours: Any, path: str = "$", nullable: frozenset[str] = frozenset()) -> list[str]:
    """Where ours differs from the recorded value in keys (and their order) or in types, recursively. Every element
    of an array is compared with the recorded array's first element. A key named in `nullable` may be null in
    either (a value that is null for some rows, e.g. an empty child relationship or an average of nothing)."""
    out: list[str] = []
    if kind(real) != kind(ours):
        if not (path.rsplit(".", 1)[-1] in nullable and "null" in (kind(real), kind(ours))):
            out.append(f"{path}: {kind(real)} recorded, {kind(ours)} here")
        return out
    if isinstance(real, dict):
        if list(real) != list(ours):
            out.append(f"{path}: keys {list(real)} recorded, {list(ours)} here")
            return out
        for k in real:
            out += same_shape(real[k], ours[k], f"{path}.{k}", nullable)
    elif isinstance(real, list) and real:
        for i, item in enumerate(ours):
            out += same_shape(real[0], item, f"{path}[{i}]", nullable)
    return out
