//! The one rule every second-factor answer goes through — a TOTP code, a backup code or
//! a passkey assertion, at login verify and at step-up verify, and the code that
//! confirms disable or regenerate for an account without a password. In one
//! transaction: the lock, the replay step, the single-use spend (of the backup code, of
//! the passkey ceremony, and the counter's move), the failure counts (per challenge and
//! per account), the lock after [`ACCOUNT_MAX_FAILURES`], and the audit events. An
//! answer is parsed once, at the edge ([`Answer::parse`], [`Answer::passkey`]); the
//! callers only say what the verdict means to them.

use crate::crypto;
use crate::error::Error;
use crate::metrics::{CheckResult, Event, METRICS};
use crate::store::{Ceremony, Db, Purpose, Tx};
use crate::totp;

use super::assertion::{self, PasskeyAnswer};
use super::{audit, App};

/// Wrong answers that kill one challenge.
pub const CHALLENGE_MAX_FAILURES: i64 = 5;
/// Wrong answers in a row, across challenges and confirmations, that lock an account.
pub const ACCOUNT_MAX_FAILURES: i64 = 10;
/// How long that lock lasts.
pub const ACCOUNT_LOCK_SECS: i64 = 900;
/// No 0/1/i/l/o: nothing that reads as another character.
pub(crate) const BACKUP_ALPHABET: &[u8; 31] = b"abcdefghjkmnpqrstuvwxyz23456789";

/// What the client says its answer is (verify's `type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Totp,
    Backup,
    Passkey,
}

/// A second-factor answer, normalised.
#[derive(Clone, PartialEq, Eq)]
pub enum Answer {
    /// Six ASCII digits.
    Totp([u8; 6]),
    /// Eight characters of the backup alphabet, lower case, without the dash.
    Backup([u8; 8]),
    /// A WebAuthn assertion, and the pages it may come from.
    Passkey(Box<PasskeyAnswer>),
    /// Neither shape (or not the shape its `type` names): always wrong, and counted as
    /// wrong like any other guess.
    Unreadable,
}

impl std::fmt::Debug for Answer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Answer::Totp(_) => "Totp([redacted])",
            Answer::Backup(_) => "Backup([redacted])",
            Answer::Passkey(_) => "Passkey(..)",
            Answer::Unreadable => "Unreadable",
        })
    }
}

impl Answer {
    /// Reads what a person typed. Without `kind`, six digits are a TOTP code and eight
    /// characters of the backup alphabet (dash optional) a backup code.
    pub fn parse(input: &str, kind: Option<Kind>) -> Answer {
        let as_totp = || totp::normalize_code(input).map(Answer::Totp);
        let as_backup = || normalize_backup_code(input).map(Answer::Backup);
        let parsed = match kind {
            Some(Kind::Totp) => as_totp(),
            Some(Kind::Backup) => as_backup(),
            // An assertion is no typed text (see `Answer::passkey`).
            Some(Kind::Passkey) => None,
            None => as_totp().or_else(as_backup),
        };
        parsed.unwrap_or(Answer::Unreadable)
    }

    /// Reads a passkey answer: `credential` in WebAuthn's JSON encoding, made on one of
    /// `origins`. One that cannot be read is unreadable, and as wrong as any.
    pub fn passkey(credential: &serde_json::Value, origins: Vec<String>) -> Answer {
        match assertion::Assertion::from_json(credential) {
            Ok(assertion) => Answer::Passkey(Box::new(PasskeyAnswer { assertion, origins })),
            Err(_) => Answer::Unreadable,
        }
    }

    /// The name of the method, as audit events and the step-up redeem name it.
    pub(crate) fn method(&self) -> &'static str {
        match self {
            Answer::Totp(_) => "totp",
            Answer::Backup(_) => "backup_code",
            Answer::Passkey(_) => "passkey",
            Answer::Unreadable => "unreadable",
        }
    }
}

