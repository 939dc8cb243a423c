//! WebSocket tunnels: once the upstream has answered the client's handshake with a 101
//! that proves it read the key ([`super::headers::accepts_websocket`]), the two
//! upgraded connections are joined and bytes copied both ways until either side
//! closes, or:
//!
//! - the access token that opened the tunnel stops being valid: it is looked up again
//!   every [`RECHECK`] in the token table, so its expiry and its revocation (here or,
//!   through the revocation log, on any instance) end the tunnel within about a second
//!   of taking effect;
//! - no byte has moved either way for `server.websocket_idle_timeout`.

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::secret::Secret;
use crate::token_table::TokenTable;

/// How often a tunnel's token is checked again.
pub const RECHECK: Duration = Duration::from_secs(1);

/// What ends a tunnel besides its peers.
pub struct TunnelLimits {
    /// No byte either way for this long.
    pub idle_timeout: Duration,
    /// The access token that opened the tunnel (none on public routes).
    pub token: Option<(Arc<TokenTable>, Secret)>,
}

/// Joins the client's and the upstream's upgraded connections in a background task.
/// `slot` (the connection's permit) is held until the tunnel closes, so tunnels count
/// under `server.max_connections` (and per address) and in `authgate_open_connections`,
/// and graceful shutdown waits for them (up to the grace).
pub fn tunnel(
    client: OnUpgrade,
    upstream: OnUpgrade,
    slot: Arc<super::ConnSlot>,
    limits: TunnelLimits,
) {
    tokio::spawn(async move {
        let _slot = slot;
        let (client, upstream) = match tokio::try_join!(client, upstream) {
            Ok(pair) => pair,
            Err(e) => {
                tracing::debug!(error = %e, "upgrade did not complete");
                return;
            }
        };
        let epoch = Instant::now();
        let last = Arc::new(AtomicU64::new(0));
        let mut client = Watched::new(TokioIo::new(client), epoch, last.clone());
        let mut upstream = Watched::new(TokioIo::new(upstream), epoch, last.clone());
        let copy = tokio::io::copy_bidirectional(&mut client, &mut upstream);
        // Its own future beside the copy: a lookup that waits on the store never holds
        // the bytes up.
        let revoked = token_ended(limits.token);
        let idle = idle_for(limits.idle_timeout, epoch, last);
        tokio::select! {
            done = copy => match done {
                Ok((up, down)) => tracing::debug!(bytes_up = up, bytes_down = down, "tunnel closed"),
                Err(e) => tracing::debug!(error = %e, "tunnel ended with an error"),
            },
            () = revoked => tracing::info!("tunnel closed: its access token expired or was revoked"),
            () = idle => tracing::debug!("tunnel idle: closed"),
        }
    });
}

/// Resolves once the tunnel's token is no longer valid (never on a public route). A
/// store outage keeps the tunnel, as it keeps cached tokens.
async fn token_ended(token: Option<(Arc<TokenTable>, Secret)>) {
    let Some((tokens, value)) = token else {
        return std::future::pending().await;
    };
    let mut every = tokio::time::interval(RECHECK);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        if let Ok(None) = tokens.lookup(value.expose()).await {
            return;
        }
    }
}

/// Resolves once no byte has moved for `limit`.
async fn idle_for(limit: Duration, epoch: Instant, last: Arc<AtomicU64>) {
    loop {
        let quiet = Duration::from_millis(
            (epoch.elapsed().as_millis() as u64).saturating_sub(last.load(Ordering::Relaxed)),
        );
        match limit.checked_sub(quiet) {
            Some(left) if !left.is_zero() => tokio::time::sleep(left).await,
            _ => return,
        }
    }
}

/// An upgraded connection that records when a byte last moved (either tunnel side).
struct Watched<T> {
    inner: T,
    epoch: Instant,
    last: Arc<AtomicU64>,
}

impl<T> Watched<T> {
    fn new(inner: T, epoch: Instant, last: Arc<AtomicU64>) -> Watched<T> {
        Watched { inner, epoch, last }
    }

    fn touch(&self) {
        self.last
            .store(self.epoch.elapsed().as_millis() as u64, Ordering::Relaxed);
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Watched<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let res = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.touch();
        }
        res
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Watched<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let res = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(res, Poll::Ready(Ok(n)) if n > 0) {
            self.touch();
        }
        res
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
