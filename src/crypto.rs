//! Every call into `ring` lives here: the OS CSPRNG, key derivation from the instance
//! key, sealing TOTP secrets, keyed hashes for tokens and backup codes, password hashing
//! and constant-time comparison. Nothing in this file touches the database or HTTP.

use std::fmt;
use std::num::NonZeroU32;

use data_encoding::BASE64_NOPAD;
use ring::rand::{SecureRandom, SystemRandom};
use ring::signature::{Ed25519KeyPair, KeyPair};
use ring::{aead, hkdf, hmac, pbkdf2};

/// Length of `mfad.key` and of every derived key.
pub(crate) const KEY_LEN: usize = 32;

/// OWASP's 2023 figure for PBKDF2-HMAC-SHA256; stored with each hash so it can be raised.
pub const PASSWORD_ITERATIONS: u32 = 600_000;

/// Backup codes carry ~40 bits, so they are stretched; checking one costs one hash.
pub(crate) const BACKUP_CODE_ITERATIONS: u32 = 100_000;

const PASSWORD_SCHEME: &str = "pbkdf2-sha256";

/// Why a crypto operation failed. Deliberately says nothing more: a caller that needs to
/// tell the user anything says it in its own words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CryptoError {
    /// The OS random number generator failed (it practically never does).
    Random,
    /// A sealed value did not authenticate: wrong key, wrong account or tampered bytes.
    Unseal,
}

impl fmt::Display for CryptoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CryptoError::Random => f.write_str("the OS random number generator failed"),
            CryptoError::Unseal => f.write_str("a sealed secret did not authenticate"),
        }
    }
}

/// Bytes that must not show up in logs and should not outlive their use in memory.
pub struct SecretBytes(Vec<u8>);

impl SecretBytes {
    pub fn new(bytes: Vec<u8>) -> Self {
        SecretBytes(bytes)
    }

    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for SecretBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretBytes([redacted])")
    }
}

impl Drop for SecretBytes {
    fn drop(&mut self) {
        wipe(&mut self.0);
    }
}

/// Overwrites a buffer with zeros in a way the optimiser may not remove.
pub(crate) fn wipe(buf: &mut [u8]) {
    for b in buf.iter_mut() {
        // SAFETY: `b` is a valid, aligned, exclusive reference into `buf`.
        unsafe { std::ptr::write_volatile(b, 0) };
    }
    std::sync::atomic::compiler_fence(std::sync::atomic::Ordering::SeqCst);
}

/// Fills an array from the OS CSPRNG (getrandom on Linux).
pub fn random<const N: usize>() -> Result<[u8; N], CryptoError> {
    let mut out = [0u8; N];
    SystemRandom::new()
        .fill(&mut out)
        .map_err(|_| CryptoError::Random)?;
    Ok(out)
}

/// The OS CSPRNG as ring's own type, for the one ring call outside this file that needs
/// a generator passed in: the ECDH check of a new passkey's P-256 point
/// (`webauthn::cose`).
pub fn generator() -> SystemRandom {
    SystemRandom::new()
}

/// Compares two byte strings in time that depends only on their lengths.
pub(crate) fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

struct Len(usize);

impl hkdf::KeyType for Len {
    fn len(&self) -> usize {
        self.0
    }
}

/// HKDF `info` labels: one per purpose, so that no derived key can stand in for another.
const LABEL_JWT: &[u8] = b"mfad v1 jwt-hs256";
const LABEL_SECRET_AEAD: &[u8] = b"mfad v1 totp-secret-aead";
const LABEL_BACKUP_PEPPER: &[u8] = b"mfad v1 backup-code-pepper";
const LABEL_TOKEN_HASH: &[u8] = b"mfad v1 token-hash";
/// The seed of the Ed25519 key that signs mfad's own bearer tokens (RFC 8032 §5.1.5).
const LABEL_TOKEN_SIGNING: &[u8] = b"mfad v2 token-signing-ed25519";

fn derive(prk: &hkdf::Prk, label: &[u8]) -> [u8; KEY_LEN] {
    let mut out = [0u8; KEY_LEN];
    // `expand` and `fill` only fail for an output longer than 255 hash lengths.
    if let Ok(okm) = prk.expand(&[label], Len(KEY_LEN)) {
        let _ = okm.fill(&mut out);
    }
    out
}

