"""A compare's stream in protobuf (sfvault.storage.v1.CompareChunk), written once: storage's CompareAsOf and
discovery's CompareLive answer with the same message from the same pieces (services.canonical.ComparePiece)."""

from __future__ import annotations

from sfvault.storage.v1 import storage_pb2

from services.canonical import ComparePiece


def compare_piece_to_pb(piece: ComparePiece) -> storage_pb2.CompareChunk:
    return storage_pb2.CompareChunk(
        changes=[
            storage_pb2.RecordChange(
                object_name=c.object_name,
                record_id=c.record_id,
                change=c.change,
                fields=[
                    storage_pb2.FieldChange(field=f.field, old_json=f.old_json, new_json=f.new_json) for f in c.fields
                ],
            )
            for c in piece.changes
        ],
        summaries=[
            storage_pb2.ObjectCompareSummary(
                object_name=s.object_name, added=s.added, deleted=s.deleted, changed=s.changed
            )
            for s in piece.summaries or ()
        ],
        truncated=piece.truncated,
    )
