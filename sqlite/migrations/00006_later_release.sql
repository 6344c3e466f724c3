-- A compensated instance's event key may be released later than the
-- compensation (iu compensate KEY --release): who did it, when, claiming
-- which actor and why, for its history. Empty (and released_at NULL) when
-- the key was released with the compensation, or not at all. Version
-- numbers match postgres/migrations.

-- +goose Up
ALTER TABLE iu_compensation ADD COLUMN released_at TEXT;
ALTER TABLE iu_compensation ADD COLUMN released_by TEXT NOT NULL DEFAULT '';
ALTER TABLE iu_compensation ADD COLUMN release_claimed_actor TEXT NOT NULL DEFAULT '';
ALTER TABLE iu_compensation ADD COLUMN release_reason TEXT NOT NULL DEFAULT '';

-- +goose Down
ALTER TABLE iu_compensation DROP COLUMN release_reason;
ALTER TABLE iu_compensation DROP COLUMN release_claimed_actor;
ALTER TABLE iu_compensation DROP COLUMN released_by;
ALTER TABLE iu_compensation DROP COLUMN released_at;
