//! The storage contract, tested on both engines: every test here runs once on SQLite
//! and once on PostgreSQL (a new database of the server named by
//! `MFAD_TEST_STORE_URL`, a URL of a database it may create databases from). Without
//! that variable the PostgreSQL half says SKIPPED; under `CI=true` it fails.

use super::{Account, Ceremony, Db, Passkey, Purpose, Totp};
use crate::auth::{Login, SignIn};
use crate::error::Error;

/// A database of `engine` and what keeps it alive (SQLite's directory).
fn open(engine: &str) -> Option<(Db, Option<tempfile::TempDir>)> {
    match engine {
        "sqlite" => {
            let dir = tempfile::tempdir().unwrap();
            let db = Db::open(
                &dir.path().join("t.db"),
                crate::durability::Durability::Normal,
            )
            .unwrap();
            Some((db, Some(dir)))
        }
        #[cfg(feature = "postgres")]
        _ => {
            let base = postgres_server("the store")?;
            Some((Db::connect_postgres(&new_database(&base)).unwrap(), None))
        }
        #[cfg(not(feature = "postgres"))]
        _ => None,
    }
}

/// The PostgreSQL server `MFAD_TEST_STORE_URL` names, or `None` (and one SKIPPED line
/// about `what`) without it; under `CI=true` its absence fails.
#[cfg(feature = "postgres")]
fn postgres_server(what: &str) -> Option<String> {
    let base = std::env::var("MFAD_TEST_STORE_URL")
        .ok()
        .filter(|u| !u.is_empty());
    if base.is_none() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI must test {what} on PostgreSQL: set MFAD_TEST_STORE_URL"
        );
        eprintln!("SKIPPED: {what} on PostgreSQL (no MFAD_TEST_STORE_URL)");
    }
    base
}

/// A new, empty database on the server of `base`; its URL.
#[cfg(feature = "postgres")]
fn new_database(base: &str) -> String {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let name = format!(
        "mfad_store_{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    let mut admin = ::postgres::Client::connect(base, ::postgres::NoTls).unwrap();
    admin
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .unwrap();
    let (server, query) = match base.split_once('?') {
        Some((s, q)) => (s, format!("?{q}")),
        None => (base, String::new()),
    };
    let (server, _) = server.rsplit_once('/').unwrap();
    format!("{server}/{name}{query}")
}

/// Each test, once per engine: `store::tests::sqlite::NAME` and
/// `store::tests::postgres::NAME`.
macro_rules! on_both {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(#[test]
            fn $name() {
                let (db, _keep) = super::open("sqlite").unwrap();
                super::$name(&db);
            })*
        }
        #[cfg(feature = "postgres")]
        mod postgres {
            $(#[test]
            fn $name() {
                if let Some((db, _keep)) = super::open("postgres") {
                    super::$name(&db);
                }
            })*
        }
    };
}

on_both!(
    emails_are_case_insensitive_and_unique,
    text_with_nul_matches_nothing,
    external_accounts_are_made_once,
    account_times_land_in_their_own_columns,
    deleting_an_account_deletes_what_is_its,
    pending_secret_cannot_replace_an_active_one,
    raise_last_step_only_moves_forward,
    backup_codes_are_spent_once_and_replaced_whole,
    clearing_totp_says_whether_it_was_on,
    a_failed_write_rolls_back,
    account_lock_after_limit,
    challenges_are_taken_once_and_count_their_failures,
    passkeys_are_unique_their_counters_only_grow,
    ceremonies_are_single_use_and_bound,
    refresh_tokens_rotate_once_and_revoke_by_family_or_account,
    verifications_are_redeemed_once_by_their_account,
    purge_deletes_only_what_expired,
    meta_is_replaced_in_place,
    the_audit_trail_filters_and_is_pruned_by_age,
);

fn account(db: &Db, email: &str) -> i64 {
    db.write(|tx| tx.create_account(email, None, 1))
        .unwrap()
        .unwrap()
}

