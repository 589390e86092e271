-- cordon store, version 1 (SQLite): client keys and usage records.
-- Times are Unix milliseconds (INTEGER); durations in milliseconds (REAL).

-- Client API keys. `hash` is the lower-case hex SHA-256 of the key's secret
-- part: the raw key is never stored (SPEC invariant 3). The CHECK makes the
-- column unable to hold anything but a 64-digit hex digest.
CREATE TABLE keys (
    id           TEXT    NOT NULL PRIMARY KEY,
    tenant       TEXT    NOT NULL,
    project      TEXT,
    name         TEXT,
    hash         TEXT    NOT NULL
                 CHECK (length(hash) = 64 AND hash NOT GLOB '*[^0-9a-f]*'),
    created_ms   INTEGER NOT NULL,
    expires_ms   INTEGER,
    revoked_ms   INTEGER,
    last_used_ms INTEGER,
    -- Changes whenever a field the authentication cache depends on changes
    -- (creation, revocation); not on `last_used_ms`.
    updated_ms   INTEGER NOT NULL
);
CREATE INDEX keys_tenant ON keys (tenant);
CREATE INDEX keys_updated_ms ON keys (updated_ms);

-- One row per request (SPEC section 5): metadata only, nothing from bodies.
-- `request_id` is not unique: it may echo a client-sent x-request-id.
CREATE TABLE usage (
    request_id        TEXT    NOT NULL,
    time_ms           INTEGER NOT NULL,
    tenant            TEXT    NOT NULL,
    project           TEXT,
    key_id            TEXT    NOT NULL,
    endpoint          TEXT    NOT NULL,
    model             TEXT    NOT NULL,
    provider          TEXT,
    upstream_model    TEXT,
    policy_version    TEXT,
    prompt_tokens     INTEGER,
    completion_tokens INTEGER,
    status            INTEGER NOT NULL,
    outcome           TEXT    NOT NULL,
    attempts          INTEGER NOT NULL,
    providers_tried   TEXT    NOT NULL,
    latency_ms        REAL    NOT NULL,
    ttft_ms           REAL,
    overhead_ms       REAL    NOT NULL,
    streamed          BOOLEAN NOT NULL,
    client_api        TEXT    NOT NULL,
    provider_api      TEXT
);
CREATE INDEX usage_tenant_time ON usage (tenant, time_ms);
