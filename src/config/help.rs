//! What `mfad --help` prints, and the settings that are both a flag and an
//! environment variable: the two lists a reader of the settings compares, kept side by
//! side. Imports nothing.

pub const HELP: &str = "\
mfad — a self-hosted authentication server with TOTP two-factor authentication

USAGE:
    mfad [serve] [OPTIONS]               run the HTTP server (the default)
    mfad token --email E [--ttl SECS]    print a bearer token for an account (created
                                         without a password if absent)
    mfad user add --email E              add a local account; the password is read
                                         from a prompt, or from stdin with --password-stdin
    mfad user list                       list accounts and their MFA state
    mfad user show --email E             an account's MFA state and its last 20 events
    mfad user passwd --email E           set an account's password (as for add)
    mfad user reset-mfa --email E        turn TOTP off and remove the passkeys of an
                                         account (lost device); --keep-passkeys keeps them
    mfad user delete --email E           delete an account and everything it owns
    mfad audit [--email E] [--since T] [--json]
                                         the audit trail, oldest first (T: a date, an
                                         RFC 3339 time or Unix seconds); --json: JSON lines
    mfad backup --to FILE                a consistent copy of the database, made while the
                                         server runs, checked; never overwrites FILE
    mfad migrate --to postgres://…       copy the SQLite database into an empty PostgreSQL
                                         one (then serve with --database and the same key)
    mfad client add --id ID --name NAME --redirect-uri URI [--redirect-uri URI …]
          [--post-logout-uri URI …] [--public] [--policy one_factor|two_factor]
          [--id-token-alg RS256|EdDSA]   register an app for single sign-on (OpenID
                                         Connect); prints its secret once (--public: none,
                                         the app uses PKCE) [--policy two_factor, RS256]
    mfad client list | show --id ID      the registered apps; one app's settings
    mfad client secret --id ID           a new secret for an app (the old one ends)
    mfad client remove --id ID           unregister an app

Every command works on the same data directory as a running server.

OPTIONS (each also an environment variable; a flag wins over the variable):
    --listen ADDR:PORT       MFAD_LISTEN         address to serve on [127.0.0.1:8080]
    --metrics-listen ADDR:PORT  MFAD_METRICS_LISTEN  serve Prometheus metrics at /metrics
                                                 on this address, apart from the API [off]
    --data-dir DIR           MFAD_DATA_DIR       data directory [$STATE_DIRECTORY, else ./data]
    --key-file FILE          MFAD_KEY_FILE       instance key, 32 bytes
                                                 [$CREDENTIALS_DIRECTORY/mfad.key if present,
                                                 else DIR/mfad.key, created on first start]
    --issuer NAME            MFAD_ISSUER         issuer shown in authenticator apps [Storno]
    --workers N              MFAD_WORKERS        request worker threads [2 x cores, 4..64]
    --jwt-issuer NAME        MFAD_JWT_ISSUER     `iss` of the tokens mfad issues [mfad]
    --jwt-public-key FILE    MFAD_JWT_PUBLIC_KEY PEM key of an external token issuer
    --jwt-algorithm ALG      MFAD_JWT_ALGORITHM  its algorithm: RS256, ES256 or EdDSA
    --jwt-audience AUD       MFAD_JWT_AUDIENCE   required `aud` of external tokens
    --jwt-external-issuer N  MFAD_JWT_EXTERNAL_ISSUER  required `iss` of external tokens
    --login-rate N           MFAD_LOGIN_RATE     failed logins per client address and
                                                 minute before 429; 0 turns it off [5]
    --throttle-ipv6-prefix BITS  MFAD_THROTTLE_IPV6_PREFIX  the throttles count an IPv6
                                                 client by its network of this many bits,
                                                 as one subscriber holds it [64]
    --database URL           MFAD_DATABASE_URL   sqlite:PATH, or postgres://USER@HOST/DB for
                                                 several nodes (a password only in the
                                                 variable) [DIR/mfad.db]
    --durability MODE        MFAD_DURABILITY     normal (a power cut may lose the last
                                                 commits) or full (sync every commit) [normal]
    --log-level LEVEL        MFAD_LOG_LEVEL      error, warn, info or debug [info]
    --audit-retention DAYS   MFAD_AUDIT_RETENTION  audit events are deleted after so many
                                                 days [400]
    --cors-origin ORIGIN     MFAD_CORS_ORIGINS   an origin whose pages may call the API with
                                                 credentials, e.g. http://localhost:3000
                                                 (repeat the flag; the variable takes a
                                                 comma list) [none]
    --cookie-samesite MODE   MFAD_COOKIE_SAMESITE  SameSite of the refresh-token cookie:
                                                 strict, lax, or none for a frontend on
                                                 another site [strict]
    --cookie-name-prefix __Host-  MFAD_COOKIE_NAME_PREFIX  name the cookie
                                                 __Host-__refresh__token (Path=/), which no
                                                 other host of the domain can set; Storno's
                                                 frontend expects the plain name [none]
    --trusted-proxy CIDR     MFAD_TRUSTED_PROXIES  a reverse proxy's address or range; its
                                                 X-Forwarded-For names the client for the
                                                 throttles (repeat; the variable takes a
                                                 comma list) [none: the header is ignored]
    --public-url URL         MFAD_PUBLIC_URL     the origin mfad is reached at, e.g.
                                                 https://auth.example.com [the request's Host]
    --rp-id DOMAIN           MFAD_RP_ID          the passkeys' relying party: the public URL's
                                                 host or a parent domain of it; other
                                                 than localhost it needs a public URL
                                                 [that host, else localhost]
    --rp-name NAME           MFAD_RP_NAME        the name authenticators show [the issuer]
    --session-domain DOMAIN  MFAD_SESSION_DOMAIN  the browser session cookie's Domain, so
                                                 that every app under it gets it, and the
                                                 only hosts the page sends people back to
                                                 [none: host-only, nobody sent back]
    --session-idle TIME      MFAD_SESSION_IDLE   a browser session unused this long ends
                                                 (90m, 24h, 7d) [24h]
    --access-rule RULE       MFAD_ACCESS_RULES   forward-auth: \"HOST[/PATH] POLICY [EMAIL,...]\",
                                                 first match wins; HOST exact or *.domain,
                                                 POLICY bypass, one_factor, two_factor or
                                                 deny; the emails narrow who passes (repeat
                                                 the flag; the variable separates rules
                                                 with ;) [none]; for example:
                                                   \"wiki.example.com/admin two_factor ana@example.com\"
                                                   \"*.example.com one_factor\"
    --access-default POLICY  MFAD_ACCESS_DEFAULT  the policy of a request no rule matches
                                                 [deny]
    --email EMAIL                                account for token and user commands
    --ttl SECONDS                                lifetime of a token from `mfad token` [3600]
    --password-stdin                             read the password from standard input
    --keep-passkeys                              reset-mfa: remove only TOTP
    --to FILE                                    where `mfad backup` writes (a new file)
    --init                                       create a new, empty database even though
                                                 the key exists and mfad.db is missing or
                                                 empty (starting over on purpose)
    -h, --help                                   print this help
    -V, --version                                print the version