/// An account whose TOTP is on (secret `b"s"`, last step 10), and its id.
fn account_with_totp(db: &Db) -> i64 {
    let id = account(db, "a@b.c");
    assert!(db.write(|tx| tx.set_pending_secret(id, b"s")).unwrap());
    assert!(db
        .write(|tx| tx.activate_secret(id, b"s", 10, b"salt", 1))
        .unwrap());
    id
}

fn emails_are_case_insensitive_and_unique(db: &Db) {
    let id = account(db, "User@Example.COM");
    let found = db
        .read(|tx| tx.account_by_email(" user@example.com"))
        .unwrap();
    assert_eq!(found.unwrap().id, id);
    assert_eq!(
        db.write(|tx| tx.create_account("USER@example.com", None, 1))
            .unwrap(),
        None
    );
    let list = db.read(|tx| tx.list_accounts()).unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(
        (
            list[0].name.as_str(),
            list[0].has_password,
            list[0].totp_enabled
        ),
        ("user@example.com", false, false)
    );
}

fn text_with_nul_matches_nothing(db: &Db) {
    account(db, "a@b.c");
    assert_eq!(db.read(|tx| tx.account_by_email("a@b.c\0")).unwrap(), None);
    assert_eq!(db.read(|tx| tx.account_by_subject("x\0")).unwrap(), None);
}

fn external_accounts_are_made_once(db: &Db) {
    let a = db
        .write(|tx| tx.ensure_external_account("sub-1", 5))
        .unwrap();
    let b = db
        .write(|tx| tx.ensure_external_account("sub-1", 9))
        .unwrap();
    assert_eq!(a, b);
    assert_eq!(
        (a.email, a.external_subject.as_deref(), a.created_at),
        (None, Some("sub-1"), 5)
    );
    let list = db.read(|tx| tx.list_accounts()).unwrap();
    assert_eq!(list[0].name, "external:sub-1");
}

/// `touch_updated` and `touch_connected` name `$2` before `$1`: a swapped argument
/// would write the id as the time.
fn account_times_land_in_their_own_columns(db: &Db) {
    let id = account(db, "a@b.c");
    db.write(|tx| tx.touch_updated(id, 1_000)).unwrap();
    db.write(|tx| tx.touch_connected(id, 2_000)).unwrap();
    assert!(db.write(|tx| tx.set_password(id, "hash")).unwrap());
    assert!(!db.write(|tx| tx.set_password(id + 1, "hash")).unwrap());
    let a: Account = db.read(|tx| tx.account_by_id(id)).unwrap().unwrap();
    assert_eq!(
        (
            a.updated_at,
            a.last_connected_at,
            a.password_hash.as_deref()
        ),
        (Some(1_000), Some(2_000), Some("hash"))
    );
}

fn deleting_an_account_deletes_what_is_its(db: &Db) {
    let id = account_with_totp(db);
    db.write(|tx| tx.replace_backup_codes(id, b"salt", &[[1; 32]]))
        .unwrap();
    db.write(|tx| tx.insert_passkey(&passkey(1, id, b"cred")))
        .unwrap();
    assert!(db.write(|tx| tx.delete_account(id)).unwrap());
    assert!(!db.write(|tx| tx.delete_account(id)).unwrap());
    assert_eq!(db.read(|tx| tx.totp(id)).unwrap(), None);
    assert_eq!(db.read(|tx| tx.passkeys(id)).unwrap(), vec![]);
    assert_eq!(db.read(|tx| tx.backup_codes_remaining(id)).unwrap(), 0);
}

fn pending_secret_cannot_replace_an_active_one(db: &Db) {
    let id = account(db, "a@b.c");
    assert!(db.write(|tx| tx.set_pending_secret(id, b"one")).unwrap());
    assert!(db.write(|tx| tx.set_pending_secret(id, b"two")).unwrap());
    assert!(!db
        .write(|tx| tx.activate_secret(id, b"one", 5, b"salt", 1))
        .unwrap());
    assert!(db
        .write(|tx| tx.activate_secret(id, b"two", 5, b"salt", 1))
        .unwrap());
    assert!(!db.write(|tx| tx.set_pending_secret(id, b"three")).unwrap());
    let t = db.read(|tx| tx.totp(id)).unwrap().unwrap();
    assert_eq!(t.active_secret.as_deref(), Some(&b"two"[..]));
    assert_eq!(t.pending_secret, None);
    assert_eq!(t.last_step, 5);
    assert!(db.read(|tx| tx.totp_enabled(id)).unwrap());
}

