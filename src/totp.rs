//! HOTP (RFC 4226) and TOTP (RFC 6238) with the parameters every authenticator app
//! assumes — HMAC-SHA1, 6 digits, 30-second steps — and the `otpauth://` URI that
//! carries a secret into such an app. Pure: the time comes in as an argument.

use ring::hmac;

use crate::crypto::ct_eq;

/// RFC 6238 `X`: the length of one time step, in seconds.
pub const PERIOD: u64 = 30;
/// Digits in a code.
pub(crate) const DIGITS: u32 = 6;
/// Steps accepted either side of the current one (RFC 6238 §5.2 recommends at most one
/// step of network delay; NIST SP 800-63B 5.1.4.1 bounds the window the same way).
pub(crate) const WINDOW: u64 = 1;

/// The HOTP value of `counter` under `key`, reduced to `digits` decimal digits.
pub(crate) fn hotp(key: &[u8], counter: u64, digits: u32) -> u32 {
    let key = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, key);
    let tag = hmac::sign(&key, &counter.to_be_bytes());
    let h = tag.as_ref();
    // RFC 4226 §5.3, dynamic truncation: the low nibble of the last byte picks an offset;
    // the 31 bits from there (top bit masked, so signed and unsigned readings agree) are
    // the value. HMAC-SHA1 gives 20 bytes and the offset is at most 15, so the four
    // bytes always exist.
    let offset = usize::from(h[h.len() - 1] & 0x0f);
    let value = u32::from_be_bytes([
        h[offset] & 0x7f,
        h[offset + 1],
        h[offset + 2],
        h[offset + 3],
    ]);
    value % 10u32.pow(digits)
}

/// The time step that `unix_time` falls in (RFC 6238 `T`, with `T0 = 0`).
pub fn step_at(unix_time: u64) -> u64 {
    unix_time / PERIOD
}

/// The 6-digit code for `step`, zero-padded.
pub fn code_for_step(key: &[u8], step: u64) -> [u8; 6] {
    let mut value = hotp(key, step, DIGITS);
    let mut out = [b'0'; 6];
    for slot in out.iter_mut().rev() {
        // `value % 10` is below 10, so the cast keeps every bit.
        *slot = b'0' + (value % 10) as u8;
        value /= 10;
    }
    out
}

/// Reads what a person typed: spaces anywhere are ignored (apps show `123 456`); what is
/// left must be exactly six ASCII digits.
pub(crate) fn normalize_code(input: &str) -> Option<[u8; 6]> {
    let mut out = [0u8; 6];
    let mut n = 0;
    for c in input.chars().filter(|c| !c.is_whitespace()) {
        if !c.is_ascii_digit() || n == out.len() {
            return None;
        }
        out[n] = c as u8;
        n += 1;
    }
    (n == out.len()).then_some(out)
}

/// Checks `code` against the steps around `unix_time` and returns the step it matched.
/// Every step in the window is computed and compared in constant time, whether or not an
/// earlier one matched, so the timing says nothing about which step (if any) was right.
/// Replay protection — refusing a step already used — is the caller's, since it needs
/// the stored last step.
pub fn verify(key: &[u8], code: &[u8; 6], unix_time: u64) -> Option<u64> {
    let now = step_at(unix_time);
    let mut matched = None;
    for step in now.saturating_sub(WINDOW)..=now.saturating_add(WINDOW) {
        let ok = ct_eq(&code_for_step(key, step), code);
        if ok && matched.is_none() {
            matched = Some(step);
        }
    }
    matched
}

/// How far a refused code's clock seems to be off, in seconds: the offset of the nearest
/// step from 2 to [`DRIFT_STEPS`] steps away (either side) whose code it is. `None` when
/// no such step has it. Only ever said *of a wrong code*, for the audit trail: a code so
/// far off is never accepted (RFC 6238 §5.2 allows a step of delay, no more).
pub fn drift(key: &[u8], code: &[u8; 6], unix_time: u64) -> Option<i64> {
    let now = step_at(unix_time) as i64;
    let mut found = None;
    for distance in (WINDOW as i64 + 1)..=DRIFT_STEPS {
        for step in [now + distance, now - distance] {
            if step < 0 {
                continue;
            }
            let ok = ct_eq(&code_for_step(key, step as u64), code);
            if ok && found.is_none() {
                found = Some((step - now) * PERIOD as i64);
            }
        }
    }
    found
}

