//! The OpenID provider's registry, through the real binary (#26): `mfad client add`,
//! `list`, `show`, `secret`, `remove` on the data of a running server, the rules of what
//! may be registered, the secret shown once and never stored, the start refused when a
//! client is registered without an issuer it can be given. (On PostgreSQL too.)

use crate::common::{all_file_bytes, cli, contains, postgres_rows, Server};

const GRAFANA: [&str; 8] = [
    "client",
    "add",
    "--id",
    "grafana",
    "--name",
    "Grafana",
    "--redirect-uri",
    "https://grafana.example.com/login/generic_oauth",
];

/// The secret of `client add`'s or `client secret`'s output.
fn secret_of(out: &str) -> String {
    let line = out
        .lines()
        .find_map(|l| l.strip_prefix("client_secret: "))
        .unwrap_or_else(|| panic!("no client_secret line in {out}"));
    assert_eq!(line.len(), 43, "{line}");
    line.to_string()
}

/// Whether `needle` is anywhere in the server's stored data: the SQLite files of its
/// data directory, or every PostgreSQL row as text (and `bytea` as hex).
fn stored_anywhere(s: &Server, needle: &str) -> bool {
    let files = all_file_bytes(&s.dir);
    let in_files = files.iter().any(|(_, b)| contains(b, needle.as_bytes()));
    in_files || postgres_rows(&s.dir).is_some_and(|rows| rows.contains(needle))
}

#[test]
fn clients_are_registered_listed_shown_given_a_new_secret_and_removed() {
    let s = Server::start(&["--public-url", "https://auth.example.com"]);
    let (ok, out, err) = s.cli(
        &[
            &GRAFANA[..],
            &["--post-logout-uri", "https://grafana.example.com/"],
            // As the operator's environment gives it to the server (MFAD_PUBLIC_URL).
            &["--public-url", "https://auth.example.com"],
        ]
        .concat(),
        None,
    );
    assert!(ok, "{err}");
    let secret = secret_of(&out);
    assert!(out.contains("policy two_factor, ID tokens RS256"), "{out}");
    assert!(
        out.contains("https://auth.example.com/.well-known/openid-configuration"),
        "{out}"
    );
    assert!(stored_anywhere(
        &s,
        "grafana.example.com/login/generic_oauth"
    ));
    assert!(!stored_anywhere(&s, &secret), "the secret is stored");
    // The same id again: refused, the first kept.
    let (ok, _, err) = s.cli(&GRAFANA, None);
    assert!(!ok);
    assert!(
        err.contains("a client with id grafana is registered already"),
        "{err}"
    );
    // A public client: no secret.
    let (ok, out, err) = s.cli(
        &[
            "client",
            "add",
            "--id",
            "spa",
            "--name",
            "The SPA",
            "--redirect-uri",
            "http://127.0.0.1:5173/cb",
            "--public",
            "--policy",
            "one_factor",
            "--id-token-alg",
            "EdDSA",
        ],
        None,
    );
    assert!(ok, "{err}");
    assert!(!out.contains("client_secret"), "{out}");
    assert!(out.contains("PKCE"), "{out}");
    let (ok, out, _) = s.cli(&["client", "list"], None);
    assert!(ok);
    let rows: Vec<&str> = out.lines().skip(1).collect();
    assert_eq!(rows.len(), 2, "{out}");
    assert!(
        rows[0].starts_with("grafana ") && rows[0].contains("confidential"),
        "{out}"
    );
    assert!(
        rows[1].starts_with("spa ") && rows[1].contains("public"),
        "{out}"
    );
    assert!(
        rows[1].contains("one_factor") && rows[1].contains("EdDSA"),
        "{out}"
    );
    let (ok, out, _) = s.cli(&["client", "show", "--id", "grafana"], None);
    assert!(ok);
    assert!(
        out.contains("    https://grafana.example.com/login/generic_oauth\n"),
        "{out}"
    );
    assert!(
        out.contains("post-logout URIs:\n    https://grafana.example.com/\n"),
        "{out}"
    );
    assert!(!out.contains(&secret));
    // A new secret: shown once, the old one's hash gone; a public client has none.
    let (ok, out, err) = s.cli(&["client", "secret", "--id", "grafana"], None);
    assert!(ok, "{err}");
    let again = secret_of(&out);
    assert_ne!(again, secret);
    assert!(!stored_anywhere(&s, &again));
    let (ok, _, err) = s.cli(&["client", "secret", "--id", "spa"], None);
    assert!(!ok);
    assert!(err.contains("client spa is public"), "{err}");
    // Removed: gone from the list; a second removal says there is none.
    let (ok, out, err) = s.cli(&["client", "remove", "--id", "grafana"], None);
    assert!(ok, "{err}");
    assert_eq!(out, "removed client grafana\n");
    let (_, out, _) = s.cli(&["client", "list"], None);
    assert!(!out.contains("grafana"), "{out}");
    let (ok, _, err) = s.cli(&["client", "remove", "--id", "grafana"], None);
    assert!(!ok);
    assert!(err.contains("no client with id grafana"), "{err}");
    let (ok, _, err) = s.cli(&["client", "show", "--id", "grafana"], None);
    assert!(!ok);
    assert!(err.contains("no client with id grafana"), "{err}");
    // Every change is in the audit trail, named by the client, never with a secret.
    let (_, trail, _) = s.cli(&["audit"], None);
    for event in [
        "oidc_client_added (client grafana)",
        "oidc_client_added (client spa)",
        "oidc_client_secret_replaced (client grafana)",
        "oidc_client_removed (client grafana)",
    ] {
        assert!(trail.contains(event), "{event} in {trail}");
    }
}

