//! One accepted client connection, served to its end: the protocol (on TLS, what ALPN
//! chose and nothing else; sniffed on plain HTTP), and when it is idle or stalled.
//!
//! Idle means no request in flight and none started or finished for
//! `server.idle_timeout`: bytes alone (HTTP/2 PINGs, a trickle of empty frames or TLS
//! records) do not keep a connection open. A request in flight keeps it open while it
//! makes progress: a body frame read from the client, or taken by hyper for the
//! client (hyper takes one only when it can send it). When none has moved for
//! `idle_timeout` the request is stalled (the peer stopped reading, closed its flow
//! control window, or the upstream stopped mid-body or never answered). Either way the connection is first asked to finish
//! (HTTP/1.1 closes after the current response, HTTP/2 sends GOAWAY), and dropped if it
//! still has not an `idle_timeout` later.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::watch;

use crate::body::{Body, BoxError, Progress};
use crate::config::Config;
use crate::gateway::{ConnInfo, Gateway};

/// The protocol a connection is served with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// Plain HTTP: HTTP/1.1, or HTTP/2 with prior knowledge (sniffed from the preface).
    Sniffed,
    /// TLS that negotiated `http/1.1`, or no ALPN: an HTTP/2 preface is refused.
    Http1,
    /// TLS that negotiated `h2`.
    Http2,
}

impl Protocol {
    /// What a TLS connection's negotiated ALPN protocol allows.
    pub fn for_alpn(alpn: Option<&[u8]>) -> Protocol {
        match alpn {
            Some(b"h2") => Protocol::Http2,
            _ => Protocol::Http1,
        }
    }
}

/// The connection builders, configured once from `[server]`: hyper-util's sniffing
/// one for plain HTTP, and hyper's own for one protocol (hyper-util's `http1_only` does
/// nothing for connections with upgrades, which WebSocket needs).
pub struct Builders {
    /// How fast request bodies must arrive.
    pace: crate::body::Pace,
    sniffed: auto::Builder<TokioExecutor>,
    http1: hyper::server::conn::http1::Builder,
    http2: hyper::server::conn::http2::Builder<TokioExecutor>,
}

impl Builders {
    /// Builders with the limits and timeouts of `config.server`.
    pub fn new(config: &Config) -> Builders {
        let s = &config.server;
        // Headers between `max_header_bytes` and this buffer size reach the gateway,
        // which answers 431 with the usual headers (HSTS); beyond it hyper answers 431.
        let buf = (s.max_header_bytes * 2).max(400 * 1024);
        let header_list = u32::try_from(buf).unwrap_or(u32::MAX);
        let mut sniffed = auto::Builder::new(TokioExecutor::new());
        sniffed
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(s.header_read_timeout)
            .max_buf_size(buf)
            .keep_alive(true);
        // No keep-alive pings of ours: idleness is measured by requests (see the module
        // docs), and dead peers are reaped by `idle_timeout`.
        sniffed
            .http2()
            .timer(TokioTimer::new())
            .max_concurrent_streams(s.http2_max_concurrent_streams)
            .max_header_list_size(header_list)
            .max_pending_accept_reset_streams(Some(64));
        let mut http1 = hyper::server::conn::http1::Builder::new();
        http1
            .timer(TokioTimer::new())
            .header_read_timeout(s.header_read_timeout)
            .max_buf_size(buf)
            .keep_alive(true);
        let mut http2 = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
        http2
            .timer(TokioTimer::new())
            .max_concurrent_streams(s.http2_max_concurrent_streams)
            .max_header_list_size(header_list)
            .max_pending_accept_reset_streams(Some(64));
        Builders {
            pace: crate::body::Pace {
                gap: s.body_read_timeout,
                min_rate: s.body_min_rate,
            },
            sniffed,
            http1,
            http2,
        }
    }
}

