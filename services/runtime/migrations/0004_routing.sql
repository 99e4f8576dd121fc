-- Owner: routing. Case identity (which feedback is on which case, by which references), where each case
-- waits for an agent (with its escalation time), queue backlogs, and social posts' reach over time.

CREATE SCHEMA routing;

-- What routing knows of each case: enough to decide merges (customer, problem, identifiers) and to place it.
CREATE TABLE routing.cases (
    case_id             uuid        PRIMARY KEY,
    customer_ref        text,
    is_open             boolean     NOT NULL,
    problem_group       text        NOT NULL,
    categories          text[]      NOT NULL,
    flags               text[]      NOT NULL,
    priority            text        NOT NULL,
    human_required      boolean     NOT NULL,
    regulator_refs      text[]      NOT NULL,
    opened_at           timestamptz NOT NULL,
    updated_at          timestamptz NOT NULL,
    opening_feedback_id uuid        NOT NULL,
    split_from          uuid
);

-- Merging looks up a customer's open cases.
CREATE INDEX routing_cases_open_by_customer ON routing.cases (customer_ref) WHERE is_open AND customer_ref IS NOT NULL;

-- Explicit references (a social post, a regulator referral): one case each. The primary key is what
-- stops two workers from opening two cases for one post at the same moment.
CREATE TABLE routing.case_keys (
    key         text PRIMARY KEY,
    case_id     uuid NOT NULL REFERENCES routing.cases (case_id),
    feedback_id uuid NOT NULL
);

CREATE INDEX routing_case_keys_by_case ON routing.case_keys (case_id);

-- Every feedback routing placed, on which case, with its triage (masked text) for escalations and splits.
CREATE TABLE routing.feedback (
    feedback_id uuid        PRIMARY KEY,
    case_id     uuid        NOT NULL REFERENCES routing.cases (case_id),
    received_at timestamptz NOT NULL,
    triaged     jsonb       NOT NULL
);

CREATE INDEX routing_feedback_by_case ON routing.feedback (case_id);

-- Where a case waits, per lane (its own queue; the PR desk's copy): the target it is at, when it
-- escalates if nobody accepts it, and who accepted it.
CREATE TABLE routing.assignments (
    case_id          uuid        NOT NULL REFERENCES routing.cases (case_id),
    lane             text        NOT NULL CHECK (lane IN ('primary', 'public_opinion')),
    queue            text        NOT NULL,
    filter_name      text        NOT NULL,
    target_index     integer     NOT NULL,
    timeout_seconds  integer     NOT NULL CHECK (timeout_seconds > 0),
    escalation_level integer     NOT NULL,
    overflow         boolean     NOT NULL,
    priority         text        NOT NULL,
    feedback_id      uuid        NOT NULL,
    routed_at        timestamptz NOT NULL,
    due_at           timestamptz,
    waiting          boolean     NOT NULL,
    accepted_at      timestamptz,
    accepted_by      text,
    PRIMARY KEY (case_id, lane)
);

-- The escalation timer polls this (FOR UPDATE SKIP LOCKED): only assignments that can still escalate.
CREATE INDEX routing_assignments_due ON routing.assignments (due_at) WHERE due_at IS NOT NULL;

-- Per queue: the backlog (routed, neither accepted nor resolved nor escalated away) and running totals.
CREATE TABLE routing.queues (
    queue            text        PRIMARY KEY,
    waiting          bigint      NOT NULL DEFAULT 0,
    routed_total     bigint      NOT NULL DEFAULT 0,
    accepted_total   bigint      NOT NULL DEFAULT 0,
    overflowed_total bigint      NOT NULL DEFAULT 0,
    escalated_total  bigint      NOT NULL DEFAULT 0,
    updated_at       timestamptz NOT NULL DEFAULT now()
);

-- Each social post's latest reach figures, its score, and the alerts raised for it.
CREATE TABLE routing.social_posts (
    post_key       text             PRIMARY KEY,
    account_key    text             NOT NULL,
    posted_at      timestamptz      NOT NULL,
    followers      bigint           NOT NULL,
    reposts        bigint           NOT NULL,
    comments       bigint           NOT NULL,
    likes          bigint           NOT NULL,
    observed_at    timestamptz      NOT NULL,
    observations   integer          NOT NULL,
    virality_score double precision NOT NULL,
    alert_level    smallint         NOT NULL
);

-- Usual repost rates (moving averages) of accounts and topics: the baselines velocity is measured against.
CREATE TABLE routing.repost_rates (
    scope            text             PRIMARY KEY,
    reposts_per_hour double precision NOT NULL,
    observations     bigint           NOT NULL
);
