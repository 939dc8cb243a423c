//! Hot reload: on SIGHUP, or when the watcher sees the configuration file or a
//! certificate change, the file is read and validated again and, if it is good, swapped
//! in whole ([`crate::gateway::Gateway::reconfigure`], [`crate::tls::Certificates`]):
//! routes, upstreams, clients, users, accounts, scope rules, HSTS, OAuth endpoints, rate
//! limits and certificates. Open connections stay open; requests in flight finish on the
//! configuration they started with; the next request and the next TLS handshake use the
//! new one. A file that does not load, or certificates that do not, are refused with an
//! error line and the old configuration keeps serving.
//!
//! Keys read only at startup (listeners, workers, connection limits and timeouts, the
//! store, logging, the TLS handshake timeout, `metrics.listen`, `reload.watch`, the
//! login-attempt limits) are compared: a change is logged as needing a restart, and the
//! rest of the file is applied.
//!
//! The watcher polls: every `reload.watch` it hashes the file and the certificate files
//! it names, and reloads once two reads in a row agree on new content (a debounce, so a
//! file being written is not read half-way). Polling content rather than watching
//! inodes also follows Kubernetes ConfigMap and Secret updates, which swap a symlink.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::config::Config;
use crate::gateway::Gateway;
use crate::metrics::{ReloadMetrics, ResultLabel};
use crate::store::Store;
use crate::tls::Certificates;

/// Why a reload was refused.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    #[error(transparent)]
    Upstream(#[from] crate::gateway::forward::UpstreamSetupError),
    #[error("tls: turning the HTTPS listener on or off needs a restart")]
    TlsToggled,
    #[error("the reload task failed: {0}")]
    Task(String),
}

/// Reloads one server's configuration.
pub struct Reloader {
    path: PathBuf,
    gateway: Arc<Gateway>,
    certs: Option<Arc<Certificates>>,
    store: Arc<dyn Store>,
    clock: crate::oauth::Clock,
    /// The configuration the process started with (for keys that need a restart).
    started: Arc<Config>,
    metrics: ReloadMetrics,
    /// One reload at a time; holds the fingerprint of the files last loaded.
    last: tokio::sync::Mutex<Option<[u8; 32]>>,
}

impl Reloader {
    /// A reloader of `started.file` for `gateway`.
    pub fn new(
        started: Arc<Config>,
        gateway: Arc<Gateway>,
        certs: Option<Arc<Certificates>>,
        store: Arc<dyn Store>,
        clock: crate::oauth::Clock,
        metrics: ReloadMetrics,
    ) -> Reloader {
        let fingerprint = fingerprint_of(std::path::Path::new(&started.file), &started);
        metrics.set_hash(&started.source_hash);
        Reloader {
            path: PathBuf::from(&started.file),
            gateway,
            certs,
            store,
            clock,
            started,
            metrics,
            last: tokio::sync::Mutex::new(fingerprint),
        }
    }

    /// Reads the file again and applies it. `why` is for the log (`SIGHUP`, `file
    /// change`).
    pub async fn reload(&self, why: &str) -> Result<(), ReloadError> {
        let mut last = self.last.lock().await;
        let result = self.apply().await;
        let label = ResultLabel {
            result: if result.is_ok() { "success" } else { "failure" },
        };
        self.metrics.reloads.get_or_create(&label).inc();
        match result {
            Ok((hash, fingerprint)) => {
                self.metrics.set_hash(&hash);
                *last = Some(fingerprint);
                tracing::info!(reason = why, config_hash = %hash, "configuration reloaded");
                Ok(())
            }
            Err(e) => {
                tracing::error!(
                    reason = why,
                    error = %e,
                    "configuration reload refused; the previous configuration keeps serving"
                );
                Err(e)
            }
        }
    }

