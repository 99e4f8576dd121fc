-- Owner: tracker. Cases and their append-only audit trail.

CREATE TABLE cases (
    case_id      uuid        PRIMARY KEY,
    customer_ref text,
    channel      text        NOT NULL,
    status       text        NOT NULL,
    opened_at    timestamptz NOT NULL,
    updated_at   timestamptz NOT NULL,
    feedback_count integer   NOT NULL DEFAULT 1
);

CREATE INDEX cases_customer_ref ON cases (customer_ref) WHERE customer_ref IS NOT NULL;

CREATE TABLE case_events (
    id          bigserial   PRIMARY KEY,
    event_id    uuid        NOT NULL UNIQUE,
    case_id     uuid        NOT NULL REFERENCES cases (case_id),
    event_type  text        NOT NULL,
    occurred_at timestamptz NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now(),
    payload     jsonb       NOT NULL
);

CREATE INDEX case_events_case ON case_events (case_id, id);

-- The audit trail is append-only: no update or delete, whoever asks.
CREATE FUNCTION case_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'case_events is append-only (% refused)', TG_OP;
END;
$$;

CREATE TRIGGER case_events_no_change
    BEFORE UPDATE OR DELETE ON case_events
    FOR EACH ROW EXECUTE FUNCTION case_events_append_only();