";

/// Settings that are both a flag (`--name`) and an environment variable.
pub(super) const SETTINGS: [(&str, &str); 30] = [
    ("access-rule", "MFAD_ACCESS_RULES"),
    ("access-default", "MFAD_ACCESS_DEFAULT"),
    ("session-domain", "MFAD_SESSION_DOMAIN"),
    ("session-idle", "MFAD_SESSION_IDLE"),
    ("database", "MFAD_DATABASE_URL"),
    ("metrics-listen", "MFAD_METRICS_LISTEN"),
    ("audit-retention", "MFAD_AUDIT_RETENTION"),
    ("trusted-proxy", "MFAD_TRUSTED_PROXIES"),
    ("rp-id", "MFAD_RP_ID"),
    ("rp-name", "MFAD_RP_NAME"),
    ("listen", "MFAD_LISTEN"),
    ("data-dir", "MFAD_DATA_DIR"),
    ("key-file", "MFAD_KEY_FILE"),
    ("issuer", "MFAD_ISSUER"),
    ("workers", "MFAD_WORKERS"),
    ("jwt-issuer", "MFAD_JWT_ISSUER"),
    ("jwt-public-key", "MFAD_JWT_PUBLIC_KEY"),
    ("jwt-algorithm", "MFAD_JWT_ALGORITHM"),
    ("jwt-audience", "MFAD_JWT_AUDIENCE"),
    ("jwt-external-issuer", "MFAD_JWT_EXTERNAL_ISSUER"),
    ("login-rate", "MFAD_LOGIN_RATE"),
    ("throttle-ipv6-prefix", "MFAD_THROTTLE_IPV6_PREFIX"),
    ("durability", "MFAD_DURABILITY"),
    ("log-level", "MFAD_LOG_LEVEL"),
    ("cors-origin", "MFAD_CORS_ORIGINS"),
    ("cookie-samesite", "MFAD_COOKIE_SAMESITE"),
    ("cookie-name-prefix", "MFAD_COOKIE_NAME_PREFIX"),
    ("public-url", "MFAD_PUBLIC_URL"),
    ("test-socket-timeout-ms", "MFAD_TEST_SOCKET_TIMEOUT_MS"),
    ("test-request-deadline-ms", "MFAD_TEST_REQUEST_DEADLINE_MS"),
];
