//! Bytes → inputs for mfad, and the properties every answer must have. Shared by the fuzz
//! targets (`fuzz/fuzz_targets/*.rs`) and the replay test `tests/api/fuzz_regressions.rs`,
//! which both include this file with `#[path]`, so a corpus file means the same requests
//! in both. It uses only crates the main package already depends on (mfad, tiny_http,
//! serde_json, data-encoding, tempfile, png, qrcodegen, rqrr), and parses bytes by hand.
//!
//! `request`: the first byte picks the starting state of two fixed accounts (reset before
//! every input, so each input is self-contained); then up to [`MAX_REQUESTS`] requests,
//! each from a few selector bytes (method, path, Authorization, transport headers, body).
//! Body values can be "magic": the current TOTP code of an account, a backup code, a live
//! MFA challenge or refresh token, the password, or values learned from an earlier answer
//! in the same input (the secret from setup, the `mfa_token` from login, …), so that the
//! fuzzer reaches enable, verify, confirm and refresh, not only their input checks.
//!
//! `otpauth`: issuer, account and secret strings for `totp::percent_encode`,
//! `totp::otpauth_uri` and `qr::otpauth_png`.

#![allow(dead_code)]

use std::net::SocketAddr;

use data_encoding::{BASE32_NOPAD, BASE64URL_NOPAD, HEXLOWER, HEXUPPER};
use mfad::auth::{Login, SignIn, Tokens};
use mfad::crypto;
use mfad::service::App;
use mfad::store::{self, Db};
use mfad::totp;
use mfad::unix_now;
use serde_json::{json, Map, Value};
use tiny_http::{Header, Method, TestRequest};

/// Requests per input, at most.
pub const MAX_REQUESTS: usize = 4;

/// The paths the router knows, with the one method each takes.
pub const PATHS: [(&str, &str); 24] = [
    ("/healthz", "GET"),
    ("/api/v1/me/mfa/totp/setup", "POST"),
    ("/api/v1/me/mfa/totp/enable", "POST"),
    ("/api/v1/me/mfa/totp/disable", "POST"),
    ("/api/v1/me/mfa/status", "GET"),
    ("/api/v1/me/mfa/backup-codes/regenerate", "POST"),
    ("/api/auth", "POST"),
    ("/api/auth/mfa/verify", "POST"),
    ("/api/auth/refresh", "POST"),
    ("/api/auth/logout", "POST"),
    ("/api/v1/me", "GET"),
    ("/api/v1/mfa/challenge", "POST"),
    ("/api/v1/mfa/verify", "POST"),
    ("/api/v1/mfa/verification/redeem", "POST"),
    ("/.well-known/jwks.json", "GET"),
    ("/.well-known/openid-configuration", "GET"),
    ("/api/v1/passkey/register/options", "POST"),
    ("/api/v1/passkey/register", "POST"),
    ("/api/v1/me/passkeys", "GET"),
    (
        "/api/v1/me/passkeys/6f1c2d3e-4a5b-4c6d-8e7f-0123456789ab",
        "DELETE",
    ),
    ("/api/auth/passkey/login/options", "POST"),
    ("/api/auth/passkey/login", "POST"),
    ("/api/auth/mfa/passkey/options", "POST"),
    ("/api/v1/mfa/passkey/options", "POST"),
];

/// The statuses API.md allows (500 is a handler that panicked or failed inside).
/// (201: a passkey registered; 204: logout, a passkey removed; 403: a CORS preflight or
/// a cookie from a foreign origin.)
pub const ALLOWED_STATUSES: [u16; 13] = [
    200, 201, 204, 400, 401, 403, 404, 405, 409, 413, 422, 429, 503,
];

const MAX_BODY: usize = mfad::http::MAX_BODY;

pub const P_EMAIL: &str = "pat@example.com";
pub const P_PASSWORD: &str = "correct horse battery";
pub const N_EMAIL: &str = "nopass@example.com";
const P_SECRET: &[u8; 20] = b"fuzz secret account1";
const N_SECRET: &[u8; 20] = b"fuzz secret account2";
const BACKUP_SALT: &[u8; 16] = b"fuzz backup salt";
const P_BACKUP: [&str; 3] = ["abcd2345", "efgh6789", "jkmn2345"];
const N_BACKUP: [&str; 3] = ["pqrs2345", "tuvw6789", "xyza2345"];
const CHALLENGE_P: [u8; 32] = [0x11; 32];
const CHALLENGE_N: [u8; 32] = [0x22; 32];
const CHALLENGE_EXPIRED: [u8; 32] = [0x33; 32];
const REFRESH_LIVE: [u8; 32] = [0x44; 32];
const REFRESH_ROTATED: [u8; 32] = [0x55; 32];
const REFRESH_EXPIRED: [u8; 32] = [0x66; 32];
const REFRESH_FAMILY: [u8; 16] = [0x77; 16];

// ---------------------------------------------------------------------------------------
// Reading the input

/// The fuzz input, read front to back; past the end every byte reads as 0.
pub struct Input<'a> {
    data: &'a [u8],
}

impl<'a> Input<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        Input { data }
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    pub fn u8(&mut self) -> u8 {
        match self.data.split_first() {
            Some((b, rest)) => {
                self.data = rest;
                *b
            }
            None => 0,
        }
    }

    fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.u8(), self.u8()])
    }

    /// A length-prefixed run of bytes: one length byte, or 255 and then two (LE).
    pub fn bytes(&mut self) -> &'a [u8] {
        let n = match self.u8() {
            255 => usize::from(self.u16()),
            n => usize::from(n),
        };
        let (head, rest) = self.data.split_at(n.min(self.data.len()));
        self.data = rest;
        head
    }

    /// [`Input::bytes`] as text (invalid UTF-8 replaced).
    pub fn string(&mut self) -> String {
        String::from_utf8_lossy(self.bytes()).into_owned()
    }
}

// ---------------------------------------------------------------------------------------
// The `request` target

/// The App, its database and the fixed accounts, built once.
pub struct Harness {
    pub app: App,
    pub db: std::sync::Arc<Db>,
    p_id: i64,
    n_id: i64,
    weak_hash: String,
    strong_hash: String,
    p_sealed: Vec<u8>,
    n_sealed: Vec<u8>,
    p_backup_hashes: Vec<[u8; 32]>,
    n_backup_hashes: Vec<[u8; 32]>,
    tokens: AuthTokens,
    /// When set, `run` counts its answers here by method, route and status (the replay
    /// test prints them; the fuzz targets leave it off).
    pub answers: Option<std::collections::BTreeMap<(String, u16), usize>>,
    _dir: tempfile::TempDir,
}

