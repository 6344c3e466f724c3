-- The floor under any PostgreSQL bulk of the contract's rows: :n events'
-- rows (one event log row, one instance collection, its memberships copied
-- from its template's graph, one lineage row; keys in hash order like iu's)
-- written by ONE statement inside the server, with no client, no
-- parameters, no per-event logic. Run in a schema where iu has published
-- the two 8-piece example templates:
--   psql -v n=30000 -v run=r1 -f bench/floor.sql   (search_path = that schema)
-- bench/pg-vs-seed.sh runs it beside the seed's bulk_n.sql.
BEGIN;
WITH ev AS MATERIALIZED (
	SELECT i, md5(:'run' || '-' || i) AS k,
		CASE WHEN i % 3 = 0 THEN 'tpl:file:status-report/v2' ELSE 'tpl:wf:onboarding/v2' END AS tkey
	FROM generate_series(1, :n) i
), t AS MATERIALIZED (
	SELECT collection_id AS tid, collection_key AS tkey, title, digest FROM iu_piece_collection WHERE collection_kind = 'template'
), lg AS (
	INSERT INTO iu_auto_instantiate_event_log
	SELECT ev.k, 'bulk-' || ev.i, 'bulk.scaleout', 'bulk', ev.tkey, 'tpl-inst:auto:floor-' || left(ev.k, 12), 'floor', 'ok', 'sha256:' || ev.k, now()
	FROM ev
), c AS (
	INSERT INTO iu_piece_collection (collection_key, collection_kind, title, digest, actor, created_at)
	SELECT 'tpl-inst:auto:floor-' || left(ev.k, 12), 'instance', t.title, t.digest, 'floor', now() FROM ev JOIN t USING (tkey) ORDER BY ev.i
	RETURNING collection_id, collection_key, digest
), ci AS MATERIALIZED (
	SELECT c.collection_id AS id, c.collection_key AS key, ev.tkey, c.digest, ev.i
	FROM c JOIN ev ON c.collection_key = 'tpl-inst:auto:floor-' || left(ev.k, 12)
), m AS (
	INSERT INTO iu_collection_membership (collection_id, position, slot, collection_key, piece_id, after_slots)
	SELECT ci.id, m.position, m.slot, ci.key, m.piece_id, m.after_slots
	FROM ci JOIN t USING (tkey) JOIN iu_collection_membership m ON m.collection_id = t.tid ORDER BY ci.id
)
INSERT INTO iu_collection_template_instance_lineage (instance_id, instance_key, template_key, template_digest, actor, mode,
	event_id, event_type, event_source, created_at)
SELECT ci.id, ci.key, ci.tkey, ci.digest, 'floor', 'auto', 'bulk-' || ci.i, 'bulk.scaleout', 'bulk', now() FROM ci;
COMMIT;
