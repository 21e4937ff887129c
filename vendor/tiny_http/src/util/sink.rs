//! mfad patch: how answers reach a client without a worker ever blocking on its socket.
//!
//! A connection has at most one request in flight. Its answer is rendered into memory
//! ([`ResponseSink`]) and, once finished, sent with a non-blocking `send`; whatever the
//! socket does not take at once goes to the one [`Flusher`] thread, which `poll()`s the
//! stalled sockets and gives each up to the socket timeout. A failed or timed-out write
//! ends the connection. The connection's own thread waits for the answer only when the
//! client pipelined (the next request was already there): a client that waits for each
//! answer finds it finished and costs no wake-up.

#![allow(unsafe_code)]

use std::io::{self, Read, Write};
use std::os::unix::io::RawFd;
use std::os::unix::net::UnixStream;
use std::sync::mpsc::{self, Receiver, Sender, TryRecvError};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::util::RefinedTcpStream;

#[derive(Default)]
struct State {
    /// The answer of the request handed out last is not sent yet.
    pending: bool,
    /// No more requests on this connection (a failed write, or `Connection: close`).
    ended: bool,
    /// The connection's thread waits in [`Conn::wait_idle`].
    waiting: bool,
}

/// The write side of one connection, shared by its thread, its answer and the flusher.
pub(crate) struct Conn {
    stream: Mutex<RefinedTcpStream>,
    fd: Option<RawFd>,
    state: Mutex<State>,
    idle: Condvar,
    flusher: Arc<Flusher>,
    timeout: Option<Duration>,
}

impl Conn {
    pub(crate) fn new(
        stream: RefinedTcpStream,
        flusher: Arc<Flusher>,
        timeout: Option<Duration>,
    ) -> Arc<Conn> {
        Arc::new(Conn {
            fd: stream.raw_fd(),
            stream: Mutex::new(stream),
            state: Mutex::new(State::default()),
            idle: Condvar::new(),
            flusher,
            timeout,
        })
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether the last answer is still being written.
    pub(crate) fn pending(&self) -> bool {
        self.state().pending
    }

    /// Waits until the last answer is finished; `false` if the connection has ended.
    pub(crate) fn wait_idle(&self) -> bool {
        let mut state = self.state();
        while state.pending && !state.ended {
            state.waiting = true;
            state = self
                .idle
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
        }
        state.waiting = false;
        !state.ended
    }

    /// The sink for the next answer (after [`Conn::wait_idle`]).
    pub(crate) fn sink(self: &Arc<Self>) -> ResponseSink {
        self.state().pending = true;
        ResponseSink {
            conn: Some(self.clone()),
            buf: Vec::new(),
            close: false,
        }
    }

    fn finished(&self, ended: bool) {
        let mut state = self.state();
        state.pending = false;
        state.ended |= ended;
        if state.waiting {
            self.idle.notify_one();
        }
    }

    /// Sends what the socket takes without waiting: `Ok(n)` bytes went out.
    fn try_send(&self, data: &[u8]) -> io::Result<usize> {
        let mut stream = self.stream.lock().unwrap_or_else(PoisonError::into_inner);
        match self.fd {
            Some(fd) => loop {
                // SAFETY: a live socket (the stream is held), a valid buffer and its length.
                let n = unsafe {
                    libc::send(
                        fd,
                        data.as_ptr().cast(),
                        data.len(),
                        libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
                    )
                };
                if n >= 0 {
                    return Ok(n as usize);
                }
                let e = io::Error::last_os_error();
                match e.kind() {
                    io::ErrorKind::Interrupted => continue,
                    io::ErrorKind::WouldBlock => return Ok(0),
                    _ => return Err(e),
                }
            },
            // A TLS stream: no non-blocking send; its write is bounded by the socket
            // timeout.
            None => stream.write_all(data).map(|()| data.len()),
        }
    }

    /// The answer is out: the connection goes on, or closes cleanly (FIN after the data).
    fn sent(&self, close: bool) {
        if close {
            let stream = self.stream.lock().unwrap_or_else(PoisonError::into_inner);
            stream.shutdown(std::net::Shutdown::Write);
        }
        self.finished(close);
    }

    /// The client was silent past the socket timeout: if answers it has not taken are
    /// still in the kernel's send queue, it is not reading either — reset rather than
    /// close, or the socket would linger with the data behind a FIN it never gets.
    pub(crate) fn abort_if_unsent(&self) {
        let Some(fd) = self.fd else {
            return;
        };
        let mut unsent: libc::c_int = 0;
        // SAFETY: a live socket and a pointer to a live int, as SIOCOUTQ expects.
        let rc = unsafe { libc::ioctl(fd, libc::TIOCOUTQ as _, &mut unsent) };
        if rc == 0 && unsent > 0 {
            self.fail();
        }
    }

    /// A write failed or timed out: discard what is unsent and end the connection at once
    /// (a reset rather than a FIN that would wait behind data the client never reads).
    fn fail(&self) {
        if let Some(fd) = self.fd {
            let linger = libc::linger {
                l_onoff: 1,
                l_linger: 0,
            };
            // SAFETY: a live socket, a pointer to a live value and its exact size.
            unsafe {
                libc::setsockopt(
                    fd,
                    libc::SOL_SOCKET,
                    libc::SO_LINGER,
                    std::ptr::from_ref(&linger).cast(),
                    std::mem::size_of::<libc::linger>() as libc::socklen_t,
                );
            }
        }
        let stream = self.stream.lock().unwrap_or_else(PoisonError::into_inner);
        stream.shutdown(std::net::Shutdown::Both);
        drop(stream);
        self.finished(true);
    }
}

/// One answer, rendered into memory; sent when dropped (or when flushed, as far as the
/// socket takes it without waiting: a `100 Continue`).
pub struct ResponseSink {
    conn: Option<Arc<Conn>>,
    buf: Vec<u8>,
    close: bool,
}

impl ResponseSink {
    /// A sink that goes nowhere (`TestRequest`).
    pub(crate) fn discard() -> ResponseSink {
        ResponseSink {
            conn: None,
            buf: Vec::new(),
            close: false,
        }
    }

