-- After instantiation: compensating one instance and migrating instances to
-- another version of their template, each on the record. (Version 4 is the
-- console's index on lineage event_id.) Version numbers match
-- sqlite/migrations.

-- +goose Up
-- A log entry's status may now be compensated: its instance was undone and
-- its key stays claimed.
ALTER TABLE iu_auto_instantiate_event_log DROP CONSTRAINT iu_auto_instantiate_event_log_status_check;
ALTER TABLE iu_auto_instantiate_event_log ADD CONSTRAINT iu_auto_instantiate_event_log_status_check
    CHECK (status IN ('ok', 'shadow', 'compensated'));

-- One row per compensated instance: what it was, what made it, who undid
-- it, when and why. It outlives the instance (iu history).
CREATE TABLE iu_compensation (
    id                  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    instance_key        text COLLATE "C" NOT NULL,
    template_key        text COLLATE "C" NOT NULL,
    template_digest     text COLLATE "C" NOT NULL,
    mode                text COLLATE "C" NOT NULL,
    event_id            text,
    event_source        text,
    event_type          text,
    actor               text COLLATE "C" NOT NULL,   -- the instance's actor
    instance_created_at timestamptz NOT NULL,
    reason              text NOT NULL DEFAULT '',
    compensated_at      timestamptz NOT NULL,
    compensated_by      text NOT NULL,               -- the principal
    claimed_actor       text NOT NULL DEFAULT '',
    released            boolean NOT NULL DEFAULT false -- the event's key was released
);
CREATE INDEX iu_compensation_instance ON iu_compensation (instance_key);

-- One row per instance moved between versions of its template.
CREATE TABLE iu_instance_migration (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    instance_key  text COLLATE "C" NOT NULL,
    from_key      text COLLATE "C" NOT NULL,
    from_digest   text COLLATE "C" NOT NULL,
    to_key        text COLLATE "C" NOT NULL,
    to_digest     text COLLATE "C" NOT NULL,
    migrated_at   timestamptz NOT NULL,
    migrated_by   text NOT NULL,                     -- the principal
    claimed_actor text NOT NULL DEFAULT ''
);
CREATE INDEX iu_instance_migration_instance ON iu_instance_migration (instance_key);

-- +goose Down
DROP TABLE iu_instance_migration;
DROP TABLE iu_compensation;
DELETE FROM iu_auto_instantiate_event_log WHERE status = 'compensated';
ALTER TABLE iu_auto_instantiate_event_log DROP CONSTRAINT iu_auto_instantiate_event_log_status_check;
ALTER TABLE iu_auto_instantiate_event_log ADD CONSTRAINT iu_auto_instantiate_event_log_status_check
    CHECK (status IN ('ok', 'shadow'));
