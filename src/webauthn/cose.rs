//! COSE public keys (RFC 9052 §7, RFC 9053) of the three algorithms mfad accepts for
//! passkeys, read from CBOR with minicbor (zero-copy: no length from the input is ever
//! allocated), the signature check of each with ring, and the check made of a new
//! passkey's key that ring will be able to use it (`PublicKey::check`).

use minicbor::Decoder;
use ring::agreement;
use ring::rand::SecureRandom;
use ring::signature::{self, RsaPublicKeyComponents, UnparsedPublicKey};

use super::ed25519;

/// A COSE algorithm mfad verifies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alg {
    /// ECDSA on P-256 with SHA-256; WebAuthn signatures are ASN.1 DER.
    Es256,
    /// Ed25519.
    EdDsa,
    /// RSASSA-PKCS1-v1_5 with SHA-256, 2048 to 8192 bits.
    Rs256,
}

impl Alg {
    /// Its COSE identifier (IANA "COSE Algorithms").
    pub fn id(self) -> i64 {
        match self {
            Alg::Es256 => -7,
            Alg::EdDsa => -8,
            Alg::Rs256 => -257,
        }
    }

    /// The algorithm of a COSE identifier, if mfad verifies it.
    pub fn from_id(id: i64) -> Option<Alg> {
        [Alg::Es256, Alg::EdDsa, Alg::Rs256]
            .into_iter()
            .find(|a| a.id() == id)
    }
}

/// A public key, in the form ring checks signatures with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PublicKey {
    /// The uncompressed SEC 1 point `04 ‖ x ‖ y`.
    Es256(Vec<u8>),
    EdDsa([u8; 32]),
    Rs256 {
        n: Vec<u8>,
        e: Vec<u8>,
    },
}

/// Why a COSE key was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyError {
    /// Not a CBOR map of integer labels, or a value of the wrong type or size.
    Malformed,
    /// `alg` (or `kty`/`crv` for it) is not one mfad verifies.
    Unsupported,
}

/// Why a key that reads well is not registered: ring would refuse it at every
/// signature, or (an Ed25519 point of small order) anyone could sign for it. A passkey
/// with such a key only takes one of the account's places and makes every password
/// login ask for a passkey that cannot answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unusable {
    /// ES256: not a point of P-256 (off the curve, or a coordinate not below p).
    NotOnCurve,
    /// EdDSA: no point of edwards25519 has this y.
    NotAPoint,
    /// EdDSA: a point of order 1, 2, 4 or 8.
    SmallOrder,
    /// RS256: a modulus with a leading zero byte, even, shorter than 256 bytes or
    /// longer than 8192 bits.
    Modulus,
    /// RS256: an exponent with a leading zero byte, even, below 3 or above 2^33 − 1.
    Exponent,
    /// The random generator the P-256 check needs failed: the key could not be
    /// checked, so it is not taken.
    Random,
}

/// Labels of the COSE key parameters used here (RFC 9052 §7.1, RFC 9053 §7).
const KTY: i64 = 1;
const ALG: i64 = 3;
const CRV_OR_N: i64 = -1;
const X_OR_E: i64 = -2;
const Y: i64 = -3;
const KTY_OKP: i64 = 1;
const KTY_EC2: i64 = 2;
const KTY_RSA: i64 = 3;
const CRV_P256: i64 = 1;
const CRV_ED25519: i64 = 6;
/// More parameters than any key of these types has: a map this long is not one.
const MAX_PARAMS: u64 = 16;

