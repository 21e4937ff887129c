//! The per-client throttles: failed logins, and passwordless-login ceremonies. Each
//! keeps a sliding minute per client ([`Client`]: an IPv4 address, or an IPv6 network),
//! in this process's memory or, on PostgreSQL, in the database where every node shares
//! it; and the cap on the passwordless-login ceremonies open at once ([`Ceremonies`]).
//! It may call `store` (the shared window), `metrics` and `error`; nothing else of
//! `service`, whose [`super::App`] holds one of each.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::net::IpAddr;
use std::sync::{Mutex, PoisonError};

use crate::error::Error;
use crate::metrics::{Event, METRICS};
use crate::store::Db;

/// Passwordless-login ceremonies a client may start per minute (API.md).
pub const LOGIN_OPTIONS_RATE: u32 = 10;

/// Passwordless-login ceremonies one node keeps open at once (each lives 5 minutes).
/// A client has at most 50 of them (its 10 a minute); this bounds what many clients
/// together can make the database hold.
pub const LIVE_LOGIN_CEREMONIES: usize = 10_000;

/// The login throttle's `429`.
const FAILED_LOGINS: &str = "Too many failed login attempts. Try again later.";

/// How the throttles count clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThrottleSettings {
    /// Failed logins per client and minute (`--login-rate`; 0 turns it off).
    pub login_rate: u32,
    /// The IPv6 prefix length one client is counted by (`--throttle-ipv6-prefix`).
    pub ipv6_prefix: u8,
}

impl Default for ThrottleSettings {
    fn default() -> Self {
        ThrottleSettings {
            login_rate: 5,
            ipv6_prefix: 64,
        }
    }
}

/// Whom a throttle counts: an IPv4 address, or the IPv6 network of `bits` around an
/// IPv6 address. One /64 is one subscriber's network, whose interface ids anyone on it
/// can rotate at will, so counting exact IPv6 addresses counted nothing. An
/// IPv4-mapped IPv6 address counts as its IPv4 address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Client {
    net: IpAddr,
    bits: u8,
}

impl Client {
    pub fn of(ip: IpAddr, ipv6_prefix: u8) -> Client {
        let v6 = match ip {
            IpAddr::V4(_) => return Client { net: ip, bits: 32 },
            IpAddr::V6(v6) => v6,
        };
        if let Some(v4) = v6.to_ipv4_mapped() {
            return Client {
                net: IpAddr::V4(v4),
                bits: 32,
            };
        }
        let bits = ipv6_prefix.min(128);
        let mask = u128::MAX.checked_shl(128 - u32::from(bits)).unwrap_or(0);
        Client {
            net: IpAddr::V6((u128::from(v6) & mask).into()),
            bits,
        }
    }
}

/// `192.0.2.1`, or `2001:db8:1:2::/64`: the key of the shared window in the database.
impl fmt::Display for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.net {
            IpAddr::V4(v4) => write!(f, "{v4}"),
            IpAddr::V6(v6) => write!(f, "{v6}/{}", self.bits),
        }
    }
}

/// Failed logins per client in a sliding minute. An attempt takes its place in the
/// window *before* its password is checked ([`LoginLimiter::reserve`]) and gives it
/// back only when it succeeds: checking first and counting after let every password
/// check already running slip past the limit.
pub struct LoginLimiter {
    /// Its name in the database, where several nodes share it (PostgreSQL).
    name: &'static str,
    limit: u32,
    ipv6_prefix: u8,
    /// What the `429` says.
    message: &'static str,
    /// How a `429` of this throttle is counted.
    throttled: Event,
    /// Clients remembered at most; a new one past it makes the longest quiet ones
    /// forgotten.
    capacity: usize,
    attempts: Mutex<HashMap<Client, VecDeque<i64>>>,
}

/// Bound on the clients a limiter remembers in memory.
const LIMITER_MAX_CLIENTS: usize = 100_000;

/// A place in a client's window, held while its password is checked.
#[derive(Debug)]
#[must_use]
pub struct Attempt {
    client: Option<Client>,
    at: i64,
    /// Its row, when the database keeps the throttle.
    row: Option<i64>,
}

impl LoginLimiter {
    pub fn new(
        name: &'static str,
        limit: u32,
        ipv6_prefix: u8,
        message: &'static str,
        throttled: Event,
    ) -> Self {
        LoginLimiter {
            name,
            limit,
            ipv6_prefix,
            message,
            throttled,
            capacity: LIMITER_MAX_CLIENTS,
            attempts: Mutex::new(HashMap::new()),
        }
    }

