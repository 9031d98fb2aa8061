"""An error the CLI names by a code: its line reads `error (CODE): message` (exit 1), as a service's would."""

from __future__ import annotations


class CodedError(Exception):
    """e.g. CodedError("no session id starts with 'ff'", "not_found")."""

    def __init__(self, message: str, code: str) -> None:
        super().__init__(message)
        self.code = code
