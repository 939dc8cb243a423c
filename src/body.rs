//! Body types. Every response authgate produces has the body type [`Body`], so proxied
//! upstream bodies and authgate's own JSON share one response type. Every request body
//! is [`Incoming`]: hyper's, [`Paced`] so a client that sends it too slowly is cut off,
//! whoever reads it (forwarding, OAuth forms). Bodies are streamed to the upstream
//! through [`Limited`] (per-route size cap) and [`Deferred`] (so a connection failure
//! can retry the same body on the next upstream).

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Empty, Full};

/// A request body as authgate reads it.
pub type Incoming = Paced;

/// How fast a request body must arrive (`server.body_read_timeout`,
/// `server.body_min_rate`), as Apache's `mod_reqtimeout` counts it: no pause longer
/// than `gap` between two pieces, and the whole body by `gap` + bytes / `min_rate`
/// after reading began. A client trickling one byte every few seconds holds a
/// connection for about `gap`, not forever.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pace {
    pub gap: std::time::Duration,
    /// Bytes per second on average; 0: no rate, only the gap.
    pub min_rate: u64,
}

/// When a connection last made progress on a request: a body frame read from the
/// client or handed to hyper for the client (see [`crate::connection`]). Socket bytes
/// do not count: HTTP/2 PINGs and empty TLS records move bytes without moving a
/// request, so a peer that stops reading its response cannot hide behind them.
#[derive(Debug)]
pub struct Progress {
    epoch: std::time::Instant,
    last_ms: std::sync::atomic::AtomicU64,
}