/// Reads one COSE key from the start of `d`, leaving `d` just past it.
pub fn read(d: &mut Decoder<'_>) -> Result<PublicKey, KeyError> {
    let bad = |_| KeyError::Malformed;
    let len = d.map().map_err(bad)?.ok_or(KeyError::Malformed)?;
    if len > MAX_PARAMS {
        return Err(KeyError::Malformed);
    }
    let (mut kty, mut alg, mut crv, mut b1, mut b2, mut b3) = (None, None, None, None, None, None);
    let mut seen = Vec::with_capacity(len as usize);
    for _ in 0..len {
        let label = d.i64().map_err(bad)?;
        if seen.contains(&label) {
            return Err(KeyError::Malformed);
        }
        seen.push(label);
        match label {
            KTY => kty = Some(d.i64().map_err(bad)?),
            ALG => alg = Some(d.i64().map_err(bad)?),
            // -1 is `crv` (an integer) for EC2/OKP and `n` (bytes) for RSA.
            CRV_OR_N => match d.datatype().map_err(bad)? {
                minicbor::data::Type::Bytes => b1 = Some(d.bytes().map_err(bad)?),
                _ => crv = Some(d.i64().map_err(bad)?),
            },
            X_OR_E => b2 = Some(d.bytes().map_err(bad)?),
            Y => b3 = Some(d.bytes().map_err(bad)?),
            _ => d.skip().map_err(bad)?,
        }
    }
    let alg = Alg::from_id(alg.ok_or(KeyError::Malformed)?).ok_or(KeyError::Unsupported)?;
    match (alg, kty) {
        (Alg::Es256, Some(KTY_EC2)) => {
            if crv != Some(CRV_P256) {
                return Err(KeyError::Unsupported);
            }
            match (b2, b3) {
                (Some(x), Some(y)) if x.len() == 32 && y.len() == 32 => {
                    let mut point = Vec::with_capacity(65);
                    point.push(0x04);
                    point.extend_from_slice(x);
                    point.extend_from_slice(y);
                    Ok(PublicKey::Es256(point))
                }
                _ => Err(KeyError::Malformed),
            }
        }
        (Alg::EdDsa, Some(KTY_OKP)) => {
            if crv != Some(CRV_ED25519) {
                return Err(KeyError::Unsupported);
            }
            let x = b2.and_then(|x| <[u8; 32]>::try_from(x).ok());
            x.map(PublicKey::EdDsa).ok_or(KeyError::Malformed)
        }
        (Alg::Rs256, Some(KTY_RSA)) => match (b1, b2) {
            (Some(n), Some(e)) if !n.is_empty() && !e.is_empty() && e.len() <= 8 => {
                Ok(PublicKey::Rs256 {
                    n: n.to_vec(),
                    e: e.to_vec(),
                })
            }
            _ => Err(KeyError::Malformed),
        },
        _ => Err(KeyError::Malformed),
    }
}

/// Reads a COSE key that is the whole of `bytes`.
pub fn parse(bytes: &[u8]) -> Result<PublicKey, KeyError> {
    let mut d = Decoder::new(bytes);
    let key = read(&mut d)?;
    if d.position() != bytes.len() {
        return Err(KeyError::Malformed);
    }
    Ok(key)
}

impl PublicKey {
    pub fn alg(&self) -> Alg {
        match self {
            PublicKey::Es256(_) => Alg::Es256,
            PublicKey::EdDsa(_) => Alg::EdDsa,
            PublicKey::Rs256 { .. } => Alg::Rs256,
        }
    }

    /// Whether ring can check a signature against this key: asked of a new passkey's key
    /// at registration only. A key stored before this check existed still reads (`parse`
    /// does not ask), so its sign-in is refused at the signature, not at loading it.
    ///
    /// `rng` is for the P-256 check alone, which makes a throw-away ECDH key.
    pub fn check(&self, rng: &dyn SecureRandom) -> Result<(), Unusable> {
        match self {
            PublicKey::Es256(point) => {
                // ring has no call that only validates a point, but its ECDH parses the
                // peer's point with the function its ECDSA verification uses
                // (`parse_uncompressed_point`, ring 0.17 `ec/suite_b/public_key.rs`:
                // `04`, x and y below p, on the curve), so an agreement with a key of
                // ours made for the purpose is that check. P-256 has prime order: a
                // valid point never multiplies to infinity, so nothing else can fail.
                let ours = agreement::EphemeralPrivateKey::generate(&agreement::ECDH_P256, rng)
                    .map_err(|_| Unusable::Random)?;
                let theirs = agreement::UnparsedPublicKey::new(&agreement::ECDH_P256, point);
                agreement::agree_ephemeral(ours, &theirs, |_| ()).map_err(|_| Unusable::NotOnCurve)
            }
            PublicKey::EdDsa(key) => match ed25519::decode(key) {
                ed25519::Decoded::Point => Ok(()),
                ed25519::Decoded::NotAPoint => Err(Unusable::NotAPoint),
                ed25519::Decoded::SmallOrder => Err(Unusable::SmallOrder),
            },
            PublicKey::Rs256 { n, e } => rsa_usable(n, e),
        }
    }

