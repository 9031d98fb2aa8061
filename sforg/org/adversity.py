"""What tests turn against a client: the org's clock, its settings and its API usage."""

from __future__ import annotations

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
        if any(k in kw and kw[k] != self.settings[k] for k in ("hidden_fields", "profile_hidden_fields")):
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
