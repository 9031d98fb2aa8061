"""The org: records, files and metadata in the store, plus clock, sessions, cursors, adversity, faults
and accounting.

Each concern is a module of this package; `Org` joins them. Every admin operation is a method of `Org`: the HTTP
admin API and the Python admin client call the same methods.
"""

from __future__ import annotations

from sforg.org.accounting import Accounting
from sforg.org.adversity import Adversity
from sforg.org.base import (
    DAY,
    DEFAULT_SETTINGS,
    RECYCLE_BIN_DAYS,
    REPLICATION_DAYS,
    BulkJob,
    Cursor,
    OrgError,
    scale_total,
)
from sforg.org.deletes import Deletes
from sforg.org.deploy import Deploy
from sforg.org.faults import Faults
from sforg.org.files import Files
from sforg.org.merges import Merges
from sforg.org.queries import Queries
from sforg.org.schema_changes import SchemaChanges
from sforg.org.source import StoreSource
from sforg.org.truth import Truth

__all__ = [
    "DAY",
    "DEFAULT_SETTINGS",
    "RECYCLE_BIN_DAYS",
    "REPLICATION_DAYS",
    "BulkJob",
    "Cursor",
    "Org",
    "OrgError",
    "StoreSource",
    "scale_total",
]


class Org(Deploy, SchemaChanges, Merges, Deletes, Files, Queries, Truth, Adversity, Faults, Accounting):
    """One emulated org living in a state directory."""