fn raise_last_step_only_moves_forward(db: &Db) {
    let id = account_with_totp(db);
    assert!(!db.write(|tx| tx.raise_last_step(id, 10)).unwrap());
    assert!(!db.write(|tx| tx.raise_last_step(id, 9)).unwrap());
    assert!(db.write(|tx| tx.raise_last_step(id, 11)).unwrap());
    assert_eq!(db.read(|tx| tx.totp(id)).unwrap().unwrap().last_step, 11);
}

fn backup_codes_are_spent_once_and_replaced_whole(db: &Db) {
    let id = account_with_totp(db);
    let codes: Vec<[u8; 32]> = (1..=10).map(|i| [i; 32]).collect();
    db.write(|tx| tx.replace_backup_codes(id, b"salt-1", &codes))
        .unwrap();
    assert_eq!(db.read(|tx| tx.backup_codes_remaining(id)).unwrap(), 10);
    assert!(db.write(|tx| tx.spend_backup_code(id, &[3; 32])).unwrap());
    assert!(!db.write(|tx| tx.spend_backup_code(id, &[3; 32])).unwrap());
    let other = account(db, "b@b.c");
    assert!(!db
        .write(|tx| tx.spend_backup_code(other, &[4; 32]))
        .unwrap());
    let f = db.read(|tx| tx.second_factors(id)).unwrap();
    assert_eq!((f.totp, f.backup_codes, f.passkeys), (true, 9, 0));
    assert_eq!(f.methods(), ["totp", "backup_code"]);
    db.write(|tx| tx.replace_backup_codes(id, b"salt-2", &[[42; 32]]))
        .unwrap();
    assert!(!db.write(|tx| tx.spend_backup_code(id, &[4; 32])).unwrap());
    assert!(db.write(|tx| tx.spend_backup_code(id, &[42; 32])).unwrap());
    let t: Totp = db.read(|tx| tx.totp(id)).unwrap().unwrap();
    assert_eq!(t.backup_salt.as_deref(), Some(&b"salt-2"[..]));
}

fn clearing_totp_says_whether_it_was_on(db: &Db) {
    let id = account_with_totp(db);
    db.write(|tx| tx.replace_backup_codes(id, b"salt", &[[1; 32]]))
        .unwrap();
    assert!(db.write(|tx| tx.clear_totp(id)).unwrap());
    assert_eq!(db.read(|tx| tx.backup_codes_remaining(id)).unwrap(), 0);
    assert!(!db.write(|tx| tx.clear_totp(id)).unwrap(), "already off");
    // A pending secret alone is not TOTP on.
    assert!(db.write(|tx| tx.set_pending_secret(id, b"p")).unwrap());
    assert!(!db.write(|tx| tx.clear_totp(id)).unwrap());
    assert_eq!(db.read(|tx| tx.totp(id)).unwrap(), None);
}

fn a_failed_write_rolls_back(db: &Db) {
    let r: Result<(), Error> = db.write(|tx| {
        tx.create_account("a@b.c", None, 1)?;
        Err(Error::Conflict("no"))
    });
    assert_eq!(r, Err(Error::Conflict("no")));
    assert_eq!(db.read(|tx| tx.account_by_email("a@b.c")).unwrap(), None);
}

