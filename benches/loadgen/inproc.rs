//! In process: the TOTP check plus the replay write (`totp::verify` +
//! `Tx::raise_last_step`) on one `Db`, by stage, then on several threads.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Barrier;
use std::time::{Duration, Instant};

use mfad::store::Db;
use mfad::{crypto, totp};

use crate::opts::Opts;
use crate::seed::{db_err, instance_for};
use crate::stats::{spread, Spread};
use crate::Res;

/// Steps the in-process clock moves per call. One is not enough: `totp::verify` returns
/// the earliest step in its window whose code matches, and one code in a million of the
/// current step equals the previous step's, which was accepted just before, so a run of
/// a million calls would see a refusal. With three, the whole window is past every step
/// accepted so far.
pub(crate) const CLOCK_STRIDE: u64 = 3;

pub(crate) struct InprocOut {
    /// µs per call: unseal, totp::verify, accept_step write, all three; then the write
    /// again with SQLite's automatic checkpoints off.
    pub(crate) stages: [Spread; 5],
    /// (threads, writes/s) for verify + accept_step on several threads.
    pub(crate) threads: Vec<(usize, Spread)>,
}

pub(crate) fn inproc(opts: &Opts) -> Res<InprocOut> {
    let tmp = tempfile::Builder::new()
        .prefix("mfad-loadgen-inproc-")
        .tempdir()
        .map_err(|e| e.to_string())?;
    let inst = instance_for(&tmp.path().join("data"))?;
    let now = mfad::unix_now() as u64;
    let new_account = |db: &Db, n: usize| -> Res<(i64, Vec<u8>, [u8; 20])> {
        let secret: [u8; 20] = crypto::random().map_err(|e| e.to_string())?;
        let salt: [u8; 16] = crypto::random().map_err(|e| e.to_string())?;
        let keys = &inst.keys;
        db.write(|c| {
            let id = c
                .create_account(&format!("inproc{n}@bench.test"), None, now as i64)?
                .ok_or(mfad::error::Error::Internal)?;
            let sealed = keys.seal(&secret, id)?;
            c.set_pending_secret(id, &sealed)?;
            c.activate_secret(id, &sealed, 0, &salt, now as i64)?;
            Ok((id, sealed, secret))
        })
        .map_err(db_err)
    };
    let secs = opts.secs.min(2.0);
    let max_calls = 2_000_000usize;
    let path = inst
        .db
        .sqlite()
        .map(|s| s.path().to_path_buf())
        .ok_or("the in-process figures are of the SQLite engine")?;
    let db = Db::open(&path, mfad::config::Durability::Normal).map_err(|e| e.to_string())?;
    let (id, sealed, secret) = new_account(&db, 0)?;
    // The clock starts now and moves CLOCK_STRIDE steps per call, so that every call's
    // step is fresh and accepted.
    let mut t = now;
    let mut samples: [Vec<f64>; 5] = Default::default();
    for _ in 0..opts.runs {
        let mut sums = [Duration::ZERO; 3];
        let mut calls = 0usize;
        let start = Instant::now();
        while calls < max_calls && start.elapsed().as_secs_f64() < secs {
            t += CLOCK_STRIDE * totp::PERIOD;
            let code = totp::code_for_step(&secret, totp::step_at(t));
            let t0 = Instant::now();
            let key = inst.keys.open(&sealed, id).map_err(|e| e.to_string())?;
            let t1 = Instant::now();
            let step = totp::verify(key.expose(), &code, t).ok_or("verify refused a right code")?;
            let t2 = Instant::now();
            let fresh = db
                .write(|c| c.raise_last_step(id, step as i64))
                .map_err(db_err)?;
            let t3 = Instant::now();
            if !fresh {
                return Err("accept_step refused a fresh step".into());
            }
            sums[0] += t1 - t0;
            sums[1] += t2 - t1;
            sums[2] += t3 - t2;
            calls += 1;
        }
        let per = |d: Duration| d.as_secs_f64() * 1e6 / calls.max(1) as f64;
        for (s, d) in samples.iter_mut().zip(sums) {
            s.push(per(d));
        }
        samples[3].push(per(sums[0] + sums[1] + sums[2]));
    }
    // The same write without the checkpoint that SQLite runs inside every ~1000th
    // page's commit: what moving checkpoints off the request path would save.
    let set_autocheckpoint = |db: &Db, pages: u32| match db.sqlite() {
        Some(s) => s.set_autocheckpoint(pages).map_err(db_err),
        None => Ok(()),
    };
    set_autocheckpoint(&db, 0)?;
    for _ in 0..opts.runs {
        let mut sum = Duration::ZERO;
        let mut calls = 0usize;
        let start = Instant::now();
        while calls < max_calls && start.elapsed().as_secs_f64() < secs {
            t += CLOCK_STRIDE * totp::PERIOD;
            let step = totp::step_at(t) as i64;
            let t0 = Instant::now();
            let fresh = db.write(|c| c.raise_last_step(id, step)).map_err(db_err)?;
            sum += t0.elapsed();
            if !fresh {
                return Err("accept_step refused a fresh step".into());
            }
            calls += 1;
        }
        samples[4].push(sum.as_secs_f64() * 1e6 / calls.max(1) as f64);
    }
    set_autocheckpoint(&db, 1000)?;
    let stages = [0, 1, 2, 3, 4].map(|i| spread(&samples[i]));

    // Several threads, each with its own account, sharing one Db as mfad's workers do
    // (one connection, group commit): how far the replay write scales.
    let mut threads = Vec::new();
    for n in [1usize, 2, 8] {
        let mut rates = Vec::new();
        for run in 0..opts.runs {
            let mut accounts = Vec::new();
            for i in 0..n {
                accounts.push(new_account(&db, 1000 * (run + 1) + 100 * n + i)?);
            }
            let barrier = Barrier::new(n);
            let total = AtomicUsize::new(0);
            let begin = Instant::now();
            std::thread::scope(|s| {
                for (id, sealed, secret) in accounts {
                    let (inst, db, barrier, total) = (&inst, &db, &barrier, &total);
                    s.spawn(move || {
                        barrier.wait();
                        let start = Instant::now();
                        let mut t = now;
                        let mut calls = 0usize;
                        while calls < max_calls && start.elapsed().as_secs_f64() < secs {
                            t += CLOCK_STRIDE * totp::PERIOD;
                            let code = totp::code_for_step(&secret, totp::step_at(t));
                            let Ok(key) = inst.keys.open(&sealed, id) else {
                                break;
                            };
                            let Some(step) = totp::verify(key.expose(), &code, t) else {
                                break;
                            };
                            match db.write(|c| c.raise_last_step(id, step as i64)) {
                                Ok(true) => calls += 1,
                                _ => break,
                            }
                        }
                        total.fetch_add(calls, Ordering::Relaxed);
                    });
                }
            });
            rates.push(total.load(Ordering::Relaxed) as f64 / begin.elapsed().as_secs_f64());
        }
        threads.push((n, spread(&rates)));
    }
    Ok(InprocOut { stages, threads })
}
