//! The tokens of one external issuer (`--jwt-public-key`): the algorithms accepted, the
//! key and the claims they must carry, and the one extra rule ECDSA needs (low `s`).
//! Called by `mod.rs`, whose validation settings and setup error it uses.

use jsonwebtoken::{Algorithm, DecodingKey, Validation};

use super::{validation, SetupError};

/// Algorithms accepted for tokens from an external issuer (`--jwt-algorithm`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExternalAlgorithm {
    Rs256,
    Es256,
    EdDsa,
}

/// Half the order of the P-256 group, big-endian: an ECDSA signature `(r, s)` is as
/// valid as `(r, n - s)`, so only the low-`s` one of the pair is accepted (as in
/// Bitcoin's BIP 62 and libsecp256k1): a token has exactly one valid signature.
const P256_HALF_ORDER: [u8; 32] = [
    0x7f, 0xff, 0xff, 0xff, 0x80, 0x00, 0x00, 0x00, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0xde, 0x73, 0x7d, 0x56, 0xd3, 0x8b, 0xcf, 0x42, 0x79, 0xdc, 0xe5, 0x61, 0x7e, 0x31, 0x92, 0xa8,
];

/// Whether a JWS ES256 signature (`r ‖ s`, 32 bytes each) has its `s` above n/2.
pub(super) fn high_s(signature: &[u8]) -> bool {
    match signature.get(32..64) {
        Some(s) if signature.len() == 64 => s > &P256_HALF_ORDER[..],
        _ => true,
    }
}

/// An external issuer's key and what its tokens must carry, ready to check them.
pub(super) struct External {
    pub(super) key: DecodingKey,
    pub(super) validation: Validation,
    pub(super) algorithm: Algorithm,
}

impl External {
    pub(super) fn new(issuer: ExternalIssuer<'_>) -> Result<External, SetupError> {
        let ExternalIssuer {
            pem,
            algorithm: alg,
            issuer: ext_issuer,
            audience,
        } = issuer;
        let (key, algorithm) = match alg {
            ExternalAlgorithm::Rs256 => (DecodingKey::from_rsa_pem(pem), Algorithm::RS256),
            ExternalAlgorithm::Es256 => (DecodingKey::from_ec_pem(pem), Algorithm::ES256),
            ExternalAlgorithm::EdDsa => (DecodingKey::from_ed_pem(pem), Algorithm::EdDSA),
        };
        let key = key.map_err(|e| {
            SetupError::ExternalKey(format!("not a {algorithm:?} public key in PEM: {e}"))
        })?;
        Ok(External {
            key,
            validation: validation(algorithm, ext_issuer, audience),
            algorithm,
        })
    }
}

/// How to check the tokens of an external issuer.
#[derive(Debug, Clone, Copy)]
pub struct ExternalIssuer<'a> {
    /// Its public key, PEM.
    pub pem: &'a [u8],
    pub algorithm: ExternalAlgorithm,
    /// The `iss` its tokens must carry, if any.
    pub issuer: Option<&'a str>,
    /// The `aud` its tokens must carry, if any.
    pub audience: Option<&'a str>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_low_s_ecdsa_signatures_pass() {
        let mut sig = [0u8; 64];
        sig[32..].copy_from_slice(&P256_HALF_ORDER);
        assert!(!high_s(&sig), "s = n/2 is the highest low s");
        sig[63] += 1;
        assert!(high_s(&sig), "s = n/2 + 1");
        sig[32..].fill(0);
        sig[63] = 1;
        assert!(!high_s(&sig));
        sig[32] = 0xff;
        assert!(high_s(&sig));
        assert!(high_s(&sig[..63]), "a short signature is refused");
        assert!(high_s(&[0u8; 65]), "a long one too");
    }
}
