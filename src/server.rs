//! Listeners: bind, accept under the connection limits (`max_connections`, and
//! `max_connections_per_ip`), TLS handshake (bounded in time), hand each connection to
//! a worker ([`crate::connection`] serves it), and drain gracefully on shutdown.
//!
//! Shutdown: stop accepting, ask every connection to finish (HTTP/1.1: close after the
//! current response; HTTP/2: GOAWAY), wait up to `server.shutdown_grace` for the
//! connection permits to come back, then return.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tokio_rustls::TlsAcceptor;

use crate::config::{Config, HttpMode, TlsConfig};
use crate::conn_limit::PerIp;
use crate::connection::{self, Activity, Builders, Protocol};
use crate::gateway::{ConnInfo, ConnSlot, Gateway, Listener};
use crate::parse_errors::WithHsts;
use crate::workers::Workers;

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    #[error("tls: cannot create the development certificate: {0}")]
    Cert(#[from] crate::certs::CertError),
    #[error("tls: {0}")]
    HalfPair(String),
    #[error(transparent)]
    Upstream(#[from] crate::gateway::forward::UpstreamSetupError),
    #[error("store.url: {0}")]
    Store(#[from] crate::store::StoreError),
    #[error("server.workers: cannot start the worker threads: {0}")]
    Workers(io::Error),
    #[error("{key}: cannot listen on {addr}: {source}")]
    Bind {
        key: &'static str,
        addr: SocketAddr,
        source: io::Error,
    },
}

/// A bound, not yet serving, authgate.
pub struct Server {
    gateway: Arc<Gateway>,
    /// The configuration at startup: listeners, limits and timeouts read once.
    config: Arc<Config>,
    reloader: Arc<crate::reload::Reloader>,
    /// The separate metrics and health listener (`metrics.listen`).
    ops: Option<TcpListener>,
    tokens: Arc<crate::token_table::TokenTable>,
    /// Where the revocation log stood before anything was cached.
    log_start: i64,
    https: Option<(TcpListener, TlsAcceptor, Duration)>,
    http: Option<(TcpListener, HttpMode)>,
    workers: Workers,
}

impl Server {
    /// Loads certificates (creating development ones if so configured) and binds the
    /// listeners. Port 0 picks a free port; see [`Server::https_addr`].
    pub async fn bind(config: Config) -> Result<Server, ServerError> {
        Self::bind_with_clock(config, crate::oauth::system_clock()).await
    }

    /// [`Server::bind`] with a clock of the caller's (tests).
    pub async fn bind_with_clock(
        config: Config,
        clock: crate::oauth::Clock,
    ) -> Result<Server, ServerError> {
        // The store first: a store that cannot be opened stops startup before any port
        // is bound.
        let store = crate::store::open_with(&config.store.url, &config.store.pool).await?;
        Self::bind_with_store(config, clock, store).await
    }

    /// [`Server::bind`] over a store of the caller's (tests wrap the store to count
    /// queries).
    pub async fn bind_with_store(
        config: Config,
        clock: crate::oauth::Clock,
        store: std::sync::Arc<dyn crate::store::Store>,
    ) -> Result<Server, ServerError> {
        let metrics = crate::metrics::Metrics::default();
        let store = crate::store::instrumented::Instrumented::wrap(store, metrics.store.clone());
        let codec = crate::token::Codec::new(store.token_key().await?);
        revoke_orphaned_tokens(&config, &store, &clock).await?;
        // Read before any token is cached, so every later revocation is followed.
        let (log_start, _) = store.revocations_since(None).await?;
        let tokens = Arc::new(crate::token_table::TokenTable::new(
            store.clone(),
            codec.clone(),
            clock.clone(),
            &config.store,
        ));
        let metrics = crate::metrics::Metrics {
            cache: tokens.metrics().clone(),
            ..metrics
        };
        let oauth = crate::oauth::OAuth::new(
            &config,
            store.clone(),
            codec,
            clock.clone(),
            tokens.clone(),
            metrics.oauth.clone(),
        );
        let mut certs = None;
        let https = match (&config.tls, config.server.https) {
            (Some(tls), Some(addr)) => {
                ensure_dev_cert(tls)?;
                let (tls_config, handle) = crate::tls::reloadable_server_config(tls)?;
                certs = Some(handle);
                let acceptor = TlsAcceptor::from(tls_config);
                let listener = bind("server.https", addr).await?;
                Some((listener, acceptor, tls.handshake_timeout))
            }
            _ => None,
        };
        let ops = match config.metrics.listen {
            Some(addr) => Some(bind("metrics.listen", addr).await?),
            None => None,
        };
        let http = match config.server.http {
            Some(addr) => Some((bind("server.http", addr).await?, config.server.http_mode)),
            None => None,
        };
        let https_port = https
            .as_ref()
            .and_then(|(l, _, _): &(TcpListener, _, _)| l.local_addr().ok())
            .map(|a| a.port());
        let workers = Workers::start(config.server.workers).map_err(ServerError::Workers)?;
        let config = Arc::new(config);
        let reload_metrics = metrics.reload.clone();
        let gateway = Arc::new(Gateway::new(
            config.clone(),
            https_port,
            oauth,
            tokens.clone(),
            metrics,
        )?);
        let reloader = Arc::new(crate::reload::Reloader::new(
            config.clone(),
            gateway.clone(),
            certs,
            store,
            clock,
            reload_metrics,
        ));
        Ok(Server {
            gateway,
            config,
            reloader,
            ops,
            tokens,
            log_start,
            https,
            http,
            workers,
        })
    }

    /// The bound HTTPS address.
    pub fn https_addr(&self) -> Option<SocketAddr> {
        self.https
            .as_ref()
            .and_then(|(l, _, _)| l.local_addr().ok())
    }

    /// The bound plain HTTP address.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http.as_ref().and_then(|(l, _)| l.local_addr().ok())
    }

    /// The bound metrics and health address (`metrics.listen`).
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.ops.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// What reloads the configuration (SIGHUP, tests).
    pub fn reloader(&self) -> Arc<crate::reload::Reloader> {
        self.reloader.clone()
    }

    /// Serves until `shutdown` completes, then drains.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let cfg = self.config.server.clone();
        let store_cfg = &self.config.store;
        let watcher = self
            .tokens
            .clone()
            .watch_revocations(store_cfg.revocation_poll, self.log_start);
        let sweeper = store_cfg.sweep_interval.map(|every| {
            self.tokens.clone().sweep_expired(
                every,
                store_cfg.keep_expired,
                store_cfg.log_retention(),
            )
        });
        let watch_files = self
            .config
            .reload
            .watch
            .map(|every| tokio::spawn(self.reloader.clone().watch(every)));
        let gateway = self.gateway.clone();
        let purge = tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_secs(60));
            loop {
                every.tick().await;
                gateway.purge_rate_limits();
            }
        });
        let ops = self.ops.map(|listener| {
            log_listening("metrics", &listener, None);
            tokio::spawn(ops_loop(listener, self.gateway.clone()))
        });
        let max = cfg.max_connections;
        let permits = Arc::new(Semaphore::new(max));
        let (stop_tx, stop_rx) = watch::channel(false);

        let https = self.https.map(|(listener, acceptor, hs_timeout)| {
            log_listening("HTTPS", &listener, None);
            (listener, acceptor, hs_timeout)
        });
        let http = self.http.map(|(listener, mode)| {
            log_listening("HTTP", &listener, Some(mode));
            (listener, mode)
        });
        let workers = Arc::new(self.workers);
        let acceptor = tokio::spawn(accept_loop(
            https,
            http,
            self.gateway.clone(),
            permits.clone(),
            workers.clone(),
            stop_rx,
            self.config.clone(),
        ));

        shutdown.await;
        tracing::info!(grace = ?cfg.shutdown_grace, "shutting down: draining connections");
        self.gateway.start_draining();
        let _ = stop_tx.send(true);
        let _ = acceptor.await;
        watcher.abort();
        purge.abort();
        for task in [sweeper, watch_files].into_iter().flatten() {
            task.abort();
        }
        // Every open connection holds a permit: all permits back means all drained.
        let all = u32::try_from(max).unwrap_or(u32::MAX);
        let drained = tokio::time::timeout(cfg.shutdown_grace, permits.acquire_many(all)).await;
        match drained {
            Ok(_) => tracing::info!("drained; exiting"),
            Err(_) => tracing::warn!(
                open = max - permits.available_permits(),
                "shutdown grace elapsed; closing remaining connections"
            ),
        };
        if let Some(ops) = ops {
            ops.abort();
        }
        // The last reference: stopping the workers closes what is still open.
        drop(workers);
    }
}

