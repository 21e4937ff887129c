-- mfad's database schema, version 7 (recorded in PRAGMA user_version). A database of
-- an earlier version is brought here by the migrations in src/store/sqlite.rs.
-- Applied at start by the binary, which embeds this file. Secrets never appear here in
-- the clear: TOTP secrets are sealed with AES-256-GCM (account id as associated data);
-- backup codes, refresh tokens, browser sessions, MFA and passkey challenges are stored
-- only as keyed hashes. Passkeys are public keys: nothing of them is secret.

-- Ids are never reused (AUTOINCREMENT), so a token naming a deleted account can never
-- name a later one.
CREATE TABLE accounts (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    -- Lower-cased; NULL for accounts created from an external token without email.
    email            TEXT UNIQUE,
    -- 'pbkdf2-sha256$iterations$salt$hash'; NULL: no local password (confirm with a code).
    password_hash    TEXT,
    -- `sub` (or `username`) of an external token; NULL for local accounts.
    external_subject TEXT UNIQUE,
    created_at       INTEGER NOT NULL,
    -- The last change of the account itself (its password); NULL: never changed.
    updated_at       INTEGER,
    -- The last successful login or refresh; NULL: never.
    last_connected_at INTEGER,
    -- WebAuthn's user handle: 16 random bytes, made at the first passkey registration
    -- (never the email or the id, which an authenticator would then carry around).
    user_handle      BLOB
);
CREATE UNIQUE INDEX accounts_user_handle ON accounts(user_handle);

-- One row per account that has started TOTP setup.
CREATE TABLE totp (
    account_id      INTEGER PRIMARY KEY REFERENCES accounts(id) ON DELETE CASCADE,
    pending_secret  BLOB,                       -- sealed; set by setup, cleared by enable
    active_secret   BLOB,                       -- sealed; NULL while TOTP is off
    -- Highest time step accepted (RFC 6238 §5.2): a code of this step or an earlier one
    -- is refused. Raised only by `UPDATE … WHERE last_step < ?`.
    last_step       INTEGER NOT NULL DEFAULT -1,
    backup_salt     BLOB,                       -- per-account salt of the backup codes
    enabled_at      INTEGER,
    -- Wrong codes in a row at verify, across challenges; reset by a right one.
    failed_verifies INTEGER NOT NULL DEFAULT 0,
    locked_until    INTEGER NOT NULL DEFAULT 0,
    CHECK (active_secret IS NULL OR backup_salt IS NOT NULL)
);

CREATE TABLE backup_codes (
    account_id INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    code_hash  BLOB NOT NULL,                   -- PBKDF2(salt, HMAC(pepper, code))
    PRIMARY KEY (account_id, code_hash)
) WITHOUT ROWID;