    /// Loads, validates and builds everything first; only then puts the new
    /// configuration and certificates in force, together. Returns the configuration's
    /// hash and the fingerprint of what was read.
    async fn apply(&self) -> Result<(String, [u8; 32]), ReloadError> {
        let file = self.path.display().to_string();
        let text = std::fs::read_to_string(&self.path).map_err(|source| {
            crate::config::ConfigError::Read {
                file: file.clone(),
                source,
            }
        })?;
        // Parsing may hash `password_env` passwords (argon2): off the runtime.
        let parse_text = text.clone();
        let parsed = tokio::task::spawn_blocking(move || {
            Config::parse(&parse_text, &file, std::env::vars())
        })
        .await
        .map_err(|e| ReloadError::Task(e.to_string()))?;
        let mut config = parsed?;
        if config.tls.is_some() != self.started.tls.is_some() {
            return Err(ReloadError::TlsToggled);
        }
        let restart = needs_restart(&self.started, &config);
        if !restart.is_empty() {
            tracing::warn!(
                keys = ?restart,
                "these keys changed but take effect only after a restart; the rest is applied"
            );
        }
        keep_restart_only(&self.started, &mut config);
        let fingerprint = fingerprint_parts(text.as_bytes(), config.tls.as_ref());
        let certs = match (&self.certs, &config.tls) {
            (Some(certs), Some(tls)) => Some((certs, certs.prepare(tls)?)),
            _ => None,
        };
        let hash = config.source_hash.clone();
        let revoke_check = config.clone();
        let users_before = self.gateway.config().users.clone();
        let snapshot = self.gateway.prepare(config)?;
        // Everything loaded: put it in force.
        self.gateway.install(snapshot);
        if let Some((certs, prepared)) = certs {
            certs.install(prepared);
        }
        if let Err(e) =
            crate::server::revoke_orphaned_tokens(&revoke_check, &self.store, &self.clock).await
        {
            tracing::error!(
                error = %e,
                "cannot revoke the tokens of removed clients now; they are revoked at the next reload or start"
            );
        }
        if let Err(e) = crate::oauth::revoke_removed_users(
            &users_before,
            &revoke_check,
            &self.store,
            (self.clock)(),
        )
        .await
        {
            tracing::error!(error = %e, "cannot revoke the tokens of removed users now; their refreshes are refused");
        }
        Ok((hash, fingerprint))
    }

    /// Reloads whenever the files change, checking every `every`. Never returns.
    pub async fn watch(self: Arc<Self>, every: Duration) {
        let mut pending: Option<[u8; 32]> = None;
        loop {
            tokio::time::sleep(every).await;
            let now = fingerprint_of(&self.path, &self.gateway.config());
            let loaded = *self.last.lock().await;
            if now.is_none() || now == loaded {
                pending = None;
                continue;
            }
            // Changed: reload once the same new content is seen twice in a row.
            if pending != now {
                pending = now;
                tokio::time::sleep(every.min(Duration::from_millis(250))).await;
                if fingerprint_of(&self.path, &self.gateway.config()) != pending {
                    continue;
                }
            }
            pending = None;
            match self.reload("file change").await {
                Ok(()) => {}
                // A failure of our own making is retried at the next tick.
                Err(ReloadError::Task(_)) => {}
                // The same bad content is not retried every tick: only a new change is.
                Err(_) => *self.last.lock().await = now,
            }
        }
    }
}

/// The fingerprint of the configuration file as it is now (with the certificates the
/// configuration in force names), or `None` while the file cannot be read.
fn fingerprint_of(path: &std::path::Path, config: &Config) -> Option<[u8; 32]> {
    let text = std::fs::read(path).ok()?;
    Some(fingerprint_parts(&text, config.tls.as_ref()))
}

/// The SHA-256 of the configuration text and of every certificate and key `tls` names
/// (a file that cannot be read counts as a marker, so it does not stop the watcher).
fn fingerprint_parts(text: &[u8], tls: Option<&crate::config::TlsConfig>) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(text);
    let mut file = |p: &std::path::Path| match std::fs::read(p) {
        Ok(bytes) => {
            h.update([1]);
            h.update(Sha256::digest(bytes));
        }
        Err(_) => h.update([0]),
    };
    if let Some(tls) = tls {
        file(&tls.cert);
        file(&tls.key);
        for sni in &tls.sni {
            file(&sni.cert);
            file(&sni.key);
        }
    }
    h.finalize().into()
}

/// Puts back the values of the keys read only at startup, so that what is in force
/// stays consistent with the listeners, pools and limits actually running.
fn keep_restart_only(started: &Config, new: &mut Config) {
    let (o, n) = (&started.server, &mut new.server);
    n.https = o.https;
    n.http = o.http;
    n.http_mode = o.http_mode;
    n.workers = o.workers;
    n.max_connections = o.max_connections;
    n.header_read_timeout = o.header_read_timeout;
    n.idle_timeout = o.idle_timeout;
    n.http2_max_concurrent_streams = o.http2_max_concurrent_streams;
    n.shutdown_grace = o.shutdown_grace;
    n.max_header_bytes = o.max_header_bytes;
    new.store = started.store.clone();
    new.log = started.log.clone();
    if let (Some(o), Some(n)) = (&started.tls, &mut new.tls) {
        n.handshake_timeout = o.handshake_timeout;
        n.self_signed_if_missing = o.self_signed_if_missing;
    }
    new.metrics.listen = started.metrics.listen;
    new.reload = started.reload.clone();
    let (o, n) = (&started.oauth, &mut new.oauth);
    n.login_attempts_per_user = o.login_attempts_per_user;
    n.login_attempts_per_ip = o.login_attempts_per_ip;
    n.login_window = o.login_window;
    let (o, n) = (&started.rate_limits, &mut new.rate_limits);
    n.client_failures = o.client_failures;
}

