"""Settings of the jobrunner (environment variables, prefix SFVAULT_)."""

from __future__ import annotations

import os
import socket

from services.platform.settings import ServiceSettings


class JobrunnerSettings(ServiceSettings):
    jobrunner_port: int = 50052
    storage_addr: str = "127.0.0.1:50053"
    session_addr: str = "127.0.0.1:50054"  # optional; the jobrunner learns everything from events
    jobrunner_concurrency: int = 4
    # fair scheduling across orgs (domain_fair): jobs fetched and held, not started yet (0: the default, 256), and
    # the jobs of one org running at once on a replica (0: up to the concurrency)
    jobrunner_window: int = 0
    jobrunner_org_cap: int = 0
    jobrunner_worker_id: str = ""  # default hostname-pid
    jobrunner_db_schema: str = "jobrunner"
    # a JOBS message is redelivered to another replica this long after its holder stopped heartbeating
    jobrunner_ack_wait_s: float = 60.0
    jobrunner_heartbeat_s: float = 10.0
    jobrunner_overlap_s: float = 600.0
    jobrunner_settle_s: float = 300.0
    jobrunner_chunk_records: int = 10_000
    jobrunner_chunk_mb: float = 4.0  # a chunk also ends at this size: bounds each job's memory
    jobrunner_bulk_threshold: int = 2000
    jobrunner_bulk_page: int = 50_000
    jobrunner_rest_batch: int = 2000
    jobrunner_drain_s: float = 30.0
    jobrunner_http_timeout_s: float = 120.0  # one Salesforce call; a hung one is retried after this
    storage_max_message_mb: int = 64

    @property
    def worker_id(self) -> str:
        return self.jobrunner_worker_id or f"{socket.gethostname()}-{os.getpid()}"
