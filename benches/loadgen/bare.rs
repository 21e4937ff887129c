//! `--bare-server`: the ceiling. This binary re-run as a bare tiny_http server with the
//! same worker count as mfad, answering a fixed small JSON body with mfad's headers.

use std::io::Write;
use std::net::TcpListener;
use std::process::ExitCode;
use std::sync::Arc;

/// The ceiling: tiny_http with `workers` threads answering a fixed small JSON body with
/// the headers mfad sends, on a listener with TCP_NODELAY as mfad's.
pub(crate) fn bare_server(workers: usize) -> ExitCode {
    let listener = match TcpListener::bind("127.0.0.1:0") {
        Ok(l) => l,
        Err(e) => {
            eprintln!("bare: cannot bind: {e}");
            return ExitCode::FAILURE;
        }
    };
    {
        use std::os::fd::AsRawFd;
        let one: libc::c_int = 1;
        // SAFETY: a valid socket fd, a pointer to a c_int and its exact size.
        unsafe {
            libc::setsockopt(
                listener.as_raw_fd(),
                libc::IPPROTO_TCP,
                libc::TCP_NODELAY,
                std::ptr::addr_of!(one).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
    }
    let addr = listener.local_addr().ok();
    let server = match tiny_http::Server::from_listener(listener, None) {
        Ok(s) => Arc::new(s),
        Err(e) => {
            eprintln!("bare: {e}");
            return ExitCode::FAILURE;
        }
    };
    let headers: Vec<tiny_http::Header> = [
        ("Content-Type", "application/json"),
        ("Cache-Control", "no-store"),
        ("X-Content-Type-Options", "nosniff"),
    ]
    .iter()
    .filter_map(|(k, v)| tiny_http::Header::from_bytes(k.as_bytes(), v.as_bytes()).ok())
    .collect();
    if let Some(a) = addr {
        println!("bare listening on http://{a}");
    }
    let _ = std::io::stdout().flush();
    let threads: Vec<_> = (0..workers)
        .map(|_| {
            let (server, headers) = (server.clone(), headers.clone());
            std::thread::spawn(move || {
                while let Ok(rq) = server.recv() {
                    let mut resp = tiny_http::Response::from_data(&b"{\"status\":\"ok\"}"[..]);
                    for h in &headers {
                        resp.add_header(h.clone());
                    }
                    let _ = rq.respond(resp);
                }
            })
        })
        .collect();
    // Runs until the parent's SIGTERM ends the process.
    for t in threads {
        let _ = t.join();
    }
    ExitCode::SUCCESS
}
