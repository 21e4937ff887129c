//! The `mfad` binary: parse the configuration, start logging, run the command. The only
//! place that prints to stdout or decides the exit code.

use std::io::Write;
use std::process::ExitCode;

use mfad::config::{Command, Config, HELP};

fn main() -> ExitCode {
    let config = match Config::from_env_and_args() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("mfad: {e}");
            return ExitCode::from(2);
        }
    };
    match config.command {
        Command::Help => {
            print!("{HELP}");
            return ExitCode::SUCCESS;
        }
        Command::Version => {
            println!("mfad {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        _ => {}
    }
    // The database holds hashes and sealed secrets: nothing mfad creates is for others.
    // SAFETY: umask only changes this process's file-creation mask.
    unsafe { libc::umask(0o077) };
    // Block SIGTERM and SIGINT before any thread starts (the logger's is the first), so
    // every thread inherits the mask and only `serve`'s `sigwait` receives them. A
    // thread started earlier would take a SIGTERM meant for the shutdown and die of it.
    let signals = match (config.command == Command::Serve).then(block_shutdown_signals) {
        Some(Ok(s)) => Some(s),
        Some(Err(e)) => {
            eprintln!("mfad: cannot set up signal handling: {e}");
            return ExitCode::FAILURE;
        }
        None => None,
    };
    mfad::log::init(config.log_level);
    std::panic::set_hook(Box::new(|info| {
        // The location only: a payload could, in principle, quote request data.
        let at = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()));
        log::error!("panic at {}", at.as_deref().unwrap_or("unknown location"));
    }));
    if let Some(signals) = signals {
        return serve(&config, &signals);
    }
    let result =
        mfad::open_instance(&config).and_then(|instance| mfad::cli::run(&config, instance));
    match result {
        Ok(out) => {
            print!("{out}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("mfad: {e}");
            ExitCode::FAILURE
        }
    }
}

fn serve(config: &Config, signals: &libc::sigset_t) -> ExitCode {
    raise_fd_limit();
    let running = match mfad::serve(config) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("mfad: {e}");
            return ExitCode::FAILURE;
        }
    };
    // One write: a reader that takes the first line and goes must not make a later
    // write fail.
    // The first line's shape is what scripts and the tests read the port from; the
    // page's line comes last, after the metrics one they may read second.
    let mut banner = format!("mfad listening on http://{}\n", running.addr());
    if let Some(m) = running.metrics_addr() {
        banner.push_str(&format!("mfad metrics on http://{m}/metrics\n"));
    }
    banner.push_str(&format!(
        "mfad page on {}\n",
        config.web.page_url(running.addr())
    ));
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(banner.as_bytes()).and_then(|()| out.flush());
    drop(out);
    log::info!(
        "serving on {} with {} workers, data in {}",
        running.addr(),
        config.workers,
        config.data_dir.display()
    );
    let signal = wait_for(signals);
    log::info!("signal {signal} received: finishing requests in flight");
    running.shutdown();
    log::info!("stopped");
    log::logger().flush();
    ExitCode::SUCCESS
}

/// Each client connection costs two file descriptors (tiny_http clones the socket);
/// the usual soft limit of 1024 would cap a server at ~500 connections. Raise the soft
/// limit to the hard one, as most servers do.
fn raise_fd_limit() {
    // SAFETY: getrlimit/setrlimit on a plain struct owned here.
    let (rc, lim) = unsafe {
        let mut lim: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            log::warn!(
                "getrlimit failed ({}): the open-file limit is left as it is",
                std::io::Error::last_os_error()
            );
            return;
        }
        if lim.rlim_cur >= lim.rlim_max {
            return;
        }
        let soft = lim.rlim_cur;
        lim.rlim_cur = lim.rlim_max;
        (libc::setrlimit(libc::RLIMIT_NOFILE, &lim), soft)
    };
    if rc != 0 {
        log::warn!(
            "setrlimit failed ({}): at most {lim} open files, about {} connections; \
             raise the limit (LimitNOFILE= under systemd)",
            std::io::Error::last_os_error(),
            lim / 2
        );
    }
}

fn block_shutdown_signals() -> std::io::Result<libc::sigset_t> {
    // SAFETY: sigset_t is plain data initialised by sigemptyset before use.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGINT);
        let rc = libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        if rc != 0 {
            return Err(std::io::Error::from_raw_os_error(rc));
        }
        Ok(set)
    }
}

fn wait_for(set: &libc::sigset_t) -> libc::c_int {
    let mut sig: libc::c_int = 0;
    // SAFETY: `set` was built by block_shutdown_signals; sigwait writes one c_int.
    while unsafe { libc::sigwait(set, &mut sig) } != 0 {}
    sig
}
