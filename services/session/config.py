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
    # how long WatchSession waits for a session it does not know yet (its SessionRequested on the way) before
    # answering NOT_FOUND
    watch_grace_s: float = 10.0
    session_batch_size: int = 500
    # a batch commits in well under a second; after a crash its unacked events come back after this long
    session_ack_wait_s: float = 10.0

    # alerts (issue 18): the SMTP server e-mails go through, and the deliveries' retry back-off
    smtp_host: str = ""
    smtp_port: int = 25
    smtp_username: str = ""
    smtp_password_ref: str = ""  # a secret reference ("env:NAME" / "file:/path")
    smtp_from: str = "sfvault@localhost"
    smtp_starttls: bool = False
    alert_retry_base_s: float = 5.0  # a failed delivery is tried again after 5 s, 10 s, 20 s, ... (at most 64x)
    alert_max_attempts: int = 8

    @property
    def stall_timeout(self) -> dt.timedelta:
        return dt.timedelta(seconds=self.stall_timeout_s)

    @property
    def cancel_grace(self) -> dt.timedelta:
        return dt.timedelta(seconds=self.cancel_grace_s)