/// A backup code as typed: case-insensitive, dashes and spaces anywhere are ignored.
pub(crate) fn normalize_backup_code(input: &str) -> Option<[u8; 8]> {
    let mut out = [0u8; 8];
    let mut n = 0;
    for c in input.chars().filter(|c| !c.is_whitespace() && *c != '-') {
        let b = u8::try_from(c.to_ascii_lowercase()).ok()?;
        if n == out.len() || !BACKUP_ALPHABET.contains(&b) {
            return None;
        }
        out[n] = b;
        n += 1;
    }
    (n == out.len()).then_some(out)
}

/// Whose answer it is.
#[derive(Debug, Clone, Copy)]
pub enum Asker<'a> {
    /// The holder of a login's MFA challenge (its keyed hash): the account is the
    /// challenge's; the right answer consumes the challenge, the 5th wrong one kills it.
    Challenge(&'a [u8; 32]),
    /// A signed-in account answering its own step-up challenge: as for a login
    /// challenge, and the challenge must be a step-up one of this very account.
    StepUp {
        challenge: &'a [u8; 32],
        account: i64,
    },
    /// An account already signed in, confirming a change.
    Account(i64),
}

impl Asker<'_> {
    fn challenge(&self) -> Option<&[u8; 32]> {
        match self {
            Asker::Challenge(hash)
            | Asker::StepUp {
                challenge: hash, ..
            } => Some(hash),
            Asker::Account(_) => None,
        }
    }
}

/// What the rule decided.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict<T> {
    /// Right: the failure count is reset, and this is what `on_accept` returned.
    Accepted(T),
    /// The challenge is unknown, expired or used (never said for [`Asker::Account`]).
    NoChallenge,
    /// The account has no second factor (TOTP was turned off after the challenge was
    /// issued; the challenge is void and gone).
    NoSecondFactor,
    /// The account is locked for this many more seconds; the answer was not looked at.
    Locked(i64),
    /// Wrong. `challenge_dead`: that was the challenge's last try. `locked_for`: this
    /// answer locked the account for so many seconds.
    Wrong {
        challenge_dead: bool,
        locked_for: Option<i64>,
    },
}

/// Rolls a transaction back when the challenge was taken by a racing request between
/// the check and the spend (only possible on an engine without a single writer).
const CHALLENGE_LOST: Error = Error::Conflict("challenge lost to a concurrent request");

