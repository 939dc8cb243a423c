//! A programmable upstream on a loopback port. Paths choose the behaviour:
//!
//! - anything else: echo the request as JSON (method, uri, headers, body length)
//! - `/slow/<ms>`: wait, then echo
//! - `/big/<bytes>`: stream that many pattern bytes (chunked, 64 KiB frames)
//! - `/upload`: read the body, check the byte pattern, answer `{bytes, pattern_ok}`;
//!   each upload is recorded ([`Upstream::uploads`]) as complete or aborted
//! - `/hop`: answer with hop-by-hop headers that the gateway must strip
//! - `/trailers`: body then trailers `grpc-status: 0`
//! - `/upgrade`: 101 Switching Protocols answering the WebSocket key, then echo bytes on
//!   the raw connection; `/upgrade/h2c` and `/upgrade/no-accept` answer 101 wrongly
//!   (another protocol; no `Sec-WebSocket-Accept`)

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use authgate::body::{self, Body, BoxError};

/// The byte at offset `i` of every pattern body.
pub fn pattern(i: u64) -> u8 {
    (i % 251) as u8
}

/// A stream of `total` pattern bytes in `chunk`-sized frames.
pub fn pattern_stream(
    total: u64,
    chunk: usize,
) -> impl futures_util::Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static {
    let mut sent = 0u64;
    futures_util::stream::poll_fn(move |_| {
        if sent >= total {
            return std::task::Poll::Ready(None);
        }
        let n = (total - sent).min(chunk as u64) as usize;
        let buf: Vec<u8> = (0..n as u64).map(|i| pattern(sent + i)).collect();
        sent += n as u64;
        std::task::Poll::Ready(Some(Ok(Bytes::from(buf))))
    })
}

/// A running upstream.
pub struct Upstream {
    pub addr: SocketAddr,
    pub hits: Arc<AtomicUsize>,
    /// TCP connections accepted (plain upstreams only).
    pub conns: Arc<AtomicUsize>,
    /// One line per `/upload` request: `complete <bytes>` or `aborted <error>`.
    uploads: Uploads,
    task: tokio::task::JoinHandle<()>,
    tls: bool,
}

impl Upstream {
    /// Starts on a free port, serving HTTP/1.1 and h2c (prior knowledge).
    pub async fn start() -> Upstream {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let hits = Arc::new(AtomicUsize::new(0));
        let conns = Arc::new(AtomicUsize::new(0));
        let counter = hits.clone();
        let accepted = conns.clone();
        let uploads = Uploads::default();
        let recorder = uploads.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                accepted.fetch_add(1, Ordering::SeqCst);
                let counter = counter.clone();
                let recorder = recorder.clone();
                tokio::spawn(async move {
                    // Counted when first polled, so a request hyper dropped unpolled
                    // (its connection failed at once) is neither a hit nor an upload.
                    let svc = service_fn(move |req| {
                        let (counter, recorder) = (counter.clone(), recorder.clone());
                        async move {
                            counter.fetch_add(1, Ordering::SeqCst);
                            handle(req, recorder).await
                        }
                    });
                    let _ = auto::Builder::new(TokioExecutor::new())
                        .serve_connection_with_upgrades(TokioIo::new(tcp), svc)
                        .await;
                });
            }
        });
        Upstream {
            addr,
            hits,
            conns,
            uploads,
            task,
            tls: false,
        }
    }

    /// Starts an HTTPS upstream (ALPN h2 + http/1.1) with a certificate for 127.0.0.1,
    /// written to `dir/upstream-cert.pem` so a gateway can trust it via `ca_file`.
    pub async fn start_tls(dir: &std::path::Path) -> Upstream {
        let (cert, key) = (dir.join("upstream-cert.pem"), dir.join("upstream-key.pem"));
        authgate::certs::generate(&cert, &key, &["127.0.0.1".to_string()], true).unwrap();
        let tls = authgate::config::TlsConfig {
            cert,
            key,
            self_signed_if_missing: false,
            handshake_timeout: Duration::from_secs(5),
            sni: vec![],
        };
        let acceptor = tokio_rustls::TlsAcceptor::from(authgate::tls::server_config(&tls).unwrap());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let hits = Arc::new(AtomicUsize::new(0));
        let counter = hits.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let counter = counter.clone();
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let Ok(stream) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let svc = service_fn(move |req| {
                        counter.fetch_add(1, Ordering::SeqCst);
                        handle(req, Uploads::default())
                    });
                    let _ = auto::Builder::new(TokioExecutor::new())
                        .serve_connection_with_upgrades(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Upstream {
            addr,
            hits,
            conns: Arc::new(AtomicUsize::new(0)),
            uploads: Uploads::default(),
            task,
            tls: true,
        }
    }

    pub fn url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    /// What became of each `/upload` request so far (plain upstreams only).
    pub fn uploads(&self) -> Vec<String> {
        self.uploads.lock().unwrap().clone()
    }
}

type Uploads = Arc<Mutex<Vec<String>>>;

/// One `/upload`'s line in [`Upstream::uploads`], written when it is dropped.
struct Record {
    uploads: Uploads,
    outcome: Option<String>,
}