/// Drives `conn` until it ends; the first change on `finish` asks it to finish
/// gracefully (`shutdown` is its `graceful_shutdown`).
async fn drive<C, E>(
    conn: C,
    mut finish: watch::Receiver<bool>,
    shutdown: impl FnOnce(Pin<&mut C>),
) -> Result<(), BoxError>
where
    C: std::future::Future<Output = Result<(), E>>,
    E: Into<BoxError>,
{
    tokio::pin!(conn);
    let mut shutdown = Some(shutdown);
    loop {
        tokio::select! {
            res = conn.as_mut() => return res.map_err(Into::into),
            _ = finish.changed(), if shutdown.is_some() => {
                if let Some(f) = shutdown.take() {
                    f(conn.as_mut());
                }
            }
        }
    }
}

/// One accepted connection and what serving it needs.
pub struct Conn {
    pub info: ConnInfo,
    pub gateway: Arc<Gateway>,
    pub builders: Arc<Builders>,
    /// Changes when the server shuts down.
    pub stop: watch::Receiver<bool>,
    pub activity: Arc<Activity>,
    pub idle_timeout: Duration,
}

impl Conn {
    /// Serves `io` with `protocol` until the peer closes, the connection idles or
    /// stalls, or shutdown.
    pub async fn serve<I>(self, io: I, protocol: Protocol)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        serve(io, protocol, self).await
    }
}

async fn serve<I>(io: I, protocol: Protocol, conn: Conn)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let Conn {
        info,
        gateway,
        builders,
        mut stop,
        activity,
        idle_timeout,
    } = conn;
    let peer = info.peer;
    let info = Arc::new(info);
    let requests = activity.clone();
    let pace = builders.pace;
    let svc = service_fn(move |req: http::Request<hyper::body::Incoming>| {
        let gateway = gateway.clone();
        let info = info.clone();
        let in_flight = requests.request_started();
        let progress = requests.progress().clone();
        let req = req.map(|body| crate::body::Paced::new(body, pace, progress));
        async move {
            let resp = gateway.handle(req, &info).await;
            // In flight until hyper has sent the whole body and drops it.
            Ok::<_, Infallible>(resp.map(|body| Counted {
                inner: body,
                _in_flight: in_flight,
            }))
        }
    });
    let (finish, finishing) = watch::channel(false);
    let io = TokioIo::new(io);
    let conn: Pin<Box<dyn std::future::Future<Output = Result<(), BoxError>> + Send + '_>> =
        match protocol {
            Protocol::Sniffed => Box::pin(drive(
                builders.sniffed.serve_connection_with_upgrades(io, svc),
                finishing,
                |c| c.graceful_shutdown(),
            )),
            Protocol::Http1 => Box::pin(drive(
                builders.http1.serve_connection(io, svc).with_upgrades(),
                finishing,
                |c| c.graceful_shutdown(),
            )),
            Protocol::Http2 => Box::pin(drive(
                builders.http2.serve_connection(io, svc),
                finishing,
                |c| c.graceful_shutdown(),
            )),
        };
    tokio::pin!(conn);
    let idle = tokio::time::sleep(idle_timeout);
    tokio::pin!(idle);
    let mut closing = false;
    loop {
        tokio::select! {
            res = conn.as_mut() => {
                if let Err(e) = res {
                    tracing::debug!(%peer, error = %e, "connection ended with an error");
                }
                return;
            }
            _ = stop.changed(), if !closing => {
                let _ = finish.send(true);
                closing = true;
            }
            _ = &mut idle => {
                let now = tokio::time::Instant::now();
                match activity.waiting(idle_timeout) {
                    Some(left) => idle.as_mut().reset(now + left),
                    None if !closing => {
                        // Graceful: a request still being answered completes first.
                        tracing::debug!(%peer, "closing idle or stalled connection");
                        let _ = finish.send(true);
                        closing = true;
                        idle.as_mut().reset(now + idle_timeout);
                    }
                    None => {
                        // Asked to finish a whole idle period ago, and still idle (only
                        // pings) or stalled: drop it so it stops holding a slot.
                        tracing::debug!(%peer, "dropping connection that did not finish");
                        return;
                    }
                }
            }
        }
    }
}