fn account_lock_after_limit(db: &Db) {
    // An account without a TOTP row counts too (wrong password confirmations).
    let id = account(db, "a@b.c");
    for i in 1..3 {
        assert_eq!(
            db.write(|tx| tx.count_verify_failure(id, 3, 900)).unwrap(),
            (i, 0)
        );
    }
    assert_eq!(
        db.write(|tx| tx.count_verify_failure(id, 3, 900)).unwrap(),
        (0, 900)
    );
    db.write(|tx| tx.count_verify_failure(id, 3, 1_800))
        .unwrap();
    db.write(|tx| tx.reset_verify_failures(id)).unwrap();
    let t = db.read(|tx| tx.totp(id)).unwrap().unwrap();
    assert_eq!((t.failed_verifies, t.locked_until), (0, 900));
    // A limit of one locks at the first failure, also on a new row; a lock ending
    // past 2038 is kept whole.
    let b = account(db, "b@b.c");
    let far = 4_102_444_800;
    assert_eq!(
        db.write(|tx| tx.count_verify_failure(b, 1, far)).unwrap(),
        (0, far)
    );
}

fn challenges_are_taken_once_and_count_their_failures(db: &Db) {
    let id = account(db, "a@b.c");
    let (login, step_up) = ([1u8; 32], [2u8; 32]);
    db.write(|tx| tx.insert_challenge(&login, id, 100, Purpose::Login))
        .unwrap();
    db.write(|tx| tx.insert_challenge(&step_up, id, 200, Purpose::StepUp))
        .unwrap();
    let c = db.read(|tx| tx.challenge(&step_up)).unwrap().unwrap();
    assert_eq!(
        (c.account_id, c.expires_at, c.purpose),
        (id, 200, Some(Purpose::StepUp))
    );
    assert_eq!(
        db.write(|tx| tx.count_challenge_failure(&login)).unwrap(),
        1
    );
    assert_eq!(
        db.write(|tx| tx.count_challenge_failure(&login)).unwrap(),
        2
    );
    assert!(db.write(|tx| tx.take_challenge(&login)).unwrap());
    assert!(!db.write(|tx| tx.take_challenge(&login)).unwrap());
    assert_eq!(
        db.write(|tx| tx.count_challenge_failure(&login)).unwrap(),
        0
    );
    assert_eq!(db.read(|tx| tx.challenge(&login)).unwrap(), None);
}

fn passkey(id: u8, account_id: i64, credential: &[u8]) -> Passkey {
    Passkey {
        id: [id; 16],
        account_id,
        credential_id: credential.to_vec(),
        public_key: vec![0xa0],
        alg: -8,
        sign_count: 0,
        name: "key".into(),
        created_at: 1,
        last_used_at: None,
    }
}

/// A credential id is one account's; the counter only grows (both-zero stays
/// allowed); a delete names the account; the user handle is made once.
fn passkeys_are_unique_their_counters_only_grow(db: &Db) {
    let a = account(db, "a@b.c");
    let b = account(db, "b@b.c");
    assert!(db
        .write(|tx| tx.insert_passkey(&passkey(1, a, b"cred")))
        .unwrap());
    assert!(!db
        .write(|tx| tx.insert_passkey(&passkey(2, b, b"cred")))
        .unwrap());
    let id = [1u8; 16];
    assert!(
        db.write(|tx| tx.use_passkey(&id, 0, 5)).unwrap(),
        "both zero"
    );
    assert!(db.write(|tx| tx.use_passkey(&id, 3, 6)).unwrap());
    assert!(!db.write(|tx| tx.use_passkey(&id, 3, 7)).unwrap(), "equal");
    assert!(
        !db.write(|tx| tx.use_passkey(&id, 0, 7)).unwrap(),
        "back to zero"
    );
    let found = db
        .read(|tx| tx.passkey_by_credential(b"cred"))
        .unwrap()
        .unwrap();
    assert_eq!(
        found,
        Passkey {
            sign_count: 3,
            last_used_at: Some(6),
            ..passkey(1, a, b"cred")
        }
    );
    db.write(|tx| tx.insert_passkey(&passkey(3, a, b"cred-2")))
        .unwrap();
    let all = db.read(|tx| tx.passkeys(a)).unwrap();
    assert_eq!(all.iter().map(|p| p.id[0]).collect::<Vec<_>>(), [1, 3]);
    let f = db.read(|tx| tx.second_factors(a)).unwrap();
    assert_eq!((f.totp, f.passkeys, f.any()), (false, 2, true));
    assert_eq!(f.methods(), ["passkey"]);
    assert!(
        !db.write(|tx| tx.delete_passkey(b, &id)).unwrap(),
        "not b's"
    );
    assert!(db.write(|tx| tx.delete_passkey(a, &id)).unwrap());
    assert_eq!(db.write(|tx| tx.delete_passkeys(a)).unwrap(), 1);
    assert!(!db.read(|tx| tx.second_factors(a)).unwrap().any());
    assert_eq!(db.read(|tx| tx.user_handle(a)).unwrap(), None);
    let first = db.write(|tx| tx.ensure_user_handle(a, &[7; 16])).unwrap();
    let second = db.write(|tx| tx.ensure_user_handle(a, &[8; 16])).unwrap();
    assert_eq!((first.clone(), second), (vec![7; 16], vec![7; 16]));
    // Another account cannot be given the same handle.
    assert!(db.write(|tx| tx.ensure_user_handle(b, &first)).is_err());
}