/// Revokes the tokens of clients (and accounts) that exist neither in the file nor in
/// the store: removing a `[[client]]` from the file must end its access, as
/// `authgate client remove` does; then those of users nobody declares any more
/// ([`crate::oauth::revoke_orphaned_subjects`]). Runs at startup and on every reload.
pub(crate) async fn revoke_orphaned_tokens(
    config: &Config,
    store: &Arc<dyn crate::store::Store>,
    clock: &crate::oauth::Clock,
) -> Result<(), crate::store::StoreError> {
    for id in store.clients_with_tokens().await? {
        let known = match id.strip_prefix("account:") {
            Some(account) => config.accounts.iter().any(|a| a.id == account),
            None => {
                config.clients.iter().any(|c| c.id == id) || store.get_client(&id).await?.is_some()
            }
        };
        if !known {
            store.delete_client(&id, clock()).await?;
            tracing::warn!(client_id = %id, "client no longer configured: its tokens were revoked");
        }
    }
    crate::oauth::revoke_orphaned_subjects(config, store, clock()).await
}

async fn bind(key: &'static str, addr: SocketAddr) -> Result<TcpListener, ServerError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| ServerError::Bind { key, addr, source })
}

fn ensure_dev_cert(tls: &TlsConfig) -> Result<(), ServerError> {
    if !tls.self_signed_if_missing {
        return Ok(());
    }
    match (tls.cert.exists(), tls.key.exists()) {
        (true, true) => Ok(()),
        (false, false) => {
            let names: Vec<String> = crate::certs::DEV_NAMES
                .iter()
                .map(|s| s.to_string())
                .collect();
            crate::certs::generate(&tls.cert, &tls.key, &names, false)?;
            tracing::warn!(
                cert = %tls.cert.display(),
                key = %tls.key.display(),
                names = ?names,
                "generated a self-signed development certificate; clients will not trust it. Use a real certificate in production"
            );
            Ok(())
        }
        (c, _) => Err(ServerError::HalfPair(format!(
            "{} exists but {} does not; remove it or supply both",
            if c {
                tls.cert.display()
            } else {
                tls.key.display()
            },
            if c {
                tls.key.display()
            } else {
                tls.cert.display()
            },
        ))),
    }
}

