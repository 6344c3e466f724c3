-- After instantiation: compensating one instance and migrating instances to
-- another version of their template, each on the record. (Version 4 is the
-- console's index on lineage event_id.) Version numbers match
-- postgres/migrations.

-- +goose Up
-- A log entry's status may now be compensated: its instance was undone and
-- its key stays claimed. SQLite cannot widen a CHECK in place, so the
-- table is rebuilt (its columns, their order and its indexes as before).
CREATE TABLE iu_auto_instantiate_event_log_new (
    log_id          INTEGER PRIMARY KEY,
    idempotency_key TEXT NOT NULL UNIQUE,          -- hex sha256(template_key, source, id)
    event_id        TEXT NOT NULL,
    event_type      TEXT NOT NULL,
    event_source    TEXT NOT NULL,
    template_key    TEXT NOT NULL,                 -- the template the event was claimed for
    instance_key    TEXT NOT NULL,                 -- for shadow rows: the instance it would have made
    actor           TEXT NOT NULL,
    status          TEXT NOT NULL CHECK (status IN ('ok', 'shadow', 'compensated')),
    payload_digest  TEXT NOT NULL,
    created_at      TEXT NOT NULL
);
INSERT INTO iu_auto_instantiate_event_log_new SELECT * FROM iu_auto_instantiate_event_log;
DROP TABLE iu_auto_instantiate_event_log;
ALTER TABLE iu_auto_instantiate_event_log_new RENAME TO iu_auto_instantiate_event_log;
CREATE INDEX iu_event_log_actor ON iu_auto_instantiate_event_log (actor);
CREATE INDEX iu_event_log_status ON iu_auto_instantiate_event_log (status);

-- One row per compensated instance: what it was, what made it, who undid
-- it, when and why. It outlives the instance (iu history).
CREATE TABLE iu_compensation (
    id                  INTEGER PRIMARY KEY,
    instance_key        TEXT NOT NULL,
    template_key        TEXT NOT NULL,
    template_digest     TEXT NOT NULL,
    mode                TEXT NOT NULL,
    event_id            TEXT,
    event_source        TEXT,
    event_type          TEXT,
    actor               TEXT NOT NULL,             -- the instance's actor
    instance_created_at TEXT NOT NULL,
    reason              TEXT NOT NULL DEFAULT '',
    compensated_at      TEXT NOT NULL,
    compensated_by      TEXT NOT NULL,             -- the principal
    claimed_actor       TEXT NOT NULL DEFAULT '',
    released            INTEGER NOT NULL DEFAULT 0 -- the event's key was released
);
CREATE INDEX iu_compensation_instance ON iu_compensation (instance_key);

-- One row per instance moved between versions of its template.
CREATE TABLE iu_instance_migration (
    id            INTEGER PRIMARY KEY,
    instance_key  TEXT NOT NULL,
    from_key      TEXT NOT NULL,
    from_digest   TEXT NOT NULL,
    to_key        TEXT NOT NULL,
    to_digest     TEXT NOT NULL,
    migrated_at   TEXT NOT NULL,
    migrated_by   TEXT NOT NULL,                   -- the principal
    claimed_actor TEXT NOT NULL DEFAULT ''
);
CREATE INDEX iu_instance_migration_instance ON iu_instance_migration (instance_key);

-- +goose Down
DROP TABLE iu_instance_migration;
DROP TABLE iu_compensation;
DELETE FROM iu_auto_instantiate_event_log WHERE status = 'compensated';
