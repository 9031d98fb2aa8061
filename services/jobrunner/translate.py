"""Protobuf <-> the jobrunner's domain: a JobSpec's object schema for storage, storage's counts, Salesforce
timestamps."""

from __future__ import annotations

import dataclasses

from google.protobuf.timestamp_pb2 import Timestamp
from sfvault.events.v1 import events_pb2 as ev
from sfvault.jobs.v1 import jobs_pb2
from sfvault.storage.v1 import storage_pb2 as spb

from services.canonical import FieldDef, FieldType, ObjectSchema
from services.jobrunner import domain
from services.platform.counts import Counts
from services.platform.events import counts_from_pb


def schema_of(spec: jobs_pb2.JobSpec) -> spb.ObjectSchema:
    """The object's schema as storage takes it, from the JobSpec's fields (`sf_type` -> FieldType)."""
    data = spec.data
    fields = [
        spb.FieldSchema(
            name=f.name,
            type=domain.storage_field_type(f.sf_type),  # type: ignore[arg-type]
            calculated=f.calculated,
            sf_type=f.sf_type,
            label=f.label,
            sensitive=f.sensitive,
        )
        for f in data.fields
    ]
    return spb.ObjectSchema(
        object_name=spec.object_name, key_prefix=data.key_prefix, fields=fields, describe_json=data.describe_json
    )


def canonical_schema(schema: spb.ObjectSchema) -> ObjectSchema:
    """The canonical record model's view of storage's schema message."""
    return ObjectSchema(
        schema.object_name,
        tuple(FieldDef(f.name, FieldType(int(f.type)), f.calculated) for f in schema.fields),
        schema.key_prefix,
    )


def chunk_counts(counts: ev.Counts) -> Counts:
    """Storage's counts of a chunk (or of a job so far), without what the job counts itself: the records it
    read and its API calls."""
    return dataclasses.replace(counts_from_pb(counts), received=0, api_calls=0)


def sf_timestamp(text: str) -> Timestamp:
    """A Salesforce datetime text as a Timestamp; empty text, the zero Timestamp."""
    ts = Timestamp()
    if text:
        ts.FromDatetime(domain.parse_sf_datetime(text))
    return ts