struct AuthTokens {
    p: String,
    n: String,
    expired: String,
    other_instance: String,
    no_account: String,
    wrong_issuer: String,
    alg_none: String,
}

/// What earlier answers of the same input handed out.
#[derive(Default)]
struct Learned {
    secret: Option<Vec<u8>>,
    mfa_token: Option<String>,
    refresh_token: Option<String>,
    access_token: Option<String>,
    backup_codes: Vec<String>,
}

/// One request, as built from the input, plus what the properties need to know.
pub struct Built {
    pub method: Method,
    pub path: String,
    pub headers: Vec<Header>,
    /// The bytes sent, framing (padding, chunked coding) included.
    pub body: String,
    /// The JSON text the framing carries.
    pub json: String,
    pub remote: SocketAddr,
    /// The Authorization header carries a token that is valid for an existing account.
    pub valid_auth: bool,
    /// The chunked coding is malformed (RFC 9112 §7.1): the layer must refuse it.
    pub bad_framing: bool,
}

impl Harness {
    /// Builds the App (as `mfad serve --login-rate 0` would) on a fresh temporary data
    /// directory and creates the two accounts. Takes about a second (PBKDF2).
    pub fn new() -> Harness {
        let dir = tempfile::Builder::new()
            .prefix("mfad-fuzz-")
            .tempdir()
            .expect("temp dir");
        let data = dir.path().join("data");
        let data = data.to_str().expect("utf-8 temp path").to_string();
        let config = mfad::config::Config::parse(
            &|_| None,
            ["--data-dir", &data, "--login-rate", "0"].map(Into::into),
        )
        .expect("config");
        let instance = mfad::open_instance(&config).expect("instance");
        let mut app = mfad::app(&config, instance).expect("app");
        let db = app.db.clone();
        // Logins for an unknown email check the password against this hash; with 600,000
        // iterations every such login costs ~0.2 s and the fuzzer crawls. Same code path,
        // one iteration.
        app.dummy_password_hash = crypto::hash_password("not a password", 1).expect("hash");
        let now = unix_now();
        let weak_hash = crypto::hash_password(P_PASSWORD, 1).expect("hash");
        let strong_hash =
            crypto::hash_password(P_PASSWORD, crypto::PASSWORD_ITERATIONS).expect("hash");
        let (p_id, n_id) = db
            .write(|c| {
                c.create_account(P_EMAIL, Some(&weak_hash), now)?;
                c.create_account(N_EMAIL, None, now)?;
                let id = |e: &str| {
                    c.account_by_email(e)
                        .map(|a| a.map(|a| a.id))
                        .map(Option::unwrap_or_default)
                };
                Ok((id(P_EMAIL)?, id(N_EMAIL)?))
            })
            .expect("accounts");
        let keys = &app.keys;
        let hashes = |codes: [&str; 3]| -> Vec<[u8; 32]> {
            codes
                .iter()
                .map(|c| keys.backup_code_hash(BACKUP_SALT, c))
                .collect()
        };
        let ten_years = 10 * 366 * 86_400;
        let own = &app.tokens;
        let login = Login {
            how: SignIn::Password,
            at: now,
        };
        let b64 = |v: Value| BASE64URL_NOPAD.encode(v.to_string().as_bytes());
        let tokens = AuthTokens {
            p: own
                .issue(p_id, Some(P_EMAIL), login, None, now, ten_years)
                .expect("jwt"),
            n: own
                .issue(n_id, Some(N_EMAIL), login, None, now, ten_years)
                .expect("jwt"),
            expired: own
                .issue(p_id, Some(P_EMAIL), login, None, now - 100_000, 3600)
                .expect("jwt"),
            other_instance: Tokens::new(
                &crypto::Keys::derive(&[9u8; 32]).expect("keys"),
                "mfad",
                None,
                None,
            )
            .expect("tokens")
            .issue(p_id, Some(P_EMAIL), login, None, now, ten_years)
            .expect("jwt"),
            no_account: own
                .issue(
                    1_000_000,
                    Some("ghost@example.com"),
                    login,
                    None,
                    now,
                    ten_years,
                )
                .expect("jwt"),
            wrong_issuer: Tokens::new(keys, "someone-else", None, None)
                .expect("tokens")
                .issue(p_id, Some(P_EMAIL), login, None, now, ten_years)
                .expect("jwt"),
            alg_none: format!(
                "{}.{}.",
                b64(json!({"alg": "none", "typ": "JWT"})),
                b64(json!({"sub": p_id.to_string(), "iss": "mfad", "exp": now + ten_years}))
            ),
        };
        Harness {
            p_sealed: keys.seal(P_SECRET, p_id).expect("seal"),
            n_sealed: keys.seal(N_SECRET, n_id).expect("seal"),
            p_backup_hashes: hashes(P_BACKUP),
            n_backup_hashes: hashes(N_BACKUP),
            app,
            db,
            p_id,
            n_id,
            weak_hash,
            strong_hash,
            tokens,
            answers: None,
            _dir: dir,
        }
    }

