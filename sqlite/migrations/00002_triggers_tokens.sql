-- Triggers (event type and source -> template) and API tokens, for iu serve.
-- No foreign key from iu_trigger to iu_piece_collection: rolling back a
-- million instances would check each deleted row against it.
-- Version numbers match postgres/migrations.

-- +goose Up
CREATE TABLE iu_trigger (
    name            TEXT NOT NULL PRIMARY KEY,
    event_type      TEXT NOT NULL,                 -- exact type, a prefix ending in .*, or *
    event_source    TEXT NOT NULL DEFAULT '',      -- '' matches any source
    template_key    TEXT NOT NULL,                 -- checked when the trigger is added; templates are never deleted
    actor           TEXT NOT NULL DEFAULT '',      -- '' : the event's iuactor, else the token's name
    instance_prefix TEXT NOT NULL DEFAULT '',      -- '' : the actor
    created_at      TEXT NOT NULL,
    created_by      TEXT NOT NULL,
    UNIQUE (event_type, event_source, template_key)
);

-- Only the SHA-256 of a token's secret is kept.
CREATE TABLE iu_token (
    name       TEXT NOT NULL PRIMARY KEY,
    token_hash TEXT NOT NULL UNIQUE,               -- hex sha256 of the secret
    scope      TEXT NOT NULL CHECK (scope IN ('ingest', 'read', 'admin')),
    created_at TEXT NOT NULL,
    created_by TEXT NOT NULL,
    revoked_at TEXT                                -- NULL while the token is live
);

-- +goose Down
DROP TABLE iu_token;
DROP TABLE iu_trigger;
