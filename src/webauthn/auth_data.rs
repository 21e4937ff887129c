//! authenticatorData (WebAuthn §6.1): a fixed byte layout, read by hand.
//!
//! ```text
//! rpIdHash (32) ‖ flags (1) ‖ signCount (4, big-endian)
//!   [‖ aaguid (16) ‖ credentialIdLength (2) ‖ credentialId ‖ COSE key]   if AT
//!   [‖ extensions (a CBOR map)]                                          if ED
//! ```

use minicbor::Decoder;

use super::cose::{self, KeyError, PublicKey};

/// User present.
pub const UP: u8 = 0x01;
/// User verified.
pub const UV: u8 = 0x04;
/// Attested credential data included.
pub const AT: u8 = 0x40;
/// Extension data included.
pub const ED: u8 = 0x80;

/// WebAuthn §5.8.3: a credential id is at most 1023 bytes.
pub const MAX_CREDENTIAL_ID: usize = 1023;

/// The credential a registration's authenticatorData carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttestedCredential {
    pub aaguid: [u8; 16],
    pub id: Vec<u8>,
    pub public_key: PublicKey,
    /// The COSE key as the authenticator wrote it: what is stored.
    pub cose_key: Vec<u8>,
}

/// What authenticatorData says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthData {
    pub rp_id_hash: [u8; 32],
    pub flags: u8,
    pub sign_count: u32,
    pub attested: Option<AttestedCredential>,
}

impl AuthData {
    pub fn user_present(&self) -> bool {
        self.flags & UP != 0
    }

    pub fn user_verified(&self) -> bool {
        self.flags & UV != 0
    }
}

/// Why authenticatorData was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthDataError {
    /// Shorter than its flags say, or bytes after its end.
    Truncated,
    TrailingBytes,
    /// A credential id of 0 or more than 1023 bytes.
    CredentialId,
    Key(KeyError),
    /// The extensions are not one CBOR map.
    Extensions,
}

/// Parses authenticatorData.
pub fn parse(bytes: &[u8]) -> Result<AuthData, AuthDataError> {
    let head = bytes.get(..37).ok_or(AuthDataError::Truncated)?;
    let mut rp_id_hash = [0u8; 32];
    rp_id_hash.copy_from_slice(&head[..32]);
    let flags = head[32];
    let sign_count = u32::from_be_bytes([head[33], head[34], head[35], head[36]]);
    let mut rest = &bytes[37..];
    let attested = if flags & AT != 0 {
        let fixed = rest.get(..18).ok_or(AuthDataError::Truncated)?;
        let mut aaguid = [0u8; 16];
        aaguid.copy_from_slice(&fixed[..16]);
        let len = usize::from(u16::from_be_bytes([fixed[16], fixed[17]]));
        if len == 0 || len > MAX_CREDENTIAL_ID {
            return Err(AuthDataError::CredentialId);
        }
        let id = rest.get(18..18 + len).ok_or(AuthDataError::Truncated)?;
        rest = &rest[18 + len..];
        let mut d = Decoder::new(rest);
        let public_key = cose::read(&mut d).map_err(|e| match e {
            KeyError::Malformed if rest.is_empty() => AuthDataError::Truncated,
            e => AuthDataError::Key(e),
        })?;
        let (key_bytes, after) = rest.split_at(d.position());
        rest = after;
        Some(AttestedCredential {
            aaguid,
            id: id.to_vec(),
            public_key,
            cose_key: key_bytes.to_vec(),
        })
    } else {
        None
    };
    if flags & ED != 0 {
        let mut d = Decoder::new(rest);
        if !matches!(
            d.datatype(),
            Ok(minicbor::data::Type::Map | minicbor::data::Type::MapIndef)
        ) {
            return Err(AuthDataError::Extensions);
        }
        d.skip().map_err(|_| AuthDataError::Extensions)?;
        rest = &rest[d.position()..];
    }
    if !rest.is_empty() {
        return Err(AuthDataError::TrailingBytes);
    }
    Ok(AuthData {
        rp_id_hash,
        flags,
        sign_count,
        attested,
    })
}
