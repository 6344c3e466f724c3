-- iu_instance_migration is found by the instance's internal id, not its key.
-- A migration appends its rows in creation order, batch after batch, and
-- the index on instance_key (a hash) put every row on a page of its own.
-- instance_id is the instance's collection_id while it lives; when it is
-- compensated its rows are set to NULL and found by key from then on (a
-- partial index, small: compensations are one at a time), and when its
-- actor is rolled back they go with it. Version numbers match
-- sqlite/migrations.

-- +goose Up
ALTER TABLE iu_instance_migration ADD COLUMN instance_id bigint;
-- The rows of a live instance are its own: those after it was made,
-- unless its key was compensated after them (a life that ended, the key
-- made again since). A rollback's leftovers, older, stay NULL.
UPDATE iu_instance_migration m SET instance_id = c.collection_id
FROM iu_piece_collection c
WHERE c.collection_key = m.instance_key AND c.collection_kind = 'instance' AND c.created_at <= m.migrated_at
  AND NOT EXISTS (SELECT 1 FROM iu_compensation k WHERE k.instance_key = m.instance_key AND k.compensated_at >= m.migrated_at);
DROP INDEX iu_instance_migration_instance;
CREATE INDEX iu_instance_migration_instance ON iu_instance_migration (instance_id);
CREATE INDEX iu_instance_migration_ended ON iu_instance_migration (instance_key) WHERE instance_id IS NULL;

-- +goose Down
DROP INDEX iu_instance_migration_ended;
DROP INDEX iu_instance_migration_instance;
ALTER TABLE iu_instance_migration DROP COLUMN instance_id;
CREATE INDEX iu_instance_migration_instance ON iu_instance_migration (instance_key);
