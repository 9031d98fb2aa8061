"""Settings of the discovery service (environment variables, prefix SFVAULT_)."""

from __future__ import annotations

from services.platform.settings import ServiceSettings


class DiscoverySettings(ServiceSettings):
    discovery_port: int = 50051
    discovery_db_schema: str = "discovery"
    storage_addr: str = "127.0.0.1:50053"  # storage's gRPC address; its health is checked before each plan
    storage_check_timeout_s: float = 5.0
    # a request being planned is kept in progress (heartbeats), so this is only how soon a request abandoned by a
    # killed discovery comes back, not the longest plan
    discovery_ack_wait_s: float = 30.0
    # one planning attempt's deadline (an org call that hangs); after the last attempt the session fails
    discovery_plan_timeout_s: float = 900.0
    discovery_describe_parallel: int = 4
    # describes are re-read without If-Modified-Since at least this often
    discovery_full_describe_every_s: float = 24 * 3600.0
    # an object of more records than this is split into Id ranges, one data job each (issue 21); 0: never
    discovery_split_records: int = 1_000_000
    session_addr: str = "127.0.0.1:50054"  # the session service, for scheduled sessions
    scheduler_interval_s: float = 30.0  # how often due schedules are checked; 0 turns the scheduler off
