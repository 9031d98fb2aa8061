"""The emulated org's formula fields, computed in one place: for values read in Python (REST records, the
ground truth) and, as SQLite functions, inside the SQL that renders Bulk CSV lines (so an object with a
formula field keeps SQLite's fast path, and both give the very same value: the same Python computes it)."""

from __future__ import annotations

import datetime as dt
import sqlite3
from typing import Any

from sforg.schema import FieldDef, ObjectDef

TODAY = "TODAY()"  # how a formula counting days since a record's creation starts
# the stored columns each formula is computed from, in its function's order
DEPS = {
    "TODAY() - DATEVALUE(CreatedDate)": ["CreatedDate"],
    "Amount__c * (1 + Tax_Rate__c)": ["Amount__c", "Tax_Rate__c"],
}


def days_open(created: str | None, today: dt.date) -> float | None:
    """TODAY() - DATEVALUE(CreatedDate)."""
    return float((today - dt.date.fromisoformat(created[:10])).days) if created else None


def total_with_tax(amount: Any, rate: Any) -> float | None:
    """Amount__c * (1 + Tax_Rate__c), the rate in percent, rounded to the cent."""
    if amount is None:
        return None
    return round(amount * (1 + (rate or 0) / 100.0), 2)  # type: ignore[no-any-return]


def inputs(f: FieldDef) -> list[str]:
    """The columns a formula field is computed from."""
    assert f.formula is not None
    return DEPS.get(f.formula, [])


def value(f: FieldDef, args: tuple[Any, ...], today: dt.date) -> float | None:
    """A formula field's value from its inputs' stored values (in inputs()' order)."""
    assert f.formula is not None
    return days_open(args[0], today) if f.formula.startswith(TODAY) else total_with_tax(*args)


def _text(v: float | None) -> str | None:
    return None if v is None else str(v)  # as csv.writer writes a float: its repr


def register(conn: sqlite3.Connection) -> None:
    """sforg_days_open(created, today ISO) and sforg_total_with_tax(amount, rate): the value as text, NULL for
    none."""
    conn.create_function(
        "sforg_days_open", 2, lambda c, t: _text(days_open(c, dt.date.fromisoformat(t))), deterministic=True
    )
    conn.create_function("sforg_total_with_tax", 2, lambda a, r: _text(total_with_tax(a, r)), deterministic=True)


def csv_text_sql(f: FieldDef, obj: ObjectDef, today: dt.date) -> str:
    """SQL of a formula field's value as Bulk CSV text (NULL for none), from its inputs' columns."""
    cols = [f'"{c}"' if obj.field(c) else "NULL" for c in inputs(f)]
    assert f.formula in DEPS, f.formula
    if f.formula.startswith(TODAY):
        return f"sforg_days_open({cols[0]}, '{today.isoformat()}')"
    return f"sforg_total_with_tax({', '.join(cols)})"
