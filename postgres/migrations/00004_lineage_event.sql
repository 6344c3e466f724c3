-- An event's instances, found through an index: the console and
-- GET /v1/instances?event_id=... look them up by event id, which a scan of
-- a million lineage rows answers in a fraction of a second. instance_id
-- follows, so that an event's instances also come in creation order.
-- Version numbers match sqlite/migrations.

-- +goose Up
CREATE INDEX iu_lineage_event ON iu_collection_template_instance_lineage (event_id, instance_id);

-- +goose Down
DROP INDEX iu_lineage_event;