    /// Puts the accounts into the state that `scenario` names, forgetting everything that
    /// earlier inputs did.
    fn reset(&mut self, scenario: u8, now: i64) {
        let step = totp::step_at(now as u64) as i64;
        let (p, n) = (self.p_id, self.n_id);
        let hash = if scenario & 0x10 != 0 {
            &self.strong_hash
        } else {
            &self.weak_hash
        };
        let (p_sealed, n_sealed) = (&self.p_sealed, &self.n_sealed);
        let (p_hashes, n_hashes) = (&self.p_backup_hashes, &self.n_backup_hashes);
        let keys = &self.app.keys;
        self.db
            .write(|c| {
                c.clear_totp(p)?;
                c.clear_totp(n)?;
                c.purge_expired(i64::MAX)?;
                c.set_password(p, hash)?;
                // 0: no TOTP, 1: setup pending, 2: enabled, 3: enabled and locked.
                let enable = |id, sealed: &[u8], hashes: &[[u8; 32]]| {
                    c.set_pending_secret(id, sealed)?;
                    // The previous step counts as used: its code is a replay.
                    c.activate_secret(id, sealed, step - 1, BACKUP_SALT, now)?;
                    c.replace_backup_codes(id, BACKUP_SALT, hashes)
                };
                match scenario & 3 {
                    0 => {}
                    1 => {
                        c.set_pending_secret(p, p_sealed)?;
                    }
                    s => {
                        enable(p, p_sealed, p_hashes)?;
                        if s == 3 {
                            c.count_verify_failure(p, 1, now + 900)?;
                        }
                    }
                }
                match (scenario >> 2) & 3 {
                    0 => {}
                    1 => {
                        c.set_pending_secret(n, n_sealed)?;
                    }
                    2 => enable(n, n_sealed, n_hashes)?,
                    _ => enable(n, n_sealed, &[])?,
                }
                if scenario & 0x20 != 0 {
                    let h = keys.token_hash(&CHALLENGE_P);
                    c.insert_challenge(&h, p, now + 300, store::Purpose::Login)?;
                    if scenario & 0x80 != 0 {
                        for _ in 0..4 {
                            c.count_challenge_failure(&h)?;
                        }
                    }
                    c.insert_challenge(
                        &keys.token_hash(&CHALLENGE_N),
                        n,
                        now + 300,
                        store::Purpose::Login,
                    )?;
                    c.insert_challenge(
                        &keys.token_hash(&CHALLENGE_EXPIRED),
                        p,
                        now - 1,
                        store::Purpose::Login,
                    )?;
                }
                if scenario & 0x40 != 0 {
                    let f = &REFRESH_FAMILY;
                    let login = Login {
                        how: SignIn::PasswordTotp,
                        at: now - 60,
                    };
                    let live = keys.token_hash(&REFRESH_LIVE);
                    c.insert_refresh_token(&live, p, f, now + 3600, login, None)?;
                    let rotated = keys.token_hash(&REFRESH_ROTATED);
                    c.insert_refresh_token(&rotated, p, f, now + 3600, login, None)?;
                    c.rotate_refresh_token(&rotated)?;
                    c.insert_refresh_token(
                        &keys.token_hash(&REFRESH_EXPIRED),
                        p,
                        &[0x78; 16],
                        now - 1,
                        login,
                        None,
                    )?;
                }
                Ok(())
            })
            .expect("resetting the fuzz accounts");
    }

    /// Runs one input: resets the state, then sends each request through
    /// `mfad::http::dispatch` and checks the answer. The statuses, or the broken property.
    pub fn run(&mut self, data: &[u8]) -> Result<Vec<u16>, String> {
        let mut input = Input::new(data);
        let scenario = input.u8();
        self.reset(scenario, unix_now());
        let mut learned = Learned::default();
        let mut slow_budget = 1u32;
        let mut statuses = Vec::new();
        for i in 0..MAX_REQUESTS {
            if input.is_empty() {
                break;
            }
            let built = self.build(&mut input, &learned, scenario, &mut slow_budget);
            let shown = format!("request {i}: {} {:?}", built.method, built.path);
            let (status, body, refused) = self.send_framed(&built);
            if refused != built.bad_framing {
                return Err(format!(
                    "{shown}: a {} chunked body was {}",
                    if built.bad_framing {
                        "malformed"
                    } else {
                        "well-formed"
                    },
                    if refused { "refused" } else { "accepted" }
                ));
            }
            check_answer(&built, status, &body).map_err(|e| format!("{shown}: {e}"))?;
            if status == 200 {
                learn(&mut learned, &body);
            }
            if let Some(answers) = &mut self.answers {
                let path = clean_path(&built.path);
                let route = match PATHS.iter().any(|(p, _)| *p == path) {
                    true => format!("{} {path}", built.method),
                    false => "(other path)".to_string(),
                };
                *answers.entry((route, status)).or_default() += 1;
            }
            statuses.push(status);
        }
        Ok(statuses)
    }

    /// Sends one request through the socket-free path.
    pub fn send(&mut self, built: &Built) -> (u16, Value) {
        let (status, body, _) = self.send_framed(built);
        (status, body)
    }

    /// [`Harness::send`], and whether the layer refused the body's framing (then the
    /// answer is the layer's: 400, as a client on a socket gets it).
    pub fn send_framed(&mut self, built: &Built) -> (u16, Value, bool) {
        let mut rq = TestRequest::new()
            .with_method(built.method.clone())
            .with_path(&built.path)
            .with_remote_addr(built.remote);
        for h in &built.headers {
            rq = rq.with_header(h.clone());
        }
        let rq = rq.with_body(built.body.as_bytes());
        match rq.clone().build() {
            Ok(rq) => {
                let (status, body) = mfad::http::dispatch(&self.app, rq);
                (status, body, false)
            }
            // A body shorter than its Content-Length (a client that went away) is not a
            // framing error; it is sent as TestRequest sends it (an empty body).
            Err(e) if e != "malformed chunked body" => {
                let (status, body) = mfad::http::dispatch(&self.app, rq.into());
                (status, body, false)
            }
            Err(_) => (400, json!({"error": "Malformed request."}), true),
        }
    }

