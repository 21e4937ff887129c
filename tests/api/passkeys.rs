//! Passkeys over HTTP, with a software authenticator written here: key pairs from ring,
//! authenticatorData, attestation objects and COSE keys encoded by hand (a small CBOR
//! writer of its own, nothing shared with mfad's minicbor reader), clientDataJSON as a
//! browser writes it. It registers, signs in without a password, answers MFA and step-up
//! challenges, and is refused for every reason API.md names.

use data_encoding::BASE64URL_NOPAD as B64;
use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, Ed25519KeyPair, KeyPair, RsaKeyPair};

use super::*;

pub(crate) const PUBLIC_URL: &str = "https://auth.example.test";
const ORIGIN: &str = PUBLIC_URL;
const RP_ID: &str = "auth.example.test";
const REGISTER_OPTIONS: &str = "/api/v1/passkey/register/options";
pub(crate) const REGISTER: &str = "/api/v1/passkey/register";
const PASSKEYS: &str = "/api/v1/me/passkeys";
const LOGIN_OPTIONS: &str = "/api/auth/passkey/login/options";
pub(crate) const PASSKEY_LOGIN: &str = "/api/auth/passkey/login";
const MFA_OPTIONS: &str = "/api/auth/mfa/passkey/options";
const STEPUP: &str = "/api/v1/mfa/challenge";
const STEPUP_OPTIONS: &str = "/api/v1/mfa/passkey/options";
const STEPUP_VERIFY: &str = "/api/v1/mfa/verify";
const REDEEM: &str = "/api/v1/mfa/verification/redeem";

/// The CBOR this authenticator writes (RFC 8949 §3): heads, integers, strings, maps.
mod cbor {
    pub fn head(out: &mut Vec<u8>, major: u8, n: u64) {
        let m = major << 5;
        match n {
            0..=23 => out.push(m | n as u8),
            24..=0xff => out.extend([m | 24, n as u8]),
            0x100..=0xffff => {
                out.push(m | 25);
                out.extend((n as u16).to_be_bytes());
            }
            _ => {
                out.push(m | 26);
                out.extend((n as u32).to_be_bytes());
            }
        }
    }

    pub fn int(out: &mut Vec<u8>, v: i64) {
        if v >= 0 {
            head(out, 0, v as u64)
        } else {
            head(out, 1, (-1 - v) as u64)
        }
    }

    pub fn bytes(out: &mut Vec<u8>, b: &[u8]) {
        head(out, 2, b.len() as u64);
        out.extend_from_slice(b);
    }

    pub fn text(out: &mut Vec<u8>, s: &str) {
        head(out, 3, s.len() as u64);
        out.extend_from_slice(s.as_bytes());
    }

    pub fn map(out: &mut Vec<u8>, len: u64) {
        head(out, 5, len)
    }

    pub enum Item<'a> {
        Int(i64),
        Bytes(&'a [u8]),
    }

