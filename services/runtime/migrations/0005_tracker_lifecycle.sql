-- Owner: tracker. The case lifecycle: what the case is now, a hash-chained audit trail, plans, timers,
-- account snapshots, and events parked until their case is known.

-- What routing said about the case, where it stands, and the head of its audit chain.
ALTER TABLE cases
    ADD COLUMN category                text,
    ADD COLUMN priority                text,
    ADD COLUMN queue                   text,
    ADD COLUMN escalation_level        integer NOT NULL DEFAULT 0,
    ADD COLUMN jurisdiction            text,
    ADD COLUMN regulator_deadline      timestamptz,
    ADD COLUMN assigned_agent          text,
    ADD COLUMN first_contact_at        timestamptz,
    ADD COLUMN failed_contact_attempts integer NOT NULL DEFAULT 0,
    ADD COLUMN resolved_at             timestamptz,
    ADD COLUMN resolution              text,
    ADD COLUMN audit_seq               bigint  NOT NULL DEFAULT 0,
    ADD COLUMN audit_head              bytea;

-- Each row carries its place in the case's chain, the previous row's hash and its own:
-- row_hash = sha256(prev_hash || canonical content). Rows written before this migration have no
-- hash; `parley audit verify` reports them as outside the chain. Adding columns updates no row,
-- so the append-only trigger of 0002 stays as it is.
ALTER TABLE case_events
    ADD COLUMN seq       bigint,
    ADD COLUMN prev_hash bytea,
    ADD COLUMN row_hash  bytea;

CREATE UNIQUE INDEX case_events_case_seq ON case_events (case_id, seq) WHERE seq IS NOT NULL;

CREATE SCHEMA IF NOT EXISTS tracker;

-- Which feedback belongs to which case (a split takes one out).
CREATE TABLE tracker.case_feedback (
    case_id     uuid        NOT NULL REFERENCES cases (case_id),
    feedback_id uuid        NOT NULL,
    joined_at   timestamptz NOT NULL,
    PRIMARY KEY (case_id, feedback_id)
);

-- The bank's core-banking extract: each customer's debt and declared means, newest as_of wins.
CREATE TABLE tracker.accounts (
    customer_ref text        PRIMARY KEY,
    as_of        date        NOT NULL,
    debt         jsonb       NOT NULL,
    income       jsonb,
    loaded_at    timestamptz NOT NULL DEFAULT now()
);

-- Every proposal the planner made, as it made it.
CREATE TABLE tracker.proposals (
    plan_id     uuid        PRIMARY KEY,
    case_id     uuid        NOT NULL REFERENCES cases (case_id),
    request_id  uuid        NOT NULL,
    rank        integer     NOT NULL,
    proposal    jsonb       NOT NULL,
    proposed_at timestamptz NOT NULL
);

CREATE INDEX proposals_case ON tracker.proposals (case_id);

-- Plans offered to a customer, and how each went: offered, declined, countered, superseded,
-- active, broken, completed. schedule: [[number, due_date, payment], ...] of the proposal.
CREATE TABLE tracker.plans (
    plan_id     uuid        PRIMARY KEY,
    case_id     uuid        NOT NULL REFERENCES cases (case_id),
    request_id  uuid        NOT NULL,
    status      text        NOT NULL,
    currency    text        NOT NULL,
    instalment  numeric     NOT NULL,
    schedule    jsonb       NOT NULL,
    paid        integer[]   NOT NULL DEFAULT '{}',
    missed      integer[]   NOT NULL DEFAULT '{}',
    paid_total  numeric     NOT NULL DEFAULT 0,
    offered_at  timestamptz NOT NULL,
    updated_at  timestamptz NOT NULL
);

CREATE INDEX plans_case ON tracker.plans (case_id);

-- One timer of each kind per case (follow_up, close), armed and cancelled with the case change,
-- fired by a poller that takes due rows with FOR UPDATE SKIP LOCKED.
CREATE TABLE tracker.timers (
    case_id  uuid        NOT NULL REFERENCES cases (case_id),
    kind     text        NOT NULL,
    due_at   timestamptz NOT NULL,
    PRIMARY KEY (case_id, kind)
);

CREATE INDEX timers_due ON tracker.timers (due_at);

-- Events about a case the tracker has not seen opened yet (topics are not ordered with each other):
-- kept here, applied when the case opens.
CREATE TABLE tracker.parked (
    id        bigserial   PRIMARY KEY,
    case_id   uuid        NOT NULL,
    kind      text        NOT NULL, -- routed, agent_action or plan_proposed
    value     bytea       NOT NULL,
    parked_at timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX parked_case ON tracker.parked (case_id, id);
