//! The report on stdout: the load tables, the ratio to the ceiling, the in-process
//! figures, sizes, start-up and memory, the team's targets, and the notes.

use std::time::Instant;

use crate::bench::{label, pbkdf2_bound, Bench};
use crate::inproc::InprocOut;
use crate::load::LoadOut;
use crate::opts::Opts;
use crate::pipeline::PipelineOut;
use crate::start::StartOut;
use crate::stats::{num, show};

pub(crate) fn print_load_table(b: &Bench<'_>, slow: bool) {
    println!(
        "{:<31} {:>5}  {:<24} {:<21} {:<21} {:<21} {:>6}  {:>9}  {:>15}",
        "endpoint",
        "conns",
        "req/s med (min–max)",
        "p50 ms",
        "p99 ms",
        "p99.9 ms",
        "errors",
        "srv µs/rq",
        "cores s/g/k/o"
    );
    for g in b.groups.iter().filter(|g| pbkdf2_bound(g.name) == slow) {
        let (per, cores) = g.cpu();
        println!(
            "{:<31} {:>5}  {:<24} {:<21} {:<21} {:<21} {:>6}  {:>9}  {:>15}",
            label(g.name),
            g.conns,
            show(g.rate()),
            show(g.lat(0)),
            show(g.lat(1)),
            show(g.lat(2)),
            g.errors(),
            num(per.med),
            cores,
        );
        if g.runs.iter().any(|r| r.extra.is_some()) {
            println!(
                "{:<31} {:>5}  {:<24} {:<21} {:<21} {:<21}",
                "  └ its verify request alone",
                "",
                "",
                show(g.extra(0)),
                show(g.extra(1)),
                show(g.extra(2)),
            );
        }
    }
}

pub(crate) fn print_ratio_table(b: &Bench<'_>) {
    println!(
        "{:<31} {:>5}  {:>12}  {:>12}  {:>12}  {:>12}",
        "endpoint", "conns", "req/s ÷ ceil", "p50 × ceil", "p99 × ceil", "p99.9 × ceil"
    );
    for g in b.groups.iter().filter(|g| g.name != "ceiling") {
        let Some(c) = b.find("ceiling", g.conns) else {
            continue;
        };
        let r = |a: f64, b: f64| {
            if a.is_finite() && b.is_finite() && b > 0.0 {
                let x = a / b;
                if x > 0.0 && x < 0.001 {
                    format!("{x:.1e}")
                } else {
                    num(x)
                }
            } else {
                "-".into()
            }
        };
        println!(
            "{:<31} {:>5}  {:>12}  {:>12}  {:>12}  {:>12}",
            label(g.name),
            g.conns,
            r(g.rate().med, c.rate().med),
            r(g.lat(0).med, c.lat(0).med),
            r(g.lat(1).med, c.lat(1).med),
            r(g.lat(2).med, c.lat(2).med),
        );
    }
}

/// Everything a run measured, for [`print`].
pub(crate) struct Report<'a> {
    pub(crate) opts: &'a Opts,
    pub(crate) bench: &'a Bench<'a>,
    pub(crate) load: LoadOut,
    pub(crate) inproc: Option<InprocOut>,
    pub(crate) pipe: Option<PipelineOut>,
    pub(crate) start: Option<StartOut>,
    pub(crate) bin_size: u64,
    pub(crate) t_all: Instant,
}

