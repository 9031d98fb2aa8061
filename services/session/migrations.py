"""The session projection's schema (schema `session` by default) and its migrations, applied in order once
each by services.platform.db.migrate."""

MIGRATIONS = [
    """
    CREATE TABLE sessions (
        session_id text PRIMARY KEY,
        policy_id text NOT NULL DEFAULT '',
        org_id text NOT NULL DEFAULT '',
        status text NOT NULL,
        reason text NOT NULL DEFAULT '',
        initial boolean NOT NULL DEFAULT false,
        trigger text NOT NULL DEFAULT '',
        requested_by text NOT NULL DEFAULT '',
        stall_timeout_s double precision,
        planned boolean NOT NULL DEFAULT false,
        cancel_requested boolean NOT NULL DEFAULT false,
        failure_reason text NOT NULL DEFAULT '',
        finished_event_seen boolean NOT NULL DEFAULT false,
        requested_at timestamptz,
        started_at timestamptz,
        finished_at timestamptz,
        listed_at timestamptz NOT NULL,
        totals jsonb NOT NULL,
        jobs_total integer NOT NULL DEFAULT 0,
        jobs_finished integer NOT NULL DEFAULT 0,
        jobs_with_errors integer NOT NULL DEFAULT 0,
        version bigint NOT NULL DEFAULT 0,
        updated_at timestamptz NOT NULL DEFAULT now()
    );
    CREATE INDEX sessions_listed ON sessions (listed_at DESC, session_id DESC);
    CREATE INDEX sessions_policy_listed ON sessions (policy_id, listed_at DESC, session_id DESC);
    CREATE INDEX sessions_open ON sessions (status) WHERE status IN ('PENDING', 'RUNNING');
    CREATE TABLE jobs (
        session_id text NOT NULL,
        job_id text NOT NULL,
        job_type text NOT NULL DEFAULT '',
        object_name text NOT NULL DEFAULT '',
        phase text NOT NULL,
        outcome text NOT NULL DEFAULT '',
        message text NOT NULL DEFAULT '',
        uploaded jsonb NOT NULL,
        reported jsonb NOT NULL,
        chunks_upto bigint NOT NULL DEFAULT 0,
        chunks_ahead bigint[] NOT NULL DEFAULT '{}',
        planned boolean NOT NULL DEFAULT false,
        planned_at timestamptz,
        started_at timestamptz,
        last_upload_at timestamptz,
        finished_at timestamptz,
        worker_id text NOT NULL DEFAULT '',
        expected_chunks bigint NOT NULL DEFAULT 0,
        PRIMARY KEY (session_id, job_id)
    );
    -- (consumer, event_id) of every event whose effect is committed: a redelivery finds its row and is skipped
    CREATE TABLE processed_events (
        consumer text NOT NULL,
        event_id text NOT NULL,
        PRIMARY KEY (consumer, event_id)
    );
    """,
    "ALTER TABLE sessions ADD COLUMN warnings text[] NOT NULL DEFAULT '{}'",
    # the cancel grace counts from the cancellation; a session cancelled before this column gets its last change
    """
    ALTER TABLE sessions ADD COLUMN cancelled_at timestamptz;
    UPDATE sessions SET cancelled_at = updated_at WHERE cancel_requested;
    """,
    # restores (issue 17): the kind, the spec (its JSON form), and per job the restore counts and the read-back;
    # the session's restore_counts and verification are derived from its jobs (like totals), kept for reading
    """
    ALTER TABLE sessions
        ADD COLUMN kind text NOT NULL DEFAULT 'BACKUP',
        ADD COLUMN restore jsonb NOT NULL DEFAULT '{}',
        ADD COLUMN restore_resolved boolean NOT NULL DEFAULT false,
        ADD COLUMN restore_counts jsonb NOT NULL DEFAULT '{}',
        ADD COLUMN verification jsonb NOT NULL DEFAULT '{}';
    CREATE INDEX sessions_kind_listed ON sessions (kind, listed_at DESC, session_id DESC);
    ALTER TABLE jobs
        ADD COLUMN restore_uploaded jsonb NOT NULL DEFAULT '{}',
        ADD COLUMN restore_reported jsonb NOT NULL DEFAULT '{}',
        ADD COLUMN verification jsonb NOT NULL DEFAULT '{}';
    """,
    # protection (issue 18): the policy's settings as the session started, what its end found (and the previous
    # backup's end, the restore drafts' point), a draft's backup; alerts and their deliveries
    """
    ALTER TABLE sessions
        ADD COLUMN alerts jsonb NOT NULL DEFAULT '{}',
        ADD COLUMN anomalies jsonb NOT NULL DEFAULT '{}',
        ADD COLUMN findings jsonb NOT NULL DEFAULT '[]',
        ADD COLUMN baseline_at timestamptz,
        ADD COLUMN draft_of text NOT NULL DEFAULT '';
    CREATE INDEX sessions_policy_finished ON sessions (policy_id, finished_at DESC) WHERE kind = 'BACKUP';
    CREATE TABLE alerts (
        alert_id text PRIMARY KEY,
        session_id text NOT NULL,
        policy_id text NOT NULL DEFAULT '',
        org_id text NOT NULL DEFAULT '',
        kind text NOT NULL,
        message text NOT NULL,
        at timestamptz NOT NULL,
        findings jsonb NOT NULL DEFAULT '[]'
    );
    CREATE INDEX alerts_at ON alerts (at DESC, alert_id DESC);
    -- target: the webhook's URL or its secret reference, the e-mail address (never returned by the API: shown is)
    CREATE TABLE deliveries (
        alert_id text NOT NULL REFERENCES alerts ON DELETE CASCADE,
        number integer NOT NULL,
        channel text NOT NULL,
        target text NOT NULL,
        shown text NOT NULL,
        format text NOT NULL DEFAULT 'json',
        status text NOT NULL DEFAULT 'pending',
        attempts integer NOT NULL DEFAULT 0,
        last_error text NOT NULL DEFAULT '',
        delivered_at timestamptz,
        next_attempt_at timestamptz,
        PRIMARY KEY (alert_id, number)
    );
    CREATE INDEX deliveries_due ON deliveries (next_attempt_at) WHERE status = 'pending';
    """,
]