/// An Ed25519 signing key (RFC 8032).
pub struct SigningKey(Ed25519KeyPair);

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SigningKey([redacted])")
    }
}

impl SigningKey {
    /// The key of a 32-byte seed (RFC 8032 §5.1.5: any 32 bytes are a seed; the error
    /// arm is for form's sake).
    pub(crate) fn from_seed(seed: &[u8; KEY_LEN]) -> Result<SigningKey, CryptoError> {
        Ed25519KeyPair::from_seed_unchecked(seed)
            .map(SigningKey)
            .map_err(|_| CryptoError::Unseal)
    }

    /// The signature of `message` (deterministic: the same message, the same bytes).
    pub fn sign(&self, message: &[u8]) -> [u8; 64] {
        let mut out = [0u8; 64];
        out.copy_from_slice(self.0.sign(message).as_ref());
        out
    }

    /// The public half, in RFC 8032's 32-byte encoding.
    pub fn public_key(&self) -> [u8; 32] {
        let mut out = [0u8; 32];
        out.copy_from_slice(self.0.public_key().as_ref());
        out
    }
}

/// SHA-256 of `bytes`.
pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(ring::digest::digest(&ring::digest::SHA256, bytes).as_ref());
    out
}

/// The keys derived from `mfad.key`.
pub struct Keys {
    /// HS256, for the tokens of mfad before its EdDSA ones: verified, never signed.
    jwt: [u8; KEY_LEN],
    /// The seed of the Ed25519 key that signs mfad's tokens.
    signing_seed: [u8; KEY_LEN],
    aead: aead::LessSafeKey,
    pepper: hmac::Key,
    token: hmac::Key,
}

impl fmt::Debug for Keys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Keys([redacted])")
    }
}

impl Drop for Keys {
    fn drop(&mut self) {
        wipe(&mut self.jwt);
        wipe(&mut self.signing_seed);
    }
}

