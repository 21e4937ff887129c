//! Load generator for mfad. Run `cargo bench --bench loadgen` (about 10 minutes on
//! 2 cores), or `cargo bench --bench loadgen -- --quick` (about 3 minutes); `-- --help`
//! lists the options. It starts the release `mfad` that cargo built for this bench on
//! 127.0.0.1:0 with a temporary data directory and drives it with a std-only HTTP/1.1
//! keep-alive client (one blocking thread per connection, closed loop, Content-Length
//! framing) at 1, 8 and 64 connections, several runs each, and prints for every endpoint
//! the median and min–max of req/s and of p50/p99/p99.9 latency: setup, status,
//! forward-auth (a reverse proxy's question with a browser session made through login,
//! one session per connection), verify
//! (the real endpoint with the TOTP replay write; each request gets a fresh challenge
//! and a fresh step, the challenges seeded straight into the database because minting
//! them through login costs a 600,000-round PBKDF2 each), login (PBKDF2-bound), refresh
//! (rotation, chained per connection) and end-to-end login→verify pairs. The ceiling is a
//! bare tiny_http server (this binary re-run with `--bare-server`) with the same worker
//! count under the same generator; every mfad figure is also shown as a ratio to it. In
//! process it times the TOTP check plus the replay write (`totp::verify` +
//! `Tx::raise_last_step`, the clock moved on a few steps per call so that every write
//! succeeds) and the setup pipeline (secret → base32 → URI → QR PNG → base64 → JSON),
//! the latter against Python (pyotp + qrcode) and Node (qrcode) peers in
//! `benches/peers/` when those are installed. Also printed: start-to-first-answer, peak
//! RSS (VmHWM), binary size and a typical QR's PNG size. The generator shares the
//! machine's cores with the server (the table shows who used them), so the figures are
//! for this machine; nothing here asserts on time. Loopback only; every loop is bounded
//! in count and in time.
//!
//! One module per concern: `opts` (the command line), `client` (the keep-alive HTTP/1.1
//! client shared with the tests and the soak, included by path), `jobs` (what a
//! connection does), `run` (one load run), `bench` (figures of runs), `load` (the HTTP
//! section), `seed` (writing test data straight into the database), `sessions` (the
//! forward-auth row's flags and browser sessions), `procs` and `bare`
//! (mfad and the ceiling server), `start`, `inproc`, `pipeline` (the other sections),
//! `stats` and `procfs` (measuring), `report` (stdout).

// Test and benchmark code: a failed unwrap is a failed run, which is what it should be.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::undocumented_unsafe_blocks
)]

#[path = "../../tests/common/client.rs"]
mod client;

mod bare;
mod bench;
mod inproc;
mod jobs;
mod load;
mod opts;
mod pipeline;
mod procfs;
mod procs;
mod report;
mod run;
mod seed;
mod sessions;
mod start;
mod stats;

use std::process::ExitCode;
use std::time::Instant;

use bench::Bench;
use opts::Opts;

pub(crate) type Res<T> = Result<T, String>;

const HELP: &str = "\
loadgen: mfad's benchmark (see the top of benches/loadgen/main.rs)

    cargo bench --bench loadgen [-- OPTIONS]

OPTIONS:
    --quick           3 runs of 1 s per figure instead of 5 runs of 3 s
    --runs N          runs per figure
    --secs S          seconds per run
    --conns A,B,..    connection counts [1,8,64]
    --workers N       mfad and bare tiny_http worker threads [mfad's default, 2 x cores, 4..64]
    --only A,B,..     sections: start, ceiling, healthz, status, forward-auth, setup,
                      verify, login, refresh, pair, inproc, pipeline [all]
    --mfad PATH       measure this mfad binary instead of the one cargo built
    --database URL    run mfad on PostgreSQL: a new database per data directory on the
                      server of postgres://USER@HOST/DB (which must allow CREATE DATABASE)
    --serve-arg ARG   one more flag for `mfad serve` (repeat it for more), e.g.
                      --serve-arg --log-level=warn
    --help            this text
";

pub(crate) const PASSWORD: &str = "bench-password-0123";
pub(crate) const ISSUER: &str = "Storno";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let opts = match Opts::parse(&args) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("loadgen: {e}");
            return ExitCode::from(2);
        }
    };
    if opts.help {
        print!("{HELP}");
        return ExitCode::SUCCESS;
    }
    if opts.bare_server {
        return bare::bare_server(opts.workers);
    }
    match run(&opts) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("loadgen: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(opts: &Opts) -> Res<()> {
    let t_all = Instant::now();
    let bin = opts.mfad_bin();
    let bin_size = std::fs::metadata(&bin)
        .map(|m| m.len())
        .map_err(|e| format!("{}: {e}", bin.display()))?;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "mfad loadgen — {} mode",
        if opts.quick { "quick" } else { "full" }
    );
    println!(
        "machine: {cores} cores (generator and server share them); mfad --workers {} \
         (bare tiny_http the same); {} runs × {} s per figure, warm-up {} s; connections {:?}",
        opts.workers, opts.runs, opts.secs, opts.warmup, opts.conns
    );
    println!(
        "binary: {} (serve flags: --login-rate 0 {}; logging at the default level, info, \
         one access line per request read by this generator as journald would)",
        bin.display(),
        sessions::FORWARD_AUTH_FLAGS
            .iter()
            .map(|f| if f.contains(' ') {
                format!("{f:?}")
            } else {
                f.to_string()
            })
            .collect::<Vec<_>>()
            .join(" ")
    );
    match seed::POSTGRES.get() {
        Some(url) => println!("database: PostgreSQL, a new database per run on {url}"),
        None => println!("database: SQLite (mfad.db in each run's data directory)"),
    }
    let extra = opts.serve_args.join(" ");
    if !extra.is_empty() {
        println!("extra mfad serve flags: {extra}");
    }
    let other = procfs::other_load(0.5);
    println!(
        "other processes keep {other:.2} cores busy at the start{}",
        if other > 0.2 {
            " — the machine is not idle: expect lower, noisier figures"
        } else {
            ""
        }
    );
    println!();

    let start = if opts.want("start") {
        eprintln!("start-up ...");
        Some(start::start_times(opts)?)
    } else {
        None
    };

    let mut b = Bench {
        opts,
        groups: Vec::new(),
        notes: Vec::new(),
    };
    let load_out = load::load(opts, &mut b)?;
    let inproc_out = if opts.want("inproc") {
        eprintln!("in-process verify + accept_step ...");
        Some(inproc::inproc(opts)?)
    } else {
        None
    };
    let pipe = if opts.want("pipeline") {
        eprintln!("setup pipeline and peers ...");
        Some(pipeline::pipeline(opts)?)
    } else {
        None
    };

    report::print(report::Report {
        opts,
        bench: &b,
        load: load_out,
        inproc: inproc_out,
        pipe,
        start,
        bin_size,
        t_all,
    });
    Ok(())
}