CREATE TABLE mfa_challenges (
    token_hash BLOB PRIMARY KEY,                -- HMAC of the 32-byte challenge token
    account_id INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    expires_at INTEGER NOT NULL,
    failures   INTEGER NOT NULL DEFAULT 0,
    -- 0: a login's second step; 1: a step-up of a signed-in account. One never
    -- stands in for the other.
    purpose    INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;

-- A passed step-up, until the relying service redeems it (once) or it expires.
CREATE TABLE verifications (
    token_hash  BLOB PRIMARY KEY,               -- HMAC of the 32-byte verification token
    account_id  INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    method      TEXT NOT NULL,                  -- totp, backup_code, passkey
    verified_at INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE refresh_tokens (
    token_hash BLOB PRIMARY KEY,                -- HMAC of the 32-byte refresh token
    account_id INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    family     BLOB NOT NULL,                   -- shared by every token of one login
    expires_at INTEGER NOT NULL,
    rotated    INTEGER NOT NULL DEFAULT 0,      -- 1 once exchanged for a newer token
    -- How the login was made ('pwd', 'totp', 'backup_code', 'pwd_passkey', 'passkey'):
    -- the `amr` and `mfa_method` of the access tokens a refresh gives; kept by rotation.
    sign_in    TEXT NOT NULL DEFAULT 'pwd',
    auth_time  INTEGER NOT NULL DEFAULT 0,      -- when that login was made
    -- The app (OpenID client) the token was issued to; NULL: mfad's own login. One is
    -- never refreshed where the other is.
    client_id  TEXT
) WITHOUT ROWID;
CREATE INDEX refresh_tokens_family ON refresh_tokens(family);

-- A browser session (the `mfad_session` cookie) of one login: what forward-auth reads
-- for every request of a protected app. It ends with its login: whatever deletes the
-- login's refresh tokens deletes its sessions in the same transaction.
CREATE TABLE sessions (
    token_hash   BLOB PRIMARY KEY,              -- HMAC of the 32-byte cookie value
    account_id   INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    family       BLOB NOT NULL,                 -- the login's refresh family
    sign_in      TEXT NOT NULL,                 -- how the login was made (its amr)
    auth_time    INTEGER NOT NULL,              -- when
    expires_at   INTEGER NOT NULL,              -- the login's end
    last_used_at INTEGER NOT NULL               -- recorded at most once a minute
) WITHOUT ROWID;
CREATE INDEX sessions_family ON sessions(family);
CREATE INDEX sessions_account ON sessions(account_id);

-- Registered passkeys (WebAuthn public-key credentials).
CREATE TABLE passkeys (
    id            BLOB PRIMARY KEY,             -- 16 random bytes, shown as a UUID
    account_id    INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    -- The authenticator's credential id: one account's, never two.
    credential_id BLOB NOT NULL UNIQUE,
    public_key    BLOB NOT NULL,                -- the COSE key, as registered
    alg           INTEGER NOT NULL,             -- its COSE algorithm: -7, -8 or -257
    -- The highest signature counter seen; raised only by `UPDATE … WHERE sign_count < ?`.
    sign_count    INTEGER NOT NULL DEFAULT 0,
    name          TEXT NOT NULL,
    created_at    INTEGER NOT NULL,
    last_used_at  INTEGER
) WITHOUT ROWID;
CREATE INDEX passkeys_account ON passkeys(account_id);

-- A WebAuthn ceremony between its options and its answer: 5 minutes, single use (the
-- delete is the check), in the database so that any node can finish it.
CREATE TABLE passkey_ceremonies (
    challenge_hash BLOB PRIMARY KEY,            -- HMAC of the 32-byte WebAuthn challenge
    -- 0: registering a passkey; 1: a passwordless login; 2: a second factor.
    purpose        INTEGER NOT NULL,
    -- The account registering or answering; NULL for a passwordless login (the
    -- passkey names its account).
    account_id     INTEGER REFERENCES accounts(id) ON DELETE CASCADE,
    -- HMAC of what else the answer must carry: a passwordless login's sessionId, the
    -- MFA or step-up challenge a second factor answers; NULL for a registration.
    bound_to       BLOB,
    expires_at     INTEGER NOT NULL
) WITHOUT ROWID;

-- The OpenID provider's apps, registered by the operator (`mfad client add`). The
-- secret is stored only as a keyed hash; a public client (a browser or mobile app) has
-- none and must use PKCE. URIs are compared exactly, one per line.
CREATE TABLE oidc_clients (
    id               TEXT PRIMARY KEY,          -- client_id, chosen by the operator
    name             TEXT NOT NULL,             -- shown on the page: "continue to <name>"
    secret_hash      BLOB,                      -- HMAC of the secret; NULL: public client
    redirect_uris    TEXT NOT NULL,
    post_logout_uris TEXT NOT NULL,
    policy           TEXT NOT NULL,             -- one_factor or two_factor
    id_token_alg     TEXT NOT NULL,             -- RS256 or EdDSA
    created_at       INTEGER NOT NULL
) WITHOUT ROWID;

-- One authorization of an app (`GET /oidc/authorize`): its code until redeemed (once),
-- then what was issued from it. Its `family` names the refresh tokens issued from it
-- and is the `sid` of its access tokens, which `/oidc/userinfo` accepts only while the
-- grant is here: a reused code, a revocation, a removed client or an ended account
-- deletes it.
CREATE TABLE oidc_grants (
    family          BLOB PRIMARY KEY,           -- 16 random bytes
    code_hash       BLOB NOT NULL UNIQUE,       -- HMAC of the 32-byte code
    client_id       TEXT NOT NULL REFERENCES oidc_clients(id) ON DELETE CASCADE,
    account_id      INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    redirect_uri    TEXT NOT NULL,              -- exactly as the request sent it
    code_challenge  TEXT,                       -- PKCE S256; NULL: none was sent
    nonce           TEXT,
    scope           TEXT NOT NULL,              -- the scopes granted, space-separated
    sign_in         TEXT NOT NULL,              -- how the person signed in (its amr)
    auth_time       INTEGER NOT NULL,           -- when
    code_expires_at INTEGER NOT NULL,           -- 60 s after it was made
    redeemed        INTEGER NOT NULL DEFAULT 0, -- 1 once exchanged at /oidc/token
    expires_at      INTEGER NOT NULL            -- when nothing issued from it lives on
) WITHOUT ROWID;
CREATE INDEX oidc_grants_account ON oidc_grants(account_id);
CREATE INDEX oidc_grants_client ON oidc_grants(client_id);

-- Security events. No foreign key: the trail outlives a deleted account.
CREATE TABLE audit (
    id         INTEGER PRIMARY KEY,
    account_id INTEGER,
    at         INTEGER NOT NULL,
    event      TEXT NOT NULL,
    detail     TEXT
);
CREATE INDEX audit_account ON audit(account_id, id);

-- Instance facts. 'key_check' is an HMAC of a fixed label under a key derived from
-- mfad.key: a start with another key file is refused instead of failing every secret.
-- 'hs256_upgraded_at' (Unix seconds, as ASCII digits): when a database of an mfad that
-- signed its tokens HS256 was migrated; those tokens are accepted for an hour after.
-- 'oidc_rsa_key': the OpenID provider's RSA key (PKCS#8), sealed with a key derived
-- from mfad.key, made when the first client is registered.
CREATE TABLE meta (
    name  TEXT PRIMARY KEY,
    value BLOB NOT NULL
) WITHOUT ROWID;
