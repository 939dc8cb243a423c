//! Logging: `tracing` to stdout, human-readable or one JSON object per line. Every
//! request gets one line on target `authgate::access`; tokens, secrets and query strings
//! are never logged.

use tracing_subscriber::EnvFilter;

use crate::config::{LogConfig, LogFormat};

/// Installs the global subscriber. Later calls (tests) are ignored.
pub fn init(cfg: &LogConfig) {
    // The filter was validated with the config; fall back to `info` regardless.
    let filter = EnvFilter::try_new(&cfg.level).unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stdout);
    let _ = match cfg.format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Human => builder.try_init(),
    };
}
