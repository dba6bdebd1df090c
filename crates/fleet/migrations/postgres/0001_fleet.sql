-- certfleet fleet database, PostgreSQL dialect. Keep in step with ../sqlite/0001_fleet.sql: the
-- same tables, columns and indexes; only types, identity columns and the append-only trigger
-- differ. Timestamps are Unix seconds, booleans 0/1, JSON is TEXT.

CREATE TABLE certificates (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    identifiers TEXT NOT NULL,
    enabled BIGINT NOT NULL DEFAULT 1,
    comment TEXT,
    key_type TEXT NOT NULL,
    challenge TEXT NOT NULL,
    custody TEXT NOT NULL CHECK (custody IN ('agent', 'server')),
    acme_server TEXT,
    acme_account TEXT,
    profile TEXT,
    created_at BIGINT NOT NULL,
    version BIGINT NOT NULL DEFAULT 0,
    cert_pem TEXT,
    chain_pem TEXT,
    serial TEXT,
    not_before BIGINT,
    not_after BIGINT,
    issuer TEXT,
    key_sha256 TEXT,
    issued_at BIGINT,
    key_blob BYTEA,
    prev_cert_pem TEXT,
    prev_chain_pem TEXT,
    prev_serial TEXT,
    prev_not_before BIGINT,
    prev_not_after BIGINT,
    prev_issuer TEXT,
    prev_key_sha256 TEXT,
    prev_issued_at BIGINT,
    prev_key_blob BYTEA,
    ari_start BIGINT,
    ari_end BIGINT,
    ari_next_poll BIGINT,
    ari_explanation_url TEXT,
    last_attempt BIGINT,
    consecutive_failures BIGINT NOT NULL DEFAULT 0,
    next_attempt BIGINT,
    next_attempt_reason TEXT,
    last_error TEXT,
    lease_owner TEXT,
    lease_until BIGINT
);
-- due_certificates: enabled = 1 AND next_attempt <= now ORDER BY next_attempt, id.
CREATE INDEX certificates_due ON certificates (next_attempt, id) WHERE enabled = 1;

CREATE TABLE hosts (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    created_at BIGINT NOT NULL,
    enrolled_at BIGINT,
    client_cert_sha256 TEXT UNIQUE,
    client_cert_serial TEXT,
    last_seen BIGINT,
    agent_version TEXT
);

CREATE TABLE enrollment_tokens (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    host_id BIGINT NOT NULL REFERENCES hosts (id) ON DELETE CASCADE,
    secret_hash TEXT NOT NULL UNIQUE,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at BIGINT
);
CREATE INDEX enrollment_tokens_host ON enrollment_tokens (host_id);

CREATE TABLE admin_tokens (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    token_hash TEXT NOT NULL UNIQUE,
    label TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE assignments (
    certificate_id BIGINT NOT NULL REFERENCES certificates (id) ON DELETE CASCADE,
    host_id BIGINT NOT NULL REFERENCES hosts (id) ON DELETE CASCADE,
    assigned_at BIGINT NOT NULL,
    PRIMARY KEY (certificate_id, host_id)
);
CREATE INDEX assignments_host ON assignments (host_id);

CREATE TABLE csrs (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    certificate_id BIGINT NOT NULL REFERENCES certificates (id) ON DELETE CASCADE,
    host_id BIGINT NOT NULL REFERENCES hosts (id) ON DELETE CASCADE,
    csr_der BYTEA NOT NULL,
    spki_sha256 TEXT NOT NULL,
    uploaded_at BIGINT NOT NULL,
    used_by_serial TEXT,
    UNIQUE (certificate_id, host_id, spki_sha256)
);
CREATE INDEX csrs_host ON csrs (host_id);

CREATE TABLE install_reports (
    certificate_id BIGINT NOT NULL REFERENCES certificates (id) ON DELETE CASCADE,
    host_id BIGINT NOT NULL REFERENCES hosts (id) ON DELETE CASCADE,
    state TEXT NOT NULL,
    installed_serial TEXT,
    served_serial TEXT,
    endpoint TEXT,
    error TEXT,
    reported_at BIGINT NOT NULL,
    PRIMARY KEY (certificate_id, host_id)
);
CREATE INDEX install_reports_host ON install_reports (host_id);

-- Append-only: names, not ids, so the history of a deleted certificate or host stays readable.
CREATE TABLE events (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at BIGINT NOT NULL,
    certificate TEXT,
    host TEXT,
    kind TEXT NOT NULL,
    actor TEXT NOT NULL,
    detail TEXT NOT NULL
);
CREATE INDEX events_certificate ON events (certificate, id);
CREATE FUNCTION events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the event log is append-only';
END;
$$;
CREATE TRIGGER events_no_update BEFORE UPDATE OR DELETE ON events
    FOR EACH ROW EXECUTE FUNCTION events_append_only();

CREATE TABLE accounts (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    server_url TEXT NOT NULL UNIQUE,
    account_url TEXT NOT NULL,
    key_pem TEXT NOT NULL,
    contact TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE challenges (
    token TEXT PRIMARY KEY,
    key_authorization TEXT NOT NULL,
    identifier TEXT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX challenges_expires ON challenges (expires_at);

CREATE TABLE settings (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL,
    updated_at BIGINT NOT NULL
);
