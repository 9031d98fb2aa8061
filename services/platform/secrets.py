"""Secret references ("env:NAME", "file:/path") and where an org's secrets may come from.

Whoever may add or change an org chooses its references, and `org test` sends the client secret to the org's
login URL: so an org's secret is read only from a file inside the secrets directories (`SFVAULT_SECRETS_DIR`,
directories separated by ':'; default the Kubernetes mount /var/run/secrets/sfvault/salesforce and the local
installation's `.sfvault/secrets`) or from a variable named with `SFVAULT_SECRET_ENV_PREFIX` (default
`SFVAULT_SECRET_`). Not all of /run/secrets: a pod's service-account token and sfvault's own key live there.
sfvault's own settings (`SFVAULT_AUTH_KEY`, `SFVAULT_DATABASE_URL`, ...) and the files they name are never an
org's secret, whatever the directories and the prefix. A path is resolved (symbolic links, `..`) before its
containment is checked. A refusal names the rule and the reference, never a value. Pure: the process environment
is read only by `SecretRule.from_environment`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

DIRS_SETTING = "SFVAULT_SECRETS_DIR"
PREFIX_SETTING = "SFVAULT_SECRET_ENV_PREFIX"
DEFAULT_DIRS = ("/var/run/secrets/sfvault/salesforce", ".sfvault/secrets")
DEFAULT_PREFIX = "SFVAULT_SECRET_"
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class SecretError(RuntimeError):
    """A secret reference cannot be read or is not allowed (the message names the reference, never a value)."""


def read_secret(ref: str, what: str = "secret") -> str:
    """Resolve "env:NAME" or "file:/path" anywhere: for the operator's own secrets (the CLI's signing key), never
    for an org's (`SecretRule.read`)."""
    kind, where = _split(ref, what)
    if kind == "env":
        value = os.environ.get(where)
        if value is None:
            raise SecretError(f"{what}: environment variable {where!r} is not set")
        return value
    return _read_file(Path(where), what, where)


def _split(ref: str, what: str) -> tuple[str, str]:
    if not ref:
        raise SecretError(f"{what}: no reference given")
    kind, _, where = ref.partition(":")
    if kind not in ("env", "file") or not where:
        raise SecretError(f"{what}: the reference must be 'env:NAME' or 'file:/absolute/path'")
    return kind, where


def _read_file(path: Path, what: str, shown: str) -> str:
    try:
        return path.read_text().strip()
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or "not text"
        raise SecretError(f"{what}: cannot read file {shown!r}: {reason}") from None


@dataclass(frozen=True)
class SecretRule:
    """Where an org's secrets may come from."""

    dirs: tuple[str, ...] = DEFAULT_DIRS
    env_prefix: str = DEFAULT_PREFIX
    own_files: tuple[str, ...] = ()  # files sfvault's own settings name (its signing key, its TLS key, ...)

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> SecretRule:
        env = os.environ if environ is None else environ
        raw = env.get(DIRS_SETTING, "")
        dirs = tuple(d.strip() for d in raw.split(os.pathsep) if d.strip()) or DEFAULT_DIRS
        own = tuple(
            value.removeprefix("file:")
            for name, value in env.items()
            if _own_setting(name) and value.removeprefix("file:").startswith("/")
        )
        return cls(dirs, env.get(PREFIX_SETTING, DEFAULT_PREFIX).strip(), own)

    def allowed_dirs(self) -> list[Path]:
        """The directories, resolved (a relative one against the working directory)."""
        return [Path(os.path.realpath(os.path.abspath(d))) for d in self.dirs]

    def check(self, ref: str, what: str) -> tuple[str, str]:
        """("env", NAME) or ("file", resolved path) of an allowed reference; SecretError naming the rule else.
        Reads no secret (a file need not exist yet: it is read when the org is used)."""
        kind, where = _split(ref, what)
        if kind == "env":
            prefix = self.env_prefix
            if not _NAME.match(prefix or "-") or len(prefix) < 4:
                raise SecretError(f"{PREFIX_SETTING} must be a variable-name prefix of at least 4 characters")
            if not _NAME.match(where):
                raise SecretError(f"{what}: {where!r} is not an environment variable name")
            if not where.startswith(prefix) or _own_setting(where):
                raise SecretError(
                    f"{what}: environment variable {where!r} is not allowed: an org's secret comes only from a"
                    f" variable named {prefix}... ({PREFIX_SETTING}), never from sfvault's own settings"
                )
            return kind, where
        if not where.startswith("/"):
            raise SecretError(f"{what}: the file must be an absolute path")
        resolved = Path(os.path.realpath(where))
        dirs = self.allowed_dirs()
        if not any(d in resolved.parents for d in dirs):
            raise SecretError(
                f"{what}: file {where!r} is not allowed: an org's secret comes only from a file inside the secrets"
                f" directories ({', '.join(str(d) for d in dirs)}; {DIRS_SETTING})"
            )
        if any(resolved == Path(os.path.realpath(f)) for f in self.own_files):
            raise SecretError(f"{what}: file {where!r} is not allowed: it is named by one of sfvault's own settings")
        return kind, str(resolved)

    def read(self, ref: str, what: str) -> str:
        """An org's secret: checked, then read (the resolved file, so a link cannot lead elsewhere)."""
        kind, where = self.check(ref, what)
        if kind == "env":
            value = os.environ.get(where)
            if value is None:
                raise SecretError(f"{what}: environment variable {where!r} is not set")
            return value
        return _read_file(Path(where), what, ref.partition(":")[2])


def _own_setting(name: str) -> bool:
    """sfvault's own settings (case-insensitive, as they are read): never an org's secret."""
    upper = name.upper()
    if upper in (PREFIX_SETTING, DIRS_SETTING):
        return True
    return upper.startswith("SFVAULT_") and not upper.startswith(DEFAULT_PREFIX)


def read_org_secret(ref: str, what: str) -> str:
    """An org's secret, under this process's rule (SFVAULT_SECRETS_DIR, SFVAULT_SECRET_ENV_PREFIX)."""
    return SecretRule.from_environment().read(ref, what)


def check_org_secret_ref(ref: str, what: str) -> None:
    """Whether an org's reference is allowed under this process's rule, without reading it."""
    SecretRule.from_environment().check(ref, what)