/// A ceremony is taken once, only as what it was made for, and only in time.
fn ceremonies_are_single_use_and_bound(db: &Db) {
    let a = account(db, "a@b.c");
    let (c, mfa, other) = ([1u8; 32], [2u8; 32], [3u8; 32]);
    let second = Ceremony::SecondFactor {
        account: a,
        challenge: &mfa,
    };
    db.write(|tx| tx.insert_ceremony(&c, second, 100)).unwrap();
    for wrong in [
        Ceremony::Register { account: a },
        Ceremony::Login { session: &mfa },
        Ceremony::SecondFactor {
            account: a + 1,
            challenge: &mfa,
        },
        Ceremony::SecondFactor {
            account: a,
            challenge: &other,
        },
    ] {
        assert!(
            !db.write(|tx| tx.take_ceremony(&c, wrong, 50)).unwrap(),
            "{wrong:?}"
        );
    }
    assert!(
        !db.write(|tx| tx.take_ceremony(&c, second, 100)).unwrap(),
        "expired"
    );
    assert!(db.write(|tx| tx.take_ceremony(&c, second, 99)).unwrap());
    assert!(
        !db.write(|tx| tx.take_ceremony(&c, second, 99)).unwrap(),
        "once"
    );
    // NULL matches NULL: a registration (no binding), a login (no account).
    let register = Ceremony::Register { account: a };
    db.write(|tx| tx.insert_ceremony(&c, register, 100))
        .unwrap();
    assert!(db.write(|tx| tx.take_ceremony(&c, register, 99)).unwrap());
    let login = Ceremony::Login { session: &other };
    db.write(|tx| tx.insert_ceremony(&c, login, 100)).unwrap();
    assert_eq!(db.write(|tx| tx.purge_expired(100)).unwrap(), 1);
    assert!(
        !db.write(|tx| tx.take_ceremony(&c, login, 99)).unwrap(),
        "purged"
    );
}

fn refresh_tokens_rotate_once_and_revoke_by_family_or_account(db: &Db) {
    let a = account(db, "a@b.c");
    let login = Login {
        how: SignIn::PasswordTotp,
        at: 50,
    };
    let (t1, t2, t3) = ([1u8; 32], [2u8; 32], [3u8; 32]);
    db.write(|tx| tx.insert_refresh_token(&t1, a, b"fam-1", 100, login, None))
        .unwrap();
    db.write(|tx| tx.insert_refresh_token(&t2, a, b"fam-1", 100, login, None))
        .unwrap();
    db.write(|tx| tx.insert_refresh_token(&t3, a, b"fam-2", 100, login, None))
        .unwrap();
    let r = db.read(|tx| tx.refresh_token(&t1)).unwrap().unwrap();
    assert_eq!(
        (
            r.account_id,
            r.family.as_slice(),
            r.expires_at,
            r.rotated,
            r.login
        ),
        (a, &b"fam-1"[..], 100, false, Some(login))
    );
    assert!(db.write(|tx| tx.rotate_refresh_token(&t1)).unwrap());
    assert!(!db.write(|tx| tx.rotate_refresh_token(&t1)).unwrap());
    assert!(
        db.read(|tx| tx.refresh_token(&t1))
            .unwrap()
            .unwrap()
            .rotated
    );
    assert_eq!(db.write(|tx| tx.revoke_family(b"fam-1")).unwrap(), 2);
    assert_eq!(db.read(|tx| tx.refresh_token(&t2)).unwrap(), None);
    assert_eq!(db.write(|tx| tx.revoke_sessions(a)).unwrap(), 1);
    assert_eq!(db.read(|tx| tx.refresh_token(&t3)).unwrap(), None);
}

