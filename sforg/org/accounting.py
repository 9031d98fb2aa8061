"""The accounting of calls: per endpoint and kind, and the bytes sent."""

from __future__ import annotations

import json
from typing import Any

from sforg.org.base import OrgBase, new_accounting


class Accounting(OrgBase):
    def account(self, endpoint: str, kind: str, nbytes: int) -> None:
        with self.lock:
            a = self.accounting
            a["calls"][endpoint] = a["calls"].get(endpoint, 0) + 1
            a["kinds"][kind] = a["kinds"].get(kind, 0) + 1
            a["bytes"][endpoint] = a["bytes"].get(endpoint, 0) + nbytes
            a["bytes_total"] += nbytes

    def count_write(self, endpoint: str) -> None:
        """A write call (record, recycle bin, ingest job or deploy), counted as made whatever its outcome."""
        with self.lock:
            a = self.accounting
            a["writes"] = a.get("writes", 0) + 1
            a["write_calls"][endpoint] = a["write_calls"].get(endpoint, 0) + 1

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
            self.accounting = new_accounting()
        return self.get_accounting()
