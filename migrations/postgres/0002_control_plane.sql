-- cordon store, version 2 (PostgreSQL): admin tokens, the audit log, BYOK
-- credentials (ciphertext only), and per-key scope.

-- Admin API tokens. Like keys, only the hex SHA-256 of the secret part is
-- stored. `tenant` is set exactly for the tenant-scoped roles.
CREATE TABLE admin_tokens (
    id           TEXT   NOT NULL PRIMARY KEY CHECK (id ~ '^[0-9a-z]{8}$'),
    role         TEXT   NOT NULL
                 CHECK (role IN ('platform-admin', 'tenant-admin', 'viewer', 'auditor')),
    tenant       TEXT,
    name         TEXT,
    hash         TEXT   NOT NULL CHECK (hash ~ '^[0-9a-f]{64}$'),
    created_ms   BIGINT NOT NULL,
    expires_ms   BIGINT,
    revoked_ms   BIGINT,
    last_used_ms BIGINT,
    CHECK ((role IN ('tenant-admin', 'viewer')) = (tenant IS NOT NULL))
);

-- The hash-chained audit log (src/audit): entry `seq` holds the hash of entry
-- `seq - 1` (64 zeros for the first) and its own. Appended only; the triggers
-- below refuse changes (a database owner can drop them: `cordon audit verify`
-- is what detects tampering).
CREATE TABLE audit (
    seq       BIGINT NOT NULL PRIMARY KEY CHECK (seq >= 1),
    time_ms   BIGINT NOT NULL,
    actor     TEXT   NOT NULL,
    action    TEXT   NOT NULL,
    tenant    TEXT,
    target    TEXT,
    outcome   TEXT   NOT NULL CHECK (outcome IN ('success', 'failure', 'denied')),
    detail    TEXT,
    prev_hash TEXT   NOT NULL CHECK (prev_hash ~ '^[0-9a-f]{64}$'),
    hash      TEXT   NOT NULL CHECK (hash ~ '^[0-9a-f]{64}$')
);
CREATE INDEX audit_time ON audit (time_ms);
CREATE INDEX audit_tenant_time ON audit (tenant, time_ms);

CREATE FUNCTION cordon_audit_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit log is append-only';
END;
$$;
CREATE TRIGGER audit_no_update_or_delete BEFORE UPDATE OR DELETE ON audit
    FOR EACH ROW EXECUTE FUNCTION cordon_audit_append_only();
CREATE TRIGGER audit_no_truncate BEFORE TRUNCATE ON audit
    FOR EACH STATEMENT EXECUTE FUNCTION cordon_audit_append_only();

-- Tenants' own provider credentials (BYOK), sealed with AES-256-GCM under the
-- master key `master_key_id`; never the plaintext. A deleted credential stays
-- as a tombstone (all three NULL) with a new `updated_ms`, so replicas
-- refreshing by `updated_ms` see the deletion.
CREATE TABLE credentials (
    tenant        TEXT   NOT NULL,
    provider      TEXT   NOT NULL,
    nonce         BYTEA,
    ciphertext    BYTEA,
    master_key_id TEXT,
    updated_ms    BIGINT NOT NULL,
    PRIMARY KEY (tenant, provider),
    CHECK ((nonce IS NULL) = (ciphertext IS NULL)
           AND (nonce IS NULL) = (master_key_id IS NULL))
);
CREATE INDEX credentials_updated_ms ON credentials (updated_ms);

-- Per-key scope: a JSON array of model globs (NULL: every model the policy
-- allows) and a requests-per-minute limit (NULL: none beyond the tenant's).
ALTER TABLE keys ADD COLUMN allowed_models TEXT;
ALTER TABLE keys ADD COLUMN rpm BIGINT CHECK (rpm IS NULL OR rpm > 0);