impl Keys {
    /// Derives every key from the instance key with HKDF-SHA256 and distinct labels.
    pub fn derive(master: &[u8; KEY_LEN]) -> Result<Keys, CryptoError> {
        let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, b"mfad instance key").extract(master);
        let mut aead_key = derive(&prk, LABEL_SECRET_AEAD);
        let mut pepper = derive(&prk, LABEL_BACKUP_PEPPER);
        let mut token = derive(&prk, LABEL_TOKEN_HASH);
        // AES-256-GCM takes any 32-byte key; the error arm is for form's sake.
        let unbound =
            aead::UnboundKey::new(&aead::AES_256_GCM, &aead_key).map_err(|_| CryptoError::Unseal);
        wipe(&mut aead_key);
        let keys = Keys {
            jwt: derive(&prk, LABEL_JWT),
            signing_seed: derive(&prk, LABEL_TOKEN_SIGNING),
            aead: aead::LessSafeKey::new(unbound?),
            pepper: hmac::Key::new(hmac::HMAC_SHA256, &pepper),
            token: hmac::Key::new(hmac::HMAC_SHA256, &token),
        };
        wipe(&mut pepper);
        wipe(&mut token);
        Ok(keys)
    }

    /// The HS256 key of the tokens mfad issued before it signed with Ed25519.
    pub fn jwt_secret(&self) -> &[u8] {
        &self.jwt
    }

    /// The Ed25519 key that signs mfad's own bearer tokens.
    pub fn token_signing_key(&self) -> Result<SigningKey, CryptoError> {
        SigningKey::from_seed(&self.signing_seed)
    }

    /// Seals a TOTP secret with AES-256-GCM. The account id is associated data, so a
    /// sealed secret copied onto another account's row does not open there.
    /// Layout: 12-byte random nonce, ciphertext, 16-byte tag.
    pub fn seal(&self, plaintext: &[u8], account_id: i64) -> Result<Vec<u8>, CryptoError> {
        self.seal_with_nonce(plaintext, &secret_aad(account_id), random()?)
    }

    /// Seals the OpenID provider's RSA key (PKCS#8) for the database, as [`Keys::seal`]
    /// seals a TOTP secret but under associated data of its own: a sealed TOTP secret
    /// does not open as the key, nor the key as a secret.
    pub fn seal_provider_key(&self, pkcs8: &[u8]) -> Result<Vec<u8>, CryptoError> {
        self.seal_with_nonce(pkcs8, PROVIDER_KEY_AAD, random()?)
    }

    /// Opens what [`Keys::seal_provider_key`] sealed.
    pub fn open_provider_key(&self, sealed: &[u8]) -> Result<SecretBytes, CryptoError> {
        self.open_with(sealed, PROVIDER_KEY_AAD)
    }

    /// [`Keys::seal`] with the nonce given, so that a test can pin the stored layout.
    /// Never call it with a nonce that is not fresh: GCM loses everything on a reuse.
    fn seal_with_nonce(
        &self,
        plaintext: &[u8],
        aad: &[u8],
        nonce_bytes: [u8; aead::NONCE_LEN],
    ) -> Result<Vec<u8>, CryptoError> {
        let mut out = Vec::with_capacity(aead::NONCE_LEN + plaintext.len() + 16);
        out.extend_from_slice(&nonce_bytes);
        let mut body = plaintext.to_vec();
        self.aead
            .seal_in_place_append_tag(
                aead::Nonce::assume_unique_for_key(nonce_bytes),
                aead::Aad::from(aad),
                &mut body,
            )
            .map_err(|_| CryptoError::Unseal)?;
        out.extend_from_slice(&body);
        wipe(&mut body);
        Ok(out)
    }

    /// Opens what [`Keys::seal`] produced for the same account.
    pub fn open(&self, sealed: &[u8], account_id: i64) -> Result<SecretBytes, CryptoError> {
        self.open_with(sealed, &secret_aad(account_id))
    }

    fn open_with(&self, sealed: &[u8], aad: &[u8]) -> Result<SecretBytes, CryptoError> {
        if sealed.len() < aead::NONCE_LEN + aead::AES_256_GCM.tag_len() {
            return Err(CryptoError::Unseal);
        }
        let (nonce, body) = sealed.split_at(aead::NONCE_LEN);
        let nonce =
            aead::Nonce::try_assume_unique_for_key(nonce).map_err(|_| CryptoError::Unseal)?;
        let mut buf = body.to_vec();
        let len = self
            .aead
            .open_in_place(nonce, aead::Aad::from(aad), &mut buf)
            .map_err(|_| CryptoError::Unseal)?
            .len();
        buf.truncate(len);
        Ok(SecretBytes::new(buf))
    }

    /// Keyed hash of a bearer secret (refresh token, MFA challenge): the database holds
    /// only this, and without `mfad.key` it cannot even be checked offline.
    pub fn token_hash(&self, token: &[u8]) -> [u8; 32] {
        let tag = hmac::sign(&self.token, token);
        let mut out = [0u8; 32];
        out.copy_from_slice(tag.as_ref());
        out
    }

    /// A value that identifies the instance key without revealing it; stored in the
    /// database so that a start with the wrong key file is caught.
    pub(crate) fn key_check(&self) -> [u8; 32] {
        self.token_hash(b"mfad key check v1")
    }

    /// Salted, peppered, slow hash of a normalised backup code.
    pub fn backup_code_hash(&self, salt: &[u8], code: &str) -> [u8; 32] {
        let peppered = hmac::sign(&self.pepper, code.as_bytes());
        let mut out = [0u8; 32];
        pbkdf2::derive(
            pbkdf2::PBKDF2_HMAC_SHA256,
            iterations(BACKUP_CODE_ITERATIONS),
            salt,
            peppered.as_ref(),
            &mut out,
        );
        out
    }
}

/// The associated data of the sealed OpenID provider key.
const PROVIDER_KEY_AAD: &[u8] = b"mfad oidc rsa key v1\0";

fn secret_aad(account_id: i64) -> [u8; 21] {
    let mut aad = [0u8; 21];
    aad[..13].copy_from_slice(b"mfad totp v1\0");
    aad[13..].copy_from_slice(&account_id.to_be_bytes());
    aad
}

fn iterations(n: u32) -> NonZeroU32 {
    NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN)
}

