"""Injected faults: armed per endpoint name (or '*'), taken by the dispatcher request by request."""

from __future__ import annotations

from typing import Any

from sforg.org.base import OrgBase


class Faults(OrgBase):
    def set_fault(
        self,
        endpoint: str = "*",
        error_rate: float = 0.0,
        error: str = "SERVER_UNAVAILABLE",
        latency: float = 0.0,
        hang: bool = False,
        stall_after: int | None = None,
        count: int | None = None,
    ) -> dict[str, Any]:
        """Arm a fault on an endpoint name (see README) or '*': errors, latency, hangs, mid-body stalls."""
        spec = {
            "endpoint": endpoint,
            "error_rate": error_rate,
            "error": error,
            "latency": latency,
            "hang": hang,
            "stall_after": stall_after,
            "count": count,
        }
        self.faults[endpoint] = spec
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
