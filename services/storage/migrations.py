"""The storage schema's migrations, applied in order at start (append-only: a released entry is never edited).

Record versions and the head are hash-partitioned by record Id (16 partitions): each partition's index stays
small enough to cache, autovacuum works partition by partition, and a lookup of one record touches one.
"""

from __future__ import annotations

SCHEMA = "storage"
PARTITIONS = 16


def _partitions(table: str) -> str:
    return "\n".join(
        f"CREATE TABLE {table}_p{i:02d} PARTITION OF {table} FOR VALUES WITH (MODULUS {PARTITIONS}, REMAINDER {i});"
        for i in range(PARTITIONS)
    )


V1 = f"""
CREATE TABLE orgs (
    org_key     int GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    org_id      text NOT NULL UNIQUE,                -- 18-character Organization Id
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- One row per sObject of an org; names are case-insensitive in Salesforce.
CREATE TABLE objects (
    object_key  int GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    org_key     int NOT NULL REFERENCES orgs,
    object_name text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX objects_name ON objects (org_key, lower(object_name));

-- The describe of an object; a new version only when fields, types or formula flags changed.
CREATE TABLE object_schemas (
    object_key     int NOT NULL REFERENCES objects,
    schema_version int NOT NULL,
    digest         bytea NOT NULL,
    key_prefix     text NOT NULL DEFAULT '',
    fields         jsonb NOT NULL,                  -- [{{name, type, calculated, sf_type, label}}]
    describe       jsonb,
    first_session  text NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (object_key, schema_version)
);

-- Which schema version each session saw: a restore point is read with the fields it had then.
CREATE TABLE session_schemas (
    session_id     text NOT NULL,
    object_key     int NOT NULL REFERENCES objects,
    schema_version int NOT NULL,
    PRIMARY KEY (session_id, object_key)
);

CREATE TABLE jobs (
    job_key     int GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    org_key     int NOT NULL REFERENCES orgs,
    session_id  text NOT NULL,
    job_id      text NOT NULL,
    job_type    smallint NOT NULL,
    object_name text NOT NULL DEFAULT '',
    created_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (session_id, job_id)
);
CREATE INDEX jobs_org_session ON jobs (org_key, session_id);

-- Every committed write of a job, keyed by (job, chunk_seq): the idempotency record and the source of
-- restore points. `result` is what the call returned, so a redelivery returns it again.
CREATE TABLE chunks (
    job_key      int NOT NULL REFERENCES jobs,
    chunk_seq    bigint NOT NULL,
    kind         text NOT NULL,                     -- records | deletes | file | metadata
    object_key   int,
    digest       bytea NOT NULL,
    result       jsonb NOT NULL DEFAULT '{{}}',
    committed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (job_key, chunk_seq)
);

-- Every version of every record. Append-only; version_id orders the versions of one record.
CREATE TABLE record_versions (
    org_key         int NOT NULL,
    object_key      int NOT NULL,
    record_id       text NOT NULL,
    version_id      bigint GENERATED ALWAYS AS IDENTITY,
    job_key         int NOT NULL,
    schema_version  int NOT NULL,
    captured_at     timestamptz NOT NULL DEFAULT now(),
    system_modstamp timestamptz,
    deleted         smallint NOT NULL DEFAULT 0,    -- 0 live, 1 soft (recycle bin), 2 hard
    hash            bytea NOT NULL,
    data            jsonb NOT NULL,                 -- canonical values (a deleted version: the last live ones)
    PRIMARY KEY (org_key, object_key, record_id, version_id)
) PARTITION BY HASH (record_id);
{_partitions("record_versions")}

-- The latest version of each record: comparison of a chunk costs one index probe per record.
CREATE TABLE record_head (
    org_key         int NOT NULL,
    object_key      int NOT NULL,
    record_id       text NOT NULL,
    hash            bytea NOT NULL,
    deleted         smallint NOT NULL,
    versions        int NOT NULL,
    system_modstamp timestamptz,                    -- of the latest read, changed or not
    raw_hash        bytea,                          -- fingerprint of the latest read's bytes (fast path)
    changed_at      timestamptz NOT NULL,
    PRIMARY KEY (org_key, object_key, record_id)
) PARTITION BY HASH (record_id);
{_partitions("record_head")}

-- File bodies, content-addressed: one row (and one stored object) per distinct content.
CREATE TABLE files (
    sha256    bytea PRIMARY KEY,
    size      bigint NOT NULL,
    location  text NOT NULL,
    stored_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE file_versions (
    version_id   bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    org_key      int NOT NULL REFERENCES orgs,
    object_name  text NOT NULL,
    record_id    text NOT NULL,
    sha256       bytea NOT NULL REFERENCES files,
    size         bigint NOT NULL,
    file_name    text NOT NULL DEFAULT '',
    content_type text NOT NULL DEFAULT '',
    job_key      int NOT NULL REFERENCES jobs,
    captured_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX file_versions_record ON file_versions (org_key, object_name, record_id, version_id);
CREATE INDEX file_versions_sha256 ON file_versions (sha256);

CREATE TABLE metadata_head (
    org_key   int NOT NULL REFERENCES orgs,
    type      text NOT NULL,
    full_name text NOT NULL,
    sha256    bytea NOT NULL,
    deleted   boolean NOT NULL,
    versions  int NOT NULL,
    PRIMARY KEY (org_key, type, full_name)
);

CREATE TABLE metadata_versions (
    version_id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    org_key            int NOT NULL REFERENCES orgs,
    type               text NOT NULL,
    full_name          text NOT NULL,
    sha256             bytea NOT NULL REFERENCES files,
    size               bigint NOT NULL,
    deleted            boolean NOT NULL,
    last_modified_date timestamptz,
    file_name          text NOT NULL DEFAULT '',
    job_key            int NOT NULL REFERENCES jobs,
    captured_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX metadata_versions_component ON metadata_versions (org_key, type, full_name, version_id);
CREATE INDEX metadata_versions_sha256 ON metadata_versions (sha256);
"""