/// Hashes a password into a self-describing string:
/// `pbkdf2-sha256$<iterations>$<salt, base64>$<hash, base64>`.
pub fn hash_password(password: &str, iterations_count: u32) -> Result<String, CryptoError> {
    Ok(hash_password_with_salt(
        password,
        iterations_count,
        &random::<16>()?,
    ))
}

/// [`hash_password`] with the salt given, so that a test can pin the stored format.
pub(crate) fn hash_password_with_salt(
    password: &str,
    iterations_count: u32,
    salt: &[u8; 16],
) -> String {
    let mut hash = [0u8; 32];
    pbkdf2::derive(
        pbkdf2::PBKDF2_HMAC_SHA256,
        iterations(iterations_count),
        salt,
        password.as_bytes(),
        &mut hash,
    );
    format!(
        "{PASSWORD_SCHEME}${iterations_count}${}${}",
        BASE64_NOPAD.encode(salt),
        BASE64_NOPAD.encode(&hash)
    )
}

/// A well-formed hash string at today's cost whose hash part is random: checking any
/// password against it costs one full PBKDF2 and always fails. Made without running
/// PBKDF2, so it costs nothing at start.
pub(crate) fn unmatchable_password_hash() -> Result<String, CryptoError> {
    let salt: [u8; 16] = random()?;
    let hash: [u8; 32] = random()?;
    Ok(format!(
        "{PASSWORD_SCHEME}${PASSWORD_ITERATIONS}${}${}",
        BASE64_NOPAD.encode(&salt),
        BASE64_NOPAD.encode(&hash)
    ))
}

/// The outcome of checking a password against a stored hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PasswordCheck {
    Wrong,
    Right,
    /// Right, but hashed with fewer iterations than today's setting: rehash it now.
    RightButWeak,
}

/// Checks a password against a string from [`hash_password`]. A malformed stored string
/// is simply wrong; ring compares the hashes in constant time.
pub(crate) fn verify_password(stored: &str, password: &str) -> PasswordCheck {
    let mut parts = stored.split('$');
    let (Some(scheme), Some(iter), Some(salt), Some(hash), None) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return PasswordCheck::Wrong;
    };
    let (Ok(iter), Ok(salt), Ok(hash)) = (
        iter.parse::<u32>(),
        BASE64_NOPAD.decode(salt.as_bytes()),
        BASE64_NOPAD.decode(hash.as_bytes()),
    ) else {
        return PasswordCheck::Wrong;
    };
    if scheme != PASSWORD_SCHEME || iter == 0 {
        return PasswordCheck::Wrong;
    }
    let ok = pbkdf2::verify(
        pbkdf2::PBKDF2_HMAC_SHA256,
        iterations(iter),
        &salt,
        password.as_bytes(),
        &hash,
    )
    .is_ok();
    match (ok, iter < PASSWORD_ITERATIONS) {
        (false, _) => PasswordCheck::Wrong,
        (true, false) => PasswordCheck::Right,
        (true, true) => PasswordCheck::RightButWeak,
    }
}

/// The OpenID provider's RSA key, for RS256 ID tokens (what every client library
/// checks). Made once with the `rsa` crate (ring signs with RSA but cannot make a key);
/// every signature is ring's.
pub struct RsaKey {
    pair: ring::signature::RsaKeyPair,
    /// The public key's JWK members `n` and `e`, base64url.
    n: String,
    e: String,
}

impl fmt::Debug for RsaKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RsaKey({})", self.kid())
    }
}

/// The RSA key's size: 2048 bits (NIST SP 800-57's floor until 2030).
pub const RSA_BITS: usize = 2048;

impl RsaKey {
    /// A new key, from the OS CSPRNG, as PKCS#8 DER.
    pub fn generate() -> Result<SecretBytes, CryptoError> {
        use rsa::pkcs8::EncodePrivateKey;
        let key = rsa::RsaPrivateKey::new(&mut rand_core::OsRng, RSA_BITS)
            .map_err(|_| CryptoError::Random)?;
        let der = key.to_pkcs8_der().map_err(|_| CryptoError::Random)?;
        Ok(SecretBytes::new(der.as_bytes().to_vec()))
    }

