"""Ground truth: the org as the API would return it, to reconcile a backup against exactly."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from sforg import formulas
from sforg.clock import stamp
from sforg.org.base import OrgBase
from sforg.query import Context
from sforg.schema import FieldDef, ObjectDef
from sforg.store import table


class Truth(OrgBase):
    # ------------------------------------------------------------ ground truth
    def record_values(self, o: ObjectDef, row: dict[str, Any], ctx: Context) -> dict[str, Any]:
        """A stored row as the REST API renders it (hidden fields omitted, formulas computed)."""
        from sforg.query import RelNode, _rest_value, value_of

        node = RelNode(None, [o], "")
        cols = [c for c in row if not c.startswith("_")]
        node.columns[o.name] = cols
        tup = tuple(row[c] for c in cols)
        hidden = ctx.hidden.get(o.name, set())
        out: dict[str, Any] = {}
        for f in o.fields:
            if f.name.lower() in hidden:
                continue
            v = value_of(f, o, node, tup, ctx)
            if f.type == "base64":
                v = ("blob", o.name, row["Id"], f.name) if row.get("_blob") else None
            out[f.name] = _rest_value(f, v, "59.0")
        return out

    def _truth_of(
        self, o: ObjectDef, ctx: Context, values: bool, files: dict[str, Any]
    ) -> tuple[dict[str, Any], list[str]]:
        """Live records (Id -> values as REST renders them) and recycle-bin Ids of one object.

        Plain fields are rendered by SQLite (the same expressions as REST pages); formulas and blob URLs
        are computed here.
        """
        from sforg.query import RelNode, _q, _rest_value, json_object_sql, value_of

        hidden = ctx.hidden.get(o.name, set())
        visible = [f for f in o.fields if f.name.lower() not in hidden]
        fast = [f for f in visible if f.formula is None and f.type != "base64"]
        slow = [f for f in visible if f.formula is not None or f.type == "base64"]
        slow_cols = ["Id"]
        for f in slow:
            for c in formulas.inputs(f) if f.formula else []:
                if c not in slow_cols and o.field(c):
                    slow_cols.append(c)
        modstamp = o.field("SystemModstamp") or fast[0]
        members: list[tuple[str, FieldDef | str]] = (
            [(f.name, f) for f in fast] if values else [("SystemModstamp", modstamp)]
        )
        rendered = json_object_sql(members, o)
        deleted = '"IsDeleted"' if o.field("IsDeleted") else "0"
        sql = (
            f"SELECT {deleted}, _sha256, _blob, {rendered}, {', '.join(_q(c) for c in slow_cols)} "
            f"FROM {table(o.name)} ORDER BY _rowid"
        )
        node = RelNode(None, [o], "")
        node.columns[o.name] = slow_cols
        live: dict[str, Any] = {}
        binned: list[str] = []
        for row in self.store.conn().execute(sql):
            is_deleted, sha, blob, text, rest = row[0], row[1], row[2], row[3], row[4:]
            rid = rest[0]
            if is_deleted:
                binned.append(rid)
                continue
            vals = json.loads(text)
            if values and slow:
                for f in slow:
                    if f.type == "base64":
                        vals[f.name] = _rest_value(f, ("blob", o.name, rid, f.name), "59.0") if blob else None
                    else:
                        vals[f.name] = _rest_value(f, value_of(f, o, node, rest, ctx), "59.0")
                vals = {f.name: vals[f.name] for f in visible}
            live[rid] = vals
            if sha:
                files[rid] = {"sha256": sha, "object": o.name, "size": self.blobs.size(blob)}
        return live, binned

    def ground_truth(self, objects: list[str] | None = None, values: bool = True) -> dict[str, Any]:
        """The org as the API would return it, to reconcile a backup against exactly."""
        self.maintain(force=True)
        ctx = self.context()
        out: dict[str, Any] = {
            "generated_at": stamp(self.now()),
            "objects": {},
            "recycle_bin": {},
            "hard_deleted": {},
            "purged": {},
            "files": {},
            "metadata": [],
            "pending": 0,
        }
        for o in self.catalogue.values():
            if (objects and o.name not in objects) or not o.flags.get("queryable", True):
                continue  # change events and platform events are never queried, so never backed up
            live, binned = self._truth_of(o, ctx, values, out["files"])
            out["objects"][o.name] = live
            out["recycle_bin"][o.name] = binned
        for obj, rid, _at, kind in self.store.conn().execute("SELECT * FROM tombstones"):
            out["hard_deleted" if kind == "hard" else "purged"].setdefault(obj, []).append(rid)
        for mtype, full_name, mid, file_name, content, _created, modified in self.store.conn().execute(
            "SELECT * FROM metadata ORDER BY type, full_name"
        ):
            out["metadata"].append(
                {
                    "type": mtype,
                    "fullName": full_name,
                    "id": mid,
                    "fileName": file_name,
                    "lastModifiedDate": modified,
                    "sha256": hashlib.sha256(content.encode()).hexdigest(),
                }
            )
        out["pending"] = self.store.conn().execute("SELECT COUNT(*) FROM pending").fetchone()[0]
        return out
