//! The memory of verdicts: tokens already verified, so that a token presented again
//! costs a hash lookup, not a signature check. Bounded; imports only `mod.rs`'s
//! [`Verified`].

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use super::Verified;

/// Verified tokens remembered (each under 1 KiB): far more than the tokens in use at
/// once on a small deployment; past it, the expired ones go, then all of them.
const VERDICTS_MAX: usize = 10_000;

/// Tokens already verified, by the SHA-256 of the token, with the moment their verdict
/// ends (`exp` plus leeway): an Ed25519 check costs tens of µs and every `/api/v1/`
/// request presents a token, usually one it presented before. Only the signature and
/// claims verdict is kept; the account is still read on every request, so a deleted
/// account's token fails at once.
#[derive(Default)]
pub(super) struct Verdicts(Mutex<HashMap<[u8; 32], (Verified, i64)>>);

impl Verdicts {
    pub(super) fn get(&self, key: &[u8; 32], now: i64) -> Option<Verified> {
        let mut map = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        match map.get(key) {
            Some((v, until)) if now <= *until => Some(v.clone()),
            Some(_) => {
                map.remove(key);
                None
            }
            None => None,
        }
    }

    pub(super) fn put(&self, key: [u8; 32], verified: Verified, until: i64, now: i64) {
        let mut map = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if map.len() >= VERDICTS_MAX {
            map.retain(|_, (_, u)| *u >= now);
            if map.len() >= VERDICTS_MAX {
                map.clear();
            }
        }
        map.insert(key, (verified, until));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Subject;

    #[test]
    fn the_memory_of_verdicts_is_bounded() {
        let verified = Verified {
            subject: Subject::Account(1),
            email: None,
            username: None,
            sid: None,
            amr: Vec::new(),
        };
        let key = |i: usize| {
            let mut k = [0u8; 32];
            k[..8].copy_from_slice(&(i as u64).to_be_bytes());
            k
        };
        let len = |v: &Verdicts| v.0.lock().unwrap().len();
        // Full of live verdicts: all go, the new one stays.
        let v = Verdicts::default();
        for i in 0..VERDICTS_MAX + 10 {
            v.put(key(i), verified.clone(), 1000, 10);
        }
        assert_eq!(len(&v), 10);
        assert!(v.get(&key(0), 10).is_none());
        assert!(v.get(&key(VERDICTS_MAX + 9), 10).is_some());
        // Full with some ended: only those go.
        let v = Verdicts::default();
        for i in 0..VERDICTS_MAX {
            v.put(
                key(i),
                verified.clone(),
                if i % 2 == 0 { 5 } else { 1000 },
                1,
            );
        }
        v.put(key(VERDICTS_MAX), verified.clone(), 1000, 10);
        assert_eq!(len(&v), VERDICTS_MAX / 2 + 1);
        assert!(v.get(&key(1), 10).is_some());
        assert!(v.get(&key(0), 10).is_none());
    }
}
