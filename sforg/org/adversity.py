"""What tests turn against a client: the clock, settings, API usage, injected faults; and the accounting of calls."""

from __future__ import annotations

import json
from typing import Any

from sforg.clock import parse_datetime, stamp
from sforg.org.base import DEFAULT_SETTINGS, OrgBase, OrgError


class Adversity(OrgBase):
    # ------------------------------------------------------------ admin: clock, adversity, limits
    def clock_set(self, when: str | float, freeze: bool = False) -> dict[str, Any]:
        epoch = when if isinstance(when, int | float) else parse_datetime(str(when)).timestamp()
        self.clock.set(float(epoch), freeze)
        self.save_clock()
        return self.clock_info()

    def clock_advance(self, seconds: float) -> dict[str, Any]:
        self.clock.advance(float(seconds))
        self.save_clock()
        return self.clock_info()

    def clock_reset(self) -> dict[str, Any]:
        self.clock.reset()
        self.save_clock()
        return self.clock_info()

    def clock_info(self) -> dict[str, Any]:
        return {"now": stamp(self.now()), "epoch": self.now(), "frozen": self.clock.frozen is not None}

    def set_settings(self, **kw: Any) -> dict[str, Any]:
        if "hidden_fields" in kw and kw["hidden_fields"] != self.settings["hidden_fields"]:
            # Field-level security changes what describe returns, so If-Modified-Since must see it.
            self.describe_modified = self.now()
            self.store.set_meta("describe_modified", self.describe_modified)
        for k, v in kw.items():
            if k not in DEFAULT_SETTINGS:
                raise OrgError(400, "INVALID_SETTING", f"unknown setting {k}")
            self.settings[k] = v
        self.save_settings()
        return dict(self.settings)

    def set_api_usage(
        self, used: int | None = None, max: int | None = None, bulk_jobs: int | None = None
    ) -> dict[str, Any]:
        """Set the daily API counter (and its maximum) and the count of Bulk 2.0 query jobs today."""
        if bulk_jobs is not None:
            self.bulk_jobs_created = int(bulk_jobs)
        if used is not None:
            self.api_used = int(used)
        if max is not None:
            self.settings["api_max"] = int(max)
            self.save_settings()
        self.flush()
        return {"used": self.api_used, "max": self.settings["api_max"], "bulk_jobs": self.bulk_jobs_created}

    # ------------------------------------------------------------ admin: faults
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

    # ------------------------------------------------------------ accounting
    def account(self, endpoint: str, kind: str, nbytes: int) -> None:
        with self.lock:
            a = self.accounting
            a["calls"][endpoint] = a["calls"].get(endpoint, 0) + 1
            a["kinds"][kind] = a["kinds"].get(kind, 0) + 1
            a["bytes"][endpoint] = a["bytes"].get(endpoint, 0) + nbytes
            a["bytes_total"] += nbytes

    def add_bytes(self, endpoint: str, nbytes: int) -> None:
        with self.lock:
            self.accounting["bytes"][endpoint] = self.accounting["bytes"].get(endpoint, 0) + nbytes
            self.accounting["bytes_total"] += nbytes

    def get_accounting(self) -> dict[str, Any]:
        with self.lock:
            return json.loads(
                json.dumps({**self.accounting, "api_used": self.api_used, "api_max": self.settings["api_max"]})
            )

    def reset_accounting(self) -> dict[str, Any]:
        with self.lock:
            self.accounting = {"calls": {}, "kinds": {}, "bytes": {}, "bytes_total": 0}
        return self.get_accounting()
