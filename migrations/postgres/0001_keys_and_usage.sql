-- cordon store, version 1 (PostgreSQL): client keys and usage records.
-- Times are Unix milliseconds (BIGINT); durations in milliseconds (DOUBLE PRECISION).

-- Client API keys. `hash` is the lower-case hex SHA-256 of the key's secret
-- part: the raw key is never stored (SPEC invariant 3). The CHECK makes the
-- column unable to hold anything but a 64-digit hex digest.
CREATE TABLE keys (
    id           TEXT   NOT NULL PRIMARY KEY,
    tenant       TEXT   NOT NULL,
    project      TEXT,
    name         TEXT,
    hash         TEXT   NOT NULL CHECK (hash ~ '^[0-9a-f]{64}$'),
    created_ms   BIGINT NOT NULL,
    expires_ms   BIGINT,
    revoked_ms   BIGINT,
    last_used_ms BIGINT,
    -- Changes whenever a field the authentication cache depends on changes
    -- (creation, revocation); not on `last_used_ms`.
    updated_ms   BIGINT NOT NULL
);
CREATE INDEX keys_tenant ON keys (tenant);
CREATE INDEX keys_updated_ms ON keys (updated_ms);

-- One row per request (SPEC section 5): metadata only, nothing from bodies.
-- `request_id` is not unique: it may echo a client-sent x-request-id.
CREATE TABLE usage (
    request_id        TEXT             NOT NULL,
    time_ms           BIGINT           NOT NULL,
    tenant            TEXT             NOT NULL,
    project           TEXT,
    key_id            TEXT             NOT NULL,
    endpoint          TEXT             NOT NULL,
    model             TEXT             NOT NULL,
    provider          TEXT,
    upstream_model    TEXT,
    policy_version    TEXT,
    prompt_tokens     BIGINT,
    completion_tokens BIGINT,
    status            INTEGER          NOT NULL,
    outcome           TEXT             NOT NULL,
    attempts          BIGINT           NOT NULL,
    providers_tried   TEXT             NOT NULL,
    latency_ms        DOUBLE PRECISION NOT NULL,
    ttft_ms           DOUBLE PRECISION,
    overhead_ms       DOUBLE PRECISION NOT NULL,
    streamed          BOOLEAN          NOT NULL,
    client_api        TEXT             NOT NULL,
    provider_api      TEXT
);
CREATE INDEX usage_tenant_time ON usage (tenant, time_ms);
