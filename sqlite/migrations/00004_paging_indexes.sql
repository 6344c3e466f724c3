-- Indexes for pages that must cost the same at a million rows as at ten
-- (the console's, and GET /v1/instances and /v1/events):
--   - an event's instances by event id (a scan of a million lineage rows
--     took a third of a second);
--   - the event log by status, newest first: shadow entries are rare among
--     ok ones, and without it a page of them reads the whole log.
-- SQLite appends the rowid (instance_id, log_id) to every entry, so these
-- serve the pages' order too, as the actor index already does for the log
-- by actor. Version numbers match postgres/migrations.

-- +goose Up
CREATE INDEX iu_lineage_event ON iu_collection_template_instance_lineage (event_id);
CREATE INDEX iu_event_log_status ON iu_auto_instantiate_event_log (status);

-- +goose Down
DROP INDEX iu_event_log_status;
DROP INDEX iu_lineage_event;
