//! Body types. Every response authgate produces has the body type [`Body`], so proxied
//! upstream bodies and authgate's own JSON share one response type. Request bodies are
//! streamed to the upstream through [`Limited`] (per-route size cap) and [`Deferred`]
//! (so a connection failure can retry the same body on the next upstream).

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Empty, Full};

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
