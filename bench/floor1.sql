-- The floor under one event per transaction: the rows iu writes for one event
-- (log row, instance, its memberships copied from the template, lineage) made
-- by ONE autocommitted statement inside the server, with no client logic. A
-- pgbench script (no colons in literals: pgbench reads :name as a variable);
-- bench/pg-vs-seed.sh runs it with 16 clients in a schema where iu has
-- published the two 8-piece example templates.
WITH ev AS MATERIALIZED (
	SELECT 1 AS i, md5(random()::text || clock_timestamp()::text) AS k,
		CASE WHEN random() < 0.33 THEN (SELECT min(collection_key) FROM iu_piece_collection WHERE collection_kind = 'template')
			ELSE (SELECT max(collection_key) FROM iu_piece_collection WHERE collection_kind = 'template') END AS tkey
), t AS MATERIALIZED (
	SELECT collection_id AS tid, collection_key AS tkey, title, digest FROM iu_piece_collection WHERE collection_kind = 'template'
), lg AS (
	INSERT INTO iu_auto_instantiate_event_log
	SELECT ev.k, 'bulk-' || ev.i, 'bulk.scaleout', 'bulk', ev.tkey, 'tpl-inst' || chr(58) || 'auto' || chr(58) || 'floor-' || left(ev.k, 12), 'floor', 'ok', 'sha256:' || ev.k, now()
	FROM ev
), c AS (
	INSERT INTO iu_piece_collection (collection_key, collection_kind, title, digest, actor, created_at)
	SELECT 'tpl-inst' || chr(58) || 'auto' || chr(58) || 'floor-' || left(ev.k, 12), 'instance', t.title, t.digest, 'floor', now() FROM ev JOIN t USING (tkey)
	RETURNING collection_id, collection_key, digest
), ci AS MATERIALIZED (
	SELECT c.collection_id AS id, c.collection_key AS key, ev.tkey, c.digest, ev.i
	FROM c JOIN ev ON c.collection_key = 'tpl-inst' || chr(58) || 'auto' || chr(58) || 'floor-' || left(ev.k, 12)
), m AS (
	INSERT INTO iu_collection_membership (collection_id, position, slot, collection_key, piece_id, after_slots)
	SELECT ci.id, m.position, m.slot, ci.key, m.piece_id, m.after_slots
	FROM ci JOIN t USING (tkey) JOIN iu_collection_membership m ON m.collection_id = t.tid
)
INSERT INTO iu_collection_template_instance_lineage (instance_id, instance_key, template_key, template_digest, actor, mode,
	event_id, event_type, event_source, created_at)
SELECT ci.id, ci.key, ci.tkey, ci.digest, 'floor', 'auto', 'bulk-' || ci.i, 'bulk.scaleout', 'bulk', now() FROM ci;
