//! HSTS on hyper's own answers. A request hyper cannot parse (a NUL in a header, a head
//! past the parser's buffer, a bad request line) is answered by hyper itself, with a
//! 400 or 431 that never reaches the gateway, so the gateway cannot add
//! `Strict-Transport-Security` as it does to every other HTTPS response (RFC 6797 asks
//! for it on all of them). On HTTPS connections serving HTTP/1.1, this writer sits
//! between hyper and TLS and adds the header to those answers.
//!
//! It recognises them without parsing, by counting: every request hyper hands to
//! authgate gets exactly one response, so a write that starts a status line
//! (`HTTP/1.`) after as many status lines as requests were handed over can only be
//! hyper's own. Interim `100 Continue` lines are not counted. Everything else passes
//! through untouched.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::connection::Activity;

/// The writer; see the module docs.
pub struct WithHsts<I> {
    inner: I,
    /// `strict-transport-security: <value>\r\n`.
    line: Bytes,
    activity: Arc<Activity>,
    /// Status lines of authgate's responses written so far.
    heads: u64,
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
            pending: None,
        }
    }

    /// Whether a write of `head` starts a response that is hyper's own.
    fn is_hypers(&self, head: &[u8]) -> bool {
        head.starts_with(b"HTTP/1.")
            && !head.starts_with(b"HTTP/1.1 100 ")
            && self.heads >= self.activity.requests_started()
    }

    /// Whether a write of `head` starts one of authgate's responses (to count it once
    /// written).
    fn is_ours(&self, head: &[u8]) -> bool {
        head.starts_with(b"HTTP/1.") && !head.starts_with(b"HTTP/1.1 100 ") && !self.is_hypers(head)
    }

    /// `head` with the HSTS line after its status line, if it is hyper's own answer.
    fn rewrite(&self, head: &[u8]) -> Option<Bytes> {
        if !self.is_hypers(head) {
            return None;
        }
        let eol = head.windows(2).position(|w| w == b"\r\n")? + 2;
        let mut out = BytesMut::with_capacity(head.len() + self.line.len());
        out.extend_from_slice(&head[..eol]);
        out.extend_from_slice(&self.line);
        out.extend_from_slice(&head[eol..]);
        Some(out.freeze())
    }
}

impl<I: AsyncWrite + Unpin> WithHsts<I> {
    /// Writes what is pending; `Ready(Some(n))` once done, `n` being the caller's bytes.
    fn flush_pending(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<Option<usize>>> {
        while let Some((bytes, written, stands_for)) = &mut self.pending {
            if *written == bytes.len() {
                let n = *stands_for;
                self.pending = None;
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
        // A caller that was told Pending writes the same bytes again: they are the
        // ones already rewritten.
        if this.pending.is_none() {
            match this.rewrite(buf) {
                Some(bytes) => this.pending = Some((bytes, 0, buf.len())),
                None => {
                    let ours = this.is_ours(buf);
                    let res = Pin::new(&mut this.inner).poll_write(cx, buf);
                    if ours && matches!(res, Poll::Ready(Ok(n)) if n > 0) {
                        this.heads += 1;
                    }
                    return res;
                }
            }
        }
        match this.flush_pending(cx) {
            Poll::Ready(Ok(Some(n))) => Poll::Ready(Ok(n)),
            Poll::Ready(Ok(None)) => Poll::Ready(Ok(0)),
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => Poll::Pending,
        }
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let first = bufs
            .iter()
            .find(|b| !b.is_empty())
            .map_or(&[][..], |b| &b[..]);
        if this.pending.is_none() && !this.is_hypers(first) {
            let ours = this.is_ours(first);
            let res = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
            if ours && matches!(res, Poll::Ready(Ok(n)) if n > 0) {
                this.heads += 1;
            }
            return res;
        }
        if this.pending.is_none() {
            // Only hyper's short error answers come here: join them and rewrite.
            let joined: Vec<u8> = bufs.iter().flat_map(|b| b.iter().copied()).collect();
            match this.rewrite(&joined) {
                Some(bytes) => this.pending = Some((bytes, 0, joined.len())),
                None => return Pin::new(&mut this.inner).poll_write_vectored(cx, bufs),
            }
        }
        match this.flush_pending(cx) {
            Poll::Ready(Ok(Some(n))) => Poll::Ready(Ok(n)),
            Poll::Ready(Ok(None)) => Poll::Ready(Ok(0)),
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => Poll::Pending,
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn hypers_own_answers_get_the_header_and_nothing_else_changes() {
        let activity = Activity::new();
        let hsts = http::HeaderValue::from_static("max-age=60");
        let (client, server) = tokio::io::duplex(4096);
        let mut w = WithHsts::new(server, &hsts, activity.clone());
        w.write_all(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n")
            .await
            .unwrap();
        // A request handed to authgate: its response is authgate's own, untouched, even
        // once the request has finished (hyper writes after dropping the body).
        drop(activity.request_started());
        w.write_all(b"HTTP/1.1 200 OK\r\n\r\n").await.unwrap();
        // Body bytes are never touched.
        w.write_all(b"0\r\n\r\n").await.unwrap();
        drop(w);
        let mut out = String::new();
        let mut client = client;
        client.read_to_string(&mut out).await.unwrap();
        assert_eq!(
            out,
            "HTTP/1.1 400 Bad Request\r\nstrict-transport-security: max-age=60\r\n\
             content-length: 0\r\n\r\nHTTP/1.1 200 OK\r\n\r\n0\r\n\r\n"
        );
    }
}
