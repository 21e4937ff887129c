//! The throttles against clients that rotate addresses: an IPv6 client is its network
//! (a /64 unless `--throttle-ipv6-prefix` says otherwise), and the passwordless-login
//! ceremonies open at once are capped whatever the number of clients. Each client
//! here is named by `X-Forwarded-For` behind `--trusted-proxy 127.0.0.1`.

use std::sync::atomic::{AtomicU32, Ordering};

use serde_json::json;

use crate::common::*;

const LOGIN_OPTIONS: &str = "/api/auth/passkey/login/options";

fn behind_proxy(extra: &[&str]) -> Server {
    let mut args = vec!["--trusted-proxy", "127.0.0.1/32"];
    args.extend_from_slice(extra);
    Server::start(&args)
}

/// A request from `client`, as the trusted proxy forwards it.
fn from(s: &Server, client: &str, path: &str, body: &serde_json::Value) -> Resp {
    s.request(
        "POST",
        path,
        &[
            ("Content-Type", "application/json"),
            ("X-Forwarded-For", client),
        ],
        Some(&body.to_string()),
    )
}

fn wrong_login(s: &Server, client: &str) -> u16 {
    let body = json!({ "email": "nobody@example.com", "password": "wrong" });
    from(s, client, "/api/auth", &body).status
}

/// The passwordless-login ceremonies stored.
fn login_ceremonies(s: &Server) -> i64 {
    select_i64s(
        &s.dir,
        "SELECT count(*) FROM passkey_ceremonies WHERE purpose = 1",
    )[0]
}

/// From one /64 with a new interface id each time, 12 of 12 failed logins went
/// unthrottled and every passwordless options request was answered (and stored).
#[test]
fn rotating_interface_ids_inside_one_ipv6_network_are_one_client() {
    let s = behind_proxy(&[]);
    for i in 1..=5 {
        let id = format!("2001:db8:1:2:{i:x}:{:x}::1", i * 7919);
        assert_eq!(wrong_login(&s, &id), 401, "failure {i}");
    }
    assert_eq!(
        wrong_login(&s, "2001:db8:1:2:ffff:ffff:ffff:fffe"),
        429,
        "a sixth interface id of the same /64"
    );
    assert_eq!(wrong_login(&s, "2001:db8:1:3::1"), 401, "the next /64");
    assert_eq!(wrong_login(&s, "192.0.2.1"), 401);

    for i in 1..=10 {
        let id = format!("2001:db8:5:6::{i:x}");
        let r = from(&s, &id, LOGIN_OPTIONS, &json!({}));
        assert_eq!(r.status, 200, "ceremony {i}: {}", r.text());
    }
    let r = from(&s, "2001:db8:5:6:abcd::99", LOGIN_OPTIONS, &json!({}));
    assert_eq!(r.status, 429, "{}", r.text());
    assert_eq!(r.json()["error"], "Too many requests.");
    assert_eq!(
        login_ceremonies(&s),
        10,
        "one /64 holds at most its 10 a minute"
    );

    // The audit still names the address itself, not the network.
    let (ok, trail, _) = s.cli(&["audit"], None);
    assert!(ok);
    assert!(trail.contains("from 2001:db8:1:2:1:1eef:0:1"), "{trail}");
}

/// `--throttle-ipv6-prefix` is the length a client is counted by: 128 counts exact
/// addresses again, 48 a whole site.
#[test]
fn the_ipv6_prefix_length_is_a_setting() {
    let exact = behind_proxy(&["--throttle-ipv6-prefix", "128"]);
    for i in 1..=6 {
        assert_eq!(wrong_login(&exact, &format!("2001:db8:1:2::{i}")), 401);
    }
    // ::1 failed once; four more make its five.
    for _ in 0..4 {
        assert_eq!(wrong_login(&exact, "2001:db8:1:2::1"), 401);
    }
    assert_eq!(wrong_login(&exact, "2001:db8:1:2::1"), 429);

    let site = behind_proxy(&["--throttle-ipv6-prefix", "48"]);
    for i in 1..=5 {
        assert_eq!(wrong_login(&site, &format!("2001:db8:1:{i}::1")), 401);
    }
    assert_eq!(wrong_login(&site, "2001:db8:1:ffff::1"), 429);
    assert_eq!(wrong_login(&site, "2001:db8:2::1"), 401);

    for bad in ["31", "129", "sixty-four"] {
        let err = refused_setting("--throttle-ipv6-prefix", bad);
        assert!(
            err.contains("--throttle-ipv6-prefix") && err.contains("from 32 to 128"),
            "{err}"
        );
    }
}

/// Past 10,000 open passwordless-login ceremonies, new ones are `503` however many
/// networks ask (9,006 rows in 2 s from one /64 before; each network is now held to 10
/// a minute, and all of them together to the cap).
#[test]
fn open_passwordless_ceremonies_are_capped_across_clients() {
    let s = behind_proxy(&[]);
    let next = AtomicU32::new(0);
    let answered = AtomicU32::new(0);
    std::thread::scope(|scope| {
        for _ in 0..8 {
            scope.spawn(|| loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= 10_000 {
                    return;
                }
                // A network of its own for each: no per-client throttle in the way.
                let client = format!("2001:db8:{:x}:{:x}::1", n >> 16, n & 0xffff);
                let r = from(&s, &client, LOGIN_OPTIONS, &json!({}));
                assert_eq!(r.status, 200, "ceremony {n}: {}", r.text());
                answered.fetch_add(1, Ordering::Relaxed);
            });
        }
    });
    assert_eq!(answered.load(Ordering::Relaxed), 10_000);
    let r = from(&s, "2001:db8:ffff::1", LOGIN_OPTIONS, &json!({}));
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(r.header("Retry-After"), Some("1"));
    assert_eq!(login_ceremonies(&s), 10_000);
    assert!(s.log_has("ceremonies are open"));
    // Password sign-in is untouched by it.
    assert_eq!(wrong_login(&s, "2001:db8:ffff::2"), 401);
}
