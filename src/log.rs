//! A small `log::Log` that writes one line per record to stderr, prefixed with the
//! journald priority (`<3>` error … `<7>` debug) so that systemd files each line at the
//! right level. No timestamps: journald adds its own, and a terminal does not need them.

use std::io::Write;

use log::{Level, LevelFilter, Metadata, Record};

struct StderrLog {
    level: LevelFilter,
}

impl log::Log for StderrLog {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.level() <= self.level && metadata.target().starts_with("mfad")
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
        // One write call per line, so lines from different workers do not interleave.
        let line = format!("<{priority}>{}\n", record.args());
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    }

    fn flush(&self) {
        let _ = std::io::stderr().flush();
    }
}

/// Installs the logger; later calls are ignored.
pub fn init(level: LevelFilter) {
    if log::set_boxed_logger(Box::new(StderrLog { level })).is_ok() {
        log::set_max_level(level);
    }
}