    fn build(
        &self,
        input: &mut Input<'_>,
        learned: &Learned,
        scenario: u8,
        slow_budget: &mut u32,
    ) -> Built {
        let method_sel = input.u8();
        let path_sel = input.u8();
        let auth_sel = input.u8();
        let transport = input.u8();
        let body_sel = input.u8();

        // Path.
        let (known_path, allowed) = PATHS[usize::from(path_sel) % PATHS.len()];
        let path = match path_sel {
            0..=215 => known_path.to_string(),
            216..=231 => format!("{known_path}?{}", input.string()),
            232..=243 => match path_sel % 4 {
                0 => format!("{known_path}/"),
                1 => known_path.to_ascii_uppercase(),
                2 => format!("/{known_path}"),
                _ => format!("{known_path}#{}", input.string()),
            },
            _ => input.string(),
        };
        // Method: mostly the one the path takes.
        let method = if method_sel < 192 {
            let m = if path_sel >= 244 && method_sel & 1 == 0 {
                "GET"
            } else if path_sel >= 244 {
                "POST"
            } else {
                allowed
            };
            m.parse().unwrap_or(Method::Get)
        } else {
            match (method_sel - 192) % 11 {
                0 => Method::Get,
                1 => Method::Post,
                2 => Method::Put,
                3 => Method::Delete,
                4 => Method::Head,
                5 => Method::Options,
                6 => Method::Patch,
                7 => Method::Trace,
                8 => Method::Connect,
                9 => "post".parse().unwrap_or(Method::Get),
                _ => input.string().parse().unwrap_or(Method::Get),
            }
        };

        let mut headers = Vec::new();
        let mut add = |name: &str, value: &str| {
            // Header values must be ASCII; a value that is not is simply not sent.
            if let Ok(h) = Header::from_bytes(name.as_bytes(), value.as_bytes()) {
                headers.push(h);
            }
        };

        // Authorization.
        let t = &self.tokens;
        let (auth, valid_auth) = match auth_sel % 16 {
            0 => (None, false),
            1..=3 => (Some(format!("Bearer {}", t.p)), true),
            4 | 5 => (Some(format!("Bearer {}", t.n)), true),
            6 => match &learned.access_token {
                Some(a) => (Some(format!("Bearer {a}")), true),
                None => (None, false),
            },
            7 => (Some(format!("Bearer {}", t.expired)), false),
            8 => (Some(format!("Bearer {}", t.other_instance)), false),
            9 => (Some(format!("Bearer {}", t.no_account)), false),
            10 => (Some(format!("Bearer {}", t.wrong_issuer)), false),
            11 => (Some(format!("Bearer {}", t.alg_none)), false),
            12 => {
                // One character of the signed part changed: the signature no longer fits.
                let mut chars: Vec<char> = t.p.chars().collect();
                let signed = t.p.rfind('.').unwrap_or(1).max(1);
                let at = usize::from(input.u8()) * 7 % signed;
                chars[at] = if chars[at] == 'A' { 'B' } else { 'A' };
                let token: String = chars.into_iter().collect();
                (Some(format!("Bearer {token}")), false)
            }
            13 => match input.u8() % 5 {
                0 => (Some(format!("bearer {}", t.p)), true),
                1 => (Some(format!("  BEARER   {}  ", t.p)), true),
                2 => (Some(format!("Bearer\t{}", t.p)), false),
                3 => (Some(format!("Basic {}", t.p)), false),
                _ => (Some(t.p.clone()), false),
            },
            14 => (Some(format!("Bearer {}", input.string())), false),
            _ => (Some(input.string()), false),
        };
        if let Some(a) = &auth {
            add("Authorization", a);
        }

        // Body.
        let is_login = method == Method::Post && clean_path(&path) == "/api/auth";
        let mut body = match body_sel % 8 {
            0..=2 => {
                let map = self.object(input, learned, scenario, is_login, slow_budget);
                Value::Object(map).to_string()
            }
            3 => input.string(),
            4 => String::new(),
            5 => " \r\n\t ".repeat(usize::from(input.u8() % 8)),
            6 => {
                let text =
                    Value::Object(self.object(input, learned, scenario, is_login, slow_budget))
                        .to_string();
                match input.u8() % 4 {
                    0 => {
                        let mut cut = usize::from(input.u8()).min(text.len());
                        while !text.is_char_boundary(cut) {
                            cut -= 1;
                        }
                        text[..cut].to_string()
                    }
                    1 => format!("{text}{}", input.string()),
                    2 => format!("[{text}]"),
                    _ => format!("{{\"code\":1,{}", text.trim_start_matches('{')),
                }
            }
            _ => {
                // Around the 16 KiB cap: object, then JSON whitespace up to the length.
                let text =
                    Value::Object(self.object(input, learned, scenario, is_login, slow_budget))
                        .to_string();
                let target = MAX_BODY - 4 + usize::from(input.u8() % 8);
                let pad = target.saturating_sub(text.len());
                format!("{text}{}", " ".repeat(pad))
            }
        };

        // Transport: Content-Length variants, chunked, Expect, Connection, an extra header.
        let chunked = transport & 0x08 != 0;
        let len = body.len().to_string();
        match transport & 7 {
            0 | 1 => {} // TestRequest adds the right one
            2 => add("Content-Length", &len),
            3 => add("Content-Length", &format!(" {len} ")),
            4 => add("Content-Length", &format!("+{len}")),
            5 => add(
                "Content-Length",
                if len.len() % 2 == 0 { "" } else { "abc" },
            ),
            6 => {
                add("Content-Length", &len);
                add("Content-Length", &len);
            }
            _ => add("Content-Length", "99999999999"),
        }
        if chunked {
            add("Transfer-Encoding", "chunked");
        }
        if transport & 0x10 != 0 {
            add("Expect", "100-continue");
        }
        if transport & 0x20 != 0 {
            add("Connection", "upgrade");
        }
        if transport & 0x80 != 0 {
            let (name, value) = (input.string(), input.string());
            // These four change how tiny_http reads the body (or make TestRequest fail to
            // build a request at all); the flags above cover them.
            let framing = [
                "Content-Length",
                "Transfer-Encoding",
                "Expect",
                "Connection",
            ];
            if !framing.iter().any(|f| f.eq_ignore_ascii_case(name.trim())) {
                add(&name, &value);
            }
        }
        // Framing, as tiny_http reads it: a Content-Length it can parse, in (0, 16 KiB],
        // makes it read that many bytes up front, and a body shorter than that is "the
        // client went away", which TestRequest turns into a panic. Pad with whitespace.
        let declared = headers
            .iter()
            .find(|h| h.field.equiv("Content-Length"))
            .and_then(|h| h.value.as_str().parse::<usize>().ok());
        // (`Connection: upgrade` no longer changes the framing.)
        if let (Some(n), false) = (declared, chunked) {
            if n > body.len() && n <= MAX_BODY {
                body.push_str(&" ".repeat(n - body.len()));
            }
        }
        let (framed, bad_framing) = if chunked {
            chunk(&body, input.u8())
        } else {
            (body.clone(), false)
        };
        let remote: SocketAddr = if transport & 0x40 != 0 {
            "[2001:db8::1]:40000"
                .parse()
                .unwrap_or(([127, 0, 0, 1], 1).into())
        } else {
            ([127, 0, 0, 1], 23456).into()
        };
        Built {
            method,
            path,
            headers,
            body: framed,
            json: body,
            remote,
            valid_auth,
            bad_framing,
        }
    }