    /// The connection ends after this answer.
    pub(crate) fn close_after(&mut self) {
        self.close = true;
    }
}

impl Write for ResponseSink {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if self.conn.is_some() {
            self.buf.extend_from_slice(data);
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        if let Some(conn) = &self.conn {
            if !self.buf.is_empty() {
                let n = conn.try_send(&self.buf)?;
                self.buf.drain(..n);
            }
        }
        Ok(())
    }
}

impl Drop for ResponseSink {
    fn drop(&mut self) {
        let Some(conn) = self.conn.take() else {
            return;
        };
        let data = std::mem::take(&mut self.buf);
        if data.is_empty() {
            // Sent whole by `flush` already (the common case: one `send` per answer).
            conn.sent(self.close);
            return;
        }
        match conn.try_send(&data) {
            Ok(n) if n == data.len() => conn.sent(self.close),
            Ok(n) => {
                let deadline = conn.timeout.map(|t| Instant::now() + t);
                let flusher = conn.flusher.clone();
                flusher.submit(Stalled {
                    conn,
                    data,
                    offset: n,
                    deadline,
                    close: self.close,
                });
            }
            Err(_) => conn.fail(),
        }
    }
}

/// An answer the socket did not take at once.
struct Stalled {
    conn: Arc<Conn>,
    data: Vec<u8>,
    offset: usize,
    deadline: Option<Instant>,
    close: bool,
}

/// The one thread that finishes stalled answers.
pub(crate) struct Flusher {
    jobs: Sender<Stalled>,
    wake: UnixStream,
}

impl Flusher {
    pub(crate) fn start() -> io::Result<Arc<Flusher>> {
        let (wake, woken) = UnixStream::pair()?;
        wake.set_nonblocking(true)?;
        woken.set_nonblocking(true)?;
        let (jobs, queue) = mpsc::channel();
        std::thread::Builder::new()
            .name("tiny-http-flusher".into())
            .spawn(move || flush_loop(queue, woken))?;
        Ok(Arc::new(Flusher { jobs, wake }))
    }

    fn submit(&self, job: Stalled) {
        if let Err(mpsc::SendError(job)) = self.jobs.send(job) {
            job.conn.fail();
            return;
        }
        // A full pipe means a wake-up is already pending.
        let _ = (&self.wake).write(&[1]);
    }
}

fn flush_loop(queue: Receiver<Stalled>, mut woken: UnixStream) {
    let mut jobs: Vec<Stalled> = Vec::new();
    let mut open = true;
    while open || !jobs.is_empty() {
        loop {
            match queue.try_recv() {
                Ok(job) => jobs.push(job),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    open = false;
                    break;
                }
            }
        }
        let now = Instant::now();
        // Give up on the answers past their deadline.
        jobs.retain(|job| match job.deadline {
            Some(d) if d <= now => {
                job.conn.fail();
                false
            }
            _ => true,
        });
        let wait = jobs
            .iter()
            .filter_map(|job| job.deadline)
            .min()
            .map_or(-1, |d| {
                (d.saturating_duration_since(now).as_millis() + 1).min(60_000) as libc::c_int
            });
        let mut fds: Vec<libc::pollfd> = Vec::with_capacity(jobs.len() + 1);
        fds.push(libc::pollfd {
            fd: std::os::unix::io::AsRawFd::as_raw_fd(&woken),
            events: libc::POLLIN,
            revents: 0,
        });
        for job in &jobs {
            fds.push(libc::pollfd {
                fd: job.conn.fd.unwrap_or(-1),
                events: libc::POLLOUT,
                revents: 0,
            });
        }
        // SAFETY: a valid array of pollfd and its length.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, wait) };
        if n < 0 {
            continue; // EINTR
        }
        if fds[0].revents != 0 {
            let mut buf = [0u8; 64];
            loop {
                match woken.read(&mut buf) {
                    Ok(0) => {
                        open = false;
                        break;
                    }
                    Ok(_) => continue,
                    Err(_) => break,
                }
            }
        }
        let ready: Vec<bool> = fds[1..].iter().map(|p| p.revents != 0).collect();
        let mut i = 0;
        jobs.retain_mut(|job| {
            let go = ready.get(i).copied().unwrap_or(false);
            i += 1;
            if !go {
                return true;
            }
            match job.conn.try_send(&job.data[job.offset..]) {
                Ok(n) => {
                    job.offset += n;
                    if job.offset < job.data.len() {
                        return true;
                    }
                    job.conn.sent(job.close);
                }
                Err(_) => job.conn.fail(),
            }
            false
        });
    }
}