fn log_listening(what: &str, listener: &TcpListener, mode: Option<HttpMode>) {
    let addr = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    match mode {
        None => tracing::info!(%addr, "listening ({what})"),
        Some(mode) => tracing::info!(%addr, ?mode, "listening ({what})"),
    }
}

/// Accepts on `listener`, or never if there is none.
async fn accept_on(listener: Option<&TcpListener>) -> io::Result<(TcpStream, SocketAddr)> {
    match listener {
        Some(l) => l.accept().await,
        None => std::future::pending().await,
    }
}

/// One loop for both listeners, so that they share the connection limit fairly: a
/// permit is taken first, then whichever listener has a client gets it. (A loop per
/// listener would let an idle listener sit on the last permit.) Each accepted
/// connection is handed to the next worker thread, which serves it to the end.
async fn accept_loop(
    https: Option<(TcpListener, TlsAcceptor, Duration)>,
    http: Option<(TcpListener, HttpMode)>,
    gateway: Arc<Gateway>,
    permits: Arc<Semaphore>,
    workers: Arc<Workers>,
    mut stop: watch::Receiver<bool>,
    config: Arc<Config>,
) {
    let idle_timeout = config.server.idle_timeout;
    let builders = Arc::new(Builders::new(&config));
    let per_ip = config.server.max_connections_per_ip.map(PerIp::new);
    loop {
        // Wait for a free connection slot before accepting: excess clients queue in the
        // kernel's backlog instead of being accepted and starved.
        let permit = tokio::select! {
            p = permits.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => return },
            _ = stop.changed() => return,
        };
        let (accepted, kind, tls) = tokio::select! {
            r = accept_on(https.as_ref().map(|h| &h.0)) => {
                let tls = https.as_ref().map(|(_, a, t)| (a.clone(), *t));
                (r, Listener::Https, tls)
            }
            r = accept_on(http.as_ref().map(|h| &h.0)) => {
                let mode = http.as_ref().map_or(HttpMode::Serve, |h| h.1);
                (r, Listener::Http(mode), None)
            }
            _ = stop.changed() => return,
        };
        let (tcp, peer) = match accepted {
            Ok(pair) => pair,
            Err(e) => {
                // EMFILE and friends: back off briefly instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        // Out of this runtime's reactor, into the worker's.
        let tcp = match tcp.into_std() {
            Ok(tcp) => tcp,
            Err(e) => {
                tracing::warn!(%peer, error = %e, "cannot hand the connection to a worker");
                continue;
            }
        };
        let trusted_peer = gateway.is_trusted(peer.ip());
        // Trusted proxies carry many clients each: not counted per address.
        let per_ip_hold = match per_ip.as_ref().filter(|_| !trusted_peer) {
            None => None,
            Some(table) => match table.try_hold(peer.ip()) {
                Some(hold) => Some(hold),
                None => {
                    tracing::debug!(%peer, "server.max_connections_per_ip reached: connection closed");
                    gateway.metrics().connections_refused_per_ip.inc();
                    continue;
                }
            },
        };
        let gateway = gateway.clone();
        let builders = builders.clone();
        let stop = stop.clone();
        let slot = Arc::new(ConnSlot::new(permit, per_ip_hold, gateway.metrics()));
        workers.spawn(move |worker| async move {
            let tcp = match TcpStream::from_std(tcp) {
                Ok(tcp) => tcp,
                Err(e) => {
                    tracing::warn!(%peer, error = %e, "worker cannot take the connection");
                    return;
                }
            };
            let info = ConnInfo {
                peer,
                listener: kind,
                trusted_peer,
                slot,
                worker,
            };
            let activity = Activity::new();
            let io = tcp;
            let conn = connection::Conn {
                info,
                gateway,
                builders,
                stop,
                activity,
                idle_timeout,
            };
            match tls {
                None => conn.serve(io, Protocol::Sniffed).await,
                Some((acceptor, hs_timeout)) => {
                    match tokio::time::timeout(hs_timeout, acceptor.accept(io)).await {
                        Ok(Ok(stream)) => {
                            // ALPN decides: an HTTP/2 preface on a connection that agreed
                            // on http/1.1 is refused, not sniffed.
                            let protocol = Protocol::for_alpn(stream.get_ref().1.alpn_protocol());
                            // hyper's own 400/431 answers get HSTS too (on HTTP/2 no
                            // write starts with a status line, so nothing is touched).
                            let hsts = conn.gateway.config().hsts.clone();
                            let stream = WithHsts::new(stream, &hsts, conn.activity.clone());
                            conn.serve(stream, protocol).await
                        }
                        Ok(Err(e)) => {
                            conn.gateway.metrics().tls_handshake_failures.inc();
                            tracing::debug!(%peer, error = %e, "TLS handshake failed")
                        }
                        Err(_) => {
                            conn.gateway.metrics().tls_handshake_failures.inc();
                            tracing::debug!(%peer, "TLS handshake timed out")
                        }
                    }
                }
            }
        });
    }
}

/// Serves the metrics listener: plain HTTP/1.1, one small request at a time per
/// connection, on the main runtime (scrapes and probes are rare).
async fn ops_loop(listener: TcpListener, gateway: Arc<Gateway>) {
    // A bound on connections, so the listener cannot use up descriptors the main
    // listeners need.
    let slots = Arc::new(Semaphore::new(64));
    loop {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let (tcp, peer) = match listener.accept().await {
            Ok(pair) => pair,
            Err(e) => {
                tracing::warn!(error = %e, "metrics listener: accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let gateway = gateway.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let svc = service_fn(move |req| {
                let gateway = gateway.clone();
                async move { Ok::<_, Infallible>(gateway.handle_ops(req).await) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10))
                .serve_connection(TokioIo::new(tcp), svc);
            // A scraper that stalls is cut off after a minute.
            match tokio::time::timeout(Duration::from_secs(60), conn).await {
                Ok(Err(e)) => tracing::debug!(%peer, error = %e, "metrics connection error"),
                Err(_) => tracing::debug!(%peer, "metrics connection timed out"),
                Ok(Ok(())) => {}
            }
        });
    }
}