    /// A JSON object of up to five fields, names and values from the input.
    fn object(
        &self,
        input: &mut Input<'_>,
        learned: &Learned,
        scenario: u8,
        is_login: bool,
        slow_budget: &mut u32,
    ) -> Map<String, Value> {
        let mut map = Map::new();
        for _ in 0..input.u8() % 6 {
            let key = match input.u8() % 10 {
                0 => "code".to_string(),
                1 => "password".to_string(),
                2 => "email".to_string(),
                3 => "mfaToken".to_string(),
                4 => "type".to_string(),
                5 => "refresh_token".to_string(),
                6 => "mfa_token".to_string(),
                7 => "Code".to_string(),
                8 => String::new(),
                _ => input.string(),
            };
            let value = self.value(input, learned);
            map.insert(key, value);
        }
        // A login with an email and a password costs a PBKDF2 of 600,000 iterations
        // (~0.2 s) when the password is right or the account's hash is the strong one:
        // one such login per input; later ones lose their password (and get a 400).
        if is_login {
            let email = map.get("email").and_then(Value::as_str);
            let password = map.get("password").and_then(Value::as_str);
            if let (Some(email), Some(password)) = (email, password) {
                let strong = scenario & 0x10 != 0 && store::normalize_email(email) == P_EMAIL;
                if strong || password == P_PASSWORD {
                    if *slow_budget == 0 {
                        map.remove("password");
                    } else {
                        *slow_budget -= 1;
                    }
                }
            }
        }
        map
    }

    /// A JSON value: plain, or one of the fixture's or the input's secrets.
    fn value(&self, input: &mut Input<'_>, learned: &Learned) -> Value {
        let now = unix_now() as u64;
        let code_at = |key: &[u8], offset: i64| {
            let step = totp::step_at(now).saturating_add_signed(offset);
            totp::code_for_step(key, step)
        };
        let s = |x: String| Value::String(x);
        match input.u8() % 26 {
            0 => s(input.string()),
            1 => Value::Null,
            2 => Value::Bool(input.u8() & 1 == 1),
            3 => match input.u8() % 4 {
                0 => json!(i64::from(input.u8() as i8)),
                1 => json!(u64::MAX),
                2 => json!(123456),
                _ => json!(-0.5),
            },
            4 => json!(1e300),
            5 => json!([input.string()]),
            6 => json!({ "code": input.string() }),
            7 => s(format_code(code_at(P_SECRET, 0), input.u8())),
            8 => s(format_code(code_at(N_SECRET, 0), input.u8())),
            9 => {
                let key = learned.secret.as_deref().unwrap_or(P_SECRET);
                s(format_code(code_at(key, 0), input.u8()))
            }
            10 => {
                let offset = i64::from(input.u8() % 5) - 2;
                s(format_code(code_at(P_SECRET, offset), 0))
            }
            11 => s(format_backup(
                P_BACKUP[usize::from(input.u8()) % 3],
                input.u8(),
            )),
            12 => s(format_backup(
                N_BACKUP[usize::from(input.u8()) % 3],
                input.u8(),
            )),
            13 => {
                let i = usize::from(input.u8());
                let code = learned
                    .backup_codes
                    .get(i % learned.backup_codes.len().max(1))
                    .map_or(P_BACKUP[0], String::as_str)
                    .replace('-', "");
                s(format_backup(&code, input.u8()))
            }
            14 => s(format_hex(&HEXLOWER.encode(&CHALLENGE_P), input.u8())),
            15 => {
                let c = if input.u8() & 1 == 0 {
                    CHALLENGE_N
                } else {
                    CHALLENGE_EXPIRED
                };
                s(HEXLOWER.encode(&c))
            }
            16 => {
                let t = learned
                    .mfa_token
                    .clone()
                    .unwrap_or_else(|| HEXLOWER.encode(&CHALLENGE_P));
                s(format_hex(&t, input.u8()))
            }
            17 => {
                let t = match input.u8() % 3 {
                    0 => REFRESH_LIVE,
                    1 => REFRESH_ROTATED,
                    _ => REFRESH_EXPIRED,
                };
                s(format_hex(&HEXLOWER.encode(&t), input.u8()))
            }
            18 => {
                let t = learned
                    .refresh_token
                    .clone()
                    .unwrap_or_else(|| HEXLOWER.encode(&REFRESH_LIVE));
                s(format_hex(&t, input.u8()))
            }
            19 => s(P_PASSWORD.to_string()),
            20 => match input.u8() % 3 {
                0 => s("wrong password".into()),
                1 => s(String::new()),
                _ => s("x".repeat(2000)),
            },
            21 => s(match input.u8() % 4 {
                0 => P_EMAIL.to_string(),
                1 => P_EMAIL.to_ascii_uppercase(),
                2 => format!("  {P_EMAIL}\t"),
                _ => "nobody@example.com".to_string(),
            }),
            22 => s(N_EMAIL.to_string()),
            23 => s(["totp", "backup", "TOTP", "sms"][usize::from(input.u8() % 4)].into()),
            24 => s(char::from(b'a' + input.u8() % 26)
                .to_string()
                .repeat(usize::from(input.u8()) * 64)),
            _ => s(["000000", "12345678", "0000-0000", "１２３４５６"]
                [usize::from(input.u8() % 4)]
            .into()),
        }
    }
}

impl Default for Harness {
    fn default() -> Self {
        Harness::new()
    }
}

/// A 6-digit code as a person might type it.
fn format_code(code: [u8; 6], style: u8) -> String {
    let plain: String = code.iter().map(|&b| char::from(b)).collect();
    match style % 6 {
        0 => plain,
        1 => format!("{} {}", &plain[..3], &plain[3..]),
        2 => format!(" {plain}\n"),
        3 => plain.chars().flat_map(|c| [c, '\t']).collect(),
        4 => plain
            .chars()
            .map(|c| char::from_u32(u32::from(c) - u32::from('0') + 0xFF10).unwrap_or(c))
            .collect(),
        _ => format!("{plain}0"),
    }
}

/// A backup code (8 letters, no dash) as a person might type it.
fn format_backup(code: &str, style: u8) -> String {
    let (a, b) = code.split_at(code.len().min(4));
    match style % 5 {
        0 => format!("{a}-{b}"),
        1 => format!("{a}-{b}").to_ascii_uppercase(),
        2 => code.to_string(),
        3 => format!(" {a} {b} "),
        _ => format!("{a}-{}", &b[..b.len().saturating_sub(1)]),
    }
}

