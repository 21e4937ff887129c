//! The per-address throttles: failed logins, and passwordless-login ceremonies. Each
//! keeps a sliding minute per client address, in this process's memory or, on
//! PostgreSQL, in the database where every node shares it. It may call `store` (the
//! shared window), `metrics` and `error`; nothing else of `service`, whose [`super::App`]
//! holds one of each.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::{Mutex, PoisonError};

use crate::error::Error;
use crate::metrics::{Event, METRICS};
use crate::store::Db;

/// Passwordless-login ceremonies a client address may start per minute (API.md).
pub const LOGIN_OPTIONS_RATE: u32 = 10;

/// The login throttle's `429`.
const FAILED_LOGINS: &str = "Too many failed login attempts. Try again later.";

/// Failed logins per client address in a sliding minute. An attempt takes its place in
/// the window *before* its password is checked ([`LoginLimiter::reserve`]) and gives it
/// back only when it succeeds: checking first and counting after let every password
/// check already running slip past the limit.
pub struct LoginLimiter {
    /// Its name in the database, where several nodes share it (PostgreSQL).
    name: &'static str,
    limit: u32,
    /// What the `429` says.
    message: &'static str,
    /// How a `429` of this throttle is counted.
    throttled: Event,
    attempts: Mutex<HashMap<IpAddr, VecDeque<i64>>>,
}

/// Bound on the addresses remembered; past it, stale entries are dropped first.
const LIMITER_MAX_ADDRESSES: usize = 100_000;

/// A place in an address's window, held while its password is checked.
#[derive(Debug)]
#[must_use]
pub struct Attempt {
    ip: Option<IpAddr>,
    at: i64,
    /// Its row, when the database keeps the throttle.
    row: Option<i64>,
}

impl LoginLimiter {
    pub fn new(name: &'static str, limit: u32, message: &'static str, throttled: Event) -> Self {
        LoginLimiter {
            name,
            limit,
            message,
            throttled,
            attempts: Mutex::new(HashMap::new()),
        }
    }

    /// Takes a place for one attempt from `ip`, or `429` when `limit` attempts in the
    /// last 60 s have failed or are still being checked.
    /// On PostgreSQL the window is in the database, shared by every node.
    pub(crate) fn reserve(&self, db: &Db, ip: Option<IpAddr>, now: i64) -> Result<Attempt, Error> {
        let (Some(addr), true) = (ip, self.limit > 0) else {
            return Ok(Attempt {
                ip: None,
                at: now,
                row: None,
            });
        };
        match db.throttle_reserve(self.name, &addr.to_string(), self.limit, now)? {
            Some(Ok(row)) => Ok(Attempt {
                ip,
                at: now,
                row: Some(row),
            }),
            Some(Err(oldest)) => Err(self.refuse(oldest, now)),
            None => self.reserve_here(addr, now),
        }
    }

    /// The `429` of an attempt refused at `now`, the oldest of the window at `oldest`.
    fn refuse(&self, oldest: i64, now: i64) -> Error {
        METRICS.event(self.throttled);
        Error::TooManyRequests {
            message: self.message,
            retry_after: (oldest + 60 - now).max(1) as u64,
        }
    }

    /// [`LoginLimiter::reserve`] in this process's memory.
    fn reserve_here(&self, addr: IpAddr, now: i64) -> Result<Attempt, Error> {
        let ip = Some(addr);
        let mut map = self.attempts.lock().unwrap_or_else(PoisonError::into_inner);
        if map.len() >= LIMITER_MAX_ADDRESSES && !map.contains_key(&addr) {
            map.retain(|_, t| t.back().is_some_and(|last| *last > now - 60));
            if map.len() >= LIMITER_MAX_ADDRESSES {
                log::warn!(
                    "login throttle: more than {LIMITER_MAX_ADDRESSES} addresses failing at once"
                );
                return Err(Error::Busy);
            }
        }
        let times = map.entry(addr).or_default();
        while times.front().is_some_and(|t| *t <= now - 60) {
            times.pop_front();
        }
        if times.len() >= self.limit as usize {
            let oldest = times.front().copied().unwrap_or(now);
            return Err(self.refuse(oldest, now));
        }
        times.push_back(now);
        Ok(Attempt {
            ip,
            at: now,
            row: None,
        })
    }

    /// The attempt succeeded: it does not count.
    pub fn release(&self, db: &Db, attempt: Attempt) {
        if let Some(row) = attempt.row {
            // Failing to give the place back only makes the window stricter.
            let _ = db.throttle_release(row);
            return;
        }
        let Some(addr) = attempt.ip else { return };
        let mut map = self.attempts.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(times) = map.get_mut(&addr) {
            if let Some(i) = times.iter().rposition(|t| *t == attempt.at) {
                times.remove(i);
            }
            if times.is_empty() {
                map.remove(&addr);
            }
        }
    }
}

impl LoginLimiter {
    /// The login throttle: `rate` failed logins a minute per client address.
    pub fn logins(rate: u32) -> LoginLimiter {
        LoginLimiter::new("login", rate, FAILED_LOGINS, Event::LoginThrottled)
    }

    /// The passwordless-login throttle: every options request counts (API.md: 10 a
    /// minute per client address).
    pub fn passkey_logins(rate: u32) -> LoginLimiter {
        LoginLimiter::new(
            "passkey_login",
            rate,
            "Too many requests.",
            Event::PasskeyLoginThrottled,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The SQLite engine, whose throttles live in this process.
    fn db() -> (tempfile::TempDir, Db) {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(
            &dir.path().join("t.db"),
            crate::durability::Durability::Normal,
        )
        .unwrap();
        (dir, db)
    }

    fn limiter(limit: u32) -> LoginLimiter {
        LoginLimiter::logins(limit)
    }

    #[test]
    fn login_limiter_slides_and_forgets() {
        let (_dir, db) = db();
        let l = limiter(3);
        let ip = Some(IpAddr::from([10, 0, 0, 1]));
        for t in 0..3 {
            let _failed = l.reserve(&db, ip, 100 + t).unwrap();
        }
        match l.reserve(&db, ip, 103) {
            Err(Error::TooManyRequests { retry_after, .. }) => assert_eq!(retry_after, 57),
            other => panic!("{other:?}"),
        }
        assert!(l
            .reserve(&db, Some(IpAddr::from([10, 0, 0, 2])), 103)
            .is_ok());
        assert!(
            l.reserve(&db, ip, 161).is_ok(),
            "the first failure has slid out"
        );
        assert!(limiter(0).reserve(&db, ip, 103).is_ok());
    }

    #[test]
    fn attempts_in_flight_count_and_successes_give_their_place_back() {
        let (_dir, db) = db();
        let l = limiter(2);
        let ip = Some(IpAddr::from([10, 0, 0, 1]));
        // Two checks running at once: a third is refused before its password is looked at.
        let a = l.reserve(&db, ip, 100).unwrap();
        let b = l.reserve(&db, ip, 100).unwrap();
        assert!(matches!(
            l.reserve(&db, ip, 100),
            Err(Error::TooManyRequests { .. })
        ));
        // One of them was right: its place is free again; the wrong one still counts.
        l.release(&db, a);
        let _c = l.reserve(&db, ip, 101).unwrap();
        assert!(l.reserve(&db, ip, 101).is_err());
        drop(b);
    }
}
