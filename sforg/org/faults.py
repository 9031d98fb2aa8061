"""Injected faults: armed per endpoint name (or '*'), taken by the dispatcher request by request."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from sforg.admin_calls import Fault
from sforg.org.base import OrgBase


class Faults(OrgBase):
    def set_fault(self, **kw: Any) -> dict[str, Any]:
        """Arm a fault (the arguments of admin_calls.Fault): errors, latency, hangs, mid-body stalls."""
        spec = asdict(Fault(**kw))
        self.faults[spec["endpoint"]] = spec
        return spec

    def clear_faults(self) -> dict[str, Any]:
        self.faults.clear()
        return {"faults": {}}

    def in_flight_requests(self) -> dict[str, Any]:
        """How many API requests are being served now (what the concurrent long-requests limit counts)."""
        return {"in_flight": len(self.in_flight)}

    def take_fault(self, endpoint: str) -> dict[str, Any] | None:
        """The fault to apply to this request, if any (counts down 'count')."""
        with self.lock:
            spec = self.faults.get(endpoint) or self.faults.get("*")
            if spec is None:
                return None
            key = spec["endpoint"]
            if spec["count"] is not None:
                if spec["count"] <= 0:
                    del self.faults[key]
                    return None
                spec["count"] -= 1
                if spec["count"] <= 0:
                    del self.faults[key]
            return spec