/// [`check`], uncounted.
fn decide<T>(
    app: &App,
    db: &Db,
    asker: Asker<'_>,
    answer: &Answer,
    now: i64,
    on_accept: impl FnOnce(&Tx<'_>, i64) -> Result<T, Error>,
) -> Result<Verdict<T>, Error> {
    // A backup code costs a PBKDF2 and a passkey a signature check, which must not run
    // inside the transaction (every writer waits for it): what they need is read first
    // and the work done outside. A state that moved meanwhile (codes regenerated, the
    // passkey removed, its counter moved) only makes the spend or the counter's move
    // find nothing.
    let pre = match answer {
        Answer::Backup(_) | Answer::Passkey(_) => {
            db.read(|tx| match account_of(tx, asker, now)? {
                Some(id) => {
                    let state = tx.totp(id)?.unwrap_or_default();
                    let found = match answer {
                        Answer::Passkey(p) => {
                            tx.passkey_by_credential(&p.assertion.credential_id)?
                        }
                        _ => None,
                    };
                    let handle = match answer {
                        Answer::Passkey(_) => tx.user_handle(id)?,
                        _ => None,
                    };
                    Ok(Some((id, state, found, handle)))
                }
                None => Ok(None),
            })?
        }
        _ => None,
    };
    let (backup_hash, judged) = match (answer, pre) {
        (Answer::Backup(_) | Answer::Passkey(_), None) => return Ok(Verdict::NoChallenge),
        (_, Some((_, state, ..))) if state.locked_until > now => {
            return Ok(Verdict::Locked(state.locked_until - now))
        }
        (Answer::Backup(code), Some((_, state, ..))) => (
            state
                .backup_salt
                .map(|salt| app.keys.backup_code_hash(&salt, backup_str(code))),
            None,
        ),
        (Answer::Passkey(p), Some((id, _, found, handle))) => {
            let judged = assertion::judge(
                app,
                &p.assertion,
                &p.origins,
                found,
                Some(id),
                handle.as_deref(),
                false,
            );
            (None, Some(judged))
        }
        _ => (None, None),
    };
    let verdict = db.write(|tx| {
        let Some(id) = account_of(tx, asker, now)? else {
            return Ok(Verdict::NoChallenge);
        };
        let state = tx.totp(id)?.unwrap_or_default();
        if state.locked_until > now {
            return Ok(Verdict::Locked(state.locked_until - now));
        }
        let active = state.active_secret.filter(|_| state.backup_salt.is_some());
        if active.is_none() && tx.second_factors(id)?.passkeys == 0 {
            if let Some(hash) = asker.challenge() {
                tx.take_challenge(hash)?;
            }
            return Ok(Verdict::NoSecondFactor);
        }
        let right = match (answer, &backup_hash) {
            (Answer::Totp(code), _) => {
                let Some(active) = &active else {
                    return wrong(tx, asker, id, answer, now);
                };
                let secret = app.keys.open(active, id)?;
                match totp::verify(secret.expose(), code, now as u64) {
                    Some(step) => {
                        let fresh = tx.raise_last_step(id, step as i64)?;
                        if !fresh {
                            audit(tx, Some(id), now, "totp_replay_refused")?;
                            METRICS.event(Event::TotpReplayRefused);
                        }
                        fresh
                    }
                    None => {
                        suspect_drift(tx, id, secret.expose(), code, now)?;
                        false
                    }
                }
            }
            (Answer::Backup(_), Some(hash)) => {
                let spent = tx.spend_backup_code(id, hash)?;
                if spent {
                    audit(tx, Some(id), now, "backup_code_used")?;
                }
                spent
            }
            (Answer::Passkey(p), _) => {
                // A passkey answers a challenge, never a confirmation.
                let (Some(challenge), Some(judged)) = (asker.challenge(), &judged) else {
                    return wrong(tx, asker, id, answer, now);
                };
                let ceremony = Ceremony::SecondFactor {
                    account: id,
                    challenge,
                };
                let key = app.keys.token_hash(&p.assertion.challenge);
                if tx.take_ceremony(&key, ceremony, now)? {
                    assertion::book(tx, judged, Some(id), now)?.is_some()
                } else {
                    assertion::refused(tx, Some(id), now, "challenge expired or not found")?;
                    false
                }
            }
            _ => false,
        };
        if right {
            if let Some(hash) = asker.challenge() {
                if !tx.take_challenge(hash)? {
                    return Err(CHALLENGE_LOST);
                }
            }
            tx.reset_verify_failures(id)?;
            return Ok(Verdict::Accepted(on_accept(tx, id)?));
        }
        wrong(tx, asker, id, answer, now)
    });
    match verdict {
        Err(e) if e == CHALLENGE_LOST => Ok(Verdict::NoChallenge),
        other => other,
    }
}

/// Checks `answer` for `asker` at `now`. When it is right, `on_accept` runs in the same
/// transaction (to issue tokens, say); an error from it undoes the spend. Each check is
/// counted in the metrics by method and result.
pub fn check<T>(
    app: &App,
    db: &Db,
    asker: Asker<'_>,
    answer: &Answer,
    now: i64,
    on_accept: impl FnOnce(&Tx<'_>, i64) -> Result<T, Error>,
) -> Result<Verdict<T>, Error> {
    let verdict = decide(app, db, asker, answer, now, on_accept);
    let result = match &verdict {
        Ok(Verdict::Accepted(_)) => Some(CheckResult::Accepted),
        Ok(Verdict::Wrong { .. }) => Some(CheckResult::Wrong),
        Ok(Verdict::Locked(_)) => Some(CheckResult::Locked),
        Ok(Verdict::NoChallenge | Verdict::NoSecondFactor) => Some(CheckResult::NoChallenge),
        Err(_) => None,
    };
    if let Some(result) = result {
        METRICS.check(answer.method(), result);
    }
    verdict
}

/// Audits a wrong TOTP code that is the code of a step 2 to 10 steps away: the device's
/// clock is probably off (the commonest reason codes fail). Still wrong.
pub(crate) fn suspect_drift(
    tx: &Tx<'_>,
    id: i64,
    secret: &[u8],
    code: &[u8; 6],
    now: i64,
) -> Result<(), Error> {
    if let Some(offset) = totp::drift(secret, code, now as u64) {
        tx.audit(
            Some(id),
            now,
            "clock_drift_suspected",
            Some(&format!("{offset:+} s")),
        )?;
        log::info!("audit: clock_drift_suspected account={id} offset={offset:+}s");
        METRICS.event(Event::ClockDriftSuspected);
    }
    Ok(())
}

/// A wrong answer: counted against the challenge (its last try kills it) and the
/// account (which it may lock).
fn wrong<T>(
    tx: &Tx<'_>,
    asker: Asker<'_>,
    id: i64,
    answer: &Answer,
    now: i64,
) -> Result<Verdict<T>, Error> {
    let mut challenge_dead = false;
    if let Some(hash) = asker.challenge() {
        if tx.count_challenge_failure(hash)? >= CHALLENGE_MAX_FAILURES {
            tx.take_challenge(hash)?;
            audit(tx, Some(id), now, "challenge_locked")?;
            METRICS.event(Event::ChallengeLocked);
            challenge_dead = true;
        }
    }
    let locked_for = count_wrong(tx, id, now, answer.method())?;
    Ok(Verdict::Wrong {
        challenge_dead,
        locked_for,
    })
}

/// Counts one wrong answer against the account — a code, or a password that confirms a
/// change — and audits it; locks the account at [`ACCOUNT_MAX_FAILURES`] in a row.
/// Returns the lock's length if this answer set it.
pub(crate) fn count_wrong(
    tx: &Tx<'_>,
    id: i64,
    now: i64,
    what: &str,
) -> Result<Option<i64>, Error> {
    tx.audit(Some(id), now, "second_factor_wrong", Some(what))?;
    let (_, locked_until) =
        tx.count_verify_failure(id, ACCOUNT_MAX_FAILURES, now + ACCOUNT_LOCK_SECS)?;
    let locked_for = (locked_until > now).then_some(locked_until - now);
    if locked_for.is_some() {
        audit(tx, Some(id), now, "account_locked")?;
        METRICS.event(Event::AccountLocked);
    }
    Ok(locked_for)
}

/// The seconds an account stays locked, if it is.
pub(crate) fn locked_for(db: &Db, id: i64, now: i64) -> Result<Option<i64>, Error> {
    let until = db.read(|tx| Ok(tx.totp(id)?.map_or(0, |t| t.locked_until)))?;
    Ok((until > now).then_some(until - now))
}

/// The account of a live challenge of `purpose`, if it is one.
pub(super) fn challenge_account(
    tx: &Tx<'_>,
    hash: &[u8; 32],
    purpose: Purpose,
    now: i64,
) -> Result<Option<i64>, Error> {
    Ok(tx
        .challenge(hash)?
        .filter(|c| c.expires_at > now && c.purpose == Some(purpose))
        .map(|c| c.account_id))
}

/// The account whose answer it is, if the asker still stands.
fn account_of(tx: &Tx<'_>, asker: Asker<'_>, now: i64) -> Result<Option<i64>, Error> {
    let live = |hash, purpose| challenge_account(tx, hash, purpose, now);
    Ok(match asker {
        Asker::Account(id) => Some(id),
        Asker::Challenge(hash) => live(hash, Purpose::Login)?,
        // Another account's step-up challenge is as good as none.
        Asker::StepUp { challenge, account } => {
            live(challenge, Purpose::StepUp)?.filter(|id| *id == account)
        }
    })
}

/// The normalised code as the text its hash was made of.
fn backup_str(code: &[u8; 8]) -> &str {
    // Only bytes of BACKUP_ALPHABET (ASCII) get into an `Answer::Backup`.
    std::str::from_utf8(code).unwrap_or_default()
}

/// A fresh set of backup codes: what the user is shown, and what is stored.
pub(crate) struct BackupCodes {
    pub codes: Vec<String>,
    pub salt: [u8; 16],
    pub hashes: Vec<[u8; 32]>,
}

/// Backup codes per enable or regenerate.
pub(crate) const BACKUP_CODE_COUNT: usize = 10;

/// Draws [`BACKUP_CODE_COUNT`] codes and hashes them under a fresh salt. Slow by design
/// (one PBKDF2 per code): call it before any transaction, on the slow lane.
pub(crate) fn new_backup_codes(keys: &crypto::Keys) -> Result<BackupCodes, Error> {
    let salt: [u8; 16] = crypto::random()?;
    let mut codes = Vec::with_capacity(BACKUP_CODE_COUNT);
    let mut hashes = Vec::with_capacity(BACKUP_CODE_COUNT);
    while codes.len() < BACKUP_CODE_COUNT {
        let mut raw = [0u8; 8];
        let mut filled = 0;
        while filled < raw.len() {
            let bytes: [u8; 16] = crypto::random()?;
            // Rejection sampling: 248 = 8 × 31, so what is kept is uniform over the alphabet.
            for b in bytes.into_iter().filter(|b| *b < 248) {
                if filled < raw.len() {
                    raw[filled] = BACKUP_ALPHABET[usize::from(b % 31)];
                    filled += 1;
                }
            }
        }
        let plain = backup_str(&raw);
        let hash = keys.backup_code_hash(&salt, plain);
        if hashes.contains(&hash) {
            continue;
        }
        hashes.push(hash);
        codes.push(format!("{}-{}", &plain[..4], &plain[4..]));
    }
    Ok(BackupCodes {
        codes,
        salt,
        hashes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::Keys;

    #[test]
    fn backup_codes_have_the_documented_shape_and_are_distinct() {
        let keys = Keys::derive(&[3u8; 32]).unwrap();
        let BackupCodes {
            codes,
            salt,
            hashes,
        } = new_backup_codes(&keys).unwrap();
        assert_eq!(codes.len(), 10);
        assert_eq!(hashes.len(), 10);
        for code in &codes {
            assert_eq!(code.len(), 9);
            assert_eq!(&code[4..5], "-");
            let plain = normalize_backup_code(code).unwrap();
            assert!(plain.iter().all(|b| BACKUP_ALPHABET.contains(b)));
            assert!(hashes.contains(&keys.backup_code_hash(&salt, backup_str(&plain))));
        }
        let mut sorted = codes.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), 10);
    }

    #[test]
    fn backup_code_input_is_forgiving_but_exact() {
        for typed in ["ABCD-EFGH", " abcd efgh ", "abcdefgh", "ab-cd-ef-gh"] {
            assert_eq!(normalize_backup_code(typed), Some(*b"abcdefgh"), "{typed}");
        }
        for bad in [
            "abcd-efg",
            "abcd-efghj",
            "abcd-efg0",
            "abcd-efgl",
            "abcd_efgh",
            "abcd-efgé",
            "",
        ] {
            assert_eq!(normalize_backup_code(bad), None, "{bad}");
        }
    }

    #[test]
    fn answers_are_parsed_once_by_shape_or_by_their_type() {
        assert_eq!(Answer::parse("123 456", None), Answer::Totp(*b"123456"));
        assert_eq!(
            Answer::parse("abcd-efgh", None),
            Answer::Backup(*b"abcdefgh")
        );
        assert_eq!(Answer::parse("12345", None), Answer::Unreadable);
        // A type that does not fit the shape makes the answer unreadable, not the other kind.
        assert_eq!(
            Answer::parse("123456", Some(Kind::Backup)),
            Answer::Unreadable
        );
        assert_eq!(
            Answer::parse("abcd-efgh", Some(Kind::Totp)),
            Answer::Unreadable
        );
        assert_eq!(
            Answer::parse("ABCDEFGH", Some(Kind::Backup)),
            Answer::Backup(*b"abcdefgh")
        );
        assert_eq!(
            format!("{:?}", Answer::parse("123456", None)),
            "Totp([redacted])"
        );
    }
}
