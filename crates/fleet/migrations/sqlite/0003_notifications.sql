-- Open alert causes, for de-duplication (keep in step with ../postgres/0003_notifications.sql).
-- One row per subject ('certificate:NAME', 'host:NAME', 'install:CERT@HOST') and cause while the
-- cause lasts: the row is made when the alert is sent (so several server nodes sharing the
-- database send it once: only the node whose INSERT made the row sends), its last_sent_at
-- limits reminders to one a day, and deleting it when the cause clears sends the "resolved"
-- message. last_sent_at NULL: waiting for the daily digest.
CREATE TABLE notifications (
    subject TEXT NOT NULL,
    cause TEXT NOT NULL,
    detail TEXT NOT NULL,
    urgent INTEGER NOT NULL,
    opened_at INTEGER NOT NULL,
    last_sent_at INTEGER,
    PRIMARY KEY (subject, cause)
);