# Version 2: what PostgreSQL does per stored record, made cheaper (measured on the initial backup of 1,000,000
# records, where the autovacuum workers' analyses took about a seventh of PostgreSQL's CPU).
# - A head's changed_at defaults to the transaction's time: a first version's head row carries no timestamp
#   text to parse.
# - No planner statistics for columns no query filters or joins on: the values (jsonb, the analyses' most
#   expensive column: every sampled value detoasted and compared) and the hashes (16 random bytes each).
# The lock timeout: a replica starting while others write waits at most that long for the heads' lock (then
# fails its start and is restarted) rather than holding up every query queued behind the ALTER.
V2 = """
SET LOCAL lock_timeout = '10s';
ALTER TABLE record_head ALTER COLUMN changed_at SET DEFAULT now();
ALTER TABLE record_versions ALTER COLUMN data SET STATISTICS 0, ALTER COLUMN hash SET STATISTICS 0;
ALTER TABLE record_head ALTER COLUMN hash SET STATISTICS 0, ALTER COLUMN raw_hash SET STATISTICS 0;
"""

# Version 3: the canonical rules of each head's hash (CANONICAL_RULES; rules 2 hash with XXH3-128 instead of
# BLAKE2b). The heads already stored were hashed under rules 1; a head written from now on under rules 2 (its
# default; a later rules version sets it again). A record compared with a rules-1 head is compared by rules 1
# (its legacy hash), and the head takes the rules-2 hash then: the upgrade writes no version for unchanged
# records. Catalog-only (a constant default): instant on a database that already holds data.
V3 = """
SET LOCAL lock_timeout = '10s';
ALTER TABLE record_head ADD COLUMN rules smallint NOT NULL DEFAULT 1;
ALTER TABLE record_head ALTER COLUMN rules SET DEFAULT 2;
"""

# Version 4: a tenth of each head page left free (fillfactor 90, for pages written from now on). A changed
# record's head is updated in place on its page (a HOT update: no new entry in the primary key), which made an
# incremental chunk's head upsert a fifth cheaper (1,000 random heads of 400,000: 15-16 -> 12 ms of PostgreSQL
# CPU); the heads take 7 % more space. Catalog-only. Set on each partition: PostgreSQL 16 keeps no storage
# parameters on a partitioned table.
V4 = "SET LOCAL lock_timeout = '10s';\n" + "\n".join(
    f"ALTER TABLE record_head_p{i:02d} SET (fillfactor = 90);" for i in range(PARTITIONS)
)

