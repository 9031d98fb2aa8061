"""What every part of one object's data job shares: the object and its JobSpec, the fields read and how, the
Ids the window's read returned, the warnings taken, and the canonical form its records go to storage in."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sfvault.jobs.v1 import jobs_pb2

from services.canonical import CanonicalParts, RecordCanonicalizer
from services.jobrunner import domain, translate
from services.jobrunner.domain import Key, Plan, Selection
from services.jobrunner.job_run import JobRun
from services.jobrunner.ports import SalesforceReads


@dataclass
class ObjectRead:
    run: JobRun
    reader: SalesforceReads
    canonicalizer: RecordCanonicalizer
    selection: Selection
    drop: tuple[str, ...]  # components read only to rebuild a compound value
    query_all: bool
    seen: set[str] = field(default_factory=set)  # Ids the window's read returned (incremental windows are small)
    track_seen: bool = False
    warnings: list[str] = field(default_factory=list)  # fallbacks taken: said in the result, not only in a log

    @classmethod
    def of(cls, run: JobRun, reader: SalesforceReads) -> ObjectRead:
        data = run.spec.data
        infos = [domain.FieldInfo(f.name, f.sf_type, f.calculated) for f in data.fields]
        selection = domain.select_fields(infos, domain.compound_components(data.describe_json))
        canonicalizer = RecordCanonicalizer(
            translate.canonical_schema(translate.schema_of(run.spec)),
            count_formula_changes=run.formula_changes_counted,
        )
        return cls(
            run,
            reader,
            canonicalizer,
            selection,
            domain.components_to_drop(selection, [f.name for f in data.fields]),
            query_all=bool(data.queryall_supported) or has_field(data, "IsDeleted"),
        )

    @property
    def obj(self) -> str:
        return self.run.spec.object_name

    @property
    def data(self) -> jobs_pb2.DataJob:
        return self.run.spec.data

    def encode(self, rec: dict[str, Any], position: int) -> tuple[CanonicalParts, int]:
        """A record in canonical form (the parsing and hashing work is spread over the jobrunners), and its size."""
        p = self.canonicalizer.parts(rec, position)
        return p, len(p.values) + len(p.other_values)

    def warn(self, warning: str) -> None:
        """A fallback taken: in the job's result, and in its checkpoint, so a resumed attempt still says it."""
        if warning not in self.warnings:
            self.warnings.append(warning)
            self.run.save_state(warnings=self.warnings)

    def in_range(self, rid: str) -> bool:
        if self.data.id_from and rid < self.data.id_from:
            return False
        return not (self.data.id_to and rid >= self.data.id_to)

    def soql(
        self, fields: Sequence[str], plan: Plan | None = None, *, after: Key | None = None, ordered: str = ""
    ) -> str:
        """The object's query over its Id range, and the plan's window when one is given (a full read's window
        has no end)."""
        return domain.build_soql(
            self.obj,
            fields,
            start=plan.start if plan else None,
            end=plan.end if plan and plan.mode == "incremental" else None,
            id_from=self.data.id_from,
            id_to=self.data.id_to,
            after=after,
            ordered=ordered,
            cursor=plan.cursor if plan else "SystemModstamp",
        )

    def last_stored_key(self) -> Key | None:
        """The key of the last record a committed chunk holds (the checkpoint names it)."""
        pos = self.run.checkpoint.get("pos") or {}
        if self.run.checkpoint.get("seq") == self.run.seq and pos.get("key"):
            return Key(pos["key"][0], pos["key"][1])
        return None


def has_field(data: jobs_pb2.DataJob, name: str) -> bool:
    return any(f.name.lower() == name.lower() for f in data.fields)
