//! Test helpers shared by the renderer tests (`mod.rs`) and the mask proofs
//! (`mask_proof.rs`): deterministic random URIs and qrcodegen as the reference encoder.

use qrcodegen::{Mask, QrCode, QrCodeEcc, QrSegment, Version};

use super::MAX_BYTES;

pub(super) const TYPICAL: &str =
    "otpauth://totp/Storno:user@example.com?secret=JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP&issuer=Storno";

/// xorshift64*: deterministic, dependency-free test input.
pub(super) struct Rng(pub(super) u64);

impl Rng {
    pub(super) fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    pub(super) fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    pub(super) fn pick(&mut self, chars: &[u8]) -> char {
        char::from(chars[self.below(chars.len())])
    }
}

pub(super) fn random_uri(rng: &mut Rng, label_len: usize) -> String {
    const ALNUM: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    const LABEL: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789.-_+";
    const PCT: [&str; 6] = ["%40", "%20", "%3A", "%C3%A9", "%E2%82%AC", "%2F"];
    const B32: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let issuer: String = (0..1 + rng.below(12)).map(|_| rng.pick(ALNUM)).collect();
    let mut label = String::new();
    while label.len() < label_len {
        if rng.below(8) == 0 {
            label.push_str(PCT[rng.below(PCT.len())]);
        } else {
            label.push(rng.pick(LABEL));
        }
    }
    let secret_len = [16, 26, 32, 52, 103][rng.below(5)];
    let secret: String = (0..secret_len).map(|_| rng.pick(B32)).collect();
    let mut uri = format!("otpauth://totp/{issuer}:{label}?secret={secret}&issuer={issuer}");
    if rng.below(2) == 0 {
        uri.push_str("&algorithm=SHA1&digits=6&period=30");
    }
    uri
}

pub(super) fn qrcodegen_with(text: &str, mask: Option<Mask>) -> QrCode {
    QrCode::encode_segments_advanced(
        &[QrSegment::make_bytes(text.as_bytes())],
        QrCodeEcc::Medium,
        Version::MIN,
        Version::MAX,
        mask,
        true,
    )
    .expect("test text fits")
}

/// URI-like text of the greatest length that still fits `version`.
pub(super) fn text_for_version(rng: &mut Rng, version: u8) -> String {
    let fits = |len: usize| {
        let seg = QrSegment::make_bytes(&vec![b'a'; len]);
        QrCode::encode_segments_advanced(
            &[seg],
            QrCodeEcc::Medium,
            Version::MIN,
            Version::new(version),
            Some(Mask::new(0)),
            false,
        )
        .is_ok()
    };
    let (mut lo, mut hi) = (0, MAX_BYTES);
    while lo < hi {
        let mid = (lo + hi).div_ceil(2);
        if fits(mid) {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    let base = random_uri(rng, 1);
    let mut text = base.clone();
    while text.len() < lo {
        text.push(rng.pick(b"abcdefghijklmnopqrstuvwxyz0123456789&=%"));
    }
    text.truncate(lo);
    text
}
