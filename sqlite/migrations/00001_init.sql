-- iu's schema on SQLite. Version numbers match postgres/migrations.
-- Times are TEXT in one fixed format, 'YYYY-MM-DDTHH:MM:SS.mmmZ' (UTC), so that
-- they sort and compare as strings and read well in the sqlite3 shell.

-- +goose Up
CREATE TABLE iu_piece (
    piece_id   TEXT NOT NULL PRIMARY KEY,          -- sha256:<hex> of kind and body
    kind       TEXT NOT NULL,
    body       TEXT NOT NULL,
    created_at TEXT NOT NULL
) WITHOUT ROWID;

-- collection_id is iu's internal handle: the rowid, assigned in insertion
-- order. Memberships and lineage hang off it, so that a bulk run appends to
-- their b-trees instead of inserting at random key positions; the only
-- random-order index an instance adds is the UNIQUE one on collection_key.
CREATE TABLE iu_piece_collection (
    collection_id   INTEGER PRIMARY KEY,
    collection_key  TEXT NOT NULL UNIQUE,
    collection_kind TEXT NOT NULL CHECK (collection_kind IN ('template', 'instance')),
    title           TEXT NOT NULL DEFAULT '',
    digest          TEXT NOT NULL,                 -- sha256:<hex> of the graph
    emit_mode       TEXT CHECK ((collection_kind = 'template') = (emit_mode IN ('live', 'shadow'))),
    actor           TEXT NOT NULL,
    created_at      TEXT NOT NULL
);
-- Templates are few among a million instances: list them without a scan.
CREATE INDEX iu_piece_collection_templates ON iu_piece_collection (collection_key) WHERE collection_kind = 'template';

-- One row per slot; an instance's rows reference the template's own piece ids.
CREATE TABLE iu_collection_membership (
    collection_id  INTEGER NOT NULL REFERENCES iu_piece_collection (collection_id) ON DELETE CASCADE,
    slot           TEXT NOT NULL,
    collection_key TEXT NOT NULL,                  -- the collection's key, for readers
    position       INTEGER NOT NULL,               -- declaration order; not part of the digest
    piece_id       TEXT NOT NULL REFERENCES iu_piece (piece_id),
    after_slots    TEXT NOT NULL DEFAULT '',       -- the slot's edges: space-separated slot ids it comes after
    PRIMARY KEY (collection_id, slot)
) WITHOUT ROWID;

-- One row per instance, keyed by the instance's collection_id.
CREATE TABLE iu_collection_template_instance_lineage (
    instance_id     INTEGER PRIMARY KEY REFERENCES iu_piece_collection (collection_id),
    instance_key    TEXT NOT NULL,                 -- the instance's collection_key
    template_key    TEXT NOT NULL REFERENCES iu_piece_collection (collection_key),
    template_digest TEXT NOT NULL,
    actor           TEXT NOT NULL,
    mode            TEXT NOT NULL CHECK (mode IN ('auto', 'manual')),
    event_id        TEXT,
    event_type      TEXT,
    event_source    TEXT,
    event_subject   TEXT,
    event_time      TEXT,
    event_data      TEXT,                          -- JSON
    created_at      TEXT NOT NULL
);
-- SQLite appends the rowid (instance_id, creation order) to every index
-- entry, so these also serve "this actor's instances in creation order".
CREATE INDEX iu_lineage_actor ON iu_collection_template_instance_lineage (actor, mode);
CREATE INDEX iu_lineage_template ON iu_collection_template_instance_lineage (template_key, mode, created_at);

CREATE TABLE iu_auto_instantiate_event_log (
    log_id          INTEGER PRIMARY KEY,
    idempotency_key TEXT NOT NULL UNIQUE,          -- hex sha256(template_key, source, id)
    event_id        TEXT NOT NULL,
    event_type      TEXT NOT NULL,
    event_source    TEXT NOT NULL,
    template_key    TEXT NOT NULL,
    instance_key    TEXT NOT NULL,                 -- for shadow rows: the instance it would have made
    actor           TEXT NOT NULL,
    status          TEXT NOT NULL CHECK (status IN ('ok', 'shadow')),
    payload_digest  TEXT NOT NULL,
    created_at      TEXT NOT NULL
);
CREATE INDEX iu_event_log_actor ON iu_auto_instantiate_event_log (actor);

CREATE TABLE iu_gate (
    name       TEXT NOT NULL PRIMARY KEY,
    enabled    INTEGER NOT NULL CHECK (enabled IN (0, 1)),
    updated_at TEXT NOT NULL,
    updated_by TEXT NOT NULL
);
INSERT INTO iu_gate (name, enabled, updated_at, updated_by) VALUES
    ('iu_core.composer_enabled', 0, strftime('%Y-%m-%dT%H:%M:%fZ', 'now'), 'iu:migration'),
    ('iu_core.auto_instantiate_enabled', 0, strftime('%Y-%m-%dT%H:%M:%fZ', 'now'), 'iu:migration');

-- Every change of a gate, including those a bulk makes and restores inside
-- its transaction.
CREATE TABLE iu_gate_audit (
    id         INTEGER PRIMARY KEY,
    name       TEXT NOT NULL REFERENCES iu_gate (name),
    enabled    INTEGER NOT NULL,
    changed_at TEXT NOT NULL,
    changed_by TEXT NOT NULL
);

-- One row per auto instance.
CREATE VIEW iu_auto_instantiate_instances AS
SELECT l.instance_key,
       l.template_key,
       l.event_id,
       l.event_type,
       l.event_source,
       l.actor,
       l.created_at,
       l.template_digest,
       c.digest AS instance_digest,
       (c.digest = l.template_digest AND c.digest = t.digest) AS digest_match
FROM iu_collection_template_instance_lineage l
JOIN iu_piece_collection c ON c.collection_id = l.instance_id
JOIN iu_piece_collection t ON t.collection_key = l.template_key
WHERE l.mode = 'auto';

-- Auto instances per template.
CREATE VIEW iu_auto_instantiate_template_summary AS
SELECT t.collection_key AS template_collection_key,
       t.emit_mode,
       (SELECT count(*) FROM iu_collection_template_instance_lineage l
         WHERE l.template_key = t.collection_key AND l.mode = 'auto') AS instance_count,
       (SELECT count(*) FROM iu_collection_template_instance_lineage l
         WHERE l.template_key = t.collection_key AND l.mode = 'auto'
           AND l.created_at > strftime('%Y-%m-%dT%H:%M:%fZ', 'now', '-1 hour')) AS instances_last_hour
FROM iu_piece_collection t
WHERE t.collection_kind = 'template';

-- +goose Down
DROP VIEW iu_auto_instantiate_template_summary;
DROP VIEW iu_auto_instantiate_instances;
DROP TABLE iu_gate_audit;
DROP TABLE iu_gate;
DROP TABLE iu_auto_instantiate_event_log;
DROP TABLE iu_collection_template_instance_lineage;
DROP TABLE iu_collection_membership;
DROP TABLE iu_piece_collection;
DROP TABLE iu_piece;
