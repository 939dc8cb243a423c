//! HSTS on hyper's own answers. A request hyper cannot parse (a NUL in a header, a head
//! past the parser's buffer, a bad request line) is answered by hyper itself, with a
//! 400 or 431 that never reaches the gateway, so the gateway cannot add
//! `Strict-Transport-Security` as it does to every other HTTPS response (RFC 6797 asks
//! for it on all of them). On HTTPS connections this writer sits between hyper and TLS
//! and adds the header to those answers.
//!
//! It must never touch anything else: a response body or tunnel bytes that happen to
//! look like a status line would be corrupted, and on a connection a balancer shares
//! between users, shifted bytes poison the next response. So a write is rewritten only
//! when all of these hold:
//! - it is exactly the head hyper writes for its own errors, and nothing more: a 4xx or
//!   5xx status line, only `connection: close`, `content-length: 0` and `date`, then
//!   the blank line ([`is_error_head`]);
//! - no request of the connection is in flight, and authgate's responses have all had
//!   their status lines written: every request hyper hands to authgate gets exactly
//!   one response, so one status line more than requests handed over is hyper's own;
//! - the connection has not become a tunnel (no `101` was written).
//!
//! After a rewrite the connection only closes (hyper closes after its errors anyway):
//! should a body chunk that matches all of this ever be rewritten, the bytes it shifts
//! end with the connection and can reach no other response. On HTTP/2 no write starts
//! with a status line, so nothing is touched.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::connection::Activity;

/// hyper's error heads are short; a longer write is never one.
const MAX_ERROR_HEAD: usize = 512;

/// The writer; see the module docs.
pub struct WithHsts<I> {
    inner: I,
    /// `strict-transport-security: <value>\r\n`.
    line: Bytes,
    activity: Arc<Activity>,
    /// Status lines of authgate's responses written so far.
    heads: u64,
    /// A `101` went by: what follows is a tunnel, never touched.
    upgraded: bool,
    /// An answer was rewritten: nothing more may be written.
    closed: bool,
    /// A rewritten answer being written, how much of it is written, and how many bytes
    /// of the caller's buffer it stands for.
    pending: Option<(Bytes, usize, usize)>,
}

impl<I> WithHsts<I> {
    /// Wraps `inner`; `hsts` is the header value (`tls.hsts`).
    pub fn new(inner: I, hsts: &http::HeaderValue, activity: Arc<Activity>) -> WithHsts<I> {
        let mut line = BytesMut::with_capacity(hsts.len() + 32);
        line.extend_from_slice(b"strict-transport-security: ");
        line.extend_from_slice(hsts.as_bytes());
        line.extend_from_slice(b"\r\n");
        WithHsts {
            inner,
            line: line.freeze(),
            activity,
            heads: 0,
            upgraded: false,
            closed: false,
            pending: None,
        }
    }

    /// `write` (a whole write) with the HSTS line after its status line, if it is
    /// hyper's own answer (see the module docs).
    fn rewrite(&self, write: &[u8]) -> Option<Bytes> {
        let hypers = !self.upgraded
            && self.activity.in_flight() == 0
            && self.heads >= self.activity.requests_started()
            && is_error_head(write);
        if !hypers {
            return None;
        }
        let eol = write.windows(2).position(|w| w == b"\r\n")? + 2;
        let mut out = BytesMut::with_capacity(write.len() + self.line.len());
        out.extend_from_slice(&write[..eol]);
        out.extend_from_slice(&self.line);
        out.extend_from_slice(&write[eol..]);
        Some(out.freeze())
    }

    /// Notes a write of authgate's that went out, starting with `first`.
    fn wrote(&mut self, first: &[u8]) {
        if self.upgraded || !first.starts_with(b"HTTP/1.") || first.starts_with(b"HTTP/1.1 100 ") {
            return;
        }
        self.heads += 1;
        if first.starts_with(b"HTTP/1.1 101 ") {
            self.upgraded = true;
        }
    }
}