fn verifications_are_redeemed_once_by_their_account(db: &Db) {
    let a = account(db, "a@b.c");
    let b = account(db, "b@b.c");
    let h = [9u8; 32];
    db.write(|tx| tx.insert_verification(&h, a, "totp", 10, 100))
        .unwrap();
    assert_eq!(
        db.write(|tx| tx.take_verification(&h, b, 20)).unwrap(),
        None
    );
    assert_eq!(
        db.write(|tx| tx.take_verification(&h, a, 100)).unwrap(),
        None,
        "expired"
    );
    assert_eq!(
        db.write(|tx| tx.take_verification(&h, a, 20)).unwrap(),
        Some(("totp".to_string(), 10))
    );
    assert_eq!(
        db.write(|tx| tx.take_verification(&h, a, 20)).unwrap(),
        None
    );
}

fn purge_deletes_only_what_expired(db: &Db) {
    let a = account(db, "a@b.c");
    let login = Login {
        how: SignIn::Password,
        at: 1,
    };
    for (i, expires) in [(1u8, 100), (2, 101)] {
        db.write(|tx| tx.insert_challenge(&[i; 32], a, expires, Purpose::Login))
            .unwrap();
        db.write(|tx| tx.insert_refresh_token(&[i; 32], a, &[i], expires, login, None))
            .unwrap();
        db.write(|tx| tx.insert_verification(&[i; 32], a, "totp", 1, expires))
            .unwrap();
    }
    assert_eq!(db.write(|tx| tx.purge_expired(100)).unwrap(), 3);
    assert!(db.read(|tx| tx.challenge(&[2; 32])).unwrap().is_some());
    assert!(db.read(|tx| tx.refresh_token(&[2; 32])).unwrap().is_some());
    assert_eq!(db.write(|tx| tx.purge_expired(100)).unwrap(), 0);
}

fn meta_is_replaced_in_place(db: &Db) {
    assert_eq!(db.read(|tx| tx.meta("k")).unwrap(), None);
    db.write(|tx| tx.set_meta("k", b"one")).unwrap();
    db.write(|tx| tx.set_meta("k", b"two")).unwrap();
    assert_eq!(db.read(|tx| tx.meta("k")).unwrap(), Some(b"two".to_vec()));
}

/// The trail reads back in order, by account and by time, and the retention purge
/// deletes only what is older than its limit.
fn the_audit_trail_filters_and_is_pruned_by_age(db: &Db) {
    let a = account(db, "a@b.c");
    for (at, who, event) in [
        (10, Some(a), "old"),
        (20, None, "anon"),
        (30, Some(a), "new"),
    ] {
        db.write(|tx| tx.audit(who, at, event, Some("d"))).unwrap();
    }
    let events = |who, since| -> Vec<String> {
        db.read(|tx| tx.audit_trail(who, since))
            .unwrap()
            .into_iter()
            .map(|r| r.event)
            .collect()
    };
    assert_eq!(events(None, 0), ["old", "anon", "new"]);
    assert_eq!(events(Some(a), 0), ["old", "new"]);
    assert_eq!(events(None, 20), ["anon", "new"]);
    let row = &db.read(|tx| tx.audit_trail(Some(a), 30)).unwrap()[0];
    assert_eq!(row.email.as_deref(), Some("a@b.c"));
    let recent = db.read(|tx| tx.recent_audit(a, 1)).unwrap();
    assert_eq!(
        (
            recent.len(),
            recent[0].event.as_str(),
            recent[0].detail.as_deref()
        ),
        (1, "new", Some("d"))
    );
    assert_eq!(db.write(|tx| tx.purge_audit(20)).unwrap(), 1);
    assert_eq!(events(None, 0), ["anon", "new"]);
}

