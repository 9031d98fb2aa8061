"""`sfvault export`'s pieces: the formats (CSV and JSON Lines from storage, Parquet built here from the JSON
Lines), and a clear answer when the point asked for has no data (the object never backed up, or not yet then).

Parquet needs pyarrow (an optional dependency: `pip install pyarrow`); the whole object is held in memory to
write it, as a Parquet file is written whole."""

from __future__ import annotations

import datetime as dt
import io
import json
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from sfvault.storage.v1 import storage_pb2 as st

from services.cli.errors import CodedError

FORMATS = {"csv": st.EXPORT_FORMAT_CSV, "jsonl": st.EXPORT_FORMAT_JSONL, "parquet": st.EXPORT_FORMAT_JSONL}


def storage_format(name: str) -> Any:
    """The format storage is asked for (Parquet: JSON Lines, converted here)."""
    if name not in FORMATS:
        raise CodedError(f"--format must be {', '.join(list(FORMATS)[:-1])} or {list(FORMATS)[-1]}", "invalid_argument")
    if name == "parquet":
        _pyarrow()  # before anything is read
    return FORMATS[name]


def _pyarrow() -> Any:
    try:
        import pyarrow
        import pyarrow.parquet
    except ImportError:
        raise CodedError(
            "--format parquet needs pyarrow, which is not installed: `pip install pyarrow` "
            "(or use --format csv or jsonl)",
            "failed_precondition",
        ) from None
    return pyarrow


def check_point(object_name: str, at: dt.datetime, points: Sequence[st.RestorePoint]) -> None:
    """No data at `at`: the object has no restore point, or its first one is later (an error naming it)."""
    if not points:
        raise CodedError(f"{object_name} has never been backed up (no restore point holds it)", "not_found")
    first = min(p.first_capture.ToDatetime(dt.UTC) for p in points)
    if at < first:
        raise CodedError(
            f"no backup of {object_name} as of {at.isoformat()}: its first restore point is {first.isoformat()} "
            "(pass a later --at)",
            "not_found",
        )


def parquet(jsonl: Iterable[bytes]) -> Iterator[bytes]:
    """JSON Lines (one record an object) as one Parquet file. Columns take the values' types; an object whose
    values of one field differ in type gets text columns."""
    pa = _pyarrow()
    rows = [json.loads(line) for line in b"".join(jsonl).splitlines() if line.strip()]
    try:
        table = pa.Table.from_pylist(rows)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        table = pa.Table.from_pylist([{k: None if v is None else str(v) for k, v in r.items()} for r in rows])
    out = io.BytesIO()
    pa.parquet.write_table(table, out)
    yield out.getvalue()
