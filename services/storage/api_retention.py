"""The keep RPCs of StorageService (issue 18): PruneStep, PinRestorePoint, legal holds. Mixed into
StorageServicer (api.py), which also asks `check_as_of` before every as-of read."""

from __future__ import annotations

from typing import Any

from sfvault.storage.v1 import storage_pb2

from services.platform.auth import current_principal
from services.platform.translate import to_message
from services.storage import api
from services.storage.api import _unary, _when
from services.storage.application import ChunkRef, Storage
from services.storage.retention import Retention, check_rule
from services.storage.store_retention import HoldRow


def _hold(h: HoldRow) -> storage_pb2.LegalHold:
    return to_message(storage_pb2.LegalHold, h, hold_id=str(h.hold_id))  # released_at None: left unset


class RetentionServicer:
    storage: Storage
    retention: Retention

    @_unary
    async def PruneStep(self, request: storage_pb2.PruneStepRequest, context: Any) -> storage_pb2.PruneStepResponse:
        r = request.retention
        rule = check_rule(r.days, r.versions, r.prune_latest)
        at = ChunkRef(request.org_id, request.session_id, request.job_id, request.chunk_seq)
        result = await self.retention.prune_step(at, rule, dry_run=request.dry_run, max_versions=request.max_versions)
        return to_message(storage_pb2.PruneStepResponse, result)  # horizon None: left unset

    @_unary
    async def PinRestorePoint(
        self, request: storage_pb2.PinRestorePointRequest, context: Any
    ) -> storage_pb2.PinRestorePointResponse:
        pin_id = await self.retention.pin(
            request.org_id, _when(request, "at"), request.reason, request.session_id, list(request.objects)
        )
        return storage_pb2.PinRestorePointResponse(pin_id=pin_id)

    @_unary
    async def SetLegalHold(self, request: storage_pb2.SetLegalHoldRequest, context: Any) -> storage_pb2.LegalHold:
        who = current_principal.get()
        return _hold(
            await self.retention.set_hold(
                request.org_id, request.object_name, request.reason, request.policy_id, who.name
            )
        )

    @_unary
    async def ReleaseLegalHold(
        self, request: storage_pb2.ReleaseLegalHoldRequest, context: Any
    ) -> storage_pb2.LegalHold:
        who = current_principal.get()
        return _hold(await self.retention.release_hold(request.hold_id, who.name))

    @_unary
    async def ListLegalHolds(
        self, request: storage_pb2.ListLegalHoldsRequest, context: Any
    ) -> storage_pb2.ListLegalHoldsResponse:
        holds = await self.retention.holds(request.org_id, request.include_released)
        return storage_pb2.ListLegalHoldsResponse(holds=[_hold(h) for h in holds])


class StorageServicer(RetentionServicer, api.StorageServicer):
    """Every RPC of StorageService: api.py's and the keep RPCs."""