    /// Takes a place for one attempt from `ip`'s client, or `429` when `limit`
    /// attempts in the last 60 s have failed or are still being checked.
    /// On PostgreSQL the window is in the database, shared by every node.
    pub(crate) fn reserve(&self, db: &Db, ip: Option<IpAddr>, now: i64) -> Result<Attempt, Error> {
        let (Some(ip), true) = (ip, self.limit > 0) else {
            return Ok(Attempt {
                client: None,
                at: now,
                row: None,
            });
        };
        let client = Client::of(ip, self.ipv6_prefix);
        match db.throttle_reserve(self.name, &client.to_string(), self.limit, now)? {
            Some(Ok(row)) => Ok(Attempt {
                client: Some(client),
                at: now,
                row: Some(row),
            }),
            Some(Err(oldest)) => Err(self.refuse(oldest, now)),
            None => self.reserve_here(client, now),
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
    fn reserve_here(&self, client: Client, now: i64) -> Result<Attempt, Error> {
        let mut map = self.attempts.lock().unwrap_or_else(PoisonError::into_inner);
        if map.len() >= self.capacity && !map.contains_key(&client) {
            make_room(&mut map, self.capacity, now);
        }
        let times = map.entry(client).or_default();
        while times.front().is_some_and(|t| *t <= now - 60) {
            times.pop_front();
        }
        if times.len() >= self.limit as usize {
            let oldest = times.front().copied().unwrap_or(now);
            return Err(self.refuse(oldest, now));
        }
        times.push_back(now);
        Ok(Attempt {
            client: Some(client),
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
        let Some(client) = attempt.client else { return };
        let mut map = self.attempts.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(times) = map.get_mut(&client) {
            if let Some(i) = times.iter().rposition(|t| *t == attempt.at) {
                times.remove(i);
            }
            if times.is_empty() {
                map.remove(&client);
            }
        }
    }
}

/// Frees room in a full map for one more client: first the clients whose window has
/// emptied, then, if that is not enough, the eighth whose last attempt is oldest.
/// Refusing every new client instead would let whoever fills the map lock everyone
/// out; forgetting the quietest only gives a few of them a fresh minute.
fn make_room(map: &mut HashMap<Client, VecDeque<i64>>, capacity: usize, now: i64) {
    map.retain(|_, t| t.back().is_some_and(|last| *last > now - 60));
    if map.len() < capacity {
        return;
    }
    let mut by_last: Vec<(i64, Client)> = map
        .iter()
        .map(|(c, t)| (t.back().copied().unwrap_or(i64::MIN), *c))
        .collect();
    let forget = (capacity / 8).max(1).min(by_last.len());
    by_last.select_nth_unstable_by_key(forget - 1, |(last, _)| *last);
    for (_, client) in &by_last[..forget] {
        map.remove(client);
    }
    log::warn!(
        "login throttle: more than {capacity} clients failing within a minute; forgot the \
         {forget} quietest"
    );
}

impl LoginLimiter {
    /// The login throttle: `rate` failed logins a minute per client.
    pub fn logins(settings: ThrottleSettings) -> LoginLimiter {
        LoginLimiter::new(
            "login",
            settings.login_rate,
            settings.ipv6_prefix,
            FAILED_LOGINS,
            Event::LoginThrottled,
        )
    }

    /// The passwordless-login throttle: every options request counts (API.md: 10 a
    /// minute per client).
    pub fn passkey_logins(settings: ThrottleSettings) -> LoginLimiter {
        LoginLimiter::new(
            "passkey_login",
            LOGIN_OPTIONS_RATE,
            settings.ipv6_prefix,
            "Too many requests.",
            Event::PasskeyLoginThrottled,
        )
    }
}

/// The passwordless-login ceremonies this node has opened and that have not yet
/// expired, capped: past the cap a new one is `503` until the oldest ends. Counted per
/// node (each node's cap bounds what it stores), and by the time each ends, not by
/// whether it was answered: an answered one may have been finished on another node.
pub struct Ceremonies {
    cap: usize,
    open: Mutex<OpenCeremonies>,
}

struct OpenCeremonies {
    /// When each ends, oldest first.
    ends: VecDeque<i64>,
    /// Whether the refusals since the cap was last reached have been logged.
    warned: bool,
}

impl Ceremonies {
    pub fn new(cap: usize) -> Ceremonies {
        Ceremonies {
            cap,
            open: Mutex::new(OpenCeremonies {
                ends: VecDeque::new(),
                warned: false,
            }),
        }
    }

    /// Takes a place for a ceremony opened at `now` that ends at `ends`, or
    /// [`Error::Busy`] while `cap` are open.
    pub fn open(&self, now: i64, ends: i64) -> Result<(), Error> {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        while open.ends.front().is_some_and(|e| *e <= now) {
            open.ends.pop_front();
        }
        if open.ends.len() >= self.cap {
            if !open.warned {
                open.warned = true;
                log::warn!(
                    "passkey sign-in: {} ceremonies are open, the most this node keeps; new \
                     ones get 503 until the oldest expire",
                    self.cap
                );
            }
            return Err(Error::Busy);
        }
        open.warned = false;
        open.ends.push_back(ends);
        Ok(())
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
        LoginLimiter::logins(ThrottleSettings {
            login_rate: limit,
            ..ThrottleSettings::default()
        })
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

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn an_ipv6_client_is_its_network_and_an_ipv4_one_its_address() {
        let of = |text: &str, bits| Client::of(ip(text), bits);
        assert_eq!(
            of("2001:db8:1:2:aaaa:bbbb:cccc:dddd", 64),
            of("2001:db8:1:2::1", 64)
        );
        assert_ne!(of("2001:db8:1:2::1", 64), of("2001:db8:1:3::1", 64));
        assert_eq!(of("2001:db8:1:2::1", 64).to_string(), "2001:db8:1:2::/64");
        assert_eq!(of("2001:db8:1:2:3::1", 48).to_string(), "2001:db8:1::/48");
        assert_eq!(of("2001:db8::7", 128).to_string(), "2001:db8::7/128");
        assert_ne!(of("2001:db8::7", 128), of("2001:db8::8", 128));
        // The IPv4 address inside a mapped IPv6 one, whatever the prefix.
        assert_eq!(of("::ffff:192.0.2.1", 64), of("192.0.2.1", 64));
        assert_eq!(of("::ffff:192.0.2.1", 64).to_string(), "192.0.2.1");
        assert_ne!(of("192.0.2.1", 64), of("192.0.2.2", 64));
    }

    #[test]
    fn rotating_interface_ids_inside_one_network_share_a_window() {
        let (_dir, db) = db();
        let l = limiter(3);
        for i in 1..=3u16 {
            let rotated = Some(ip(&format!("2001:db8:1:2::{i:x}")));
            let _failed = l.reserve(&db, rotated, 100).unwrap();
        }
        assert!(matches!(
            l.reserve(&db, Some(ip("2001:db8:1:2:ffff::9")), 100),
            Err(Error::TooManyRequests { .. })
        ));
        assert!(l.reserve(&db, Some(ip("2001:db8:1:3::1")), 100).is_ok());
    }

    #[test]
    fn a_full_limiter_forgets_its_quietest_clients_rather_than_refusing_new_ones() {
        let (_dir, db) = db();
        let mut l = limiter(2);
        l.capacity = 16;
        let client = |i: u32| Some(IpAddr::from((0x0a00_0000 + i).to_be_bytes()));
        // Sixteen clients fail at 100, 101, …: the map is full.
        for i in 0..16 {
            let _failed = l.reserve(&db, client(i), 100 + i64::from(i)).unwrap();
            let _failed = l.reserve(&db, client(i), 100 + i64::from(i)).unwrap();
        }
        // A seventeenth is let in (it used to be 503 for every new client) …
        let _new = l.reserve(&db, client(16), 120).unwrap();
        let map = l.attempts.lock().unwrap();
        assert!(map.len() <= 16, "{} clients remembered", map.len());
        drop(map);
        // … the two quietest (16 / 8) were forgotten, and so get a fresh window …
        assert!(l.reserve(&db, client(0), 120).is_ok());
        assert!(l.reserve(&db, client(1), 120).is_ok());
        // … while the latest are still held to theirs.
        assert!(matches!(
            l.reserve(&db, client(15), 120),
            Err(Error::TooManyRequests { .. })
        ));
    }

    #[test]
    fn ceremonies_are_capped_until_the_oldest_end() {
        let c = Ceremonies::new(3);
        c.open(100, 400).unwrap();
        c.open(101, 401).unwrap();
        c.open(102, 402).unwrap();
        assert_eq!(c.open(103, 403), Err(Error::Busy));
        assert_eq!(c.open(399, 699), Err(Error::Busy));
        // The first has ended: one place.
        c.open(400, 700).unwrap();
        assert_eq!(c.open(400, 700), Err(Error::Busy));
        // All of them ended.
        for t in 0..3 {
            c.open(800, 1100 + t).unwrap();
        }
    }
}
