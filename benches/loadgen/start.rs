//! Start-up: spawn → "listening" line and spawn → first 200 from /healthz, on a fresh
//! data directory and on an existing one.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::jobs::http_request;
use crate::opts::{default_workers, Opts};
use crate::procs::{ms, spawn_mfad};
use crate::run::connection;
use crate::stats::{spread, Spread};
use crate::Res;

/// Spawn → the "listening" line, and spawn → the first 200 from /healthz.
pub(crate) fn start_once(opts: &Opts, dir: &Path) -> Res<(f64, f64)> {
    let t0 = Instant::now();
    let (server, listening) = spawn_mfad(opts, dir, default_workers(), &[])?;
    let req = http_request("GET", "/healthz", None, None);
    let mut conn = connection(server.addr);
    let first = loop {
        if conn.request(&req).is_ok_and(|r| r.status == 200) {
            break t0.elapsed();
        }
        if t0.elapsed() > Duration::from_secs(10) {
            return Err("no 200 from /healthz within 10 s of spawning".into());
        }
        std::thread::sleep(Duration::from_micros(200));
    };
    drop(conn);
    server.stop();
    Ok((ms(listening), ms(first)))
}

pub(crate) struct StartOut {
    pub(crate) fresh: (Spread, Spread),
    pub(crate) again: (Spread, Spread),
}

pub(crate) fn start_times(opts: &Opts) -> Res<StartOut> {
    let (mut fl, mut ff, mut al, mut af) = (vec![], vec![], vec![], vec![]);
    for _ in 0..opts.runs {
        let tmp = tempfile::Builder::new()
            .prefix("mfad-loadgen-start-")
            .tempdir()
            .map_err(|e| e.to_string())?;
        let dir = tmp.path().join("data");
        let (l, f) = start_once(opts, &dir)?;
        fl.push(l);
        ff.push(f);
        let (l, f) = start_once(opts, &dir)?;
        al.push(l);
        af.push(f);
    }
    Ok(StartOut {
        fresh: (spread(&fl), spread(&ff)),
        again: (spread(&al), spread(&af)),
    })
}