impl Drop for Record {
    fn drop(&mut self) {
        let line = self
            .outcome
            .take()
            .unwrap_or_else(|| "aborted (the connection ended mid-request)".into());
        self.uploads.lock().unwrap().push(line);
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// An address nothing listens on.
pub async fn dead_addr() -> SocketAddr {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    l.local_addr().unwrap()
}

fn headers_json(h: &HeaderMap) -> serde_json::Value {
    let mut map = serde_json::Map::new();
    for (k, v) in h {
        let v = String::from_utf8_lossy(v.as_bytes()).to_string();
        match map.get_mut(k.as_str()) {
            Some(serde_json::Value::String(prev)) => {
                prev.push_str(", ");
                prev.push_str(&v);
            }
            _ => {
                map.insert(k.to_string(), v.into());
            }
        }
    }
    serde_json::Value::Object(map)
}

fn json_response(v: serde_json::Value) -> Response<Body> {
    let mut r = Response::new(body::full(v.to_string()));
    r.headers_mut()
        .insert("content-type", "application/json".parse().unwrap());
    r
}

async fn handle(
    mut req: Request<Incoming>,
    uploads: Uploads,
) -> Result<Response<Body>, Infallible> {
    let path = req.uri().path().to_owned();
    let seg: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let resp = match seg.as_slice() {
        ["slow", ms, ..] => {
            tokio::time::sleep(Duration::from_millis(ms.parse().unwrap_or(1000))).await;
            echo(req).await
        }
        ["big", n] => {
            let total: u64 = n.parse().unwrap();
            let stream = futures_util::StreamExt::map(pattern_stream(total, 64 * 1024), |r| {
                r.map(Frame::data).map_err(BoxError::from)
            });
            Response::new(StreamBody::new(stream).boxed_unsync())
        }
        ["upload"] => {
            // Recorded when the handler ends, or is dropped: hyper drops it when the
            // connection fails mid-body, which counts as aborted too.
            let mut record = Record {
                uploads,
                outcome: None,
            };
            let mut body = req.into_body();
            let (mut n, mut ok) = (0u64, true);
            while let Some(frame) = body.frame().await {
                let frame = match frame {
                    Ok(f) => f,
                    Err(e) => {
                        record.outcome = Some(format!("aborted {e}"));
                        return Ok(json_response(serde_json::json!({"error": e.to_string()})));
                    }
                };
                if let Some(d) = frame.data_ref() {
                    for &b in d.iter() {
                        ok &= b == pattern(n);
                        n += 1;
                    }
                }
            }
            record.outcome = Some(format!("complete {n}"));
            json_response(serde_json::json!({"bytes": n, "pattern_ok": ok}))
        }
        ["hop"] => {
            let mut r = json_response(serde_json::json!({"hop": true}));
            let h = r.headers_mut();
            h.insert("connection", "x-upstream-hop".parse().unwrap());
            h.insert("x-upstream-hop", "secret".parse().unwrap());
            h.insert("keep-alive", "timeout=5".parse().unwrap());
            h.insert("proxy-authenticate", "Basic".parse().unwrap());
            h.insert("x-end-to-end", "kept".parse().unwrap());
            r
        }
        ["trailers"] => {
            let frames: Vec<Result<Frame<Bytes>, BoxError>> = vec![
                Ok(Frame::data(Bytes::from_static(b"\0\0\0\0\x02hi"))),
                Ok(Frame::trailers({
                    let mut t = HeaderMap::new();
                    t.insert("grpc-status", "0".parse().unwrap());
                    t.insert("grpc-message", "fine".parse().unwrap());
                    t
                })),
            ];
            let mut r =
                Response::new(StreamBody::new(futures_util::stream::iter(frames)).boxed_unsync());
            r.headers_mut()
                .insert("content-type", "application/grpc".parse().unwrap());
            r
        }
        ["upgrade", rest @ ..] => {
            let accept = req
                .headers()
                .get("sec-websocket-key")
                .map(|k| websocket_accept(k.as_bytes()));
            let on = hyper::upgrade::on(&mut req);
            tokio::spawn(async move {
                if let Ok(up) = on.await {
                    let mut io = TokioIo::new(up);
                    let mut buf = [0u8; 1024];
                    loop {
                        match io.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => {
                                let mut out = b"echo:".to_vec();
                                out.extend_from_slice(&buf[..n]);
                                if io.write_all(&out).await.is_err() {
                                    break;
                                }
                            }
                        }
                    }
                }
            });
            let mut r = Response::new(body::empty());
            *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
            r.headers_mut()
                .insert("connection", "upgrade".parse().unwrap());
            let protocol = if rest == ["h2c"] { "h2c" } else { "websocket" };
            r.headers_mut().insert("upgrade", protocol.parse().unwrap());
            if let (Some(accept), false) = (accept, rest == ["no-accept"]) {
                r.headers_mut()
                    .insert("sec-websocket-accept", accept.parse().unwrap());
            }
            r
        }
        _ => echo(req).await,
    };
    Ok(resp)
}

/// RFC 6455 §4.2.2: what a WebSocket server answers to `key`.
pub fn websocket_accept(key: &[u8]) -> String {
    use base64::Engine;
    use sha1::Digest;
    let digest = sha1::Sha1::new()
        .chain_update(key)
        .chain_update(b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11")
        .finalize();
    base64::engine::general_purpose::STANDARD.encode(digest)
}

async fn echo(req: Request<Incoming>) -> Response<Body> {
    let (parts, body) = req.into_parts();
    let collected = body.collect().await.ok();
    let trailers = collected
        .as_ref()
        .and_then(|c| c.trailers())
        .map(headers_json);
    let bytes = collected.map(|b| b.to_bytes()).unwrap_or_default();
    json_response(serde_json::json!({
        "method": parts.method.as_str(),
        "uri": parts.uri.to_string(),
        "version": format!("{:?}", parts.version),
        "headers": headers_json(&parts.headers),
        "trailers": trailers,
        "body": String::from_utf8_lossy(&bytes),
    }))
}