/// The farthest step [`drift`] looks at: 10 steps, five minutes either side.
pub const DRIFT_STEPS: i64 = 10;

/// Percent-encodes per RFC 3986, leaving unreserved characters (`A-Z a-z 0-9 - . _ ~`)
/// and `@` as they are; every other byte of the UTF-8 encoding becomes `%XX`.
pub fn percent_encode(s: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(s.len());
    for &b in s.as_bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'@') {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0x0f)]));
        }
    }
    out
}

/// The key-URI format of Google Authenticator, as Storno emits it:
/// `otpauth://totp/ISSUER:ACCOUNT?secret=SECRET&issuer=ISSUER`. No algorithm, digits or
/// period parameters: SHA1, 6 and 30 are what every app assumes.
pub fn otpauth_uri(issuer: &str, account: &str, secret_base32: &str) -> String {
    let issuer = percent_encode(issuer);
    format!(
        "otpauth://totp/{issuer}:{}?secret={secret_base32}&issuer={issuer}",
        percent_encode(account)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drift_names_the_offset_of_a_code_two_to_ten_steps_away_only() {
        let t = 1_800_000_000u64;
        let step = step_at(t);
        let at = |k: i64| code_for_step(RFC_SEED, (step as i64 + k) as u64);
        assert_eq!(drift(RFC_SEED, &at(3), t), Some(90));
        assert_eq!(drift(RFC_SEED, &at(-2), t), Some(-60));
        assert_eq!(drift(RFC_SEED, &at(10), t), Some(300));
        assert_eq!(drift(RFC_SEED, &at(-10), t), Some(-300));
        // Inside the window it is no drift (and the code is accepted anyway); past ten
        // steps it is a wrong code like any other.
        for k in [-1, 0, 1, 11, -11, 40] {
            let code = at(k);
            let near = (-10..=10).any(|j: i64| (j.abs() >= 2) && at(j) == code);
            if !near {
                assert_eq!(drift(RFC_SEED, &code, t), None, "{k}");
            }
        }
        assert_eq!(verify(RFC_SEED, &at(3), t), None, "never accepted");
        // Near the epoch there is no step before 0 to look at.
        assert_eq!(drift(RFC_SEED, &code_for_step(RFC_SEED, 0), 60), Some(-60));
    }

    /// RFC 6238 Appendix B: the SHA1 seed is the ASCII string "12345678901234567890".
    const RFC_SEED: &[u8] = b"12345678901234567890";

    #[test]
    fn rfc6238_appendix_b_sha1_vectors() {
        let vectors: [(u64, u32); 6] = [
            (59, 94287082),
            (1111111109, 7081804),
            (1111111111, 14050471),
            (1234567890, 89005924),
            (2000000000, 69279037),
            (20000000000, 65353130),
        ];
        for (time, expected) in vectors {
            assert_eq!(hotp(RFC_SEED, step_at(time), 8), expected, "T = {time}");
        }
    }

    #[test]
    fn rfc4226_appendix_d_hotp_vectors() {
        let expected = [
            755224, 287082, 359152, 969429, 338314, 254676, 287922, 162583, 399871, 520489,
        ];
        for (counter, want) in expected.into_iter().enumerate() {
            assert_eq!(hotp(RFC_SEED, counter as u64, 6), want, "counter {counter}");
        }
    }

    #[test]
    fn six_digit_codes_keep_leading_zeros() {
        // RFC 4226 counter 0 gives 755224; find a step whose code starts with 0 instead.
        let step = (0..10_000)
            .find(|&s| hotp(RFC_SEED, s, 6) < 100_000)
            .expect("some code below 100000 in 10,000 steps");
        let code = code_for_step(RFC_SEED, step);
        assert_eq!(code[0], b'0');
        assert_eq!(
            std::str::from_utf8(&code).unwrap(),
            format!("{:06}", hotp(RFC_SEED, step, 6))
        );
    }

    #[test]
    fn window_accepts_one_step_either_side_and_returns_it() {
        let t = 1_700_000_000 + 7; // mid-step
        let now = step_at(t);
        for delta in [-1i64, 0, 1] {
            let step = now.checked_add_signed(delta).unwrap();
            let code = code_for_step(RFC_SEED, step);
            assert_eq!(verify(RFC_SEED, &code, t), Some(step), "delta {delta}");
        }
    }

    #[test]
    fn window_refuses_two_steps_away() {
        let t = 1_700_000_000 + 7;
        let now = step_at(t);
        for step in [now - 2, now + 2, now - 3, now + 10] {
            let code = code_for_step(RFC_SEED, step);
            // A code of a far step can collide with one inside the window (1 in 10^6 per
            // step); the vectors here are fixed, so check that they don't.
            let inside: Vec<_> = (now - 1..=now + 1)
                .map(|s| code_for_step(RFC_SEED, s))
                .collect();
            assert!(!inside.contains(&code));
            assert_eq!(verify(RFC_SEED, &code, t), None, "step {step}");
        }
    }

    #[test]
    fn window_edges_follow_the_clock_exactly() {
        // The last second of a step and the first of the next shift the window by one.
        let step = 56_666_666u64;
        let last = step * PERIOD + PERIOD - 1;
        let code_prev = code_for_step(RFC_SEED, step - 1);
        assert_eq!(verify(RFC_SEED, &code_prev, last), Some(step - 1));
        assert_eq!(verify(RFC_SEED, &code_prev, last + 1), None);
    }

    #[test]
    fn verify_near_the_epoch_does_not_underflow() {
        let code = code_for_step(RFC_SEED, 0);
        assert_eq!(verify(RFC_SEED, &code, 0), Some(0));
        assert_eq!(verify(RFC_SEED, &code, 29), Some(0));
    }

    #[test]
    fn normalize_code_accepts_spaces_only() {
        assert_eq!(normalize_code("123456"), Some(*b"123456"));
        assert_eq!(normalize_code(" 123 456 "), Some(*b"123456"));
        assert_eq!(normalize_code("1 2 3\t4 5 6"), Some(*b"123456"));
        for bad in [
            "",
            "12345",
            "1234567",
            "12345a",
            "123-456",
            "１２３４５６",
            "+12345",
        ] {
            assert_eq!(normalize_code(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn percent_encoding_per_rfc3986() {
        assert_eq!(percent_encode("user@example.com"), "user@example.com");
        assert_eq!(percent_encode("a+b@example.com"), "a%2Bb@example.com");
        assert_eq!(percent_encode("John Doe"), "John%20Doe");
        assert_eq!(percent_encode("100%"), "100%25");
        assert_eq!(percent_encode("a:b/c?d&e=f#g"), "a%3Ab%2Fc%3Fd%26e%3Df%23g");
        assert_eq!(percent_encode("-._~"), "-._~");
        assert_eq!(percent_encode("Ünïcødé"), "%C3%9Cn%C3%AFc%C3%B8d%C3%A9");
        assert_eq!(percent_encode("日本"), "%E6%97%A5%E6%9C%AC");
    }

    #[test]
    fn otpauth_uri_matches_the_storno_shape() {
        assert_eq!(
            otpauth_uri("Storno", "user@example.com", "JBSWY3DPEHPK3PXP"),
            "otpauth://totp/Storno:user@example.com?secret=JBSWY3DPEHPK3PXP&issuer=Storno"
        );
        assert_eq!(
            otpauth_uri("My Co", "a+b@example.com", "ABC"),
            "otpauth://totp/My%20Co:a%2Bb@example.com?secret=ABC&issuer=My%20Co"
        );
    }
}
