"""Storage settings, read once from SFVAULT_* environment variables; a missing required one stops start-up."""

from __future__ import annotations

from pydantic import Field, ValidationError, model_validator
from pydantic_settings import SettingsConfigDict

from services.platform.encryption import KEY_SETTING, OLD_KEYS_SETTING, Keyring
from services.platform.secrets import SecretError
from services.platform.settings import ServiceSettings


class StorageSettings(ServiceSettings):
    """Storage's own settings on top of those every service reads the same way (ServiceSettings: database, NATS
    and its streams' replicas and duplicate window, authentication, TLS)."""

    model_config = SettingsConfigDict(env_prefix="SFVAULT_", extra="ignore")

    storage_port: int = 50053
    # file:///absolute/path, file://relative/path, or s3://bucket/prefix
    file_repository: str = "file://var/sfvault/files"
    s3_endpoint_url: str | None = None  # MinIO, Ceph, moto...; AWS credentials come from boto3's usual chain
    storage_max_chunk_records: int = 10_000
    storage_max_message_mb: int = 64
    # formula fields are stored either way; true makes a formula-only change a new version
    storage_count_formula_changes: bool = False
    # of the records a jobrunner sends in canonical form, one in this many is canonicalised again and must
    # come out identical (1: every record, at the cost storage would pay for raw records)
    storage_canonical_check_every: int = Field(default=32, ge=1)
    storage_db_pool_size: int = Field(default=8, ge=2)
    # exports streamed at once (each holds a database connection while its client reads); more wait their turn
    storage_max_concurrent_exports: int = Field(default=2, ge=1)
    # how often the outbox relay publishes the ChunkUploaded events still pending (and forgets acknowledged ones)
    storage_outbox_interval_s: float = Field(default=2.0, gt=0)
    storage_drain_seconds: float = 20.0
    # temporary bodies (of uploads killed midway) untouched this long are removed at start-up; longer than any
    # upload's pause between two writes (local) or than any multipart upload takes (S3)
    storage_tmp_grace_s: float = Field(default=6 * 3600.0, ge=0)
    # encryption at rest of the file repository's bodies: the key-encryption key's reference ("env:NAME" or
    # "file:/path", 32 bytes as hex or base64); empty: new bodies are stored plain
    storage_encryption_key_ref: str = ""
    # the references of former KEKs (comma-separated), to read the bodies they wrapped until `rewrap` ran
    storage_encryption_old_key_refs: str = ""

    def keyring(self) -> Keyring | None:
        """The KEKs (raises SecretError, naming the reference, when one cannot be read or is no key)."""
        old = [r.strip() for r in self.storage_encryption_old_key_refs.split(",") if r.strip()]
        if not self.storage_encryption_key_ref:
            if old:
                raise SecretError(f"{OLD_KEYS_SETTING} is set but {KEY_SETTING} is not")
            return None
        return Keyring.from_refs(self.storage_encryption_key_ref, old)

    @model_validator(mode="after")
    def _exports_leave_connections_for_writes(self) -> StorageSettings:
        if self.storage_max_concurrent_exports >= self.storage_db_pool_size:
            raise ValueError(
                "SFVAULT_STORAGE_MAX_CONCURRENT_EXPORTS must be below SFVAULT_STORAGE_DB_POOL_SIZE"
                " (exports would take every connection the writes need)"
            )
        return self


class ConfigError(SystemExit):
    pass


def load() -> StorageSettings:
    try:
        return StorageSettings()  # type: ignore[call-arg]
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            if not err["loc"]:  # a rule between settings: its message names them
                problems.append(str(err["msg"]).removeprefix("Value error, "))
                continue
            name = "SFVAULT_" + "_".join(str(p) for p in err["loc"]).upper()
            problems.append(f"{name}: {'is required' if err['type'] == 'missing' else err['msg']}")
        raise ConfigError("storage: bad configuration: " + "; ".join(problems)) from None