#[test]
fn what_cannot_be_registered_is_refused_with_its_reason_and_nothing_is_stored() {
    let s = Server::start(&["--public-url", "https://auth.example.com"]);
    for (extra, says) in [
        (
            &["--redirect-uri", "http://grafana.example.com/cb"][..],
            "is plain http to a host other than loopback",
        ),
        (
            &["--redirect-uri", "https://grafana.example.com/cb#top"][..],
            "has a fragment",
        ),
        (&["--redirect-uri", "/cb"][..], "is not an absolute URI"),
        (
            &["--post-logout-uri", "https://user@grafana.example.com/"][..],
            "has a user name or password",
        ),
    ] {
        let args = [&GRAFANA[..6], extra, &GRAFANA[6..]].concat();
        // GRAFANA's own redirect URI is fine; the extra one is not.
        let (ok, _, err) = s.cli(&args, None);
        assert!(!ok, "{extra:?} was taken");
        assert!(err.contains(says), "{extra:?}: {err}");
    }
    let (ok, _, err) = s.cli(&["client", "add", "--id", "a b", "--name", "x"], None);
    assert!(!ok);
    assert!(err.contains("--id \"a b\""), "{err}");
    let (_, out, _) = s.cli(&["client", "list"], None);
    assert_eq!(out.lines().count(), 1, "only the heading: {out}");
}

#[test]
fn a_registered_client_needs_an_https_issuer_at_start() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let s = Server::start_in(&dir, &[]);
    // An issuer of plain http to another host is refused before anything is stored.
    let (ok, _, err) = cli(
        &dir,
        &[&GRAFANA[..], &["--public-url", "http://auth.example.com"]].concat(),
        None,
    );
    assert!(!ok);
    assert!(err.contains("must be https"), "{err}");
    let (ok, out, err) = cli(&dir, &GRAFANA, None);
    assert!(ok, "{err}");
    assert!(
        out.contains("once started with --public-url https://"),
        "{out}"
    );
    drop(s);
    // With a client registered, a start without an issuer it can be given stops.
    for extra in [&[][..], &["--public-url", "http://auth.example.com"][..]] {
        let (ok, _, err) = cli(
            &dir,
            &[&["serve", "--listen", "127.0.0.1:0"][..], extra].concat(),
            None,
        );
        assert!(!ok, "started with {extra:?}");
        assert!(
            err.contains("OpenID client(s) are registered (such as grafana)"),
            "{err}"
        );
    }
    let s = Server::start_in(&dir, &["--public-url", "https://auth.example.com"]);
    assert_eq!(s.get("/healthz", None).status, 200);
}
