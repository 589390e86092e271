-- cordon store, version 2 (SQLite): admin tokens, the audit log, BYOK
-- credentials (ciphertext only), and per-key scope.

-- Admin API tokens. Like keys, only the hex SHA-256 of the secret part is
-- stored. `tenant` is set exactly for the tenant-scoped roles.
CREATE TABLE admin_tokens (
    id           TEXT    NOT NULL PRIMARY KEY
                 CHECK (length(id) = 8 AND id NOT GLOB '*[^0-9a-z]*'),
    role         TEXT    NOT NULL
                 CHECK (role IN ('platform-admin', 'tenant-admin', 'viewer', 'auditor')),
    tenant       TEXT,
    name         TEXT,
    hash         TEXT    NOT NULL
                 CHECK (length(hash) = 64 AND hash NOT GLOB '*[^0-9a-f]*'),
    created_ms   INTEGER NOT NULL,
    expires_ms   INTEGER,
    revoked_ms   INTEGER,
    last_used_ms INTEGER,
    CHECK ((role IN ('tenant-admin', 'viewer')) = (tenant IS NOT NULL))
);

-- The hash-chained audit log (src/audit): entry `seq` holds the hash of entry
-- `seq - 1` (64 zeros for the first) and its own. Appended only; the triggers
-- below refuse changes (a database owner can drop them: `cordon audit verify`
-- is what detects tampering).
CREATE TABLE audit (
    seq       INTEGER NOT NULL PRIMARY KEY CHECK (seq >= 1),
    time_ms   INTEGER NOT NULL,
    actor     TEXT    NOT NULL,
    action    TEXT    NOT NULL,
    tenant    TEXT,
    target    TEXT,
    outcome   TEXT    NOT NULL CHECK (outcome IN ('success', 'failure', 'denied')),
    detail    TEXT,
    prev_hash TEXT    NOT NULL
              CHECK (length(prev_hash) = 64 AND prev_hash NOT GLOB '*[^0-9a-f]*'),
    hash      TEXT    NOT NULL
              CHECK (length(hash) = 64 AND hash NOT GLOB '*[^0-9a-f]*')
);
CREATE INDEX audit_time ON audit (time_ms);
CREATE INDEX audit_tenant_time ON audit (tenant, time_ms);
CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit
BEGIN
    SELECT RAISE(ABORT, 'audit log is append-only');
END;
CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit
BEGIN
    SELECT RAISE(ABORT, 'audit log is append-only');
END;

-- Tenants' own provider credentials (BYOK), sealed with AES-256-GCM under the
-- master key `master_key_id`; never the plaintext. A deleted credential stays
-- as a tombstone (all three NULL) with a new `updated_ms`, so replicas
-- refreshing by `updated_ms` see the deletion.
CREATE TABLE credentials (
    tenant        TEXT    NOT NULL,
    provider      TEXT    NOT NULL,
    nonce         BLOB,
    ciphertext    BLOB,
    master_key_id TEXT,
    updated_ms    INTEGER NOT NULL,
    PRIMARY KEY (tenant, provider),
    CHECK ((nonce IS NULL) = (ciphertext IS NULL)
           AND (nonce IS NULL) = (master_key_id IS NULL))
);
CREATE INDEX credentials_updated_ms ON credentials (updated_ms);

-- Per-key scope: a JSON array of model globs (NULL: every model the policy
-- allows) and a requests-per-minute limit (NULL: none beyond the tenant's).
ALTER TABLE keys ADD COLUMN allowed_models TEXT;
ALTER TABLE keys ADD COLUMN rpm INTEGER CHECK (rpm IS NULL OR rpm > 0);