    /// The key of PKCS#8 DER that [`RsaKey::generate`] made.
    pub fn from_pkcs8(der: &[u8]) -> Result<RsaKey, CryptoError> {
        let pair = ring::signature::RsaKeyPair::from_pkcs8(der).map_err(|_| CryptoError::Unseal)?;
        let public = ring::rsa::PublicKeyComponents::<Vec<u8>>::from(pair.public());
        let b64 = |b: &[u8]| data_encoding::BASE64URL_NOPAD.encode(b);
        let (n, e) = (b64(&public.n), b64(&public.e));
        Ok(RsaKey { pair, n, e })
    }

    /// The RS256 (RSASSA-PKCS1-v1_5 with SHA-256) signature of `message`.
    pub fn sign_rs256(&self, message: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let mut out = vec![0u8; self.pair.public().modulus_len()];
        self.pair
            .sign(
                &ring::signature::RSA_PKCS1_SHA256,
                &SystemRandom::new(),
                message,
                &mut out,
            )
            .map_err(|_| CryptoError::Random)?;
        Ok(out)
    }

    /// Whether `signature` is this key's RS256 signature of `message`.
    pub fn verify_rs256(&self, message: &[u8], signature: &[u8]) -> bool {
        let public = ring::rsa::PublicKeyComponents::<Vec<u8>>::from(self.pair.public());
        let public = ring::signature::RsaPublicKeyComponents {
            n: public.n,
            e: public.e,
        };
        public
            .verify(
                &ring::signature::RSA_PKCS1_2048_8192_SHA256,
                message,
                signature,
            )
            .is_ok()
    }

    /// The JWK members `n` and `e` of the public key.
    pub fn public_members(&self) -> (&str, &str) {
        (&self.n, &self.e)
    }

