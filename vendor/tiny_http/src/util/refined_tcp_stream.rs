use std::io::Result as IoResult;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr};

use crate::connection::Connection;

// mfad patch: the `Stream` enum (plain or TLS) is gone with the TLS code: mfad never
// serves TLS itself (a reverse proxy in front does), so a stream is a plain `Connection`.

pub struct RefinedTcpStream {
    stream: Connection,
    close_read: bool,
    close_write: bool,
}

impl RefinedTcpStream {
    /// mfad patch: a second handle on the same socket. The original unwrapped
    /// `try_clone`, which fails with EMFILE once the process is out of descriptors: the
    /// accept thread panicked and the server never accepted again.
    pub(crate) fn new(stream: Connection) -> IoResult<(RefinedTcpStream, RefinedTcpStream)> {
        let (read, write) = (stream.try_clone()?, stream);

        let read = RefinedTcpStream {
            stream: read,
            close_read: true,
            close_write: false,
        };

        let write = RefinedTcpStream {
            stream: write,
            close_read: false,
            close_write: true,
        };

        Ok((read, write))
    }

    pub(crate) fn peer_addr(&mut self) -> IoResult<Option<SocketAddr>> {
        self.stream.peer_addr()
    }

    /// mfad patch: the socket, for a non-blocking `send` and `poll`.
    pub(crate) fn raw_fd(&self) -> Option<std::os::unix::io::RawFd> {
        use std::os::unix::io::AsRawFd;
        match &self.stream {
            Connection::Tcp(s) => Some(s.as_raw_fd()),
            #[cfg(unix)]
            Connection::Unix(s) => Some(s.as_raw_fd()),
        }
    }

    /// mfad patch: shuts the socket down from a shared reference.
    pub(crate) fn shutdown(&self, how: Shutdown) {
        self.stream.shutdown(how).ok();
    }
}

impl Drop for RefinedTcpStream {
    fn drop(&mut self) {
        if self.close_read {
            self.stream.shutdown(Shutdown::Read).ok();
        }

        if self.close_write {
            self.stream.shutdown(Shutdown::Write).ok();
        }
    }
}

impl Read for RefinedTcpStream {
    fn read(&mut self, buf: &mut [u8]) -> IoResult<usize> {
        self.stream.read(buf)
    }
}

impl Write for RefinedTcpStream {
    fn write(&mut self, buf: &[u8]) -> IoResult<usize> {
        self.stream.write(buf)
    }

    fn flush(&mut self) -> IoResult<()> {
        self.stream.flush()
    }
}
