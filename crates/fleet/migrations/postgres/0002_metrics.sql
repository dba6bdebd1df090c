-- /metrics reads every certificate's state and expiry at each scrape: this index holds all it
-- needs, so neither backend reads the rows with their PEMs (SQLite would walk their overflow pages).
CREATE INDEX certificates_metrics ON certificates (
    name, enabled, not_after, not_before, lease_until, consecutive_failures, serial, prev_serial, prev_not_after
);