    /// Whether `signature` is this key's over `message`.
    pub fn verifies(&self, message: &[u8], signature: &[u8]) -> bool {
        match self {
            PublicKey::Es256(point) => {
                UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_ASN1, point)
                    .verify(message, signature)
                    .is_ok()
            }
            PublicKey::EdDsa(key) => UnparsedPublicKey::new(&signature::ED25519, key)
                .verify(message, signature)
                .is_ok(),
            PublicKey::Rs256 { n, e } => RsaPublicKeyComponents { n, e }
                .verify(&signature::RSA_PKCS1_2048_8192_SHA256, message, signature)
                .is_ok(),
        }
    }
}

/// What ring's `RSA_PKCS1_2048_8192_SHA256` requires of a key, in ring 0.17's words:
/// `rsa/verification.rs` (2048 bits least, 8192 most, e ≥ 3), `rsa/public_modulus.rs`
/// (the minimum compared with the bit length rounded up to whole bytes),
/// `arithmetic/bigint/modulusvalue.rs` (no leading zero byte, odd) and
/// `rsa/public_exponent.rs` (at most 5 bytes, no leading zero byte, 3 ..= 2^33 − 1, odd).
/// ring takes `n` and `e` as stored, so a leading zero byte is refused, not stripped.
fn rsa_usable(n: &[u8], e: &[u8]) -> Result<(), Unusable> {
    const MIN_BYTES: usize = 2048 / 8;
    const MAX_BITS: usize = 8192;
    const MAX_E: u64 = (1 << 33) - 1;
    let (Some(&top), Some(&low)) = (n.first(), n.last()) else {
        return Err(Unusable::Modulus);
    };
    let bits = n.len() * 8 - top.leading_zeros() as usize;
    if top == 0 || low & 1 == 0 || n.len() < MIN_BYTES || bits > MAX_BITS {
        return Err(Unusable::Modulus);
    }
    if e.first().is_none_or(|b| *b == 0) || e.len() > 5 {
        return Err(Unusable::Exponent);
    }
    let value = e.iter().fold(0u64, |v, b| (v << 8) | u64::from(*b));
    if !(3..=MAX_E).contains(&value) || value & 1 == 0 {
        return Err(Unusable::Exponent);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::rand::SystemRandom;
    use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_ASN1_SIGNING};
    use serde_json::Value;

    /// The three keys of `tests/fixtures/webauthn/vectors.json` (made with Python's
    /// cryptography), with the message and signature of each one's assertion.
    fn vectors() -> Vec<(PublicKey, Vec<u8>, Vec<u8>)> {
        let hex = |v: &Value| {
            data_encoding::HEXLOWER
                .decode(v.as_str().unwrap().as_bytes())
                .unwrap()
        };
        let all: Vec<Value> =
            serde_json::from_str(include_str!("../../tests/fixtures/webauthn/vectors.json"))
                .unwrap();
        all.iter()
            .map(|v| {
                let a = &v["assertion"];
                let mut message = hex(&a["authenticator_data"]);
                message.extend_from_slice(&crate::crypto::sha256(&hex(&a["client_data_json"])));
                (
                    parse(&hex(&v["cose_key"])).unwrap(),
                    message,
                    hex(&a["signature"]),
                )
            })
            .collect()
    }

    fn check(key: &PublicKey) -> Result<(), Unusable> {
        key.check(&SystemRandom::new())
    }

    fn rsa(n: &[u8], e: &[u8]) -> PublicKey {
        PublicKey::Rs256 {
            n: n.to_vec(),
            e: e.to_vec(),
        }
    }

    #[test]
    fn real_keys_of_every_algorithm_are_usable() {
        let vs = vectors();
        assert_eq!(
            vs.iter().map(|(k, ..)| k.alg()).collect::<Vec<_>>(),
            [Alg::Es256, Alg::EdDsa, Alg::Rs256]
        );
        for (key, message, signature) in &vs {
            assert!(key.verifies(message, signature), "{:?}", key.alg());
            assert_eq!(check(key), Ok(()), "{:?}", key.alg());
        }
        let rng = SystemRandom::new();
        for _ in 0..20 {
            let alg = &ECDSA_P256_SHA256_ASN1_SIGNING;
            let pkcs8 = EcdsaKeyPair::generate_pkcs8(alg, &rng).unwrap();
            let pair = EcdsaKeyPair::from_pkcs8(alg, pkcs8.as_ref(), &rng).unwrap();
            let key = PublicKey::Es256(pair.public_key().as_ref().to_vec());
            assert_eq!(check(&key), Ok(()));
        }
    }

    #[test]
    fn a_p256_point_off_the_curve_is_refused() {
        let (real, ..) = &vectors()[0];
        let PublicKey::Es256(point) = real else {
            panic!("the first vector is ES256")
        };
        // y + 1 (big-endian, with the carry).
        let mut moved = point.clone();
        for b in moved[33..].iter_mut().rev() {
            *b = b.wrapping_add(1);
            if *b != 0 {
                break;
            }
        }
        let mut zero = vec![0x04];
        zero.extend([0; 64]);
        // x = p of P-256: a coordinate that is not below p, whatever y.
        let mut x_is_p = point.clone();
        x_is_p[1..33].copy_from_slice(
            &data_encoding::HEXLOWER
                .decode(b"ffffffff00000001000000000000000000000000ffffffffffffffffffffffff")
                .unwrap(),
        );
        let mut all_ones = vec![0x04];
        all_ones.extend([0xff; 64]);
        for bad in [moved, zero, x_is_p, all_ones] {
            let key = PublicKey::Es256(bad);
            assert_eq!(check(&key), Err(Unusable::NotOnCurve), "{key:02x?}");
        }
    }

    #[test]
    fn ed25519_points_are_judged_by_the_decoder() {
        let mut identity = [0u8; 32];
        identity[0] = 1;
        assert_eq!(
            check(&PublicKey::EdDsa(identity)),
            Err(Unusable::SmallOrder)
        );
        // y = 2 has no x: (4 − 1) / (4d + 1) is not a square.
        let mut two = [0u8; 32];
        two[0] = 2;
        assert_eq!(check(&PublicKey::EdDsa(two)), Err(Unusable::NotAPoint));
    }

    /// ring's rules for RSA_PKCS1_2048_8192_SHA256, each edge on both sides.
    #[test]
    fn rsa_keys_are_held_to_rings_rules() {
        let vs = vectors();
        let (real, message, signature) = &vs[2];
        let PublicKey::Rs256 { n, e } = real else {
            panic!("the third vector is RS256")
        };
        assert_eq!((n.len(), e.as_slice()), (256, &[1, 0, 1][..]));
        let odd = |len: usize, top: u8| {
            let mut n = vec![0xc5; len];
            n[0] = top;
            n
        };
        let mut even = n.clone();
        *even.last_mut().unwrap() &= 0xfe;
        let mut zero_first = vec![0];
        zero_first.extend_from_slice(n);
        for (n, verdict) in [
            (odd(64, 0xc5), Err(Unusable::Modulus)),
            (odd(255, 0xff), Err(Unusable::Modulus)),
            // ring compares the minimum with whole bytes: 2041 bits pass.
            (odd(256, 0x01), Ok(())),
            (odd(1024, 0xff), Ok(())),
            (
                {
                    let mut n = vec![0x01];
                    n.extend(vec![0xc5; 1024]);
                    n
                },
                Err(Unusable::Modulus),
            ),
            (even, Err(Unusable::Modulus)),
            (zero_first.clone(), Err(Unusable::Modulus)),
            (Vec::new(), Err(Unusable::Modulus)),
        ] {
            assert_eq!(check(&rsa(&n, e)), verdict, "{} bytes", n.len());
        }
        // A leading zero byte is refused by ring itself, not stripped.
        assert!(!rsa(&zero_first, e).verifies(message, signature));
        for (e, verdict) in [
            (&[3][..], Ok(())),
            (&[1], Err(Unusable::Exponent)),
            (&[2], Err(Unusable::Exponent)),
            (&[1, 0, 0], Err(Unusable::Exponent)),
            (&[0, 1, 0, 1], Err(Unusable::Exponent)),
            (&[0], Err(Unusable::Exponent)),
            (&[], Err(Unusable::Exponent)),
            // 2^33 − 1 is the largest ring takes.
            (&[1, 0xff, 0xff, 0xff, 0xff], Ok(())),
            (&[2, 0, 0, 0, 1], Err(Unusable::Exponent)),
            (&[0, 0, 0, 0, 0, 3], Err(Unusable::Exponent)),
        ] {
            assert_eq!(check(&rsa(n, e)), verdict, "e = {e:?}");
        }
        let mut zero_e = vec![0];
        zero_e.extend_from_slice(e);
        assert!(!rsa(n, &zero_e).verifies(message, signature));
    }
}