    /// A map with integer keys, in the order given.
    pub fn int_map(pairs: &[(i64, Item<'_>)]) -> Vec<u8> {
        let mut out = Vec::new();
        map(&mut out, pairs.len() as u64);
        for (k, v) in pairs {
            int(&mut out, *k);
            match v {
                Item::Int(i) => int(&mut out, *i),
                Item::Bytes(b) => bytes(&mut out, b),
            }
        }
        out
    }
}

const UP: u8 = 0x01;
const UV: u8 = 0x04;
const AT: u8 = 0x40;

enum Key {
    Es256(EcdsaKeyPair),
    EdDsa(Ed25519KeyPair),
    Rs256(RsaKeyPair),
}

/// One credential of a software authenticator.
pub(crate) struct Authenticator {
    key: Key,
    credential_id: Vec<u8>,
    counter: u32,
    /// The user handle it was registered with (a discoverable credential keeps it).
    user_handle: Vec<u8>,
    rp_id: String,
    origin: String,
    /// What its clientDataJSON says of a frame around the page (#23: refused).
    cross_origin: bool,
    top_origin: Option<String>,
    /// A COSE key it registers in place of its own (#23: keys that can never verify).
    claimed_key: Option<Vec<u8>>,
}

fn sha256(b: &[u8]) -> Vec<u8> {
    ring::digest::digest(&ring::digest::SHA256, b)
        .as_ref()
        .to_vec()
}

/// The RSA test key of the token tests, as PKCS#8 DER.
fn rsa_key() -> RsaKeyPair {
    let pem = String::from_utf8(fixture("rs256-private.pem")).unwrap();
    let b64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let der = data_encoding::BASE64.decode(b64.as_bytes()).unwrap();
    RsaKeyPair::from_pkcs8(&der).unwrap()
}

impl Authenticator {
    pub(crate) fn new(alg: i64) -> Authenticator {
        let rng = SystemRandom::new();
        let key = match alg {
            -7 => {
                let a = &signature::ECDSA_P256_SHA256_ASN1_SIGNING;
                let pkcs8 = EcdsaKeyPair::generate_pkcs8(a, &rng).unwrap();
                Key::Es256(EcdsaKeyPair::from_pkcs8(a, pkcs8.as_ref(), &rng).unwrap())
            }
            -8 => {
                let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
                Key::EdDsa(Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap())
            }
            -257 => Key::Rs256(rsa_key()),
            _ => panic!("no such algorithm here"),
        };
        let id: [u8; 20] = mfad::crypto::random().unwrap();
        Authenticator {
            key,
            credential_id: id.to_vec(),
            counter: 0,
            user_handle: Vec::new(),
            rp_id: RP_ID.into(),
            origin: ORIGIN.into(),
            cross_origin: false,
            top_origin: None,
            claimed_key: None,
        }
    }

    /// The credential's public key as a COSE_Key (RFC 9053 §7.1, RFC 8230 §4).
    fn cose_key(&self) -> Vec<u8> {
        use cbor::Item::{Bytes, Int};
        if let Some(claimed) = &self.claimed_key {
            return claimed.clone();
        }
        let rsa;
        let pairs = match &self.key {
            Key::Es256(kp) => {
                let point = kp.public_key().as_ref();
                vec![
                    (1, Int(2)),
                    (3, Int(-7)),
                    (-1, Int(1)),
                    (-2, Bytes(&point[1..33])),
                    (-3, Bytes(&point[33..65])),
                ]
            }
            Key::EdDsa(kp) => vec![
                (1, Int(1)),
                (3, Int(-8)),
                (-1, Int(6)),
                (-2, Bytes(kp.public_key().as_ref())),
            ],
            Key::Rs256(kp) => {
                rsa = signature::RsaPublicKeyComponents::<Vec<u8>>::from(kp.public());
                vec![
                    (1, Int(3)),
                    (3, Int(-257)),
                    (-1, Bytes(&rsa.n)),
                    (-2, Bytes(&rsa.e)),
                ]
            }
        };
        cbor::int_map(&pairs)
    }

    fn client_data(&self, ty: &str, challenge: &str) -> Vec<u8> {
        let mut data = json!({
            "type": ty,
            "challenge": challenge,
            "origin": self.origin,
            "crossOrigin": self.cross_origin,
        });
        if let Some(top) = &self.top_origin {
            data["topOrigin"] = json!(top);
        }
        data.to_string().into_bytes()
    }

    /// A registration answering `options` (the creation options mfad sent), with the
    /// authenticatorData flags given.
    fn register_with(&mut self, options: &Value, flags: u8) -> Value {
        self.user_handle = B64
            .decode(options["user"]["id"].as_str().unwrap().as_bytes())
            .unwrap();
        let challenge = options["challenge"].as_str().unwrap();
        let cdj = self.client_data("webauthn.create", challenge);
        let mut auth = sha256(self.rp_id.as_bytes());
        auth.push(flags);
        auth.extend(self.counter.to_be_bytes());
        auth.extend([0u8; 16]);
        auth.extend((self.credential_id.len() as u16).to_be_bytes());
        auth.extend(&self.credential_id);
        auth.extend(self.cose_key());
        let mut att = Vec::new();
        cbor::map(&mut att, 3);
        cbor::text(&mut att, "fmt");
        cbor::text(&mut att, "none");
        cbor::text(&mut att, "attStmt");
        cbor::map(&mut att, 0);
        cbor::text(&mut att, "authData");
        cbor::bytes(&mut att, &auth);
        let id = B64.encode(&self.credential_id);
        json!({
            "id": id, "rawId": id, "type": "public-key",
            "authenticatorAttachment": "platform",
            "clientExtensionResults": {},
            "response": {
                "clientDataJSON": B64.encode(&cdj),
                "attestationObject": B64.encode(&att),
                "transports": ["internal"],
            },
        })
    }

    pub(crate) fn register(&mut self, options: &Value) -> Value {
        self.register_with(options, UP | UV | AT)
    }

    fn sign(&self, message: &[u8]) -> Vec<u8> {
        let rng = SystemRandom::new();
        match &self.key {
            Key::Es256(kp) => kp.sign(&rng, message).unwrap().as_ref().to_vec(),
            Key::EdDsa(kp) => kp.sign(message).as_ref().to_vec(),
            Key::Rs256(kp) => {
                let mut sig = vec![0; kp.public().modulus_len()];
                kp.sign(&signature::RSA_PKCS1_SHA256, &rng, message, &mut sig)
                    .unwrap();
                sig
            }
        }
    }

    /// An assertion over `challenge` with these flags; the counter moves by one.
    fn assert_with(&mut self, challenge: &str, flags: u8) -> Value {
        self.counter += 1;
        let cdj = self.client_data("webauthn.get", challenge);
        let mut auth = sha256(self.rp_id.as_bytes());
        auth.push(flags);
        auth.extend(self.counter.to_be_bytes());
        let mut message = auth.clone();
        message.extend(sha256(&cdj));
        let id = B64.encode(&self.credential_id);
        json!({
            "id": id, "rawId": id, "type": "public-key",
            "response": {
                "clientDataJSON": B64.encode(&cdj),
                "authenticatorData": B64.encode(&auth),
                "signature": B64.encode(&self.sign(&message)),
                "userHandle": B64.encode(&self.user_handle),
            },
        })
    }

    /// What a browser sends after the user unlocked the authenticator.
    pub(crate) fn assert(&mut self, options: &Value) -> Value {
        self.assert_with(options["challenge"].as_str().unwrap(), UP | UV)
    }
}

pub(crate) fn server() -> Server {
    Server::start(&["--public-url", PUBLIC_URL])
}

/// An account with a password and its password-only token.
pub(crate) fn account(s: &Server, email: &str) -> String {
    s.add_user(email, PASSWORD);
    let r = login(s, email, PASSWORD);
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()["token"].as_str().unwrap().to_string()
}

pub(crate) fn options(s: &Server, token: &str) -> Value {
    let r = s.post(REGISTER_OPTIONS, Some(token), &json!({}));
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()
}

/// Registers a new passkey of `alg` for the account of `token`.
fn enrol(s: &Server, token: &str, alg: i64, name: &str) -> (Authenticator, Value) {
    let mut a = Authenticator::new(alg);
    let made = enrol_key(s, token, &mut a, name);
    (a, made)
}

/// Registers `a`'s credential for the account of `token`: the `201`'s body.
fn enrol_key(s: &Server, token: &str, a: &mut Authenticator, name: &str) -> Value {
    let o = options(s, token);
    let r = s.post(
        REGISTER,
        Some(token),
        &json!({ "name": name, "credential": a.register(&o) }),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    r.json()
}

/// Passwordless login options. (10 a minute per address: a test that needs more must
/// use a second server.)
pub(crate) fn login_options(s: &Server) -> Value {
    let r = s.post(LOGIN_OPTIONS, None, &json!({}));
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()
}

fn passwordless(s: &Server, a: &mut Authenticator) -> Resp {
    let o = login_options(s);
    let credential = a.assert(&json!({ "challenge": o["challenge"] }));
    s.post(
        PASSKEY_LOGIN,
        None,
        &json!({ "sessionId": o["sessionId"], "credential": credential }),
    )
}

/// The claims of one of mfad's tokens (its signature is the token tests' business).
fn claims(token: &str) -> Value {
    let part = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&B64.decode(part.as_bytes()).unwrap()).unwrap()
}

/// `DELETE /api/v1/me/passkeys/{id}` as the account of `token`.
fn remove(s: &Server, token: &str, id: &str) -> Resp {
    let bearer = format!("Bearer {token}");
    s.request(
        "DELETE",
        &format!("{PASSKEYS}/{id}"),
        &[("Authorization", &bearer)],
        None,
    )
}

fn error(r: &Resp) -> String {
    r.json()["error"].as_str().unwrap_or_default().to_string()
}

fn events(s: &Server, email: &str) -> String {
    s.cli(&["user", "show", "--email", email], None).1
}

#[test]
fn register_list_sign_in_verify_step_up_and_delete() {
    let s = server();
    let token = account(&s, "alice@example.com");
    assert_eq!(status(&s, &token)["passkeysCount"], 0);

    let o = options(&s, &token);
    assert_eq!(o["rp"], json!({ "name": "Storno", "id": RP_ID }));
    let handle = B64
        .decode(o["user"]["id"].as_str().unwrap().as_bytes())
        .unwrap();
    assert_eq!(handle.len(), 16, "a random handle, not the email or the id");
    assert_eq!(o["user"]["name"], "alice@example.com");
    assert_eq!(
        o["pubKeyCredParams"],
        json!([
            { "type": "public-key", "alg": -7 },
            { "type": "public-key", "alg": -8 },
            { "type": "public-key", "alg": -257 },
        ])
    );
    assert_eq!(o["timeout"], 60000);
    assert_eq!(o["excludeCredentials"], json!([]));
    assert_eq!(
        o["authenticatorSelection"],
        json!({ "residentKey": "preferred", "userVerification": "preferred" })
    );
    assert_eq!(o["attestation"], "none");
    assert_eq!(
        B64.decode(o["challenge"].as_str().unwrap().as_bytes())
            .unwrap()
            .len(),
        32
    );

    let mut key = Authenticator::new(-7);
    let r = s.post(
        REGISTER,
        Some(&token),
        &json!({ "name": "Laptop", "credential": key.register(&o) }),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let made = r.json();
    assert_eq!(
        key_set(&made),
        key_set(&json!({"id": 0, "name": 0, "createdAt": 0}))
    );
    assert_eq!(made["name"], "Laptop");
    let id = made["id"].as_str().unwrap().to_string();
    assert_eq!(id.len(), 36, "a UUID: {id}");
    assert_eq!(status(&s, &token)["passkeysCount"], 1);
    assert_eq!(s.get("/api/v1/me", Some(&token)).json()["mfaEnabled"], true);
    let list = s.get(PASSKEYS, Some(&token)).json();
    assert_eq!(
        list,
        json!([{ "id": id, "name": "Laptop", "createdAt": made["createdAt"], "lastUsedAt": null }])
    );
    // The handle stays; the new options exclude the registered credential.
    let again = options(&s, &token);
    assert_eq!(again["user"]["id"], o["user"]["id"]);
    assert_eq!(
        again["excludeCredentials"],
        json!([{ "type": "public-key", "id": B64.encode(&key.credential_id) }])
    );

    // Passwordless: the passkey with user verification is both factors.
    let o = login_options(&s);
    assert_eq!(o["rpId"], RP_ID);
    assert_eq!(o["userVerification"], "required");
    assert_eq!(o["allowCredentials"], json!([]));
    assert_eq!(o["timeout"], 60000);
    assert_eq!(o["sessionId"].as_str().unwrap().len(), 32);
    let r = s.post(
        PASSKEY_LOGIN,
        None,
        &json!({ "sessionId": o["sessionId"], "credential": key.assert(&o) }),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let body = r.json();
    assert!(r
        .header("Set-Cookie")
        .unwrap()
        .starts_with("__refresh__token="));
    let c = claims(body["token"].as_str().unwrap());
    assert_eq!(c["amr"], json!(["hwk", "user"]));
    assert_eq!(c["mfa_method"], Value::Null);
    // A refresh keeps how the login was made.
    let r = s.post(
        REFRESH,
        None,
        &json!({ "refresh_token": body["refresh_token"] }),
    );
    assert_eq!(
        claims(r.json()["token"].as_str().unwrap())["amr"],
        json!(["hwk", "user"])
    );

    // With a passkey, a password login asks for a second factor, even without TOTP.
    let r = login(&s, "alice@example.com", PASSWORD).json();
    assert_eq!(r["mfa_required"], true);
    assert_eq!(r["mfa_methods"], json!(["passkey"]));
    let mfa_token = r["mfa_token"].as_str().unwrap();
    let o = s
        .post(MFA_OPTIONS, None, &json!({ "mfaToken": mfa_token }))
        .json();
    assert_eq!(o["rpId"], RP_ID);
    assert_eq!(
        o["allowCredentials"],
        json!([{ "type": "public-key", "id": B64.encode(&key.credential_id) }])
    );
    // A second factor does not need user verification: the password was the first.
    let credential = key.assert_with(o["challenge"].as_str().unwrap(), UP);
    let r = s.post(
        VERIFY,
        None,
        &json!({ "mfaToken": mfa_token, "type": "passkey", "credential": credential }),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let c = claims(r.json()["token"].as_str().unwrap());
    assert_eq!(c["amr"], json!(["pwd", "hwk"]));
    assert_eq!(c["mfa_method"], "passkey");
    let token = r.json()["token"].as_str().unwrap().to_string();

    // Step-up with the passkey; the relying service redeems it once.
    let r = s.post(STEPUP, Some(&token), &json!({})).json();
    assert_eq!(r["methods"], json!(["passkey"]));
    let challenge = r["challenge_token"].as_str().unwrap();
    let o = s.post(
        STEPUP_OPTIONS,
        Some(&token),
        &json!({ "challengeToken": challenge }),
    );
    assert_eq!(o.status, 200, "{}", o.text());
    let credential = key.assert(&o.json());
    let r = s.post(
        STEPUP_VERIFY,
        Some(&token),
        &json!({ "challengeToken": challenge, "type": "passkey", "credential": credential }),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json()["verification_token"].as_str().unwrap().to_string();
    let r = s
        .post(REDEEM, Some(&token), &json!({ "verificationToken": v }))
        .json();
    assert_eq!(
        (&r["verified"], &r["method"]),
        (&json!(true), &json!("passkey"))
    );

    let list = s.get(PASSKEYS, Some(&token)).json();
    assert!(list[0]["lastUsedAt"].is_string(), "{list}");
    let shown = events(&s, "alice@example.com");
    assert!(
        shown.contains("passkeys:     1") && shown.contains("Laptop  created "),
        "{shown}"
    );
    assert!(
        shown.contains("passkey_registered") && shown.contains("passkey_used"),
        "{shown}"
    );

    // Removed: gone from the list, refused at sign-in, and the password alone works again.
    let r = remove(&s, &token, &id);
    assert_eq!(r.status, 204, "{}", r.text());
    assert_eq!(s.get(PASSKEYS, Some(&token)).json(), json!([]));
    let r = remove(&s, &token, &id);
    assert_eq!((r.status, error(&r)), (404, "Passkey not found.".into()));
    let r = passwordless(&s, &mut key);
    assert_eq!(
        (r.status, error(&r)),
        (401, "Assertion verification failed.".into())
    );
    assert_eq!(status(&s, &token)["passkeysCount"], 0);
    assert!(login(&s, "alice@example.com", PASSWORD).json()["token"].is_string());
    let shown = events(&s, "alice@example.com");
    assert!(shown.contains("passkey_removed"), "{shown}");
    // An unknown credential names no account: the refusal is in the log alone.
    assert!(s.log_has("audit: passkey_refused account=- reason=unknown credential"));
}

#[test]
fn every_algorithm_registers_and_signs_in() {
    let s = server();
    let token = account(&s, "algs@example.com");
    for (alg, name) in [(-7, "ES256"), (-8, "EdDSA"), (-257, "RS256")] {
        let (mut a, made) = enrol(&s, &token, alg, name);
        assert_eq!(made["name"], name);
        let r = passwordless(&s, &mut a);
        assert_eq!(r.status, 200, "{name}: {}", r.text());
        let again = passwordless(&s, &mut a);
        assert_eq!(
            again.status,
            200,
            "{name}, the counter moved on: {}",
            again.text()
        );
    }
    assert_eq!(status(&s, &token)["passkeysCount"], 3);
}

/// What a test case does to the authenticator before it answers.
type Change = Box<dyn Fn(&mut Authenticator)>;

#[test]
fn registrations_are_refused_for_each_reason() {
    let s = server();
    let token = account(&s, "reg@example.com");
    let post = |body: &Value| s.post(REGISTER, Some(&token), body);

    let mut a = Authenticator::new(-7);
    let unasked =
        a.register(&json!({ "challenge": B64.encode(&[9u8; 32]), "user": { "id": "AA" } }));
    let r = post(&json!({ "credential": unasked }));
    assert_eq!(
        (r.status, error(&r)),
        (400, "Challenge expired or not found.".into())
    );
    assert_eq!(error(&post(&json!({ "name": "x" }))), "Missing credential.");

    let o = options(&s, &token);
    let mut credential = a.register(&o);
    credential["type"] = json!("password");
    let r = post(&json!({ "credential": credential }));
    assert_eq!(
        (r.status, error(&r)),
        (400, "Invalid response type.".into())
    );
    let mut assertion_instead = a.register(&o);
    assertion_instead["response"] = json!({ "clientDataJSON": "e30", "authenticatorData": "AA" });
    assert_eq!(
        error(&post(&json!({ "credential": assertion_instead }))),
        "Invalid response type."
    );

    // Each check of §7.1, each with its own sentence; each spends its challenge.
    let cases: [(&str, Change, u8, &str); 6] = [
        (
            "cross origin",
            Box::new(|a| a.cross_origin = true),
            UP | AT,
            "Attestation verification failed: cross-origin ceremony refused.",
        ),
        (
            "top origin",
            Box::new(|a| a.top_origin = Some("https://evil.example".into())),
            UP | AT,
            "Attestation verification failed: cross-origin ceremony refused.",
        ),
        (
            "origin",
            Box::new(|a| a.origin = "https://evil.example".into()),
            UP | AT,
            "Attestation verification failed: origin not allowed.",
        ),
        (
            "rp id",
            Box::new(|a| a.rp_id = "example.test".into()),
            UP | AT,
            "Attestation verification failed: RP ID hash mismatch.",
        ),
        (
            "user present",
            Box::new(|_| {}),
            AT,
            "Attestation verification failed: user presence flag not set.",
        ),
        (
            "no credential",
            Box::new(|_| {}),
            UP,
            "Attestation verification failed: authenticator data is not valid.",
        ),
    ];
    for (what, change, flags, sentence) in cases {
        let mut a = Authenticator::new(-8);
        change(&mut a);
        let o = options(&s, &token);
        let credential = a.register_with(&o, flags);
        let r = post(&json!({ "credential": credential }));
        assert_eq!((r.status, error(&r)), (400, sentence.into()), "{what}");
        let r = post(&json!({ "credential": credential }));
        assert_eq!(
            error(&r),
            "Challenge expired or not found.",
            "{what}: single use"
        );
    }
    // The wrong ceremony type.
    let o = options(&s, &token);
    let mut b = Authenticator::new(-7);
    let mut credential = b.register(&o);
    let cdj = b.client_data("webauthn.get", o["challenge"].as_str().unwrap());
    credential["response"]["clientDataJSON"] = json!(B64.encode(&cdj));
    let r = post(&json!({ "credential": credential }));
    assert_eq!(
        error(&r),
        "Attestation verification failed: wrong ceremony type."
    );

    // The credential alone as the body is fine too; the same credential twice is not,
    // for this account or another.
    let o = options(&s, &token);
    let first = a.register(&o);
    assert_eq!(post(&first).status, 201);
    assert_eq!(s.get(PASSKEYS, Some(&token)).json()[0]["name"], "Passkey");
    let o = options(&s, &token);
    let r = post(&json!({ "credential": a.register(&o) }));
    assert_eq!(
        (r.status, error(&r)),
        (
            400,
            "Attestation verification failed: this passkey is registered already.".into()
        )
    );
    let other = account(&s, "other@example.com");
    let o = options(&s, &other);
    let r = s.post(
        REGISTER,
        Some(&other),
        &json!({ "credential": a.register(&o) }),
    );
    assert_eq!(
        error(&r),
        "Attestation verification failed: this passkey is registered already."
    );
    // Another account's registration challenge is no challenge of mine.
    let theirs = options(&s, &other);
    let r = post(&json!({ "credential": Authenticator::new(-7).register(&theirs) }));
    assert_eq!(error(&r), "Challenge expired or not found.");
    let r = post(&json!({ "name": "\u{7}bell", "credential": first }));
    assert_eq!(r.status, 400);
    let shown = events(&s, "reg@example.com");
    assert!(
        shown.contains("passkey_refused (origin not allowed)"),
        "{shown}"
    );
    assert!(
        shown.contains("passkey_refused (credential already registered)"),
        "{shown}"
    );
}

/// Keys that can never verify a signature (#23 item 5) — a P-256 point off the curve,
/// an RSA modulus of 512 bits, an Ed25519 point of small order (the identity) — are
/// refused with their sentence and audited, on either engine; none is listed or counted,
/// so a password login still gets its tokens without asking for a passkey.
#[test]
fn keys_that_can_never_verify_are_refused() {
    use cbor::Item::{Bytes, Int};
    let s = server();
    let email = "unusable@example.com";
    let token = account(&s, email);
    let mut off_curve = match &Authenticator::new(-7).key {
        Key::Es256(kp) => kp.public_key().as_ref().to_vec(),
        _ => unreachable!(),
    };
    // A real key's x with y ± 1 (its low bit flipped): x's two points have y and p − y.
    off_curve[64] ^= 1;
    let mut identity = [0u8; 32];
    identity[0] = 1;
    let keys = [
        cbor::int_map(&[
            (1, Int(2)),
            (3, Int(-7)),
            (-1, Int(1)),
            (-2, Bytes(&off_curve[1..33])),
            (-3, Bytes(&off_curve[33..])),
        ]),
        cbor::int_map(&[
            (1, Int(3)),
            (3, Int(-257)),
            (-1, Bytes(&[0xd1; 64])),
            (-2, Bytes(&[1, 0, 1])),
        ]),
        cbor::int_map(&[
            (1, Int(1)),
            (3, Int(-8)),
            (-1, Int(6)),
            (-2, Bytes(&identity)),
        ]),
    ];
    for (key, what) in keys
        .into_iter()
        .zip(["P-256", "RSA-512", "Ed25519 identity"])
    {
        let mut a = Authenticator::new(-7);
        a.claimed_key = Some(key);
        let o = options(&s, &token);
        let r = s.post(
            REGISTER,
            Some(&token),
            &json!({ "name": what, "credential": a.register(&o) }),
        );
        assert_eq!(
            (r.status, r.json()),
            (
                400,
                json!({ "error": "Attestation verification failed: public key is not usable." })
            ),
            "{what}"
        );
    }
    assert_eq!(s.get(PASSKEYS, Some(&token)).json(), json!([]));
    assert_eq!(status(&s, &token)["passkeysCount"], 0);
    let shown = events(&s, email);
    assert_eq!(
        shown
            .matches("passkey_refused (public key is not usable)")
            .count(),
        3,
        "{shown}"
    );
    let r = login(&s, email, PASSWORD);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        key_set(&r.json()),
        key_set(&json!({ "token": 0, "refresh_token": 0 }))
    );
    // A real key after them registers as ever, and is then the login's second factor.
    enrol(&s, &token, -7, "Laptop");
    let r = login(&s, email, PASSWORD);
    assert_eq!(r.json()["mfa_methods"], json!(["passkey"]), "{}", r.text());
}

#[test]
fn twenty_passkeys_at_most() {
    let s = server();
    let token = account(&s, "many@example.com");
    for i in 0..20 {
        enrol(&s, &token, -8, &format!("key {i}"));
    }
    let r = s.post(REGISTER_OPTIONS, Some(&token), &json!({}));
    assert_eq!(
        (r.status, error(&r)),
        (
            400,
            "At most 20 passkeys can be registered per account.".into()
        )
    );
    assert_eq!(status(&s, &token)["passkeysCount"], 20);
}

/// A passwordless login whose clientDataJSON says it was made in a frame of another
/// origin (`crossOrigin: true`, or any `topOrigin`), signed so by the authenticator, is
/// refused and audited by its reason (#23); the same key then signs in. (Registration:
/// `registrations_are_refused_for_each_reason`; every ceremony goes through one check.)
#[test]
fn a_ceremony_made_in_a_frame_of_another_origin_is_refused() {
    let s = server();
    let token = account(&s, "alice@example.com");
    let (mut key, _) = enrol(&s, &token, -7, "Laptop");
    let failed = (401, "Assertion verification failed.".to_string());
    key.cross_origin = true;
    let r = passwordless(&s, &mut key);
    assert_eq!((r.status, error(&r)), failed, "crossOrigin");
    key.cross_origin = false;
    key.top_origin = Some("https://evil.example".into());
    let r = passwordless(&s, &mut key);
    assert_eq!((r.status, error(&r)), failed, "topOrigin");
    key.top_origin = None;
    assert!(events(&s, "alice@example.com").contains("cross-origin ceremony refused"));

    assert_eq!(passwordless(&s, &mut key).status, 200);
}

#[test]
fn assertions_are_refused_for_each_reason() {
    let s = server();
    let token = account(&s, "alice@example.com");
    let (mut key, _) = enrol(&s, &token, -7, "Laptop");
    let session = login_options;
    let finish = |o: &Value, credential: &Value| {
        s.post(
            PASSKEY_LOGIN,
            None,
            &json!({ "sessionId": o["sessionId"], "credential": credential }),
        )
    };
    let failed = (401, "Assertion verification failed.".to_string());

    let o = session(&s);
    let r = s.post(
        PASSKEY_LOGIN,
        None,
        &json!({ "credential": key.assert(&o) }),
    );
    assert_eq!((r.status, error(&r)), (400, "Missing session ID.".into()));
    let r = s.post(PASSKEY_LOGIN, None, &json!({ "sessionId": o["sessionId"] }));
    assert_eq!((r.status, error(&r)), (400, "Missing credential.".into()));
    // Another session's id: its ceremony is not this one.
    let other = session(&s);
    let r = s.post(
        PASSKEY_LOGIN,
        None,
        &json!({ "sessionId": other["sessionId"], "credential": key.assert(&o) }),
    );
    assert_eq!(
        (r.status, error(&r)),
        (400, "Challenge expired or not found.".into())
    );

    // Without user verification: no passwordless login.
    let o = session(&s);
    let r = finish(&o, &key.assert_with(o["challenge"].as_str().unwrap(), UP));
    assert_eq!((r.status, error(&r)), failed);
    // Used once already: the challenge is gone.
    let r = finish(&o, &key.assert(&o));
    assert_eq!(
        (r.status, error(&r)),
        (400, "Challenge expired or not found.".into())
    );

    let o = session(&s);
    let mut wrong_origin = key.assert(&o);
    let cdj = json!({"type": "webauthn.get", "challenge": o["challenge"], "origin": "https://evil.example"});
    wrong_origin["response"]["clientDataJSON"] = json!(B64.encode(cdj.to_string().as_bytes()));
    assert_eq!(finish(&o, &wrong_origin).status, 401);

    let o = session(&s);
    let mut bad_signature = key.assert(&o);
    bad_signature["response"]["signature"] = json!(B64.encode(&[0x30, 0x06, 2, 1, 1, 2, 1, 1]));
    assert_eq!(finish(&o, &bad_signature).status, 401);

    let o = session(&s);
    let mut foreign_handle = key.assert(&o);
    foreign_handle["response"]["userHandle"] = json!(B64.encode(&[7u8; 16]));
    assert_eq!(finish(&o, &foreign_handle).status, 401);

    // A cloned authenticator: the counter goes back.
    assert_eq!(passwordless(&s, &mut key).status, 200);
    key.counter -= 2;
    let r = passwordless(&s, &mut key);
    assert_eq!((r.status, error(&r)), failed);
    key.counter += 5;
    assert_eq!(
        passwordless(&s, &mut key).status,
        200,
        "a counter past the stored one is fine"
    );

    let mut stranger = Authenticator::new(-7);
    stranger.user_handle = vec![1; 16];
    let r = passwordless(&s, &mut stranger);
    assert_eq!((r.status, error(&r)), failed);

    // (More than `user show`'s last 20 events by now: the log has them all.)
    for reason in [
        "user verification required",
        "origin not allowed",
        "signature invalid",
        "user handle mismatch",
        "sign counter did not increase",
    ] {
        assert!(
            s.log_has(&format!("audit: passkey_refused account=1 reason={reason}")),
            "{reason}"
        );
    }
    assert!(s.log_has("audit: passkey_counter_regression account=1"));

    // The MFA answer: a credential is required, a wrong one counts as a wrong code.
    let mfa = login(&s, "alice@example.com", PASSWORD).json();
    let mfa_token = mfa["mfa_token"].as_str().unwrap();
    let r = s.post(
        VERIFY,
        None,
        &json!({ "mfaToken": mfa_token, "type": "passkey" }),
    );
    assert_eq!((r.status, error(&r)), (400, "Missing credential.".into()));
    let o = s
        .post(MFA_OPTIONS, None, &json!({ "mfaToken": mfa_token }))
        .json();
    let mut late = key.assert(&o);
    late["response"]["signature"] = json!("AAAA");
    let r = s.post(
        VERIFY,
        None,
        &json!({ "mfaToken": mfa_token, "type": "passkey", "credential": late }),
    );
    assert_eq!((r.status, error(&r)), (401, "Invalid code.".into()));
    // That spent the ceremony: the right signature over the same challenge is late.
    let r = s.post(
        VERIFY,
        None,
        &json!({ "mfaToken": mfa_token, "type": "passkey", "credential": key.assert(&o) }),
    );
    assert_eq!((r.status, error(&r)), (401, "Invalid code.".into()));
    // New options for the same challenge: fine.
    let o = s
        .post(MFA_OPTIONS, None, &json!({ "mfaToken": mfa_token }))
        .json();
    let r = s.post(
        VERIFY,
        None,
        &json!({ "mfaToken": mfa_token, "type": "passkey", "credential": key.assert(&o) }),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let r = s.post(MFA_OPTIONS, None, &json!({ "mfaToken": mfa_token }));
    assert_eq!(
        (r.status, error(&r)),
        (401, "Invalid or expired MFA challenge.".into())
    );
    let r = s.post(MFA_OPTIONS, None, &json!({}));
    assert_eq!((r.status, error(&r)), (400, "Missing mfaToken.".into()));
}

#[test]
fn an_account_cannot_use_another_accounts_passkey() {
    let s = server();
    let alice = account(&s, "alice@example.com");
    let bob = account(&s, "bob@example.com");
    let (mut alices, made) = enrol(&s, &alice, -7, "Alice's");
    let (_bobs, _) = enrol(&s, &bob, -8, "Bob's");

    // Bob's login challenge answered by Alice's authenticator, over Bob's ceremony.
    let mfa = login(&s, "bob@example.com", PASSWORD).json();
    let mfa_token = mfa["mfa_token"].as_str().unwrap();
    let o = s
        .post(MFA_OPTIONS, None, &json!({ "mfaToken": mfa_token }))
        .json();
    let r = s.post(
        VERIFY,
        None,
        &json!({ "mfaToken": mfa_token, "type": "passkey", "credential": alices.assert(&o) }),
    );
    assert_eq!((r.status, error(&r)), (401, "Invalid code.".into()));
    assert!(
        events(&s, "bob@example.com").contains("passkey_refused (credential of another account)")
    );

    // Nor list, delete or step up with what is not theirs.
    let alice_id = made["id"].as_str().unwrap();
    let r = remove(&s, &bob, alice_id);
    assert_eq!((r.status, error(&r)), (404, "Passkey not found.".into()));
    assert_eq!(
        s.get(PASSKEYS, Some(&bob)).json().as_array().unwrap().len(),
        1
    );
    let bob_token = bob;
    let alice_stepup = s.post(STEPUP, Some(&alice), &json!({})).json();
    let r = s.post(
        STEPUP_OPTIONS,
        Some(&bob_token),
        &json!({ "challengeToken": alice_stepup["challenge_token"] }),
    );
    assert_eq!(
        (r.status, error(&r)),
        (401, "Invalid or expired challenge.".into())
    );
    let r = s.post(STEPUP_OPTIONS, Some(&bob_token), &json!({}));
    assert_eq!(
        (r.status, error(&r)),
        (400, "Missing challengeToken.".into())
    );
    // Alice's passkey still signs Alice in.
    assert_eq!(passwordless(&s, &mut alices).status, 200);
}

#[test]
fn an_account_with_totp_only_has_no_passkey_options() {
    let s = server();
    let token = account(&s, "totp@example.com");
    enable(&s, &token);
    let mfa = login(&s, "totp@example.com", PASSWORD).json();
    assert_eq!(mfa["mfa_methods"], json!(["totp", "backup_code"]));
    let r = s.post(MFA_OPTIONS, None, &json!({ "mfaToken": mfa["mfa_token"] }));
    assert_eq!(
        (r.status, error(&r)),
        (400, "No passkeys available.".into())
    );
    // With a passkey too, the methods come in Storno's order.
    enrol(&s, &token, -7, "Phone");
    let mfa = login(&s, "totp@example.com", PASSWORD).json();
    assert_eq!(
        mfa["mfa_methods"],
        json!(["totp", "passkey", "backup_code"])
    );
}

/// One assertion sent many times at once: the ceremony is single use, so exactly one
/// sign-in (and, at MFA verify, exactly one token).
#[test]
fn one_assertion_sent_concurrently_succeeds_once() {
    let s = server();
    let token = account(&s, "race@example.com");
    let (mut key, _) = enrol(&s, &token, -8, "Laptop");
    for _ in 0..3 {
        let o = login_options(&s);
        let body = json!({ "sessionId": o["sessionId"], "credential": key.assert(&o) });
        let statuses: Vec<u16> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..8)
                .map(|_| scope.spawn(|| s.post(PASSKEY_LOGIN, None, &body).status))
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert_eq!(count(&statuses, 200), 1, "{statuses:?}");
        assert_eq!(
            count(&statuses, 400) + count(&statuses, 401),
            7,
            "{statuses:?}"
        );
    }
    let mfa = login(&s, "race@example.com", PASSWORD).json();
    let mfa_token = mfa["mfa_token"].as_str().unwrap();
    let o = s
        .post(MFA_OPTIONS, None, &json!({ "mfaToken": mfa_token }))
        .json();
    let body = json!({ "mfaToken": mfa_token, "type": "passkey", "credential": key.assert(&o) });
    let statuses: Vec<u16> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..8)
            .map(|_| scope.spawn(|| s.post(VERIFY, None, &body).status))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(count(&statuses, 200), 1, "{statuses:?}");
}

#[test]
fn passwordless_options_are_throttled_per_address() {
    let s = server();
    for i in 0..10 {
        let r = s.post(LOGIN_OPTIONS, None, &json!({}));
        assert_eq!(r.status, 200, "request {i}: {}", r.text());
    }
    let r = s.post(LOGIN_OPTIONS, None, &json!({}));
    assert_eq!((r.status, error(&r)), (429, "Too many requests.".into()));
    let wait: u64 = r.header("Retry-After").unwrap().parse().unwrap();
    assert!((1..=60).contains(&wait), "{wait}");
}

#[test]
fn reset_mfa_removes_passkeys_unless_asked_to_keep_them() {
    let s = server();
    let token = account(&s, "lost@example.com");
    let (mut key, _) = enrol(&s, &token, -7, "Phone");
    let (ok, out, err) = s.cli(
        &[
            "user",
            "reset-mfa",
            "--email",
            "lost@example.com",
            "--keep-passkeys",
        ],
        None,
    );
    assert!(ok, "{err}");
    assert!(out.contains("passkeys kept"), "{out}");
    assert_eq!(passwordless(&s, &mut key).status, 200);
    let (ok, out, err) = s.cli(&["user", "reset-mfa", "--email", "lost@example.com"], None);
    assert!(ok, "{err}");
    assert!(out.contains("1 passkeys removed"), "{out}");
    assert_eq!(passwordless(&s, &mut key).status, 401);
    assert!(login(&s, "lost@example.com", PASSWORD).json()["token"].is_string());
    assert!(events(&s, "lost@example.com")
        .contains("mfa_reset_by_admin (totp removed; 1 passkeys removed)"));
    let (ok, _, err) = s.cli(&["user", "list", "--keep-passkeys"], None);
    assert!(
        !ok && err.contains("--keep-passkeys belongs to mfad user reset-mfa"),
        "{err}"
    );
}

#[test]
fn the_relying_party_is_checked_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path().join("data"))
        .args([
            "--public-url",
            "https://auth.example.com",
            "--rp-id",
            "example.org",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(
            "--rp-id example.org is neither the host of --public-url https://auth.example.com"
        ),
        "{err}"
    );
    // A parent domain without --public-url: the origin would follow each request's
    // Host (#23), so mfad does not start.
    let mut child = std::process::Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path().join("data"))
        .args(["--rp-id", "example.com"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > std::time::Duration::from_secs(10) {
            child.kill().unwrap();
            panic!("mfad started with --rp-id example.com and no --public-url");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    assert!(!status.success());
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    assert!(
        err.contains("--rp-id example.com needs --public-url"),
        "{err}"
    );
    let out = std::process::Command::new(BIN)
        .args(["serve", "--rp-id", "https://example.com"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--rp-id"),
        "refused"
    );

    // A parent domain is fine, and named in every option; a page on the public URL
    // (and nothing else) may run the ceremonies.
    let s = Server::start(&[
        "--public-url",
        "https://auth.example.com",
        "--rp-id",
        "example.com",
        "--rp-name",
        "Example Inc.",
    ]);
    let token = account(&s, "rp@example.com");
    let o = options(&s, &token);
    assert_eq!(
        o["rp"],
        json!({ "name": "Example Inc.", "id": "example.com" })
    );
    let mut a = Authenticator::new(-7);
    a.rp_id = "example.com".into();
    a.origin = "https://auth.example.com".into();
    enrol_key(&s, &token, &mut a, "Laptop");
    assert_eq!(passwordless(&s, &mut a).status, 200);
}

/// Without `--public-url`, the page's origin is the one its `Host` names, and the RP ID
/// is `localhost`: what a developer's laptop needs.
#[test]
fn without_a_public_url_the_host_names_the_origin() {
    let s = Server::start(&[]);
    let token = account(&s, "dev@example.com");
    let host = format!("localhost:{}", s.addr.port());
    let bearer = format!("Bearer {token}");
    let post = |path: &str, auth: bool, body: &Value| {
        let mut headers = vec![
            ("Host", host.as_str()),
            ("Content-Type", "application/json"),
        ];
        if auth {
            headers.push(("Authorization", bearer.as_str()));
        }
        s.request("POST", path, &headers, Some(&body.to_string()))
    };
    let o = post(REGISTER_OPTIONS, true, &json!({})).json();
    assert_eq!(o["rp"]["id"], "localhost");
    let mut a = Authenticator::new(-8);
    a.rp_id = "localhost".into();
    a.origin = format!("http://{host}");
    let r = post(REGISTER, true, &json!({ "credential": a.register(&o) }));
    assert_eq!(r.status, 201, "{}", r.text());
    let o = post(LOGIN_OPTIONS, false, &json!({})).json();
    let r = post(
        PASSKEY_LOGIN,
        false,
        &json!({ "sessionId": o["sessionId"], "credential": a.assert(&o) }),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    // The same page under another name is another origin.
    let o = post(LOGIN_OPTIONS, false, &json!({})).json();
    a.origin = format!("http://127.0.0.1:{}", s.addr.port());
    let r = post(
        PASSKEY_LOGIN,
        false,
        &json!({ "sessionId": o["sessionId"], "credential": a.assert(&o) }),
    );
    assert_eq!(r.status, 401, "{}", r.text());
}
