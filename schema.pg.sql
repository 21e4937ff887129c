-- mfad's database schema for PostgreSQL, version 7: the same tables, columns and rules
-- as schema.sql (SQLite), in PostgreSQL's types. The version is recorded in
-- mfad_schema; a database of an earlier version is brought here by the migrations in
-- src/store/postgres.rs (PostgreSQL support starts at 4).
-- Applied by the first mfad that finds the database empty, under an advisory lock, so
-- that two nodes starting at once do not both create it. Secrets never appear here in
-- the clear (see schema.sql).

CREATE TABLE mfad_schema (
    version INTEGER NOT NULL
);

-- Identity ids are never reused, so a token naming a deleted account can never name a
-- later one.
CREATE TABLE accounts (
    id                BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    email             TEXT UNIQUE,
    password_hash     TEXT,
    external_subject  TEXT UNIQUE,
    created_at        BIGINT NOT NULL,
    updated_at        BIGINT,
    last_connected_at BIGINT,
    user_handle       BYTEA UNIQUE
);

CREATE TABLE totp (
    account_id      BIGINT PRIMARY KEY REFERENCES accounts(id) ON DELETE CASCADE,
    pending_secret  BYTEA,
    active_secret   BYTEA,
    -- Raised only by `UPDATE … WHERE last_step < $1` (RFC 6238 §5.2): a statement that
    -- waits for a concurrent one and then re-checks the row, so one code wins once.
    last_step       BIGINT NOT NULL DEFAULT -1,
    backup_salt     BYTEA,
    enabled_at      BIGINT,
    failed_verifies BIGINT NOT NULL DEFAULT 0,
    locked_until    BIGINT NOT NULL DEFAULT 0,
    CHECK (active_secret IS NULL OR backup_salt IS NOT NULL)
);

CREATE TABLE backup_codes (
    account_id BIGINT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    code_hash  BYTEA NOT NULL,
    PRIMARY KEY (account_id, code_hash)
);

CREATE TABLE mfa_challenges (
    token_hash BYTEA PRIMARY KEY,
    account_id BIGINT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    expires_at BIGINT NOT NULL,
    failures   BIGINT NOT NULL DEFAULT 0,
    purpose    BIGINT NOT NULL DEFAULT 0
);

CREATE TABLE verifications (
    token_hash  BYTEA PRIMARY KEY,
    account_id  BIGINT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    method      TEXT NOT NULL,
    verified_at BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL
);

CREATE TABLE refresh_tokens (
    token_hash BYTEA PRIMARY KEY,
    account_id BIGINT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    family     BYTEA NOT NULL,
    expires_at BIGINT NOT NULL,
    rotated    BOOLEAN NOT NULL DEFAULT FALSE,
    sign_in    TEXT NOT NULL DEFAULT 'pwd',
    auth_time  BIGINT NOT NULL DEFAULT 0,
    client_id  TEXT
);
CREATE INDEX refresh_tokens_family ON refresh_tokens(family);
CREATE INDEX refresh_tokens_account ON refresh_tokens(account_id);

-- Browser sessions; see schema.sql.
CREATE TABLE sessions (
    token_hash   BYTEA PRIMARY KEY,
    account_id   BIGINT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    family       BYTEA NOT NULL,
    sign_in      TEXT NOT NULL,
    auth_time    BIGINT NOT NULL,
    expires_at   BIGINT NOT NULL,
    last_used_at BIGINT NOT NULL
);
CREATE INDEX sessions_family ON sessions(family);
CREATE INDEX sessions_account ON sessions(account_id);

CREATE TABLE passkeys (
    id            BYTEA PRIMARY KEY,
    account_id    BIGINT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    credential_id BYTEA NOT NULL UNIQUE,
    public_key    BYTEA NOT NULL,
    alg           BIGINT NOT NULL,
    sign_count    BIGINT NOT NULL DEFAULT 0,
    name          TEXT NOT NULL,
    created_at    BIGINT NOT NULL,
    last_used_at  BIGINT
);
CREATE INDEX passkeys_account ON passkeys(account_id);

CREATE TABLE passkey_ceremonies (
    challenge_hash BYTEA PRIMARY KEY,
    purpose        BIGINT NOT NULL,
    account_id     BIGINT REFERENCES accounts(id) ON DELETE CASCADE,
    bound_to       BYTEA,
    expires_at     BIGINT NOT NULL
);

-- The OpenID provider's apps; see schema.sql.
CREATE TABLE oidc_clients (
    id               TEXT PRIMARY KEY,
    name             TEXT NOT NULL,
    secret_hash      BYTEA,
    redirect_uris    TEXT NOT NULL,
    post_logout_uris TEXT NOT NULL,
    policy           TEXT NOT NULL,
    id_token_alg     TEXT NOT NULL,
    created_at       BIGINT NOT NULL
);

-- One authorization of an app; see schema.sql.
CREATE TABLE oidc_grants (
    family          BYTEA PRIMARY KEY,
    code_hash       BYTEA NOT NULL UNIQUE,
    client_id       TEXT NOT NULL REFERENCES oidc_clients(id) ON DELETE CASCADE,
    account_id      BIGINT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    redirect_uri    TEXT NOT NULL,
    code_challenge  TEXT,
    nonce           TEXT,
    scope           TEXT NOT NULL,
    sign_in         TEXT NOT NULL,
    auth_time       BIGINT NOT NULL,
    code_expires_at BIGINT NOT NULL,
    redeemed        BOOLEAN NOT NULL DEFAULT FALSE,
    expires_at      BIGINT NOT NULL
);
CREATE INDEX oidc_grants_account ON oidc_grants(account_id);
CREATE INDEX oidc_grants_client ON oidc_grants(client_id);

CREATE TABLE audit (
    id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    account_id BIGINT,
    at         BIGINT NOT NULL,
    event      TEXT NOT NULL,
    detail     TEXT
);
CREATE INDEX audit_account ON audit(account_id, id);

CREATE TABLE meta (
    name  TEXT PRIMARY KEY,
    value BYTEA NOT NULL
);

-- The login and passkey-login throttles, shared by every node: one row per attempt that
-- counts (failed, or still being checked), deleted when it succeeds or slides out of
-- the minute.
CREATE TABLE throttle (
    id       BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name     TEXT NOT NULL,
    client   TEXT NOT NULL,
    at       BIGINT NOT NULL
);
CREATE INDEX throttle_client ON throttle(name, client, at);