/// A 64-hex-digit token, sometimes damaged.
fn format_hex(hex: &str, style: u8) -> String {
    match style % 5 {
        0 => hex.to_string(),
        1 => hex.to_ascii_uppercase(),
        2 => format!("  {hex}\n"),
        3 => hex[..hex.len().saturating_sub(1)].to_string(),
        _ => format!("0x{hex}"),
    }
}

/// `body` in chunked transfer coding, in chunks of about `size` bytes (cut at character
/// boundaries, so that the whole stays a `str`).
/// The chunked coding of `body` in chunks of `size`·16 bytes; a `size` of 0xF8 and up
/// picks one of eight codings the layer must refuse or accept (RFC 9112 §7.1): `(coded
/// text, malformed)`.
fn chunk(body: &str, size: u8) -> (String, bool) {
    if size >= 0xF8 {
        let n = body.len();
        let text = match size & 7 {
            0 => format!("zz\r\n{body}\r\n0\r\n\r\n"),
            1 => format!("-1\r\n{body}\r\n0\r\n\r\n"),
            2 => format!("\r\n{body}\r\n0\r\n\r\n"),
            3 => format!("1000000000000000000\r\n{body}\r\n0\r\n\r\n"),
            4 => format!("{:x}\r\n{body}  \r\n0\r\n\r\n", n.saturating_sub(1).max(1)),
            5 => format!("{n:x}\r\n{body}\r\n0\r\nno colon\r\n\r\n"),
            6 => format!("{n:x}\r\n{body}\r\n0\r\nX-Sum: abc\r\nX-B:  two words \r\n\r\n"),
            _ => format!("{n:x};ext=1\r\n{body}\r\n0\r\n\r\n"),
        };
        // The layer reads a chunked body up to one byte past 16 KiB and stops there: a
        // fault behind that point is never reached (the connection closes instead).
        let reached = |data: usize| data <= MAX_BODY + 1;
        let malformed = match size & 7 {
            0..=3 => true,
            4 => reached(n.saturating_sub(1).max(1)),
            // An empty body: the size line is the last chunk, the trailer section ends
            // at once, and what follows is not read.
            5 => n > 0 && reached(n),
            _ => false,
        };
        return (text, malformed);
    }
    let size = usize::from(size.max(1)) * 16;
    let mut out = String::with_capacity(body.len() + 64);
    let mut rest = body;
    while !rest.is_empty() {
        let mut cut = size.min(rest.len());
        while !rest.is_char_boundary(cut) {
            cut += 1;
        }
        let (head, tail) = rest.split_at(cut);
        out.push_str(&format!("{:x}\r\n{head}\r\n", head.len()));
        rest = tail;
    }
    out.push_str("0\r\n\r\n");
    (out, false)
}

/// The path as mfad routes it (`http::clean_path`, restated).
pub fn clean_path(url: &str) -> String {
    let path = url.split(['?', '#']).next().unwrap_or("");
    path.chars()
        .take(200)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

/// Remembers what a 200 answer handed out, for later requests of the same input.
fn learn(learned: &mut Learned, body: &Value) {
    let text = |k: &str| body.get(k).and_then(Value::as_str).map(str::to_string);
    if let Some(secret) = text("secret") {
        learned.secret = BASE32_NOPAD.decode(secret.as_bytes()).ok();
    }
    if let Some(t) = text("mfa_token") {
        learned.mfa_token = Some(t);
    }
    if let Some(t) = text("refresh_token") {
        learned.refresh_token = Some(t);
    }
    if let Some(t) = text("token") {
        learned.access_token = Some(t);
    }
    if let Some(codes) = body.get("backupCodes").and_then(Value::as_array) {
        learned.backup_codes = codes
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect();
    }
}

/// The properties of one answer.
pub fn check_answer(built: &Built, status: u16, body: &Value) -> Result<(), String> {
    if status == 500 {
        return Err(format!("500: a handler panicked or failed inside: {body}"));
    }
    if !ALLOWED_STATUSES.contains(&status) {
        return Err(format!("status {status} is not one API.md allows: {body}"));
    }
    // A request malformed as a message is refused on every path (issue #16), whatever
    // the path or method: two Authorization headers (the extra header the input chose may
    // be a second one), Transfer-Encoding beside a Content-Length, bad chunked framing.
    let count = |name: &'static str| built.headers.iter().filter(|h| h.field.equiv(name)).count();
    let malformed = count("Authorization") > 1
        || (count("Transfer-Encoding") > 0 && count("Content-Length") > 0)
        || built.bad_framing;
    if malformed && status == 400 {
        return Ok(());
    }
    let path = clean_path(&built.path);
    // `/api/v1/me/passkeys/{id}` is a route for any id; its 404 names a passkey, not a path.
    let one_passkey = path
        .strip_prefix("/api/v1/me/passkeys/")
        .is_some_and(|id| !id.is_empty() && !id.contains('/'));
    if matches!(path.as_str(), "/" | "/assets/app.css" | "/assets/app.js") {
        // The page's files: GET only, not JSON.
        return match (built.method == Method::Get, status) {
            (true, 200) if body.is_null() => Ok(()),
            (false, 405) | (_, 400 | 413) => Ok(()),
            _ => Err(format!(
                "{} {path} answered {status} with {body}",
                built.method
            )),
        };
    }
    if status == 204 {
        // Logout and a passkey's removal answer 204, with no body at all.
        return match (path.as_str(), body) {
            ("/api/auth/logout", Value::Null) => Ok(()),
            (_, Value::Null) if one_passkey && built.method == Method::Delete => Ok(()),
            _ => Err(format!("204 from {} with {body}", built.path)),
        };
    }
    if let (200, Value::Array(list)) = (status, body) {
        // The one list mfad answers: the account's passkeys.
        let shaped = |p: &Value| {
            ["id", "name", "createdAt", "lastUsedAt"]
                .iter()
                .all(|k| p.get(k).is_some())
        };
        return match path.as_str() {
            "/api/v1/me/passkeys" if list.iter().all(shaped) => Ok(()),
            _ => Err(format!("200 from {} with a list: {body}", built.path)),
        };
    }
    let Some(obj) = body.as_object() else {
        return Err(format!("{status}: the body is not a JSON object: {body}"));
    };
    if !matches!(status, 200 | 201) && !obj.get("error").is_some_and(Value::is_string) {
        return Err(format!("{status} without an \"error\" string: {body}"));
    }
    let known = PATHS
        .iter()
        .find(|(p, _)| *p == path)
        .or(one_passkey.then_some(&("/api/v1/me/passkeys/{id}", "DELETE")));
    let no_such_passkey = one_passkey && obj.get("error") == Some(&json!("Passkey not found."));
    match known {
        None if status != 404 => {
            return Err(format!("unknown path {path:?} answered {status}, not 404"))
        }
        Some(_) if status == 404 && !no_such_passkey => {
            return Err(format!("known path {path:?} answered 404"))
        }
        Some((_, m)) if (*m == built.method.as_str()) == (status == 405) => {
            return Err(format!("{} {path} answered {status}", built.method))
        }
        _ => {}
    }
    if path.starts_with("/api/v1/") && status == 200 && !built.valid_auth {
        return Err("a /api/v1/ endpoint answered 200 without a valid token".to_string());
    }
    if path == "/api/auth" && status == 200 {
        let sent: Value = serde_json::from_str(&built.json).unwrap_or_default();
        if sent.get("password").and_then(Value::as_str) != Some(P_PASSWORD) {
            return Err("login succeeded without the password".to_string());
        }
    }
    if path == "/healthz" && built.method == Method::Get && status != 200 {
        return Err(format!("GET /healthz answered {status}"));
    }
    if path == "/.well-known/jwks.json" && built.method == Method::Get {
        if status != 200 {
            return Err(format!("GET /.well-known/jwks.json answered {status}"));
        }
        let keys = body["keys"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default();
        if keys.len() != 1 || keys.iter().any(|k| k.get("d").is_some()) {
            return Err(format!("the JWKS is not one public key: {body}"));
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// The `otpauth` target

/// Characters `percent_encode` may leave as they are.
fn unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'@')
}

/// Decodes `%XX` (upper-case hex only) and checks nothing else is escaped or reserved.
fn percent_decode(s: &str) -> Result<Vec<u8>, String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = b
                .get(i + 1..i + 3)
                .ok_or(format!("truncated escape in {s:?}"))?;
            if !hex.iter().all(|h| matches!(h, b'0'..=b'9' | b'A'..=b'F')) {
                return Err(format!("bad escape in {s:?}"));
            }
            let v = HEXUPPER.decode(hex).map_err(|e| e.to_string())?;
            if unreserved(v[0]) {
                return Err(format!(
                    "unreserved byte {:?} was escaped",
                    char::from(v[0])
                ));
            }
            out.push(v[0]);
            i += 3;
        } else if unreserved(b[i]) {
            out.push(b[i]);
            i += 1;
        } else {
            return Err(format!("byte {:#04x} left unescaped in {s:?}", b[i]));
        }
    }
    Ok(out)
}

