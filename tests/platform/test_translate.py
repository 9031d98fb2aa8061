"""Protobuf <-> dataclass by field name: what is copied, what is given, what fails."""

import datetime as dt
from dataclasses import dataclass

import pytest
from sfvault.discovery.v1 import access_pb2 as access_api
from sfvault.protect.v1 import protect_pb2 as ppb

from services.discovery.domain import RetentionSettings, TokenRecord
from services.platform import timestamps
from services.platform.translate import from_message, to_message
from services.session.domain_alerts import Delivery


def test_the_message_fields_are_copied_by_name_and_datetimes_as_timestamps() -> None:
    at = dt.datetime(2026, 11, 1, 12, 30, 5, tzinfo=dt.UTC)
    msg = to_message(access_api.TokenInfo, TokenRecord("t1", "ci", "admin", at, at + dt.timedelta(days=1), "ann"))
    assert msg == access_api.TokenInfo(
        token_id="t1",
        name="ci",
        role="admin",
        issued_at=timestamps.to_pb(at),
        expires_at=timestamps.to_pb(at + dt.timedelta(days=1)),
        registered_by="ann",
    )
    assert not msg.HasField("revoked_at")  # None leaves it unset


def test_a_given_field_replaces_the_copy_and_a_missing_one_fails() -> None:
    x = Delivery("webhook", "https://hooks.example/secret-path", "hooks.example", attempts=2)
    assert to_message(ppb.Delivery, x, target=x.shown) == ppb.Delivery(
        channel="webhook", target="hooks.example", status="pending", attempts=2
    )

    @dataclass(frozen=True)
    class Short:
        channel: str

    with pytest.raises(AttributeError):
        to_message(ppb.Delivery, Short("email"))


def test_a_dataclass_from_the_message_fields_of_the_same_names() -> None:
    msg = ppb.RetentionSettings(days=30, versions=5, prune_latest=True)
    assert from_message(RetentionSettings, msg) == RetentionSettings(30, 5, True)
    assert from_message(RetentionSettings, msg, prune_latest=False) == RetentionSettings(30, 5, False)