# Version 5: the transactional outbox of ChunkUploaded. A chunk's transaction inserts (job_key, chunk_seq) here
# in the same statement that stores its result, so a committed chunk is always announced: the relay publishes
# each pending row's event (its id is deterministic, JetStream drops a repeat) and deletes the row after the
# stream's ack. A row is small and short-lived (deleted within seconds); no foreign key to keep the insert cheap.
V5 = """
CREATE TABLE outbox (
    job_key   int NOT NULL,
    chunk_seq bigint NOT NULL,
    PRIMARY KEY (job_key, chunk_seq)
);
"""

# Version 6: the read audit -- who read what and when (record histories, as-of reads, exports, file and
# metadata downloads): never a value, only names, Ids, times and counts. Appended in batches by ReadAuditLog;
# listed by entry_id (ListReadAudit), from a time or for one actor.
V6 = """
CREATE TABLE read_audit (
    entry_id    bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at          timestamptz NOT NULL,
    actor       text NOT NULL,
    role        text NOT NULL,
    token_id    text NOT NULL,
    method      text NOT NULL,
    outcome     text NOT NULL,
    org_id      text NOT NULL,
    object_name text NOT NULL,
    target      text NOT NULL,
    as_of       timestamptz,
    count       bigint NOT NULL
);
CREATE INDEX read_audit_at ON read_audit (at);
CREATE INDEX read_audit_actor ON read_audit (actor, entry_id);
"""

# Version 7: a version that only adds values of fields that joined the backup's scope (a field made visible to
# the integration user, or created) is marked scope_only: stored and read like any version, but no restore point
# (counted unchanged). Catalog-only (a constant default).
V7 = """
SET LOCAL lock_timeout = '10s';
ALTER TABLE record_versions ADD COLUMN scope_only boolean NOT NULL DEFAULT false;
"""

# Version 8: canonical rules 1 (BLAKE2b) are gone. The heads still hashed under them are rehashed under rules 2
# by PostgresStore.rehash_rules_1_heads right after the migrations (a hash needs Python: XXH3-128 of the
# canonical text of the last version's hashed values); this partial index finds them, and costs nothing once
# they are all rehashed. Nothing compares by rules 1 any more: the `rules` column is kept (a later rules
# version may use it) but no query reads it on the write path.
V8 = """
SET LOCAL lock_timeout = '10s';
CREATE INDEX record_head_rules_1 ON record_head (org_key) WHERE rules = 1;
"""

# Version 9: restore (issue 17). A restore job is a job like any other (BeginJob with the TARGET org and
# JOB_TYPE_RESTORE); its chunks (PutRestoreOutcomes, kind "restore") store:
# - restore_outcomes: what happened (or, in a dry run, would happen) to each record, listed by session
#   (ListRestoreRecords: the session's jobs, then keyset on outcome_id);
# - restore_id_map: backup Id -> Id in the target org, per (source org, target org), for every record that came
#   back under another Id (Created, or matched in another org); the session that first mapped it;
# - restore_intents: a batch of creates announced before it is sent to Salesforce, resolved by the chunk that
#   stores its outcomes; an unresolved one tells a resumed restore to look for what that batch created.
V9 = """
CREATE TABLE restore_outcomes (
    outcome_id     bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    job_key        int NOT NULL REFERENCES jobs,
    chunk_seq      bigint NOT NULL,
    object_name    text NOT NULL,
    source_id      text NOT NULL,
    target_id      text NOT NULL DEFAULT '',
    state          smallint NOT NULL,               -- restore.v1.RecordState
    error_code     text NOT NULL DEFAULT '',
    message        text NOT NULL DEFAULT '',
    changed_fields text[] NOT NULL DEFAULT '{}',
    note           text NOT NULL DEFAULT '',
    dry_run        boolean NOT NULL DEFAULT false
);
CREATE INDEX restore_outcomes_job_state ON restore_outcomes (job_key, state, outcome_id);

CREATE TABLE restore_id_map (
    source_org_key int NOT NULL REFERENCES orgs,
    target_org_key int NOT NULL REFERENCES orgs,
    source_id      text NOT NULL,
    target_id      text NOT NULL,
    session_id     text NOT NULL,                   -- the session that first mapped it
    created_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (source_org_key, target_org_key, source_id)
);

CREATE TABLE restore_intents (
    job_key     int NOT NULL REFERENCES jobs,
    batch_key   text NOT NULL,
    object_name text NOT NULL,
    source_ids  text[] NOT NULL,
    sent_at     timestamptz NOT NULL,
    resolved_at timestamptz,
    recorded_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (job_key, batch_key)
);
"""