/// The longest text a version-40 QR code at error correction M holds in byte mode.
pub const QR_MAX_BYTES: usize = 2331;

/// Runs one `otpauth` input. `Err` names the broken property.
pub fn run_otpauth(data: &[u8]) -> Result<(), String> {
    let mut input = Input::new(data);
    let flags = input.u8();
    let issuer = input.string();
    let account = input.string();
    let secret = if flags & 1 == 0 {
        BASE32_NOPAD.encode(input.bytes())
    } else {
        input.string()
    };
    for s in [&issuer, &account] {
        let encoded = totp::percent_encode(s);
        let decoded = percent_decode(&encoded)?;
        if decoded != s.as_bytes() {
            return Err(format!("{encoded:?} decodes to {decoded:?}, not {s:?}"));
        }
    }
    let uri = totp::otpauth_uri(&issuer, &account, &secret);
    let rest = uri
        .strip_prefix("otpauth://totp/")
        .ok_or(format!("{uri:?} does not start with otpauth://totp/"))?;
    let (label, query) = rest.split_once('?').ok_or(format!("no query in {uri:?}"))?;
    let (i, a) = label
        .split_once(':')
        .ok_or(format!("no ':' in the label of {uri:?}"))?;
    if percent_decode(i)? != issuer.as_bytes() || percent_decode(a)? != account.as_bytes() {
        return Err(format!(
            "the label of {uri:?} does not decode to the inputs"
        ));
    }
    let expected = format!("secret={secret}&issuer={}", totp::percent_encode(&issuer));
    if query != expected {
        return Err(format!("query {query:?}, expected {expected:?}"));
    }
    check_png(&uri, flags & 0x80 != 0)
}