impl Progress {
    /// Progress made now.
    pub fn new() -> Progress {
        Progress {
            epoch: std::time::Instant::now(),
            last_ms: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// Records progress now.
    pub fn touch(&self) {
        let now = self.epoch.elapsed().as_millis() as u64;
        self.last_ms.store(now, Ordering::Relaxed);
    }

    /// How long since the last progress.
    pub fn quiet_for(&self) -> std::time::Duration {
        let now = self.epoch.elapsed().as_millis() as u64;
        std::time::Duration::from_millis(now.saturating_sub(self.last_ms.load(Ordering::Relaxed)))
    }
}

impl Default for Progress {
    fn default() -> Progress {
        Progress::new()
    }
}

/// The error a [`Paced`] body yields once its client is too slow.
#[derive(Debug, thiserror::Error)]
#[error("the request body arrived too slowly")]
pub struct TooSlow;

/// A body left unread when its request was answered (an early 401, a refused form) is
/// read and discarded, up to this many bytes…
const DRAIN_MAX: u64 = 1024 * 1024;
/// …for up to this long, before the stream is reset or the connection closed. Answering
/// while the client is still sending makes hyper reset the HTTP/2 stream, and some
/// clients (curl 7.88) then show no response at all; nginx drains too.
const DRAIN_TIME: std::time::Duration = std::time::Duration::from_secs(2);

/// A request body (hyper's) that fails with [`TooSlow`] when it falls behind its
/// [`Pace`], and that is drained when dropped unread. Only time spent waiting for the
/// client counts (a reader that pauses, such as a slow upstream, is not the client's
/// fault), and a timer exists only while the client makes the reader wait, so a body
/// that is already buffered costs nothing.
pub struct Paced {
    /// `None` only once handed to the drain task.
    inner: Option<hyper::body::Incoming>,
    pace: Pace,
    progress: std::sync::Arc<Progress>,
    /// When the current wait for the client began.
    waiting_since: Option<tokio::time::Instant>,
    /// Time spent waiting for the client before the current wait.
    waited: std::time::Duration,
    seen: u64,
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
    /// It fell behind its pace: not worth draining.
    too_slow: bool,
    /// The client sent its end: nothing left to drain.
    done: bool,
}

impl Paced {
    /// Wraps `inner`; frames read are progress of the connection's `progress`.
    pub fn new(
        inner: hyper::body::Incoming,
        pace: Pace,
        progress: std::sync::Arc<Progress>,
    ) -> Paced {
        Paced {
            inner: Some(inner),
            pace,
            progress,
            waiting_since: None,
            waited: std::time::Duration::ZERO,
            seen: 0,
            timer: None,
            too_slow: false,
            done: false,
        }
    }

    /// When the current wait (begun at `since`) runs out: no single wait longer than
    /// the gap, and all waiting within the gap plus what the bytes so far earned.
    fn deadline(&self, since: tokio::time::Instant) -> tokio::time::Instant {
        let mut allowed = self.pace.gap;
        if self.pace.min_rate > 0 {
            let earned =
                std::time::Duration::from_secs_f64(self.seen as f64 / self.pace.min_rate as f64);
            allowed = allowed.min((self.pace.gap + earned).saturating_sub(self.waited));
        }
        since + allowed
    }
}

impl http_body::Body for Paced {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        let Some(inner) = this.inner.as_mut() else {
            return Poll::Ready(None);
        };
        let polled = Pin::new(inner).poll_frame(cx);
        if !polled.is_pending() {
            if let Some(since) = this.waiting_since.take() {
                this.waited += since.elapsed();
            }
        }
        match polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.seen += data.len() as u64;
                    this.progress.touch();
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
            Poll::Ready(None) => {
                this.done = true;
                Poll::Ready(None)
            }
            Poll::Pending => {
                let started = *this
                    .waiting_since
                    .get_or_insert_with(tokio::time::Instant::now);
                let deadline = this.deadline(started);
                let timer = this
                    .timer
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
                if timer.deadline() != deadline {
                    timer.as_mut().reset(deadline);
                }
                match timer.as_mut().poll(cx) {
                    Poll::Ready(()) => {
                        this.too_slow = true;
                        Poll::Ready(Some(Err(TooSlow.into())))
                    }
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner
            .as_ref()
            .is_none_or(http_body::Body::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        self.inner
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), http_body::Body::size_hint)
    }
}

impl Drop for Paced {
    fn drop(&mut self) {
        let Some(body) = self.inner.take() else {
            return;
        };
        if self.too_slow
            || self.done
            || http_body::Body::is_end_stream(&body)
            || http_body::Body::size_hint(&body).lower() > DRAIN_MAX.saturating_sub(self.seen)
        {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let budget = DRAIN_MAX.saturating_sub(self.seen);
        runtime.spawn(drain(body, budget));
    }
}

/// Reads and discards `body`, at most `budget` bytes within [`DRAIN_TIME`]; dropping it
/// then resets the stream (HTTP/2) or closes the connection (HTTP/1.1).
async fn drain(mut body: hyper::body::Incoming, mut budget: u64) {
    let read = async {
        while let Some(frame) = body.frame().await {
            let Ok(frame) = frame else { return };
            if let Some(data) = frame.data_ref() {
                let n = data.len() as u64;
                if n > budget {
                    return;
                }
                budget -= n;
            }
        }
    };
    let _ = tokio::time::timeout(DRAIN_TIME, read).await;
}

/// Whether `e`, or an error it wraps, is a [`TooSlow`].
pub fn is_too_slow(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(e);
    while let Some(err) = next {
        if err.is::<TooSlow>() {
            return true;
        }
        next = err.source();
    }
    false
}

/// The error type carried by bodies.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The body of every response (and of every request sent upstream).
pub type Body = UnsyncBoxBody<Bytes, BoxError>;

/// A body holding `bytes`.
pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// An empty body.
pub fn empty() -> Body {
    Empty::new().map_err(|never| match never {}).boxed_unsync()
}

/// The error a [`Limited`] body yields once it passes its limit.
#[derive(Debug, thiserror::Error)]
#[error("request body exceeds {limit} bytes")]
pub struct TooLarge {
    pub limit: u64,
}

/// What went wrong with a request body on its way to the upstream, seen by the gateway
/// after the upstream call failed: the client's fault (413, 400), not the upstream's.
#[derive(Debug, Default)]
pub struct BodyWatch {
    too_large: AtomicBool,
    client_failed: AtomicBool,
}

impl BodyWatch {
    /// More than the limit went by.
    pub fn too_large(&self) -> bool {
        self.too_large.load(Ordering::Acquire)
    }

    /// The client's body stream failed: malformed chunked framing, a body shorter than
    /// its `Content-Length`, a reset stream. The upstream got an aborted request.
    pub fn client_failed(&self) -> bool {
        self.client_failed.load(Ordering::Acquire)
    }
}

pin_project_lite::pin_project! {
    /// Passes frames through until more than `limit` bytes of data went by, then fails;
    /// notes in its [`BodyWatch`] why it failed, so the gateway can answer 413 or 400
    /// rather than 502.
    pub struct Limited<B> {
        #[pin]
        inner: B,
        seen: u64,
        limit: u64,
        watch: Arc<BodyWatch>,
    }
}

impl<B> Limited<B> {
    /// Wraps `inner`; `watch` records why it failed, if it does.
    pub fn new(inner: B, limit: u64, watch: Arc<BodyWatch>) -> Self {
        Limited {
            inner,
            seen: 0,
            limit,
            watch,
        }
    }
}

impl<B> http_body::Body for Limited<B>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let mut this = self.project();
        loop {
            return match this.inner.as_mut().poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => {
                    let Some(data) = frame.data_ref() else {
                        // Request trailers arrive after every check of the head
                        // (method overrides, identity, `_` names); upstreams that merge
                        // them into the headers would believe them. None go upstream.
                        continue;
                    };
                    *this.seen += data.len() as u64;
                    if *this.seen > *this.limit {
                        this.watch.too_large.store(true, Ordering::Release);
                        return Poll::Ready(Some(Err(TooLarge { limit: *this.limit }.into())));
                    }
                    Poll::Ready(Some(Ok(frame)))
                }
                Poll::Ready(Some(Err(e))) => {
                    this.watch.client_failed.store(true, Ordering::Release);
                    Poll::Ready(Some(Err(e.into())))
                }
                Poll::Ready(None) => Poll::Ready(None),
                Poll::Pending => Poll::Pending,
            };
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Keeps a body in a shared slot until it is first polled. If sending the request fails
/// before any byte of the body was read (the upstream refused the connection), the body
/// is still in the slot and can be sent to the next upstream.
pub struct Deferred {
    slot: Arc<Mutex<Option<Body>>>,
    taken: Option<Body>,
    end_stream: bool,
    hint: SizeHint,
}

impl Deferred {
    /// Wraps `body`; keep the returned slot to take it back with [`reclaim`].
    pub fn new(body: Body) -> (Deferred, Arc<Mutex<Option<Body>>>) {
        let end_stream = http_body::Body::is_end_stream(&body);
        let hint = http_body::Body::size_hint(&body);
        let slot = Arc::new(Mutex::new(Some(body)));
        (
            Deferred {
                slot: slot.clone(),
                taken: None,
                end_stream,
                hint,
            },
            slot,
        )
    }
}

/// Takes the body back if nothing has read it yet.
pub fn reclaim(slot: &Mutex<Option<Body>>) -> Option<Body> {
    slot.lock().unwrap_or_else(PoisonError::into_inner).take()
}

impl http_body::Body for Deferred {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if self.taken.is_none() {
            let body = self
                .slot
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take();
            match body {
                Some(b) => self.taken = Some(b),
                // Reclaimed by a retry: this request was abandoned.
                None => return Poll::Ready(None),
            }
        }
        match self.taken.as_mut() {
            Some(body) => Pin::new(body).poll_frame(cx),
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.taken {
            Some(b) => b.is_end_stream(),
            None => self.end_stream,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.taken {
            Some(b) => b.size_hint(),
            None => self.hint,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body::Body as _;
    use http_body_util::StreamBody;

    fn chunks(n: usize, size: usize) -> Body {
        let frames =
            (0..n).map(move |_| Ok::<_, BoxError>(Frame::data(Bytes::from(vec![0u8; size]))));
        StreamBody::new(futures_util::stream::iter(frames)).boxed_unsync()
    }

    #[tokio::test]
    async fn limited_passes_up_to_the_limit() {
        let watch = Arc::new(BodyWatch::default());
        let body = Limited::new(chunks(4, 10), 40, watch.clone());
        let bytes = body.collect().await.unwrap().to_bytes();
        assert_eq!(bytes.len(), 40);
        assert!(!watch.too_large() && !watch.client_failed());
    }

    #[tokio::test]
    async fn limited_trips_past_the_limit() {
        let watch = Arc::new(BodyWatch::default());
        let body = Limited::new(chunks(5, 10), 40, watch.clone());
        let err = body.collect().await.unwrap_err();
        assert!(err.to_string().contains("exceeds 40 bytes"));
        assert!(watch.too_large() && !watch.client_failed());
    }

    #[tokio::test]
    async fn limited_drops_request_trailers() {
        let mut trailers = http::HeaderMap::new();
        trailers.insert("x-http-method-override", "DELETE".parse().unwrap());
        let frames = vec![
            Ok::<_, BoxError>(Frame::data(Bytes::from_static(b"hello"))),
            Ok(Frame::trailers(trailers)),
        ];
        let watch = Arc::new(BodyWatch::default());
        let body = Limited::new(
            StreamBody::new(futures_util::stream::iter(frames)),
            40,
            watch,
        );
        let collected = body.collect().await.unwrap();
        assert!(collected.trailers().is_none());
        assert_eq!(collected.to_bytes(), "hello");
    }

    #[tokio::test]
    async fn limited_notes_a_failing_client_body() {
        let frames = vec![
            Ok::<_, BoxError>(Frame::data(Bytes::from_static(b"hello"))),
            Err(BoxError::from("invalid chunk size")),
        ];
        let watch = Arc::new(BodyWatch::default());
        let body = Limited::new(
            StreamBody::new(futures_util::stream::iter(frames)),
            40,
            watch.clone(),
        );
        assert!(body.collect().await.is_err());
        assert!(watch.client_failed() && !watch.too_large());
    }

    #[tokio::test]
    async fn deferred_body_can_be_reclaimed_until_polled() {
        let (deferred, slot) = Deferred::new(full("hello"));
        assert_eq!(deferred.size_hint().exact(), Some(5));
        drop(deferred);
        let back = reclaim(&slot).expect("never polled, so still there");
        assert_eq!(back.collect().await.unwrap().to_bytes(), "hello");

        let (deferred, slot) = Deferred::new(full("hello"));
        assert_eq!(deferred.collect().await.unwrap().to_bytes(), "hello");
        assert!(reclaim(&slot).is_none());
    }
}
