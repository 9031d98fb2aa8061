"""The shared fixtures start real servers."""

import nats
import psycopg


def test_database_is_real_postgres(database_url: str) -> None:
    with psycopg.connect(database_url) as conn:
        version = conn.execute("select current_setting('server_version_num')::int").fetchone()
    assert version is not None and version[0] >= 150000


async def test_nats_has_jetstream(nats_url: str) -> None:
    nc = await nats.connect(nats_url)
    try:
        info = await nc.jetstream().account_info()
        assert info.limits is not None
    finally:
        await nc.close()