impl<I: AsyncWrite + Unpin> WithHsts<I> {
    /// Writes what is pending; `Ready(Some(n))` once done, `n` being the caller's bytes.
    fn flush_pending(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<Option<usize>>> {
        while let Some((bytes, written, stands_for)) = &mut self.pending {
            if *written == bytes.len() {
                let n = *stands_for;
                self.pending = None;
                self.closed = true;
                return Poll::Ready(Ok(Some(n)));
            }
            match Pin::new(&mut self.inner).poll_write(cx, &bytes[*written..]) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => *written += n,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
        Poll::Ready(Ok(None))
    }

    /// The rewritten answer, written whole before the caller hears of it. A caller
    /// told Pending writes the same bytes again: they are the ones already rewritten.
    fn write_pending(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        match self.flush_pending(cx) {
            Poll::Ready(Ok(Some(n))) => Poll::Ready(Ok(n)),
            Poll::Ready(Ok(None)) => Poll::Ready(Ok(0)),
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for WithHsts<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for WithHsts<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        if this.pending.is_some() {
            return this.write_pending(cx);
        }
        if this.closed {
            return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
        }
        if let Some(bytes) = this.rewrite(buf) {
            this.pending = Some((bytes, 0, buf.len()));
            return this.write_pending(cx);
        }
        let res = Pin::new(&mut this.inner).poll_write(cx, buf);
        if matches!(res, Poll::Ready(Ok(n)) if n > 0) {
            this.wrote(buf);
        }
        res
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        if this.pending.is_some() {
            return this.write_pending(cx);
        }
        if this.closed {
            return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
        }
        let first: &[u8] = bufs.iter().find(|b| !b.is_empty()).map_or(&[], |b| b);
        let total: usize = bufs.iter().map(|b| b.len()).sum();
        if total <= MAX_ERROR_HEAD && first.starts_with(b"HTTP/1.") {
            let joined: Vec<u8> = bufs.iter().flat_map(|b| b.iter().copied()).collect();
            if let Some(bytes) = this.rewrite(&joined) {
                this.pending = Some((bytes, 0, joined.len()));
                return this.write_pending(cx);
            }
        }
        let res = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        if matches!(res, Poll::Ready(Ok(n)) if n > 0) {
            this.wrote(first);
        }
        res
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.flush_pending(cx) {
            Poll::Ready(Ok(_)) => Pin::new(&mut self.inner).poll_flush(cx),
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => Poll::Pending,
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.flush_pending(cx) {
            Poll::Ready(Ok(_)) => Pin::new(&mut self.inner).poll_shutdown(cx),
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => Poll::Pending,
        }
    }
}

/// Whether `b` is exactly one head as hyper writes it for its own errors: a 4xx or 5xx
/// status line, then only `connection: close`, `content-length: 0` and `date:` fields,
/// then the blank line, and nothing after it.
fn is_error_head(b: &[u8]) -> bool {
    if b.len() > MAX_ERROR_HEAD {
        return false;
    }
    let Ok(text) = std::str::from_utf8(b) else {
        return false;
    };
    let Some(head) = text.strip_suffix("\r\n\r\n") else {
        return false;
    };
    if head.contains("\r\n\r\n") {
        return false;
    }
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap_or("");
    let Some(rest) = status
        .strip_prefix("HTTP/1.1 ")
        .or_else(|| status.strip_prefix("HTTP/1.0 "))
    else {
        return false;
    };
    let code = rest.as_bytes();
    let code_ok = code.len() >= 3
        && matches!(code[0], b'4' | b'5')
        && code[..3].iter().all(u8::is_ascii_digit);
    code_ok
        && lines.all(|l| {
            let l = l.to_ascii_lowercase();
            l == "connection: close" || l == "content-length: 0" || l.starts_with("date: ")
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    const FAKE: &str = "HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 0\r\n\r\n";

    async fn output(
        w: WithHsts<tokio::io::DuplexStream>,
        client: tokio::io::DuplexStream,
    ) -> String {
        drop(w);
        let mut out = String::new();
        let mut client = client;
        client.read_to_string(&mut out).await.unwrap();
        out
    }

    #[tokio::test]
    async fn hypers_own_answers_get_the_header_and_then_the_connection_ends() {
        let activity = Activity::new();
        let hsts = http::HeaderValue::from_static("max-age=60");
        let (client, server) = tokio::io::duplex(4096);
        let mut w = WithHsts::new(server, &hsts, activity.clone());
        w.write_all(FAKE.as_bytes()).await.unwrap();
        assert!(w.write_all(b"x").await.is_err(), "nothing more after it");
        assert_eq!(
            output(w, client).await,
            "HTTP/1.1 400 Bad Request\r\nstrict-transport-security: max-age=60\r\n\
             connection: close\r\ncontent-length: 0\r\n\r\n"
        );
    }

    #[tokio::test]
    async fn bodies_and_tunnels_that_look_like_error_heads_are_untouched() {
        let activity = Activity::new();
        let hsts = http::HeaderValue::from_static("max-age=60");
        let (client, server) = tokio::io::duplex(1 << 16);
        let mut w = WithHsts::new(server, &hsts, activity.clone());
        // A response whose body is a fake error head, written after its request ended
        // (hyper writes the last of a body after dropping it).
        drop(activity.request_started());
        w.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 63\r\n\r\n")
            .await
            .unwrap();
        // While a request is in flight, nothing is hyper's.
        let in_flight = activity.request_started();
        w.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 63\r\n\r\n")
            .await
            .unwrap();
        w.write_all(FAKE.as_bytes()).await.unwrap();
        drop(in_flight);
        // A WebSocket tunnel carrying fakes.
        drop(activity.request_started());
        w.write_all(b"HTTP/1.1 101 Switching Protocols\r\n\r\n")
            .await
            .unwrap();
        w.write_all(FAKE.as_bytes()).await.unwrap();
        w.write_all(FAKE.as_bytes()).await.unwrap();
        let out = output(w, client).await;
        assert!(!out.contains("strict-transport-security"), "{out}");
        assert_eq!(out.matches(FAKE).count(), 3);
    }

    #[test]
    fn only_hypers_error_heads_match() {
        for yes in [
            "HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 0\r\ndate: Tue, 01 Dec 2026 21:29:07 GMT\r\n\r\n",
            "HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\n\r\n",
        ] {
            assert!(is_error_head(yes.as_bytes()), "{yes}");
        }
        for no in [
            "HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n",
            "HTTP/1.1 400 Bad Request\r\ncontent-type: text/html\r\n\r\n",
            "HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\nmore",
            "HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n",
            "xHTTP/1.1 400 Bad Request\r\n\r\n",
        ] {
            assert!(!is_error_head(no.as_bytes()), "{no}");
        }
    }
}
