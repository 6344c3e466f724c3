-- Triggers (event type and source -> template) and API tokens, for iu serve.
-- No foreign key from iu_trigger to iu_piece_collection: rolling back a
-- million instances would check each deleted row against it.
-- Version numbers match sqlite/migrations.

-- +goose Up
CREATE TABLE iu_trigger (
    name            text COLLATE "C" NOT NULL PRIMARY KEY,
    event_type      text COLLATE "C" NOT NULL,          -- exact type, a prefix ending in .*, or *
    event_source    text COLLATE "C" NOT NULL DEFAULT '', -- '' matches any source
    template_key    text COLLATE "C" NOT NULL,          -- checked when the trigger is added; templates are never deleted
    actor           text COLLATE "C" NOT NULL DEFAULT '', -- '': the event's iuactor, else the token's name
    instance_prefix text COLLATE "C" NOT NULL DEFAULT '', -- '': the actor
    created_at      timestamptz NOT NULL,
    created_by      text NOT NULL,
    UNIQUE (event_type, event_source, template_key)
);

-- Only the SHA-256 of a token's secret is kept.
CREATE TABLE iu_token (
    name       text COLLATE "C" NOT NULL PRIMARY KEY,
    token_hash text COLLATE "C" NOT NULL UNIQUE,        -- hex sha256 of the secret
    scope      text COLLATE "C" NOT NULL CHECK (scope IN ('ingest', 'read', 'admin')),
    created_at timestamptz NOT NULL,
    created_by text NOT NULL,
    revoked_at timestamptz                               -- NULL while the token is live
);

-- +goose Down
DROP TABLE iu_token;
DROP TABLE iu_trigger;
