-- Owner: intake (privacy). Originals of masked personal data, readable only through an audited function.

CREATE SCHEMA pii;
REVOKE ALL ON SCHEMA pii FROM PUBLIC;

-- One row per token: the value a token stands for.
CREATE TABLE pii.vault (
    token         text        PRIMARY KEY,
    kind          text        NOT NULL,
    value         text        NOT NULL,
    first_seen_at timestamptz NOT NULL DEFAULT now()
);

-- Rejected records that contained personal data: the exact original bytes (the topic gets a masked copy).
CREATE TABLE pii.rejected_original (
    ref         text        PRIMARY KEY,
    source      text        NOT NULL,
    value       bytea       NOT NULL,
    stored_at   timestamptz NOT NULL DEFAULT now()
);

-- Every read, whoever reads and whether the token existed.
CREATE TABLE pii.access_log (
    id      bigserial   PRIMARY KEY,
    ref     text        NOT NULL,
    reader  text        NOT NULL,
    purpose text        NOT NULL CHECK (length(purpose) >= 3),
    found   boolean     NOT NULL,
    read_at timestamptz NOT NULL DEFAULT now()
);

REVOKE ALL ON ALL TABLES IN SCHEMA pii FROM PUBLIC;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA pii FROM PUBLIC;

-- The only way to read a value: it writes the audit row in the same statement.
CREATE FUNCTION pii.reveal(p_token text, p_reader text, p_purpose text) RETURNS text
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pii, pg_temp AS $$
DECLARE
    v text;
BEGIN
    SELECT value INTO v FROM pii.vault WHERE token = p_token;
    INSERT INTO pii.access_log (ref, reader, purpose, found) VALUES (p_token, p_reader, p_purpose, v IS NOT NULL);
    RETURN v;
END;
$$;

CREATE FUNCTION pii.reveal_rejected(p_ref text, p_reader text, p_purpose text) RETURNS bytea
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pii, pg_temp AS $$
DECLARE
    v bytea;
BEGIN
    SELECT value INTO v FROM pii.rejected_original WHERE ref = p_ref;
    INSERT INTO pii.access_log (ref, reader, purpose, found) VALUES (p_ref, p_reader, p_purpose, v IS NOT NULL);
    RETURN v;
END;
$$;

REVOKE ALL ON FUNCTION pii.reveal(text, text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION pii.reveal_rejected(text, text, text) FROM PUBLIC;

-- Readers (agents' back end, the privacy office) get this role: they can call the functions, not read tables.
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'parley_pii_reader') THEN
        CREATE ROLE parley_pii_reader NOLOGIN;
    END IF;
EXCEPTION WHEN insufficient_privilege THEN
    RAISE NOTICE 'no privilege to create role parley_pii_reader; ask the DBA to create it';
END;
$$;

DO $$
BEGIN
    IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'parley_pii_reader') THEN
        GRANT USAGE ON SCHEMA pii TO parley_pii_reader;
        GRANT EXECUTE ON FUNCTION pii.reveal(text, text, text) TO parley_pii_reader;
        GRANT EXECUTE ON FUNCTION pii.reveal_rejected(text, text, text) TO parley_pii_reader;
    END IF;
END;
$$;
