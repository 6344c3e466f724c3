-- iu's schema on PostgreSQL. Version numbers, table, view and column names
-- match sqlite/migrations, so the same SQL reads both stores.
--
-- Keys and digests are text COLLATE "C": byte order, as on SQLite, so that a
-- key prefix is an index range (see prefixEnd in tx.go), and comparisons skip
-- the locale's collation on every index insert.
--
-- The hot tables (memberships, lineage, event log) carry no foreign keys: a
-- referential check is a trigger per inserted row, and a bulk of a million
-- events writes ten million rows. Integrity is kept instead by how the store
-- writes (a claimed idempotency key is the lock for its instance; rollback is
-- one statement under one snapshot) and is checked by iu verify, which counts
-- orphan rows of every kind.

-- +goose Up
CREATE TABLE iu_piece (
    piece_id   text COLLATE "C" NOT NULL PRIMARY KEY,  -- sha256:<hex> of kind and body
    kind       text NOT NULL,
    body       text NOT NULL,
    created_at timestamptz NOT NULL
);

CREATE TABLE iu_piece_collection (
    collection_key  text COLLATE "C" NOT NULL PRIMARY KEY,
    collection_kind text COLLATE "C" NOT NULL CHECK (collection_kind IN ('template', 'instance')),
    title           text NOT NULL DEFAULT '',
    digest          text COLLATE "C" NOT NULL,          -- sha256:<hex> of the graph
    emit_mode       text COLLATE "C" CHECK ((collection_kind = 'template') = (emit_mode IN ('live', 'shadow'))),
    actor           text COLLATE "C" NOT NULL,
    created_at      timestamptz NOT NULL
);
-- Templates are few among a million instances: list them without a scan.
CREATE INDEX iu_piece_collection_templates ON iu_piece_collection (collection_key) WHERE collection_kind = 'template';
-- An actor's instances under a key prefix (bulk surfaces, verify --actor).
CREATE INDEX iu_piece_collection_instance_actor ON iu_piece_collection (actor, collection_key) WHERE collection_kind = 'instance';

-- One row per slot; an instance's rows reference the template's own piece ids.
CREATE TABLE iu_collection_membership (
    collection_key text COLLATE "C" NOT NULL,
    slot           text COLLATE "C" NOT NULL,
    position       integer NOT NULL,                    -- declaration order; not part of the digest
    piece_id       text COLLATE "C" NOT NULL,
    after_slots    text COLLATE "C" NOT NULL DEFAULT '', -- the slot's edges: space-separated slot ids it comes after
    PRIMARY KEY (collection_key, slot)
);

CREATE TABLE iu_collection_template_instance_lineage (
    instance_key    text COLLATE "C" NOT NULL PRIMARY KEY,
    template_key    text COLLATE "C" NOT NULL,
    template_digest text COLLATE "C" NOT NULL,
    actor           text COLLATE "C" NOT NULL,
    mode            text COLLATE "C" NOT NULL CHECK (mode IN ('auto', 'manual')),
    event_id        text,
    event_type      text,
    event_source    text,
    event_subject   text,
    event_time      timestamptz,
    event_data      jsonb,
    created_at      timestamptz NOT NULL
);
-- An actor's auto instances: bulk surfaces, rollback, the view filtered by actor.
CREATE INDEX iu_lineage_actor ON iu_collection_template_instance_lineage (actor, created_at, instance_key) WHERE mode = 'auto';
-- Per-template counts of the summary view, and the view filtered by template.
CREATE INDEX iu_lineage_template ON iu_collection_template_instance_lineage (template_key, created_at, instance_key) WHERE mode = 'auto';
-- The view in its own order, a page at a time.
CREATE INDEX iu_lineage_created ON iu_collection_template_instance_lineage (created_at, instance_key) WHERE mode = 'auto';

CREATE TABLE iu_auto_instantiate_event_log (
    idempotency_key text COLLATE "C" NOT NULL PRIMARY KEY, -- UNIQUE: hex sha256(template_key, source, id)
    event_id        text NOT NULL,
    event_type      text NOT NULL,
    event_source    text NOT NULL,
    template_key    text COLLATE "C" NOT NULL,
    instance_key    text COLLATE "C" NOT NULL,             -- for shadow rows: the instance it would have made
    actor           text COLLATE "C" NOT NULL,
    status          text COLLATE "C" NOT NULL CHECK (status IN ('ok', 'shadow')),
    payload_digest  text COLLATE "C" NOT NULL,
    created_at      timestamptz NOT NULL
);
CREATE INDEX iu_event_log_actor ON iu_auto_instantiate_event_log (actor);

CREATE TABLE iu_gate (
    name       text COLLATE "C" NOT NULL PRIMARY KEY,
    enabled    boolean NOT NULL,
    updated_at timestamptz NOT NULL,
    updated_by text NOT NULL
);
INSERT INTO iu_gate (name, enabled, updated_at, updated_by) VALUES
    ('iu_core.composer_enabled', false, now(), 'iu:migration'),
    ('iu_core.auto_instantiate_enabled', false, now(), 'iu:migration');

-- Every change of a gate, including those a bulk makes and restores inside
-- its transaction.
CREATE TABLE iu_gate_audit (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name       text COLLATE "C" NOT NULL REFERENCES iu_gate (name),
    enabled    boolean NOT NULL,
    changed_at timestamptz NOT NULL,
    changed_by text NOT NULL
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
JOIN iu_piece_collection c ON c.collection_key = l.instance_key
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
           AND l.created_at > now() - interval '1 hour') AS instances_last_hour
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
