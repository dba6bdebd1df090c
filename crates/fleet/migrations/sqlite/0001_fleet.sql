-- certfleet fleet database, SQLite dialect. Keep in step with ../postgres/0001_fleet.sql: the
-- same tables, columns and indexes; only types, identity columns and the append-only trigger
-- differ. Timestamps are Unix seconds, booleans 0/1, JSON is TEXT.

CREATE TABLE certificates (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL UNIQUE,
    identifiers TEXT NOT NULL,
    enabled INTEGER NOT NULL DEFAULT 1,
    comment TEXT,
    key_type TEXT NOT NULL,
    challenge TEXT NOT NULL,
    custody TEXT NOT NULL CHECK (custody IN ('agent', 'server')),
    acme_server TEXT,
    acme_account TEXT,
    profile TEXT,
    created_at INTEGER NOT NULL,
    version INTEGER NOT NULL DEFAULT 0,
    cert_pem TEXT,
    chain_pem TEXT,
    serial TEXT,
    not_before INTEGER,
    not_after INTEGER,
    issuer TEXT,
    key_sha256 TEXT,
    issued_at INTEGER,
    key_blob BLOB,
    prev_cert_pem TEXT,
    prev_chain_pem TEXT,
    prev_serial TEXT,
    prev_not_before INTEGER,
    prev_not_after INTEGER,
    prev_issuer TEXT,
    prev_key_sha256 TEXT,
    prev_issued_at INTEGER,
    prev_key_blob BLOB,
    ari_start INTEGER,
    ari_end INTEGER,
    ari_next_poll INTEGER,
    ari_explanation_url TEXT,
    last_attempt INTEGER,
    consecutive_failures INTEGER NOT NULL DEFAULT 0,
    next_attempt INTEGER,
    next_attempt_reason TEXT,
    last_error TEXT,
    lease_owner TEXT,
    lease_until INTEGER
);
-- due_certificates: enabled = 1 AND next_attempt <= now ORDER BY next_attempt, id.
CREATE INDEX certificates_due ON certificates (next_attempt, id) WHERE enabled = 1;

CREATE TABLE hosts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL UNIQUE,
    created_at INTEGER NOT NULL,
    enrolled_at INTEGER,
    client_cert_sha256 TEXT UNIQUE,
    client_cert_serial TEXT,
    last_seen INTEGER,
    agent_version TEXT
);

CREATE TABLE enrollment_tokens (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    host_id INTEGER NOT NULL REFERENCES hosts (id) ON DELETE CASCADE,
    secret_hash TEXT NOT NULL UNIQUE,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    used_at INTEGER
);
CREATE INDEX enrollment_tokens_host ON enrollment_tokens (host_id);

CREATE TABLE admin_tokens (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    token_hash TEXT NOT NULL UNIQUE,
    label TEXT NOT NULL,
    created_at INTEGER NOT NULL
);

CREATE TABLE assignments (
    certificate_id INTEGER NOT NULL REFERENCES certificates (id) ON DELETE CASCADE,
    host_id INTEGER NOT NULL REFERENCES hosts (id) ON DELETE CASCADE,
    assigned_at INTEGER NOT NULL,
    PRIMARY KEY (certificate_id, host_id)
);
CREATE INDEX assignments_host ON assignments (host_id);

CREATE TABLE csrs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    certificate_id INTEGER NOT NULL REFERENCES certificates (id) ON DELETE CASCADE,
    host_id INTEGER NOT NULL REFERENCES hosts (id) ON DELETE CASCADE,
    csr_der BLOB NOT NULL,
    spki_sha256 TEXT NOT NULL,
    uploaded_at INTEGER NOT NULL,
    used_by_serial TEXT,
    UNIQUE (certificate_id, host_id, spki_sha256)
);
CREATE INDEX csrs_host ON csrs (host_id);

CREATE TABLE install_reports (
    certificate_id INTEGER NOT NULL REFERENCES certificates (id) ON DELETE CASCADE,
    host_id INTEGER NOT NULL REFERENCES hosts (id) ON DELETE CASCADE,
    state TEXT NOT NULL,
    installed_serial TEXT,
    served_serial TEXT,
    endpoint TEXT,
    error TEXT,
    reported_at INTEGER NOT NULL,
    PRIMARY KEY (certificate_id, host_id)
);
CREATE INDEX install_reports_host ON install_reports (host_id);

-- Append-only: names, not ids, so the history of a deleted certificate or host stays readable.
CREATE TABLE events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at INTEGER NOT NULL,
    certificate TEXT,
    host TEXT,
    kind TEXT NOT NULL,
    actor TEXT NOT NULL,
    detail TEXT NOT NULL
);
CREATE INDEX events_certificate ON events (certificate, id);
CREATE TRIGGER events_no_update BEFORE UPDATE ON events
BEGIN
    SELECT RAISE(ABORT, 'the event log is append-only');
END;
CREATE TRIGGER events_no_delete BEFORE DELETE ON events
BEGIN
    SELECT RAISE(ABORT, 'the event log is append-only');
END;

CREATE TABLE accounts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    server_url TEXT NOT NULL UNIQUE,
    account_url TEXT NOT NULL,
    key_pem TEXT NOT NULL,
    contact TEXT NOT NULL,
    created_at INTEGER NOT NULL
);

CREATE TABLE challenges (
    token TEXT PRIMARY KEY,
    key_authorization TEXT NOT NULL,
    identifier TEXT NOT NULL,
    expires_at INTEGER NOT NULL
);
CREATE INDEX challenges_expires ON challenges (expires_at);

CREATE TABLE settings (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL,
    updated_at INTEGER NOT NULL
);
