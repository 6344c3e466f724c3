-- Who really did it: every change an operator makes is recorded under the
-- principal that made it (the token's name through iu serve), with the
-- actor the client named kept beside it as claimed_actor. Gates keep their
-- own trail; everything else goes to iu_audit. Version numbers match
-- postgres/migrations.

-- +goose Up
ALTER TABLE iu_gate_audit ADD COLUMN claimed_actor TEXT NOT NULL DEFAULT '';

CREATE TABLE iu_audit (
    id            INTEGER PRIMARY KEY,
    at            TEXT NOT NULL,
    changed_by    TEXT NOT NULL,                   -- the principal
    claimed_actor TEXT NOT NULL DEFAULT '',        -- the actor the client named, if another
    action        TEXT NOT NULL,                   -- template.publish, token.revoke, rollback, ...
    subject       TEXT NOT NULL,                   -- what it was done to: a key, a name, an actor
    detail        TEXT NOT NULL DEFAULT ''
);

-- A template's auto instances in creation order (the rowid, which SQLite
-- appends to every index entry), for paging the per-instance view by
-- template.
CREATE INDEX iu_lineage_template_order ON iu_collection_template_instance_lineage (template_key, mode);

-- +goose Down
DROP INDEX iu_lineage_template_order;
DROP TABLE iu_audit;
ALTER TABLE iu_gate_audit DROP COLUMN claimed_actor;
