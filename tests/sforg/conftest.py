"""Fixtures for sforg's tests: one org per session (3,000 records), a client, a clean slate per test."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

from sforg.testing import Admin, ca_bundle, running_org, simple_salesforce


@pytest.fixture(scope="session")
def org(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    with running_org(tmp_path_factory.mktemp("sforg"), scale=3000, seed=11) as info:
        with pytest.MonkeyPatch.context() as mp:
            # requests lets this variable override session.verify, and zeep ignores the session: see WIRE.md.
            mp.setenv("REQUESTS_CA_BUNDLE", ca_bundle(info))
            yield info


@pytest.fixture(scope="session")
def admin(org: dict[str, Any]) -> Admin:
    return Admin(org)


@pytest.fixture(autouse=True)
def _clean_slate(request: pytest.FixtureRequest) -> Iterator[None]:
    """Undo faults, settings and clock changes after every test that used the org."""
    uses_org = "admin" in request.fixturenames or "sf" in request.fixturenames
    a: Admin | None = request.getfixturevalue("admin") if uses_org else None
    yield
    if a is not None:
        a.clear_faults()
        a.settings(
            token_ttl=7200.0,
            locator_ttl=900.0,
            late_commit_delay=0.0,
            formula_drift=False,
            hidden_fields={},
            api_max=100000,
            concurrent_limit=25,
            long_running_seconds=20.0,
        )
        a.api_usage(used=0, bulk_jobs=0)
        a.reset_clock()


@pytest.fixture
def sf(org: dict[str, Any]) -> Any:
    assert os.environ["REQUESTS_CA_BUNDLE"].endswith("ca-bundle.pem")
    return simple_salesforce(org)
