-- A compensated instance's event key may be released later than the
-- compensation (iu compensate KEY --release): who did it, when, claiming
-- which actor and why, for its history. Empty (and released_at NULL) when
-- the key was released with the compensation, or not at all. Version
-- numbers match sqlite/migrations.

-- +goose Up
ALTER TABLE iu_compensation
    ADD COLUMN released_at timestamptz,
    ADD COLUMN released_by text NOT NULL DEFAULT '',
    ADD COLUMN release_claimed_actor text NOT NULL DEFAULT '',
    ADD COLUMN release_reason text NOT NULL DEFAULT '';

-- +goose Down
ALTER TABLE iu_compensation
    DROP COLUMN release_reason,
    DROP COLUMN release_claimed_actor,
    DROP COLUMN released_by,
    DROP COLUMN released_at;