# Version 10: keep (issue 18). See services/storage/retention.py.
# - legal_holds: an org (object_name '') or one object of it on hold: nothing in it is pruned (or erased) until
#   released; rows are never deleted (released_at/by say when and who).
# - restore_pins: a point in time kept whatever the retention -- for each record (of `objects`, lower-case; empty:
#   every object) the version in force at `at` is never pruned.
# - retention_horizons: per org and scope (an object's lower-case name; '#metadata' for metadata components;
#   'file:<object>' for file versions), the time before which pruned versions leave as-of reads unanswerable.
V10 = """
CREATE TABLE legal_holds (
    hold_id     bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    org_key     int NOT NULL REFERENCES orgs,
    object_name text NOT NULL DEFAULT '',
    reason      text NOT NULL,
    policy_id   text NOT NULL DEFAULT '',
    set_by      text NOT NULL,
    set_at      timestamptz NOT NULL DEFAULT now(),
    released_at timestamptz,
    released_by text NOT NULL DEFAULT ''
);
CREATE INDEX legal_holds_active ON legal_holds (org_key) WHERE released_at IS NULL;

CREATE TABLE restore_pins (
    pin_id     bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    org_key    int NOT NULL REFERENCES orgs,
    at         timestamptz NOT NULL,
    objects    text[] NOT NULL DEFAULT '{}',
    reason     text NOT NULL DEFAULT '',
    session_id text NOT NULL DEFAULT '',
    pinned_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX restore_pins_org ON restore_pins (org_key, at);

CREATE TABLE retention_horizons (
    org_key   int NOT NULL REFERENCES orgs,
    scope     text NOT NULL,
    horizon   timestamptz NOT NULL,
    pruned_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (org_key, scope)
);
"""

# Version 11: erasure (GDPR Article 17, erasure.py). `erasures`: who erased what, when and why -- by object and Id
# and a keyed hash of the value looked for, never the value; `erased_records`: a tombstone per erased record (the
# next backups skip it while the org has it deleted); `erasure_key`: the installation's key of those hashes (one
# row, created at the first erasure).
V11 = """
CREATE TABLE erasures (
    erasure_seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    erasure_id  text NOT NULL UNIQUE,
    org_key     int NOT NULL REFERENCES orgs,
    erased_by   text NOT NULL,
    role        text NOT NULL,
    token_id    text NOT NULL,
    erased_at   timestamptz NOT NULL DEFAULT now(),
    reason      text NOT NULL,
    value_hash  bytea,                              -- HMAC-SHA256 of the value (by-value erasures), never the value
    fields      text[] NOT NULL DEFAULT '{}',       -- Object.Field looked in
    records     jsonb NOT NULL,                     -- [{object, id, versions, file_bodies}]
    versions    bigint NOT NULL,
    file_bodies bigint NOT NULL
);
CREATE INDEX erasures_org ON erasures (org_key, erasure_seq);

CREATE TABLE erased_records (
    org_key     int NOT NULL,
    object_key  int NOT NULL,
    record_id   text NOT NULL,
    erasure_seq bigint NOT NULL,
    PRIMARY KEY (org_key, object_key, record_id)
);

CREATE TABLE erasure_key (
    id  smallint PRIMARY KEY DEFAULT 1 CHECK (id = 1),
    key bytea NOT NULL
);
"""

