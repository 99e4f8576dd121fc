-- Owner: runtime. Idempotency records and the transactional outbox, shared by every processor.

CREATE TABLE processed_messages (
    consumer     text        NOT NULL,
    message_key  text        NOT NULL,
    processed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer, message_key)
);

CREATE TABLE outbox (
    id         bigserial   PRIMARY KEY,
    source     text        NOT NULL,
    topic      text        NOT NULL,
    key        bytea,
    value      bytea       NOT NULL,
    headers    jsonb       NOT NULL DEFAULT '[]'::jsonb,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX outbox_source_id ON outbox (source, id);
