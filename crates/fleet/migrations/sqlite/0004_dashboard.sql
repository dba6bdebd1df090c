-- The web dashboard and the served-certificate watch. Keep in step with ../postgres/0004_dashboard.sql
-- (the same tables and indexes, but for certificates_search: see there).

-- Dashboard logins: the cookie's value is only stored hashed (SHA-256), with its CSRF token.
CREATE TABLE dashboard_sessions (
    id_hash TEXT PRIMARY KEY,
    csrf TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
);
CREATE INDEX dashboard_sessions_expires ON dashboard_sessions (expires_at);

-- Endpoints an admin asked the server to watch, besides those agents report.
CREATE TABLE watch_endpoints (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    certificate_id INTEGER NOT NULL REFERENCES certificates (id) ON DELETE CASCADE,
    endpoint TEXT NOT NULL,
    sni TEXT,
    created_at INTEGER NOT NULL,
    UNIQUE (certificate_id, endpoint)
);

-- The watch's newest finding per (certificate, endpoint).
CREATE TABLE served_checks (
    certificate_id INTEGER NOT NULL REFERENCES certificates (id) ON DELETE CASCADE,
    endpoint TEXT NOT NULL,
    source TEXT NOT NULL,
    state TEXT NOT NULL,
    detail TEXT NOT NULL,
    leaf_sha256 TEXT,
    served_serial TEXT,
    served_not_after INTEGER,
    chain_len INTEGER NOT NULL DEFAULT 0,
    checked_at INTEGER NOT NULL,
    PRIMARY KEY (certificate_id, endpoint)
);
CREATE INDEX served_checks_state ON served_checks (state);

-- A host's page lists its history.
CREATE INDEX events_host ON events (host, id);

-- The dashboard's "in sync" check finds each (certificate, host) report by its key and reads
-- only these columns.
CREATE INDEX install_reports_sync ON install_reports (certificate_id, host_id, state, installed_serial);

-- The certificate list's search (`lower(name) LIKE` or `lower(identifiers) LIKE`, in name
-- order) reads only this index, not the rows with their PEMs. SQLite only: PostgreSQL keeps the
-- PEMs out of line (TOAST), so its scan is cheap, and a B-tree entry there is limited to about
-- 2.7 kB, which a certificate with many long names would exceed.
CREATE INDEX certificates_search ON certificates (name, identifiers);
