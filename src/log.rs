//! A small `log::Log` that writes one line per record to stderr, prefixed with the
//! journald priority (`<3>` error … `<7>` debug) so that systemd files each line at the
//! right level. No timestamps: journald adds its own, and a terminal does not need them.
//!
//! Access lines (target [`ACCESS`]) are buffered and written at most [`ACCESS_FLUSH`]
//! later, many per write: one `write` per request cost a quarter of the throughput of a
//! cheap endpoint. Every other line is written at once, after the buffered ones, so the
//! order is kept and a warning or error is never delayed.

use std::io::Write;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use log::{Level, LevelFilter, Metadata, Record};

/// The target of the one-line-per-request access log.
pub(crate) const ACCESS: &str = "mfad::access";
/// How long an access line may wait in the buffer.
pub(crate) const ACCESS_FLUSH: Duration = Duration::from_millis(100);
/// Buffered access lines are written once they reach this size.
const ACCESS_BUFFER: usize = 16 * 1024;

struct StderrLog {
    level: LevelFilter,
    /// Lines not yet written.
    pending: Mutex<Vec<u8>>,
}

impl StderrLog {
    fn write_out(pending: &mut Vec<u8>) {
        if !pending.is_empty() {
            let _ = std::io::stderr().lock().write_all(pending);
            pending.clear();
        }
    }
}

impl log::Log for StderrLog {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        // Our own records at the configured level; a dependency's only when they are
        // warnings or errors (the HTTP layer's `accept()` failing under a connection
        // flood must reach the journal, its debug chatter need not).
        metadata.level() <= self.level
            && (metadata.target().starts_with("mfad") || metadata.level() <= Level::Warn)
    }

    fn log(&self, record: &Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let priority = match record.level() {
            Level::Error => 3,
            Level::Warn => 4,
            Level::Info => 6,
            Level::Debug | Level::Trace => 7,
        };
        let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        // Whole lines only, so lines from different workers do not interleave.
        let _ = writeln!(pending, "<{priority}>{}", record.args());
        if record.target() != ACCESS || pending.len() >= ACCESS_BUFFER {
            Self::write_out(&mut pending);
        }
    }

    fn flush(&self) {
        Self::write_out(&mut self.pending.lock().unwrap_or_else(PoisonError::into_inner));
    }
}

/// Installs the logger, and a thread that writes buffered access lines out; later calls
/// are ignored.
pub fn init(level: LevelFilter) {
    let logger = StderrLog {
        level,
        pending: Mutex::new(Vec::new()),
    };
    if log::set_boxed_logger(Box::new(logger)).is_ok() {
        log::set_max_level(level);
        let _ = std::thread::Builder::new()
            .name("mfad-log".into())
            .spawn(|| loop {
                std::thread::sleep(ACCESS_FLUSH);
                log::logger().flush();
            });
    }
}
