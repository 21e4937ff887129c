//! COSE public keys (RFC 9052 §7, RFC 9053) of the three algorithms mfad accepts for
//! passkeys, read from CBOR with minicbor (zero-copy: no length from the input is ever
//! allocated), and the signature check of each with ring.

use minicbor::Decoder;
use ring::signature::{self, RsaPublicKeyComponents, UnparsedPublicKey};

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
