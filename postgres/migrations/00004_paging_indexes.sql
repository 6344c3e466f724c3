-- Indexes for pages that must cost the same at a million rows as at ten
-- (the console's, and GET /v1/instances and /v1/events):
--   - an event's instances by event id (a scan of a million lineage rows
--     took a third of a second), instance_id after it so that they come
--     in creation order;
--   - the event log by actor, and by status, newest first: with the actor
--     index alone PostgreSQL walked the whole log (0.4 s at a million);
--     shadow entries are rare among ok ones, so by status alone it would.
-- Version numbers match sqlite/migrations.

-- +goose Up
CREATE INDEX iu_lineage_event ON iu_collection_template_instance_lineage (event_id, instance_id);
CREATE INDEX iu_event_log_actor_order ON iu_auto_instantiate_event_log (actor, log_id);
-- (actor, log_id) serves every use of the index on actor alone, which
-- would only cost every insert an entry more.
DROP INDEX iu_event_log_actor;
CREATE INDEX iu_event_log_status_order ON iu_auto_instantiate_event_log (status, log_id);

-- +goose Down
CREATE INDEX iu_event_log_actor ON iu_auto_instantiate_event_log (actor);
DROP INDEX iu_event_log_status_order;
DROP INDEX iu_event_log_actor_order;
DROP INDEX iu_lineage_event;
