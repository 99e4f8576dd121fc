-- Owner: sla. SLA clocks beside the cases: one row per case, clock and run (cycle), polled by the time
-- its next alert falls due; what the engine knows of each case; the policy versions clocks started
-- under; and a journal of every clock change and refused request.

CREATE SCHEMA IF NOT EXISTS sla;

-- Every policy version the engine has loaded, with what it meant: a version never changes (the
-- checksum is compared at start), and a clock can be read back under it after it left the file.
CREATE TABLE sla.policy_versions (
    policy_id      text        NOT NULL,
    version        integer     NOT NULL,
    checksum       text        NOT NULL,
    spec           jsonb       NOT NULL,
    first_loaded_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (policy_id, version)
);

-- What the policies select on, from case.tracking.
CREATE TABLE sla.cases (
    case_id            uuid        PRIMARY KEY,
    opened_at          timestamptz,
    channel            text,
    jurisdiction       text,
    category           text,
    priority           text,
    queue              text,
    regulator_deadline timestamptz,
    -- Agents' clock requests that arrived before the clock they name (another topic, no order between them).
    parked             jsonb       NOT NULL DEFAULT '[]'::jsonb,
    updated_at         timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE sla.clocks (
    case_id            uuid        NOT NULL,
    clock              text        NOT NULL,
    cycle              integer     NOT NULL,
    policy_id          text        NOT NULL,
    policy_version     integer     NOT NULL,
    calendar           text        NOT NULL,
    status             text        NOT NULL CHECK (status IN ('running', 'paused', 'met', 'cancelled')),
    started_at         timestamptz NOT NULL,
    deadline           timestamptz NOT NULL,
    priority           text        NOT NULL,
    queue              text,
    extensions         smallint    NOT NULL DEFAULT 0,
    regulator_deadline timestamptz,
    pauses             jsonb       NOT NULL DEFAULT '[]'::jsonb,
    fired              text[]      NOT NULL DEFAULT '{}',
    next_due_at        timestamptz,
    stopped_at         timestamptz,
    updated_at         timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (case_id, clock, cycle)
);

-- The poller's index: only clocks with something left to fire are in it.
CREATE INDEX clocks_next_due ON sla.clocks (next_due_at) WHERE next_due_at IS NOT NULL;

CREATE TABLE sla.clock_journal (
    id          bigserial   PRIMARY KEY,
    case_id     uuid        NOT NULL,
    clock       text        NOT NULL,
    cycle       integer,
    action      text        NOT NULL,
    at          timestamptz NOT NULL,
    event_id    uuid,
    reason      text,
    recorded_at timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX clock_journal_case ON sla.clock_journal (case_id, id);
