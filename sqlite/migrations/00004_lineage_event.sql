-- An event's instances, found through an index: the console and
-- GET /v1/instances?event_id=... look them up by event id, which a scan of
-- a million lineage rows answers in a third of a second. SQLite appends the
-- rowid (instance_id, creation order) to the entry, so an event's instances
-- also come in order. Version numbers match postgres/migrations.

-- +goose Up
CREATE INDEX iu_lineage_event ON iu_collection_template_instance_lineage (event_id);

-- +goose Down
DROP INDEX iu_lineage_event;
