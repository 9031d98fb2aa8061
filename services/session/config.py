"""Settings of the session service (environment variables, prefix SFVAULT_)."""

from __future__ import annotations

import datetime as dt

from services.platform.settings import ServiceSettings


class SessionSettings(ServiceSettings):
    session_port: int = 50054
    session_db_schema: str = "session"
    stall_timeout_s: float = 24 * 3600.0  # the seed's 24 hours; a session request may set its own
    stall_check_interval_s: float = 30.0
    # how long the jobs of a cancelled session have to stop before they are terminated (the session then ends)
    cancel_grace_s: float = 10.0
    session_batch_size: int = 500
    # a batch commits in well under a second; after a crash its unacked events come back after this long
    session_ack_wait_s: float = 10.0

    @property
    def stall_timeout(self) -> dt.timedelta:
        return dt.timedelta(seconds=self.stall_timeout_s)

    @property
    def cancel_grace(self) -> dt.timedelta:
        return dt.timedelta(seconds=self.cancel_grace_s)
