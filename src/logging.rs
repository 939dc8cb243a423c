//! Logging: `tracing` to stdout, human-readable or one JSON object per line. Every
//! request gets one line on target `authgate::access`; tokens, secrets and query strings
//! are never logged.
//!
//! Lines are formatted on the thread that logs them and written by a dedicated thread
//! (tracing-appender's non-blocking writer) through a 64 KiB buffer that is flushed
//! whenever the queue runs dry: under load many lines share one `write(2)`, and a
//! request never waits on the terminal or a slow log pipe. The queue is not lossy:
//! when [`QUEUE_LINES`] lines are waiting, loggers wait rather than drop lines.

use std::io::{IsTerminal, Write};

use tracing_appender::non_blocking::{NonBlockingBuilder, WorkerGuard};
use tracing_subscriber::EnvFilter;

use crate::config::{LogConfig, LogFormat};

/// Lines the queue to the writer thread holds. Its slots are allocated and touched up
/// front (32 bytes each): tracing-appender's default, 128 Ki lines, was 4 MiB of the
/// idle process's 21 MiB. 8 Ki lines are 160 ms of access lines at 50,000 requests a
/// second, and the writer empties the queue every time it wakes.
const QUEUE_LINES: usize = 8 * 1024;

/// Installs the global subscriber. The returned guard flushes the queued lines when
/// dropped: hold it until exit. Later calls (tests) change nothing.
pub fn init(cfg: &LogConfig) -> Option<WorkerGuard> {
    // The filter was validated with the config; fall back to `info` regardless.
    let filter = EnvFilter::try_new(&cfg.level).unwrap_or_else(|_| EnvFilter::new("info"));
    let stdout = std::io::stdout();
    let ansi = stdout.is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let (writer, guard) = NonBlockingBuilder::default()
        .lossy(false)
        .buffered_lines_limit(QUEUE_LINES)
        .thread_name("authgate-log")
        .finish(buffered(stdout));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(writer);
    let installed = match cfg.format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Human => builder.try_init(),
    };
    installed.ok().map(|_| guard)
}

/// Standard output behind a 64 KiB buffer. Rust's `Stdout` flushes at every newline;
/// a duplicate of its descriptor does not, so lines are gathered until the writer
/// thread flushes.
#[cfg(unix)]
fn buffered(stdout: std::io::Stdout) -> Box<dyn Write + Send + Sync> {
    use std::os::fd::AsFd;
    match stdout.as_fd().try_clone_to_owned() {
        Ok(fd) => Box::new(std::io::BufWriter::with_capacity(
            64 * 1024,
            std::fs::File::from(fd),
        )),
        Err(_) => Box::new(stdout),
    }
}

#[cfg(not(unix))]
fn buffered(stdout: std::io::Stdout) -> Box<dyn Write + Send + Sync> {
    Box::new(stdout)
}