/// The keys read only at startup whose values differ.
fn needs_restart(old: &Config, new: &Config) -> Vec<&'static str> {
    let (o, n) = (&old.server, &new.server);
    let tls = |c: &Config| {
        c.tls
            .as_ref()
            .map(|t| (t.handshake_timeout, t.self_signed_if_missing))
    };
    let (lo, ln) = (&old.rate_limits, &new.rate_limits);
    let changes = [
        (o.https != n.https, "server.https"),
        (o.http != n.http, "server.http"),
        (o.http_mode != n.http_mode, "server.http_mode"),
        (o.workers != n.workers, "server.workers"),
        (
            o.max_connections != n.max_connections,
            "server.max_connections",
        ),
        (
            o.header_read_timeout != n.header_read_timeout,
            "server.header_read_timeout",
        ),
        (o.idle_timeout != n.idle_timeout, "server.idle_timeout"),
        (
            o.http2_max_concurrent_streams != n.http2_max_concurrent_streams,
            "server.http2_max_concurrent_streams",
        ),
        (
            o.shutdown_grace != n.shutdown_grace,
            "server.shutdown_grace",
        ),
        (
            o.max_header_bytes != n.max_header_bytes,
            "server.max_header_bytes",
        ),
        (
            format!("{:?}", old.store) != format!("{:?}", new.store),
            "store",
        ),
        (
            old.log.format != new.log.format || old.log.level != new.log.level,
            "log",
        ),
        (
            tls(old) != tls(new),
            "tls.handshake_timeout, tls.self_signed_if_missing",
        ),
        (old.metrics.listen != new.metrics.listen, "metrics.listen"),
        (old.reload != new.reload, "reload.watch"),
        (
            old.oauth.login_attempts_per_user != new.oauth.login_attempts_per_user
                || old.oauth.login_attempts_per_ip != new.oauth.login_attempts_per_ip
                || old.oauth.login_window != new.oauth.login_window,
            "oauth.login_*",
        ),
        (
            lo.client_failures != ln.client_failures,
            "rate_limits.client_failures_*",
        ),
    ];
    changes
        .into_iter()
        .filter_map(|(changed, key)| changed.then_some(key))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(extra: &str) -> Config {
        Config::parse(
            &format!(
                "[server]\nhttps = \"off\"\nhttp = \"127.0.0.1:0\"\nhttp_mode = \"serve\"\n{extra}"
            ),
            "t.toml",
            std::iter::empty(),
        )
        .unwrap()
    }

    #[test]
    fn restart_only_keys_are_named_and_kept() {
        let a = cfg("");
        assert!(needs_restart(&a, &cfg("")).is_empty());
        let routes = "[[route]]\npath = \"/x\"\nupstream = \"http://127.0.0.1:1\"\npublic = true";
        assert!(needs_restart(&a, &cfg(routes)).is_empty());
        let mut b =
            cfg("workers = 7\n[store]\nurl = \"sqlite://other.db\"\n[log]\nlevel = \"debug\"");
        assert_eq!(
            needs_restart(&a, &b),
            vec!["server.workers", "store", "log"]
        );
        // What is put in force keeps the running values.
        keep_restart_only(&a, &mut b);
        assert!(needs_restart(&a, &b).is_empty());
        assert_eq!(b.server.workers, a.server.workers);
    }

    #[test]
    fn fingerprints_follow_the_text_and_the_certificates() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = (dir.path().join("c.pem"), dir.path().join("k.pem"));
        crate::certs::generate(&cert, &key, &["localhost".to_string()], false).unwrap();
        let tls = crate::config::TlsConfig {
            cert: cert.clone(),
            key: key.clone(),
            self_signed_if_missing: false,
            handshake_timeout: Duration::from_secs(1),
            sni: vec![],
        };
        let a = fingerprint_parts(b"x", Some(&tls));
        assert_eq!(a, fingerprint_parts(b"x", Some(&tls)));
        assert_ne!(a, fingerprint_parts(b"y", Some(&tls)));
        crate::certs::generate(&cert, &key, &["localhost".to_string()], true).unwrap();
        let b = fingerprint_parts(b"x", Some(&tls));
        assert_ne!(a, b);
        // A missing file is a marker, not a stop.
        std::fs::remove_file(&key).unwrap();
        assert_ne!(b, fingerprint_parts(b"x", Some(&tls)));
    }

    #[test]
    fn short_hashes_are_16_hex_digits() {
        let h = crate::config::short_hash(b"x");
        assert_eq!(h.len(), 16);
        assert_ne!(h, crate::config::short_hash(b"y"));
        assert_eq!(cfg("").source_hash.len(), 16);
    }
}
