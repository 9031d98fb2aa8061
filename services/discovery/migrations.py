"""Discovery's schema (schema `discovery` by default: orgs, policies, sessions and their schema and jobs,
describes, job outcomes, schedule runs, tokens) and its migrations, applied in order once each by
services.platform.db.migrate."""

MIGRATIONS = [
    """
    CREATE TABLE orgs (
        org_id text PRIMARY KEY,
        name text NOT NULL DEFAULT '',
        connection jsonb NOT NULL,          -- secret references only, never secrets
        salesforce_org_id text NOT NULL DEFAULT '',
        instance_url text NOT NULL DEFAULT '',
        created_at timestamptz NOT NULL DEFAULT now(),
        updated_at timestamptz NOT NULL DEFAULT now()
    );
    CREATE TABLE policies (
        policy_id text PRIMARY KEY,
        org_id text NOT NULL REFERENCES orgs (org_id) ON DELETE RESTRICT,
        name text NOT NULL DEFAULT '',
        scope jsonb NOT NULL,
        auto_add_new_objects boolean NOT NULL,
        auto_add_new_fields boolean NOT NULL,
        files boolean NOT NULL,
        metadata boolean NOT NULL,
        stall_timeout_s double precision NOT NULL DEFAULT 0,
        daily_share_percent integer NOT NULL DEFAULT 0,
        per_run_cap bigint NOT NULL DEFAULT 0,
        reconcile_every_s double precision NOT NULL DEFAULT 0,
        schedule text NOT NULL DEFAULT '',
        created_at timestamptz NOT NULL DEFAULT now(),
        updated_at timestamptz NOT NULL DEFAULT now()
    );
    CREATE INDEX policies_org ON policies (org_id);
    -- full describe JSON, stored once per distinct content
    CREATE TABLE describes (
        describe_hash text PRIMARY KEY,
        body bytea NOT NULL,
        created_at timestamptz NOT NULL DEFAULT now()
    );
    -- one row per session discovery handled (planned or failed): a redelivery finds it and re-publishes it
    CREATE TABLE sessions (
        session_id text PRIMARY KEY,
        policy_id text NOT NULL,
        org_id text NOT NULL,
        planned boolean NOT NULL,
        failure_reason text NOT NULL DEFAULT '',
        initial boolean NOT NULL DEFAULT false,
        warnings jsonb NOT NULL DEFAULT '[]',
        global_hash text NOT NULL DEFAULT '',
        describe_date text NOT NULL DEFAULT '',   -- the org's Date header of describeGlobal (If-Modified-Since)
        full_describe_at timestamptz,             -- the last describe made without If-Modified-Since
        api_calls bigint NOT NULL DEFAULT 0,
        published boolean NOT NULL DEFAULT false,
        planned_at timestamptz NOT NULL,
        created_at timestamptz NOT NULL DEFAULT now(),
        updated_at timestamptz NOT NULL DEFAULT now()
    );
    CREATE INDEX sessions_policy_planned ON sessions (policy_id, planned_at DESC) WHERE planned;
    CREATE TABLE session_objects (
        session_id text NOT NULL REFERENCES sessions (session_id) ON DELETE CASCADE,
        object_name text NOT NULL,
        status text NOT NULL,
        info jsonb,
        fields jsonb NOT NULL,
        describe_hash text NOT NULL DEFAULT '',
        full_read boolean NOT NULL DEFAULT false,
        reason text NOT NULL DEFAULT '',
        PRIMARY KEY (session_id, object_name)
    );
    CREATE TABLE session_jobs (
        session_id text NOT NULL REFERENCES sessions (session_id) ON DELETE CASCADE,
        job_id text NOT NULL,
        position integer NOT NULL,
        job_type text NOT NULL,
        object_name text NOT NULL DEFAULT '',
        spec bytea NOT NULL,                     -- the serialized sfvault.jobs.v1.JobSpec, re-published as is
        PRIMARY KEY (session_id, job_id)
    );
    """,
    """
    -- how each planned data job ended (JobFinished): a full read or a backfill whose job did not complete is
    -- asked for again by the next session
    CREATE TABLE job_outcomes (
        session_id text NOT NULL,
        job_id text NOT NULL,
        outcome text NOT NULL,
        finished_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (session_id, job_id)
    );
    """,
    """
    -- one row per due run of a policy's schedule: the first replica to insert it starts (or skips) the run
    CREATE TABLE schedule_runs (
        policy_id text NOT NULL,
        due_at timestamptz NOT NULL,
        decided_at timestamptz NOT NULL DEFAULT now(),
        session_id text NOT NULL DEFAULT '',
        skipped_reason text NOT NULL DEFAULT '',
        PRIMARY KEY (policy_id, due_at)
    );
    """,
    """
    -- the registry of issued tokens (services/discovery/access.py): their claims, never a token's text
    CREATE TABLE tokens (
        token_id text PRIMARY KEY,
        name text NOT NULL,
        role text NOT NULL,
        issued_at timestamptz NOT NULL,
        expires_at timestamptz NOT NULL,
        registered_by text NOT NULL DEFAULT '',
        registered_at timestamptz NOT NULL DEFAULT now(),
        revoked_at timestamptz,
        revoked_by text NOT NULL DEFAULT ''
    );
    """,
    # the stall timeout decided for the session (request, else policy; 0: the session service's default)
    "ALTER TABLE sessions ADD COLUMN stall_timeout_s double precision NOT NULL DEFAULT 0",
    """
    -- a sandbox takes restores without confirmation; false (every org registered before): production
    ALTER TABLE orgs ADD COLUMN sandbox boolean NOT NULL DEFAULT false;
    -- restore sessions: their kind and the RestoreSpec as resolved (serialized), re-published as is
    ALTER TABLE sessions ADD COLUMN kind text NOT NULL DEFAULT 'BACKUP';
    ALTER TABLE sessions ADD COLUMN restore_spec bytea NOT NULL DEFAULT ''::bytea;
    """,
    # protection (issue 18): a policy's alerts, anomaly and retention settings (their JSON), and its legal hold
    """
    ALTER TABLE policies
        ADD COLUMN alerts jsonb NOT NULL DEFAULT '{}',
        ADD COLUMN anomalies jsonb NOT NULL DEFAULT '{}',
        ADD COLUMN retention jsonb NOT NULL DEFAULT '{}',
        ADD COLUMN legal_hold boolean NOT NULL DEFAULT false;
    """,
    # protection (issue 18): the policy's sensitive fields ("Object.Field"), stored encrypted by storage
    """
    ALTER TABLE policies ADD COLUMN sensitive_fields text[] NOT NULL DEFAULT '{}';
    """,
    # the IANA time zone a policy's schedule is in ('': UTC)
    """
    ALTER TABLE policies ADD COLUMN time_zone text NOT NULL DEFAULT '';
    """,
    # issue 21: a large object's split into Id ranges (domain_split), decided once per policy and object and kept,
    # so each range's marks stay valid: its inner bounds in Id order (n bounds, n + 1 ranges, both ends open)
    """
    CREATE TABLE object_splits (
        policy_id text NOT NULL REFERENCES policies (policy_id) ON DELETE CASCADE,
        object_name text NOT NULL,
        bounds text[] NOT NULL,
        decided_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (policy_id, object_name)
    );
    """,
]