/// `qr::otpauth_png`: an error exactly when the text does not fit; otherwise a 300×300
/// 1-bit greyscale PNG with one square, centred symbol and a quiet zone of at least four
/// modules, whose modules are exactly those of qrcodegen's own encoding (mask included);
/// read back with rqrr (when `read_back`, for short ASCII texts), if rqrr can read it at
/// all, to the same text.
pub fn check_png(text: &str, read_back: bool) -> Result<(), String> {
    let png = match mfad::qr::otpauth_png(text) {
        Err(_) if text.len() > QR_MAX_BYTES => return Ok(()),
        Err(e) => return Err(format!("{} bytes fit a QR code, yet: {e}", text.len())),
        Ok(_) if text.len() > QR_MAX_BYTES => {
            return Err(format!("{} bytes cannot fit a QR code", text.len()))
        }
        Ok(png) => png,
    };
    if png.get(..8) != Some(b"\x89PNG\r\n\x1a\n") || png.get(12..16) != Some(b"IHDR") {
        return Err("not a PNG".to_string());
    }
    let be = |r: std::ops::Range<usize>| {
        png.get(r)
            .and_then(|b| b.try_into().ok())
            .map(u32::from_be_bytes)
    };
    if (be(16..20), be(20..24)) != (Some(300), Some(300)) {
        return Err(format!("IHDR says {:?}×{:?}", be(16..20), be(20..24)));
    }
    let decoder = png::Decoder::new(std::io::Cursor::new(&png));
    let mut reader = decoder.read_info().map_err(|e| format!("png: {e}"))?;
    let mut buf = vec![0; reader.output_buffer_size().ok_or("png: no buffer size")?];
    let info = reader
        .next_frame(&mut buf)
        .map_err(|e| format!("png: {e}"))?;
    if (info.width, info.height, info.color_type, info.bit_depth)
        != (300, 300, png::ColorType::Grayscale, png::BitDepth::One)
    {
        return Err(format!("png frame {info:?}"));
    }
    let dark = |x: usize, y: usize| buf[y * info.line_size + x / 8] & (0x80 >> (x % 8)) == 0;
    // The bounding box of the dark pixels.
    let (mut x0, mut y0, mut x1, mut y1) = (usize::MAX, usize::MAX, 0, 0);
    for y in 0..300 {
        for x in 0..300 {
            if dark(x, y) {
                (x0, y0, x1, y1) = (x0.min(x), y0.min(y), x1.max(x), y1.max(y));
            }
        }
    }
    if x0 == usize::MAX {
        return Err("blank image".to_string());
    }
    let (w, h) = (x1 - x0 + 1, y1 - y0 + 1);
    // Finder patterns sit in three corners, so the box is the whole symbol: N×N modules
    // (N = 17 + 4·version) of `scale` pixels each. The top row of the top-left finder
    // is a dark run of 7 modules.
    let run = (x0..=x1).take_while(|&x| dark(x, y0)).count();
    let scale = run / 7;
    let modules = w / scale.max(1);
    if run % 7 != 0
        || scale == 0
        || w != h
        || w % scale != 0
        || !(21..=177).contains(&modules)
        || modules % 4 != 1
    {
        return Err(format!(
            "the symbol is {w}×{h} px with a finder row of {run} px: not a whole QR code"
        ));
    }
    let quiet = 4 * scale;
    if x0 < quiet || y0 < quiet || 300 - 1 - x1 < quiet || 300 - 1 - y1 < quiet {
        return Err(format!(
            "quiet zone under 4 modules: symbol at ({x0},{y0})-({x1},{y1}), module {scale} px"
        ));
    }
    if x0.abs_diff(299 - x1) > 1 || y0.abs_diff(299 - y1) > 1 {
        return Err(format!("symbol not centred: ({x0},{y0})-({x1},{y1})"));
    }
    // Module by module, the image is what qrcodegen itself draws for this text (byte
    // mode, ECC M boosted, its own mask choice): qr/mask.rs promises the same mask and modules.
    let reference = qrcodegen::QrCode::encode_segments_advanced(
        &[qrcodegen::QrSegment::make_bytes(text.as_bytes())],
        qrcodegen::QrCodeEcc::Medium,
        qrcodegen::Version::MIN,
        qrcodegen::Version::MAX,
        None,
        true,
    )
    .map_err(|e| format!("qrcodegen refuses what mfad encoded: {e}"))?;
    let n = reference.size() as usize;
    if n * scale != w {
        return Err(format!("{modules} modules drawn, qrcodegen makes {n}"));
    }
    for my in 0..n {
        for mx in 0..n {
            let want = reference.get_module(mx as i32, my as i32);
            for py in y0 + my * scale..y0 + (my + 1) * scale {
                for px in x0 + mx * scale..x0 + (mx + 1) * scale {
                    if dark(px, py) != want {
                        return Err(format!(
                            "module ({mx},{my}) of {n} is {} in the image, {} in qrcodegen's \
                             symbol (mask {})",
                            if want { "light" } else { "dark" },
                            if want { "dark" } else { "light" },
                            reference.mask().value()
                        ));
                    }
                }
            }
        }
    }
    if read_back && text.len() <= 300 && text.is_ascii() {
        let mut img = rqrr::PreparedImage::prepare_from_bitmap(300, 300, dark);
        // rqrr 0.11 now and then fails on a flawless symbol, one that matched qrcodegen
        // module for module above: `DataEcc` on regressions/otpauth/rqrr-dataecc-v12-mask4
        // (which zbar reads fine), two grids found in one symbol on
        // regressions/otpauth/rqrr-two-grids. Failing to read is rqrr's; a wrong reading
        // would be ours.
        for grid in img.detect_grids() {
            if let Ok((_, content)) = grid.decode() {
                if content != text {
                    return Err(format!("QR reads {content:?}, not {text:?}"));
                }
            }
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// The `webauthn` target

/// Runs one `webauthn` input: its first byte picks the parser, the rest is what a browser
/// could send there. None may panic; what parses must be self-consistent; nothing made
/// without the authenticator's key may pass a ceremony. `Err` names the broken property.
pub fn run_webauthn(data: &[u8]) -> Result<(), String> {
    use mfad::webauthn::{self, auth_data, cose, Expected, Stored};
    let Some((&mode, rest)) = data.split_first() else {
        return Ok(());
    };
    let origins = vec!["http://localhost:8080".to_string()];
    let challenge = [0x11u8; 32];
    let expected = Expected {
        challenge: &challenge,
        origins: &origins,
        rp_id: "localhost",
    };
    let client_data = |ty: &str| {
        format!(
            r#"{{"type":"{ty}","challenge":"{}","origin":"http://localhost:8080"}}"#,
            BASE64URL_NOPAD.encode(&challenge)
        )
    };
    match mode % 4 {
        0 => {
            if let Ok(parsed) = auth_data::parse(rest) {
                if let Some(c) = &parsed.attested {
                    if c.id.is_empty() || c.id.len() > auth_data::MAX_CREDENTIAL_ID {
                        return Err(format!("a credential id of {} bytes", c.id.len()));
                    }
                    if cose::parse(&c.cose_key).as_ref() != Ok(&c.public_key) {
                        return Err("the stored COSE key does not read back as itself".into());
                    }
                }
            }
        }
        1 => {
            if let Ok(key) = cose::parse(rest) {
                // A key that parses checks signatures without panicking, and refuses an
                // empty one.
                if key.verifies(b"message", &[]) {
                    return Err(format!("{:?} accepted an empty signature", key.alg()));
                }
            }
        }
        2 => {
            let cdj = client_data("webauthn.create");
            let rng = mfad::crypto::generator();
            if let Ok(r) = webauthn::verify_registration(cdj.as_bytes(), rest, &expected, &rng) {
                if r.credential.id.is_empty() || r.format.len() > 32 {
                    return Err(format!("a registration passed with {r:?}"));
                }
            }
        }
        _ => {
            // The first bytes of `rest` are taken for a stored key, the others for the
            // authenticatorData; the signature is empty, so nothing may pass.
            let split = usize::from(rest.first().copied().unwrap_or(0)).min(rest.len());
            let (key, auth) = rest.split_at(split);
            let cdj = client_data("webauthn.get");
            let stored = Stored {
                cose_key: key,
                sign_count: 0,
            };
            if let Ok(a) =
                webauthn::verify_assertion(cdj.as_bytes(), auth, &[], &expected, stored, false)
            {
                return Err(format!("an assertion without a signature passed: {a:?}"));
            }
        }
    }
    Ok(())
}