    /// Its `kid`: the RFC 7638 thumbprint of the public JWK.
    pub fn kid(&self) -> String {
        let canonical = format!(r#"{{"e":"{}","kty":"RSA","n":"{}"}}"#, self.e, self.n);
        let digest = ring::digest::digest(&ring::digest::SHA256, canonical.as_bytes());
        data_encoding::BASE64URL_NOPAD.encode(digest.as_ref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> Keys {
        Keys::derive(&[7u8; KEY_LEN]).unwrap()
    }

    #[test]
    fn seal_then_open_round_trips() {
        let k = keys();
        let sealed = k.seal(b"twenty bytes secret!", 42).unwrap();
        assert_eq!(sealed.len(), 12 + 20 + 16);
        assert_eq!(
            k.open(&sealed, 42).unwrap().expose(),
            b"twenty bytes secret!"
        );
    }

    #[test]
    fn sealing_twice_gives_different_ciphertexts() {
        let k = keys();
        assert_ne!(k.seal(b"abc", 1).unwrap(), k.seal(b"abc", 1).unwrap());
    }

    #[test]
    fn tampered_ciphertext_is_refused() {
        let k = keys();
        let sealed = k.seal(b"twenty bytes secret!", 42).unwrap();
        for i in 0..sealed.len() {
            let mut bad = sealed.clone();
            bad[i] ^= 0x01;
            assert_eq!(
                k.open(&bad, 42).unwrap_err(),
                CryptoError::Unseal,
                "byte {i}"
            );
        }
        assert_eq!(k.open(&sealed[..20], 42).unwrap_err(), CryptoError::Unseal);
    }

    #[test]
    fn wrong_account_id_is_refused() {
        let k = keys();
        let sealed = k.seal(b"twenty bytes secret!", 42).unwrap();
        assert_eq!(k.open(&sealed, 43).unwrap_err(), CryptoError::Unseal);
    }

    #[test]
    fn another_instance_key_cannot_open() {
        let sealed = keys().seal(b"secret", 1).unwrap();
        let other = Keys::derive(&[8u8; KEY_LEN]).unwrap();
        assert!(other.open(&sealed, 1).is_err());
    }

    #[test]
    fn hkdf_labels_give_distinct_keys() {
        let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, b"mfad instance key").extract(&[7u8; 32]);
        let labels = [
            LABEL_JWT,
            LABEL_SECRET_AEAD,
            LABEL_BACKUP_PEPPER,
            LABEL_TOKEN_HASH,
            LABEL_TOKEN_SIGNING,
        ];
        let derived: Vec<[u8; 32]> = labels.iter().map(|l| derive(&prk, l)).collect();
        for i in 0..derived.len() {
            assert_ne!(derived[i], [0u8; 32]);
            assert_ne!(&derived[i][..], &[7u8; 32][..]);
            for j in 0..i {
                assert_ne!(derived[i], derived[j], "labels {i} and {j}");
            }
        }
        // Deterministic: the same instance key gives the same keys after a restart.
        assert_eq!(
            keys().jwt_secret(),
            Keys::derive(&[7u8; 32]).unwrap().jwt_secret()
        );
        assert_eq!(&derived[0][..], keys().jwt_secret());
    }

    #[test]
    fn token_hash_is_keyed() {
        let a = keys().token_hash(b"token");
        assert_eq!(a, keys().token_hash(b"token"));
        assert_ne!(a, Keys::derive(&[8u8; 32]).unwrap().token_hash(b"token"));
        assert_ne!(a, keys().token_hash(b"token2"));
    }

    #[test]
    fn backup_code_hash_depends_on_salt_pepper_and_code() {
        let k = keys();
        let h = k.backup_code_hash(b"salt-one", "abcd2345");
        assert_eq!(h, k.backup_code_hash(b"salt-one", "abcd2345"));
        assert_ne!(h, k.backup_code_hash(b"salt-two", "abcd2345"));
        assert_ne!(h, k.backup_code_hash(b"salt-one", "abcd2346"));
        assert_ne!(
            h,
            Keys::derive(&[8u8; 32])
                .unwrap()
                .backup_code_hash(b"salt-one", "abcd2345")
        );
    }

    #[test]
    fn password_hash_verifies_and_reports_weak_cost() {
        let h = hash_password("correct horse", 1_000).unwrap();
        assert!(h.starts_with("pbkdf2-sha256$1000$"));
        assert_eq!(
            verify_password(&h, "correct horse"),
            PasswordCheck::RightButWeak
        );
        assert_eq!(verify_password(&h, "correct hors"), PasswordCheck::Wrong);
        let strong = hash_password("pw", PASSWORD_ITERATIONS).unwrap();
        assert_eq!(verify_password(&strong, "pw"), PasswordCheck::Right);
        assert_ne!(
            hash_password("pw", 1_000).unwrap(),
            hash_password("pw", 1_000).unwrap()
        );
    }

    #[test]
    fn unmatchable_hash_has_the_real_shape_and_matches_nothing() {
        let h = unmatchable_password_hash().unwrap();
        let real = hash_password("x", PASSWORD_ITERATIONS).unwrap();
        assert_eq!(h.len(), real.len());
        assert!(h.starts_with("pbkdf2-sha256$600000$"));
        for pw in ["", "x", "password"] {
            assert_eq!(verify_password(&h, pw), PasswordCheck::Wrong);
        }
    }

    #[test]
    fn malformed_password_hash_is_wrong_not_a_panic() {
        for bad in [
            "",
            "x",
            "pbkdf2-sha256$0$AAAA$AAAA",
            "md5$1$AA$AA",
            "pbkdf2-sha256$1$!!$AA",
        ] {
            assert_eq!(verify_password(bad, "pw"), PasswordCheck::Wrong, "{bad}");
        }
    }

    #[test]
    fn ct_eq_compares_contents_and_lengths() {
        assert!(ct_eq(b"123456", b"123456"));
        assert!(!ct_eq(b"123456", b"123457"));
        assert!(!ct_eq(b"12345", b"123456"));
        assert!(ct_eq(b"", b""));
    }

    #[test]
    fn secret_debug_is_redacted() {
        let s = SecretBytes::new(b"hunter2".to_vec());
        assert_eq!(format!("{s:?}"), "SecretBytes([redacted])");
        assert!(!format!("{:?}", keys()).contains('7'));
    }

    // Known answers for everything mfad stores or derives, so that a refactor which
    // changes a label, a salt, an iteration count or a layout fails here instead of
    // silently locking every existing instance out of its own data. The values were
    // computed once with this code and reproduced independently with Python's hmac,
    // hashlib.pbkdf2_hmac and cryptography's AESGCM; never update them to make a test
    // pass: a new format needs a new label or scheme and a migration.

    /// The instance key of the known-answer tests: bytes 0x00..=0x1f.
    fn kat_master() -> [u8; KEY_LEN] {
        std::array::from_fn(|i| i as u8)
    }

    /// The salt of the known-answer tests: bytes 0xa0..=0xaf.
    fn kat_salt() -> [u8; 16] {
        std::array::from_fn(|i| 0xa0 + i as u8)
    }

    fn hex(bytes: &[u8]) -> String {
        data_encoding::HEXLOWER.encode(bytes)
    }

    #[test]
    fn kat_hkdf_derived_keys() {
        let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, b"mfad instance key").extract(&kat_master());
        let expected = [
            (
                LABEL_JWT,
                "d3b511f050eb3ced03eade0199f7aa55cf50a9ebb79f0bd63e3cf075aa49723f",
            ),
            (
                LABEL_SECRET_AEAD,
                "f595ca1b875583cc16ff9a3f7492b7c753cbf9efdc55f6895be8a7570519d5ae",
            ),
            (
                LABEL_BACKUP_PEPPER,
                "bdd164644861a280453d19dd63749b5f8e3c1fa59b213907815c040a6d520942",
            ),
            (
                LABEL_TOKEN_HASH,
                "e33486e3676f0ee56de6fec9be8b34113ef2dc27cc60559f7142926600ddfb55",
            ),
            (
                LABEL_TOKEN_SIGNING,
                "500b579df7cd39cb1b10cd6ebbadc687396a05390c594ff5040e4a7c0801cf9a",
            ),
        ];
        for (label, want) in expected {
            assert_eq!(hex(&derive(&prk, label)), want, "{label:?}");
        }
        // And through the public API, which also pins the salt of the extract step.
        let k = Keys::derive(&kat_master()).unwrap();
        assert_eq!(hex(k.jwt_secret()), expected[0].1);
    }

    #[test]
    fn kat_key_check_and_token_hash() {
        let k = Keys::derive(&kat_master()).unwrap();
        assert_eq!(
            hex(&k.key_check()),
            "9d1b190fb9eb678e326eb536766b922e7b6499b5735977a7ef3d314dd587b343"
        );
        assert_eq!(
            hex(&k.token_hash(b"mfad refresh token for the known-answer test")),
            "30b238cf0f064d443bb1434c586a53201257a11bb0f830147aa08ebccb4cc169"
        );
    }

    /// The token-signing key from the KAT instance key: its public half and one
    /// signature (Ed25519 is deterministic), reproduced with Python's cryptography.
    #[test]
    fn kat_token_signing_key() {
        let k = Keys::derive(&kat_master())
            .unwrap()
            .token_signing_key()
            .unwrap();
        assert_eq!(
            hex(&k.public_key()),
            "b79e410a8792f211f428bd13e8344fdc41d14e71ea8c1237515b19bc78ae573b"
        );
        assert_eq!(
            hex(&k.sign(b"mfad token signing known-answer test")),
            "222726b76f6038ac73cbbdca8cc64de0ab9aa20ded4912705922008aba0e2926\
             db9a5838da936b20b5a49ef92ec5b2192bdf4aa6e51de297f134065cc64c0001"
        );
        let other = Keys::derive(&[9u8; KEY_LEN]).unwrap();
        assert_ne!(
            other.token_signing_key().unwrap().public_key(),
            k.public_key()
        );
        assert_eq!(
            hex(&sha256(b"abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn kat_backup_code_hash() {
        let k = Keys::derive(&kat_master()).unwrap();
        assert_eq!(
            hex(&k.backup_code_hash(&kat_salt(), "abcd2345")),
            "fad507705fdac59c311e37be9d559f5dba2d5981148e073a50a0c8a6b84ecf27"
        );
    }

    #[test]
    fn kat_password_hash_format() {
        let stored = "pbkdf2-sha256$600000$oKGio6SlpqeoqaqrrK2urw$XhW6Tj4cJViCaqvqHT/haIsYkJMDpBbJV48XBmprwu4";
        let pw = "correct horse battery staple";
        assert_eq!(
            hash_password_with_salt(pw, PASSWORD_ITERATIONS, &kat_salt()),
            stored
        );
        // A hash stored by today's code keeps verifying, at today's cost.
        assert_eq!(verify_password(stored, pw), PasswordCheck::Right);
        assert_eq!(
            verify_password(stored, "correct horse"),
            PasswordCheck::Wrong
        );
    }

    /// `Keys::seal` layout: nonce ‖ AES-256-GCM ciphertext ‖ tag, with
    /// `"mfad totp v1\0" ‖ account id (i64, big-endian)` as associated data.
    #[test]
    fn kat_sealed_secret_layout() {
        let k = Keys::derive(&kat_master()).unwrap();
        let nonce: [u8; aead::NONCE_LEN] = std::array::from_fn(|i| 0xc0 + i as u8);
        let sealed = k
            .seal_with_nonce(b"JBSWY3DPEHPK3PXPJBSW", &secret_aad(42), nonce)
            .unwrap();
        assert_eq!(
            hex(&sealed),
            "c0c1c2c3c4c5c6c7c8c9cacb\
             903af5a6bd0e1d31378ddac27c7881c1f9806f88\
             85d6ec63f26c61da347662b35dd86955"
        );
    }

    #[test]
    fn kat_secret_sealed_today_opens_only_for_its_account() {
        // Sealed by `Keys::seal` (random nonce) for account 7 with the KAT instance key.
        let sealed = data_encoding::HEXLOWER
            .decode(
                b"37683fd9be373e6c1f4eccc79191fa7dbd05581dc0cf7681609477f6c5ab7993\
                  128d4d979802511f2daa106d6cdb58b2",
            )
            .unwrap();
        let k = Keys::derive(&kat_master()).unwrap();
        assert_eq!(
            k.open(&sealed, 7).unwrap().expose(),
            b"JBSWY3DPEHPK3PXPJBSW"
        );
        assert_eq!(k.open(&sealed, 8).unwrap_err(), CryptoError::Unseal);
        assert_eq!(k.open(&sealed, -7).unwrap_err(), CryptoError::Unseal);
    }

    #[test]
    fn an_rsa_key_signs_rs256_that_its_public_half_verifies_and_round_trips_sealed() {
        let der = RsaKey::generate().unwrap();
        let key = RsaKey::from_pkcs8(der.expose()).unwrap();
        let (n, e) = key.public_members();
        assert_eq!(e, "AQAB");
        let n_bytes = data_encoding::BASE64URL_NOPAD.decode(n.as_bytes()).unwrap();
        assert_eq!(n_bytes.len() * 8, RSA_BITS);
        let signature = key.sign_rs256(b"header.claims").unwrap();
        let public = ring::signature::RsaPublicKeyComponents {
            n: n_bytes.clone(),
            e: vec![1u8, 0, 1],
        };
        public
            .verify(
                &ring::signature::RSA_PKCS1_2048_8192_SHA256,
                b"header.claims",
                &signature,
            )
            .unwrap();
        assert!(public
            .verify(
                &ring::signature::RSA_PKCS1_2048_8192_SHA256,
                b"header.claimz",
                &signature
            )
            .is_err());
        // Sealed for the database: opens as the key, never as a TOTP secret.
        let k = Keys::derive(&[7u8; 32]).unwrap();
        let sealed = k.seal_provider_key(der.expose()).unwrap();
        assert_eq!(k.open_provider_key(&sealed).unwrap().expose(), der.expose());
        assert!(k.open(&sealed, 0).is_err());
        assert!(Keys::derive(&[8u8; 32])
            .unwrap()
            .open_provider_key(&sealed)
            .is_err());
        let totp = k.seal(b"JBSWY3DPEHPK3PXP", 0).unwrap();
        assert!(k.open_provider_key(&totp).is_err());
        // Two keys, two kids; the kid is the thumbprint's shape.
        let other = RsaKey::from_pkcs8(RsaKey::generate().unwrap().expose()).unwrap();
        assert_ne!(key.kid(), other.kid());
        assert_eq!(key.kid().len(), 43);
    }
}