/// What a connection has been doing: requests in flight, when a request last started
/// or finished, and when a request last made progress ([`Progress`]).
pub struct Activity {
    epoch: Instant,
    progress: Arc<Progress>,
    last_request_ms: AtomicU64,
    in_flight: AtomicUsize,
    started: AtomicU64,
}

impl Activity {
    /// A connection that opened now.
    pub fn new() -> Arc<Activity> {
        Arc::new(Activity {
            epoch: Instant::now(),
            progress: Arc::new(Progress::new()),
            last_request_ms: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
            started: AtomicU64::new(0),
        })
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// Where request bodies record their progress.
    pub fn progress(&self) -> &Arc<Progress> {
        &self.progress
    }

    /// Requests of this connection being answered now.
    pub(crate) fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Requests of this connection handed to the gateway so far.
    pub(crate) fn requests_started(&self) -> u64 {
        self.started.load(Ordering::Relaxed)
    }

    /// Counts a request until the returned guard drops (its response body was sent).
    pub(crate) fn request_started(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.started.fetch_add(1, Ordering::Relaxed);
        self.last_request_ms.store(self.now_ms(), Ordering::Relaxed);
        // The wait for the upstream's answer starts the stall clock afresh.
        self.progress.touch();
        InFlight(self.clone())
    }

    /// How much longer the connection may stay as it is: `None` when it has been idle
    /// (no request in flight, none for `limit`) or stalled (requests in flight, no
    /// body frame either way for `limit`) that long.
    fn waiting(&self, limit: Duration) -> Option<Duration> {
        let quiet = if self.in_flight.load(Ordering::Relaxed) == 0 {
            let last = self.last_request_ms.load(Ordering::Relaxed);
            Duration::from_millis(self.now_ms().saturating_sub(last))
        } else {
            self.progress.quiet_for()
        };
        limit.checked_sub(quiet).filter(|left| !left.is_zero())
    }
}

/// One request in flight on a connection.
pub(crate) struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0
            .last_request_ms
            .store(self.0.now_ms(), Ordering::Relaxed);
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

pin_project_lite::pin_project! {
    /// A response body that holds its request's [`InFlight`] until hyper drops it.
    struct Counted {
        #[pin]
        inner: Body,
        _in_flight: InFlight,
    }
}

impl http_body::Body for Counted {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, BoxError>>> {
        let this = self.project();
        let polled = this.inner.poll_frame(cx);
        // hyper asks for a frame only when it can send one: the client is reading.
        if let Poll::Ready(Some(Ok(_))) = &polled {
            this._in_flight.0.progress.touch();
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alpn_decides_the_protocol_on_tls() {
        assert_eq!(Protocol::for_alpn(Some(b"h2")), Protocol::Http2);
        assert_eq!(Protocol::for_alpn(Some(b"http/1.1")), Protocol::Http1);
        assert_eq!(Protocol::for_alpn(None), Protocol::Http1);
    }

    #[test]
    fn idle_counts_requests_and_stalled_counts_progress() {
        let a = Activity::new();
        let long = Duration::from_secs(3600);
        assert!(a.waiting(long).is_some());
        assert_eq!(a.waiting(Duration::ZERO), None);
        // Progress alone does not make an idle connection busy.
        a.progress().touch();
        assert_eq!(a.waiting(Duration::ZERO), None);
        let r = a.request_started();
        // In flight: waiting on bytes, which just moved.
        assert!(a.waiting(long).is_some());
        drop(r);
        assert!(a.waiting(long).is_some());
        assert_eq!(a.in_flight.load(Ordering::Relaxed), 0);
    }
}