pub(crate) fn print(r: Report<'_>) {
    let Report {
        opts,
        bench: b,
        load: load_out,
        inproc: inproc_out,
        pipe,
        start,
        bin_size,
        t_all,
    } = r;
    if !b.groups.is_empty() {
        println!("== HTTP load (closed loop, keep-alive; latency per request) ==");
        print_load_table(b, false);
        if b.groups.iter().any(|g| pbkdf2_bound(g.name)) {
            println!();
            println!(
                "== HTTP load, PBKDF2-bound: login (600,000 rounds) and login→verify pairs =="
            );
            print_load_table(b, true);
        }
        println!(
            "srv µs/rq: server CPU time per answered request (or pair). cores s/g/k/o: CPU \
             cores busy in the server / this generator / interrupts (mostly loopback TCP; \
             partly counted in s and g too) / other processes and steal (medians)."
        );
        println!();
        if b.groups.iter().any(|g| g.name == "ceiling") {
            println!("== Ratio to the ceiling at the same connection count (medians; the ceiling's runs \
             were made before and after mfad's and pooled) ==");
            print_ratio_table(b);
            println!();
        }
    }
    let verify_ran = b.groups.iter().any(|g| matches!(g.name, "verify" | "pair"));
    if verify_ran || inproc_out.is_some() {
        println!("== Verify path: what was measured ==");
    }
    if verify_ran {
        println!(
            "POST verify: the real endpoint and its whole write transaction (replay check \
         UPDATE, challenge DELETE, token issue, refresh-token INSERT); each request has \
         its own challenge and an unused step of its account. The challenges and TOTP \
         accounts are written into the database by this bench, as login and enable \
         would, because minting them through login costs a PBKDF2 (600,000 rounds) each."
        );
        println!(
            "login→verify pair: the same thing end to end through login; bound by the PBKDF2. \
             \"its verify request alone\" is the verify's own latency within the pair: it \
             waits for a worker behind the logins queued before it."
        );
    }
    if let Some(ip) = &inproc_out {
        println!("in process (mfad::totp::verify + mfad::store::Tx::raise_last_step on one Db, the clock advanced 3 steps per call):");
        for (name, s) in [
            "unseal secret (AES-GCM)",
            "totp::verify (3 HMAC-SHA1)",
            "accept_step write (1 tx)",
            "total",
            "accept_step, autocheckpoint off",
        ]
        .iter()
        .zip(ip.stages)
        {
            println!("  {name:<40} {:>26} µs/call", show(s));
        }
        for (n, s) in &ip.threads {
            let name = format!(
                "{n} thread{}, one shared Db",
                if *n == 1 { "" } else { "s" }
            );
            println!("  {name:<40} {:>26} checks+writes/s", show(*s));
        }
    }
    println!();

    if let Some(p) = &pipe {
        println!("== Setup pipeline in process (secret → base32 → otpauth URI → QR PNG → base64 → JSON) ==");
        for (name, s) in [
            "random 160-bit secret",
            "base32 + otpauth URI",
            "QR PNG (qr::otpauth_png)",
            "base64 + JSON",
            "total",
        ]
        .iter()
        .zip(p.stages)
        {
            println!("  {name:<40} {:>26} µs/call", show(s));
        }
        println!("peers (same pipeline, timed inside the script; ratio = peer ÷ mfad):");
        for peer in &p.peers {
            match &peer.result {
                Ok(s) => println!(
                    "  {:<40} {:>26} µs/call   {}× mfad",
                    peer.name,
                    show(*s),
                    num(s.med / p.stages[4].med)
                ),
                Err(why) => println!("  {:<40} {why}", peer.name),
            }
        }
        println!();
    }

    println!("== Sizes, start-up, memory ==");
    println!(
        "release binary: {} bytes ({:.2} MB)",
        bin_size,
        bin_size as f64 / 1e6
    );
    if let Some(p) = &pipe {
        println!(
            "QR PNG for a typical URI: {} bytes; setup JSON body in process: {} bytes",
            p.png_bytes, p.body_bytes
        );
    }
    if let Some(n) = load_out.setup_body_bytes {
        println!("setup response body over HTTP: {n} bytes");
    }
    if let Some(s) = &start {
        println!(
            "start, fresh data dir (creates key + schema): spawn → listening line {} ms, spawn → first 200 /healthz {} ms",
            show(s.fresh.0),
            show(s.fresh.1)
        );
        println!(
            "start, existing data dir:                      spawn → listening line {} ms, spawn → first 200 /healthz {} ms",
            show(s.again.0),
            show(s.again.1)
        );
    }
    if let Some((s, bytes)) = &load_out.start_loaded {
        println!(
            "start, the data dir left by the load ({:.1} MB):   spawn → first 200 /healthz {} ms",
            *bytes as f64 / 1e6,
            show(*s)
        );
    }
    if let Some(kb) = load_out.mfad_hwm_kb {
        println!(
            "mfad peak RSS (VmHWM) after all load: {:.1} MB",
            kb as f64 / 1024.0
        );
        let steps: Vec<String> = load_out
            .hwm_after
            .iter()
            .map(|(n, kb)| format!("{n} {:.1}", *kb as f64 / 1024.0))
            .collect();
        println!("  VmHWM (MB) after each section: {}", steps.join(", "));
    }
    if let Some(kb) = load_out.bare_hwm_kb {
        println!("bare tiny_http peak RSS: {:.1} MB", kb as f64 / 1024.0);
    }
    if let Some(s) = &load_out.stop {
        println!("mfad stop: {s}");
    }
    println!();

    println!("== Against the team's targets (information only) ==");
    let at = |name: &str| b.find(name, opts.max_conns());
    let c = opts.max_conns();
    let rate_line = |name: &str, what: &str, target: f64| {
        if let Some(g) = at(name) {
            let m = g.rate().med;
            println!(
                "  {what:<44} {:>10} req/s at {c} conns   target ≥ {target:.0}   {}",
                num(m),
                if m >= target { "met" } else { "not met" }
            );
        }
    };
    rate_line("setup", "setup", 8000.0);
    rate_line("verify", "verify with replay write (HTTP)", 20000.0);
    rate_line("status", "status", 35000.0);
    // API.md: forward-auth is asked for every request of every protected app.
    if let (Some(fa), Some(h)) = (at("forward-auth"), at("healthz")) {
        let (m, base) = (fa.rate().med, h.rate().med);
        let ratio = m / base;
        println!(
            "  {:<44} {:>10} req/s at {c} conns   target ≥ 0.8 × healthz ({}): {:.2}×   {}",
            "forward-auth",
            num(m),
            num(base),
            ratio,
            if ratio >= 0.8 { "met" } else { "not met" }
        );
    }
    let p99s: Vec<(&str, f64)> = b
        .groups
        .iter()
        .filter(|g| g.conns == c && !matches!(g.name, "ceiling" | "login" | "pair"))
        .map(|g| (g.name, g.lat(1).med))
        .collect();
    if let Some((name, worst)) = p99s.iter().copied().max_by(|a, b| a.1.total_cmp(&b.1)) {
        println!(
            "  {:<44} {:>10} ms ({name})          target ≤ 10     {}",
            format!("worst p99 at {c} conns (login, pairs aside)"),
            num(worst),
            if worst <= 10.0 { "met" } else { "not met" }
        );
    }
    if let Some(kb) = load_out.mfad_hwm_kb {
        let mb = kb as f64 / 1024.0;
        println!(
            "  {:<44} {:>10} MB                    target ≤ 30     {}",
            "peak RSS",
            num(mb),
            if mb <= 30.0 { "met" } else { "not met" }
        );
    }
    if let Some(s) = &start {
        let m = s.again.1.med;
        println!(
            "  {:<44} {:>10} ms                    target ≤ 50     {}",
            "start to first answer (existing data dir)",
            num(m),
            if m <= 50.0 { "met" } else { "not met" }
        );
    }
    let mb = bin_size as f64 / 1e6;
    println!(
        "  {:<44} {:>10} MB                    target ≤ 8      {}",
        "binary size",
        num(mb),
        if mb <= 8.0 { "met" } else { "not met" }
    );
    println!();
    if !b.notes.is_empty() {
        println!("== Notes ==");
        for n in &b.notes {
            println!("  {n}");
        }
        println!();
    }
    println!("total time: {:.0} s", t_all.elapsed().as_secs_f64());
}