# Encryption at rest (issue 18): an encrypted body's data key, wrapped by the KEK named; both NULL for a plain body.
# Encrypted bodies live at random addresses: a read finds the envelope by its address.
V12 = """
ALTER TABLE files ADD COLUMN kek_id text, ADD COLUMN wrapped_key bytea,
    ADD CONSTRAINT files_envelope CHECK ((kek_id IS NULL) = (wrapped_key IS NULL));
CREATE UNIQUE INDEX files_location ON files (location);
CREATE INDEX files_kek ON files (kek_id) WHERE kek_id IS NOT NULL;
"""

# Sensitive field values (issue 18, sensitive.py): each org's value key, wrapped by the KEK named (encryption.py's
# envelope); the values it seals live in record_versions' JSON, never in clear.
V13 = """
CREATE TABLE value_keys (
    org_key     int PRIMARY KEY,
    kek_id      text NOT NULL,
    wrapped_key bytea NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
"""

# Live records per object, kept as the heads change (issue 21): CountLive (each incremental job's count check) adds
# up these few rows instead of counting the object's heads, so an incremental costs what changed, not the org's size.
# A statement's change (its transition tables: whatever writes the heads, COPY, upsert, erasure, retention) goes to
# one of 16 rows per object chosen by its transaction, so jobs writing one object at once (the Id ranges of a split
# object) seldom wait for each other's row; rows in key order, so two statements never take them crosswise. The
# counts start from the heads, in the migration's transaction (the trigger's lock holds writers off meanwhile).
V14 = """
CREATE TABLE live_counts (
    org_key    int NOT NULL,
    object_key int NOT NULL,
    shard      smallint NOT NULL,
    live       bigint NOT NULL,
    PRIMARY KEY (org_key, object_key, shard)
);
CREATE FUNCTION live_counts_changed() RETURNS trigger LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO live_counts AS c (org_key, object_key, shard, live)
        SELECT org_key, object_key, (txid_current() % 16)::smallint, count(*) FROM new_heads WHERE deleted = 0
        GROUP BY org_key, object_key ORDER BY org_key, object_key
        ON CONFLICT (org_key, object_key, shard) DO UPDATE SET live = c.live + EXCLUDED.live;
    ELSIF TG_OP = 'DELETE' THEN
        INSERT INTO live_counts AS c (org_key, object_key, shard, live)
        SELECT org_key, object_key, (txid_current() % 16)::smallint, -count(*) FROM old_heads WHERE deleted = 0
        GROUP BY org_key, object_key ORDER BY org_key, object_key
        ON CONFLICT (org_key, object_key, shard) DO UPDATE SET live = c.live + EXCLUDED.live;
    ELSE
        INSERT INTO live_counts AS c (org_key, object_key, shard, live)
        SELECT org_key, object_key, (txid_current() % 16)::smallint, sum(d) FROM (
            SELECT org_key, object_key, 1 AS d FROM new_heads WHERE deleted = 0
            UNION ALL SELECT org_key, object_key, -1 FROM old_heads WHERE deleted = 0
        ) AS changes GROUP BY org_key, object_key HAVING sum(d) <> 0 ORDER BY org_key, object_key
        ON CONFLICT (org_key, object_key, shard) DO UPDATE SET live = c.live + EXCLUDED.live;
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER record_head_inserted AFTER INSERT ON record_head REFERENCING NEW TABLE AS new_heads
    FOR EACH STATEMENT EXECUTE FUNCTION live_counts_changed();
CREATE TRIGGER record_head_updated AFTER UPDATE ON record_head REFERENCING OLD TABLE AS old_heads NEW TABLE AS new_heads
    FOR EACH STATEMENT EXECUTE FUNCTION live_counts_changed();
CREATE TRIGGER record_head_deleted AFTER DELETE ON record_head REFERENCING OLD TABLE AS old_heads
    FOR EACH STATEMENT EXECUTE FUNCTION live_counts_changed();
INSERT INTO live_counts (org_key, object_key, shard, live)
SELECT org_key, object_key, 0, count(*) FROM record_head WHERE deleted = 0 GROUP BY org_key, object_key;
"""

MIGRATIONS: list[str] = [V1, V2, V3, V4, V5, V6, V7, V8, V9, V10, V11, V12, V13, V14]