/// Not an engine's: the row types' `Debug` shows no secret.
#[test]
fn debug_output_holds_no_secret_material() {
    let a = Account {
        id: 1,
        email: Some("a@b.c".into()),
        password_hash: Some("pbkdf2-sha256$600000$c2FsdA$aGFzaA".into()),
        external_subject: None,
        created_at: 1,
        updated_at: None,
        last_connected_at: None,
    };
    let shown = format!("{a:?}");
    assert!(
        !shown.contains("pbkdf2") && shown.contains("[redacted]"),
        "{shown}"
    );
    let t = Totp {
        active_secret: Some(b"SEALED-BYTES".to_vec()),
        backup_salt: Some(b"SALT".to_vec()),
        ..Totp::default()
    };
    let shown = format!("{t:?}");
    assert!(
        !shown.contains("83") && !shown.contains("SALT") && shown.contains("[sealed]"),
        "{shown}"
    );
}

/// A PostgreSQL database of schema 4 (before browser sessions), with a login in it, is
/// migrated at its first open to exactly the tables, columns and indexes of a new one,
/// the login kept and its sessions storable.
#[cfg(feature = "postgres")]
#[test]
fn a_version_4_postgres_database_is_migrated_to_the_shape_of_a_new_one() {
    let Some(base) = postgres_server("the PostgreSQL migration") else {
        return;
    };
    let old = new_database(&base);
    let mut c = ::postgres::Client::connect(&old, ::postgres::NoTls).unwrap();
    c.batch_execute(include_str!("../../tests/fixtures/schema-v4.pg.sql"))
        .unwrap();
    c.batch_execute(
        "INSERT INTO mfad_schema (version) VALUES (4);
         INSERT INTO accounts (email, created_at) VALUES ('old@example.com', 7);
         INSERT INTO refresh_tokens (token_hash, account_id, family, expires_at, sign_in, auth_time)
             VALUES ('\\x01', 1, '\\x0102', 9999999999, 'totp', 100);",
    )
    .unwrap();
    let db = Db::connect_postgres(&old).unwrap();
    let fresh = new_database(&base);
    drop(Db::connect_postgres(&fresh).unwrap());
    let shape = |url: &str| -> Vec<String> {
        let mut c = ::postgres::Client::connect(url, ::postgres::NoTls).unwrap();
        let columns = c
            .query(
                "SELECT table_name || '.' || column_name || ' ' || data_type || ' '
                        || is_nullable || ' ' || coalesce(column_default, '')
                 FROM information_schema.columns WHERE table_schema = current_schema()
                 UNION ALL
                 SELECT indexdef FROM pg_indexes WHERE schemaname = current_schema()
                 ORDER BY 1",
                &[],
            )
            .unwrap();
        columns.iter().map(|r| r.get::<_, String>(0)).collect()
    };
    let migrated = shape(&old);
    assert!(
        migrated.iter().any(|l| l.starts_with("sessions.family")),
        "{migrated:?}"
    );
    assert_eq!(migrated, shape(&fresh));
    let versions: Vec<i32> = c
        .query("SELECT version FROM mfad_schema ORDER BY version", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(versions, vec![4, super::SCHEMA_VERSION as i32]);
    let (account, login, _) = db
        .read(|tx| tx.live_login(&[1, 2], 1000))
        .unwrap()
        .expect("the login of before the migration");
    assert_eq!(account, 1);
    db.write(|tx| tx.insert_session(&[9; 32], 1, &[1, 2], login, 9999999999, 1000))
        .unwrap();
    let s = db.read(|tx| tx.session(&[9; 32])).unwrap().unwrap();
    assert_eq!(
        (s.email.as_deref(), s.login),
        (Some("old@example.com"), Some(login))
    );
}
