//! The HTTP/1.1 server of Lemal's long-running processes: the Prometheus page of a verifying
//! node (`lemal-vn --metrics`) and of the parties' daemons, and a computing node's registration
//! endpoint (`lemal cn serve`).
//!
//! Whoever reaches the port can send anything, so every cost a request can impose is bounded
//! before it is paid ([`Limits`], defaults below):
//!
//! | bound | default | past it |
//! |---|---|---|
//! | open connections | 256 | accepted, answered `503` and closed |
//! | open connections from one source (an IPv4 address, an IPv6 /64) | 16 | the same |
//! | request line and headers | 16 KiB, within 5 s | `431`; closed |
//! | request body | [`MAX_REQUEST_BYTES`], within 10 s | `413` (a declared length is refused unread); `408` |
//! | one connection, keep-alive included | 60 s | closed |
//! | endpoint handlers running at once | 4 | the next requests wait |
//!
//! A body is read only for a request the endpoint admitted, so bodies in memory are bounded by
//! the connections times the body limit (256 MiB by default), and only from sources the
//! endpoint lets through; a [`MetricsOnly`] server reads none.
//!
//! `GET /metrics` is answered by the server from a `prometheus-client` [`Registry`]; an
//! [`Endpoint`] answers the rest, in two steps: whether the request may be read at all, from its
//! method, path and source ([`Endpoint::admit`], before any byte of the body is read), then the
//! request with its body ([`Endpoint::handle`]). The server runs on a thread of its own with a
//! single-threaded async runtime; handlers run on a few blocking threads, so a slow handler
//! delays neither scrapes nor the reading of other requests, and a panicking one is answered
//! `500` without taking the server down.
//!
//! ```
//! use std::sync::Arc;
//! use prometheus_client::registry::Registry;
//!
//! let addr = lemal_app::http::serve("127.0.0.1:0".parse().unwrap(), Arc::new(Registry::default()))
//!     .unwrap();
//! assert_ne!(addr.port(), 0);
//! ```

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::io;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::{Body, Incoming};
use hyper::header::{HeaderValue, CONTENT_TYPE as CONTENT_TYPE_HEADER, RETRY_AFTER};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus_client::registry::Registry;
use tracing::{debug, warn};

/// The media type of the OpenMetrics text format `GET /metrics` answers with.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The largest request body read by default; a larger one is answered `413`.
pub const MAX_REQUEST_BYTES: usize = 1 << 20;

/// What an [`Endpoint`] answers: status code and JSON body.
pub type Reply = (u16, serde_json::Value);

/// A request an [`Endpoint`] refuses before its body is read.
#[derive(Clone, Debug, PartialEq)]
pub struct Refused {
    /// The status code.
    pub status: u16,
    /// The JSON body.
    pub body: serde_json::Value,
    /// Seconds after which the client may try again, sent as `Retry-After`.
    pub retry_after: Option<u64>,
}

impl Refused {
    /// `404` for `method path`, naming what is `served` instead (`"GET /metrics"`).
    pub fn not_found(method: &str, path: &str, served: &str) -> Refused {
        let error = format!("no {method} {path}: {served}");
        Refused { status: 404, body: serde_json::json!({ "error": error }), retry_after: None }
    }

    /// The refusal as an [`Endpoint::handle`] answer (without its `Retry-After`).
    pub fn reply(self) -> Reply {
        (self.status, self.body)
    }
}

/// What answers the requests the server does not answer itself (all but `GET /metrics`).
pub trait Endpoint: Send + Sync + 'static {
    /// Whether the request from `peer` may be read: a refusal is sent as is, before any byte of
    /// the body is read. Called on the server's thread, so it must not block. Admits
    /// everything unless overridden.
    fn admit(&self, method: &str, path: &str, peer: IpAddr) -> Result<(), Refused> {
        let _ = (method, path, peer);
        Ok(())
    }

    /// Answer an admitted request with its body (at most [`Limits::max_body`] bytes). Runs on
    /// a blocking thread of its own and may take its time.
    fn handle(&self, method: &str, path: &str, body: &[u8]) -> Reply;
}

/// The endpoint of [`serve`]: nothing but metrics; every other request is refused `404`
/// unread.
#[derive(Clone, Copy, Debug, Default)]
pub struct MetricsOnly;

impl Endpoint for MetricsOnly {
    fn admit(&self, method: &str, path: &str, _peer: IpAddr) -> Result<(), Refused> {
        Err(Refused::not_found(method, path, "GET /metrics"))
    }

    fn handle(&self, method: &str, path: &str, _body: &[u8]) -> Reply {
        Refused::not_found(method, path, "GET /metrics").reply()
    }
}

/// The bounds a server puts on its clients (see the module's table).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Connections open at once.
    pub max_connections: usize,
    /// Connections open at once from one source.
    pub max_connections_per_source: usize,
    /// Bytes buffered for a request line and its headers (at least 8 KiB).
    pub max_header_bytes: usize,
    /// Time to receive a request line and its headers.
    pub header_timeout: Duration,
    /// Bytes of one request body.
    pub max_body: usize,
    /// Time to receive a request body, once its headers are in.
    pub body_timeout: Duration,
    /// Time a connection may stay open, however many requests it carries.
    pub connection_lifetime: Duration,
    /// Endpoint handlers running at once.
    pub handlers: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 256,
            max_connections_per_source: 16,
            max_header_bytes: 16 << 10,
            header_timeout: Duration::from_secs(5),
            max_body: MAX_REQUEST_BYTES,
            body_timeout: Duration::from_secs(10),
            connection_lifetime: Duration::from_secs(60),
            handlers: 4,
        }
    }
}

/// Serve `registry` as OpenMetrics text at `GET /metrics` on `addr`; any other request is
/// answered `404`. Binding happens before this returns, so a taken port is an error here; the
/// address bound (with the port chosen, for port 0) is returned.
pub fn serve(addr: SocketAddr, registry: Arc<Registry>) -> io::Result<SocketAddr> {
    serve_with(addr, registry, MetricsOnly)
}

/// [`serve`], handing every request but `GET /metrics` to `endpoint`, within the default
/// [`Limits`].
pub fn serve_with(
    addr: SocketAddr,
    registry: Arc<Registry>,
    endpoint: impl Endpoint,
) -> io::Result<SocketAddr> {
    serve_limited(addr, registry, endpoint, Limits::default())
}

/// [`serve_with`] within `limits`.
pub fn serve_limited(
    addr: SocketAddr,
    registry: Arc<Registry>,
    endpoint: impl Endpoint,
    limits: Limits,
) -> io::Result<SocketAddr> {
    let listener = std::net::TcpListener::bind(addr)?;
    let bound = listener.local_addr()?;
    listener.set_nonblocking(true)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .max_blocking_threads(limits.handlers.max(1))
        .thread_name("http-handler")
        .build()?;
    let server = Arc::new(Server {
        registry,
        endpoint,
        connections: Mutex::new(Connections::default()),
        limits,
    });
    thread::Builder::new().name("http".into()).spawn(move || {
        runtime.block_on(async move {
            match tokio::net::TcpListener::from_std(listener) {
                Ok(listener) => server.accept(listener).await,
                Err(e) => warn!(addr = %bound, error = %e, "cannot serve HTTP"),
            }
        })
    })?;
    Ok(bound)
}

/// What every connection of one server shares.
struct Server<E> {
    registry: Arc<Registry>,
    endpoint: E,
    connections: Mutex<Connections>,
    limits: Limits,
}

/// The connections open, by source (a source with none is not kept).
type Connections = BTreeMap<IpAddr, usize>;

/// A connection's place among the open ones, given back when dropped.
struct Slot<E: Endpoint> {
    server: Arc<Server<E>>,
    source: IpAddr,
}

impl<E: Endpoint> Drop for Slot<E> {
    fn drop(&mut self) {
        let mut open = self.server.connections.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(n) = open.get_mut(&self.source) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                open.remove(&self.source);
            }
        }
    }
}

/// The source a peer counts as: its IPv4 address (an IPv4-mapped IPv6 address included), or
/// the /64 of its IPv6 address, the block one end user usually holds.
pub fn source_of(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & !(u128::MAX >> 64))),
        v4 => v4,
    }
}

/// Sent to a connection over the caps, before it is closed.
const BUSY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\n\
    Content-Length: 0\r\nConnection: close\r\n\r\n";

impl<E: Endpoint> Server<E> {
    /// Accept connections for ever.
    async fn accept(self: Arc<Self>, listener: tokio::net::TcpListener) {
        loop {
            let (stream, peer) = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of descriptors, or a connection reset while queued: wait, go on.
                    debug!(error = %e, "accepting a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let Some(slot) = self.take_slot(peer.ip()) else {
                debug!(%peer, "too many connections: refused");
                // Best effort: a full socket buffer only loses the courtesy.
                let _ = stream.try_write(BUSY);
                continue;
            };
            tokio::spawn(slot.serve(stream, peer.ip()));
        }
    }

    /// A place for a connection from `peer`, unless a cap is reached.
    fn take_slot(self: &Arc<Self>, peer: IpAddr) -> Option<Slot<E>> {
        let source = source_of(peer);
        let mut open = self.connections.lock().unwrap_or_else(PoisonError::into_inner);
        let from_source = open.get(&source).copied().unwrap_or(0);
        // At most `max_connections` entries to add up.
        if from_source >= self.limits.max_connections_per_source
            || open.values().sum::<usize>() >= self.limits.max_connections
        {
            return None;
        }
        open.insert(source, from_source + 1);
        Some(Slot { server: Arc::clone(self), source })
    }

    /// The answer to one request.
    async fn answer(
        self: Arc<Self>,
        peer: IpAddr,
        request: Request<Incoming>,
    ) -> Result<Response<Full<Bytes>>, Infallible> {
        let method = request.method().clone();
        let path = request.uri().path().to_owned();
        if method == Method::GET && path == "/metrics" {
            let mut text = String::new();
            return Ok(
                match prometheus_client::encoding::text::encode(&mut text, &self.registry) {
                    Ok(()) => response(200, CONTENT_TYPE, text, None),
                    Err(e) => response(500, "text/plain", format!("encoding: {e}"), None),
                },
            );
        }
        if let Err(refused) = self.endpoint.admit(method.as_str(), &path, peer) {
            return Ok(json(refused.status, &refused.body, refused.retry_after));
        }
        let max = self.limits.max_body;
        let body = request.into_body();
        if body.size_hint().lower() > max as u64 {
            return Ok(too_large(max));
        }
        let body =
            match tokio::time::timeout(self.limits.body_timeout, Limited::new(body, max).collect())
                .await
            {
                Err(_) => {
                    let error = format!("body not received within {:?}", self.limits.body_timeout);
                    return Ok(json(408, &serde_json::json!({ "error": error }), None));
                }
                Ok(Err(e)) if e.is::<LengthLimitError>() => return Ok(too_large(max)),
                Ok(Err(e)) => {
                    let error = format!("reading the body: {e}");
                    return Ok(json(400, &serde_json::json!({ "error": error }), None));
                }
                Ok(Ok(collected)) => collected.to_bytes(),
            };
        let server = Arc::clone(&self);
        let handled = tokio::task::spawn_blocking(move || {
            server.endpoint.handle(method.as_str(), &path, &body)
        })
        .await;
        Ok(match handled {
            Ok((status, doc)) => json(status, &doc, None),
            Err(e) => {
                warn!(error = %e, "an HTTP handler failed");
                json(500, &serde_json::json!({ "error": "internal error" }), None)
            }
        })
    }
}

impl<E: Endpoint> Slot<E> {
    /// Serve the requests of one connection, within the limits, then give the slot back.
    async fn serve(self, stream: tokio::net::TcpStream, peer: IpAddr) {
        let limits = &self.server.limits;
        let answering = Arc::clone(&self.server);
        let connection = http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_timeout)
            .max_buf_size(limits.max_header_bytes.max(8 << 10))
            .serve_connection(
                TokioIo::new(stream),
                service_fn(move |request| Arc::clone(&answering).answer(peer, request)),
            );
        match tokio::time::timeout(limits.connection_lifetime, connection).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => debug!(%peer, error = %e, "HTTP connection ended"),
            Err(_) => debug!(%peer, "HTTP connection open too long: closed"),
        }
    }
}

/// A response with `status`, `content_type` and `body`.
fn response(
    status: u16,
    content_type: &'static str,
    body: impl Into<Bytes>,
    retry_after: Option<u64>,
) -> Response<Full<Bytes>> {
    let mut out = Response::new(Full::new(body.into()));
    *out.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    out.headers_mut().insert(CONTENT_TYPE_HEADER, HeaderValue::from_static(content_type));
    if let Some(secs) = retry_after {
        out.headers_mut().insert(RETRY_AFTER, HeaderValue::from(secs));
    }
    out
}

/// A JSON response.
fn json(status: u16, doc: &serde_json::Value, retry_after: Option<u64>) -> Response<Full<Bytes>> {
    response(status, "application/json", doc.to_string(), retry_after)
}

/// `413` for a body above `max` bytes.
fn too_large(max: usize) -> Response<Full<Bytes>> {
    json(413, &serde_json::json!({ "error": format!("body above {max} bytes") }), None)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::disallowed_methods)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::TcpStream;

    /// Echoes the body's length; `/slow` sleeps first, `/panic` panics; `/closed` is refused.
    struct Echo;

    impl Endpoint for Echo {
        fn admit(&self, _method: &str, path: &str, _peer: IpAddr) -> Result<(), Refused> {
            match path {
                "/closed" => Err(Refused {
                    status: 429,
                    body: serde_json::json!({ "error": "later" }),
                    retry_after: Some(7),
                }),
                _ => Ok(()),
            }
        }

        fn handle(&self, method: &str, path: &str, body: &[u8]) -> Reply {
            match path {
                "/slow" => thread::sleep(Duration::from_millis(1500)),
                "/panic" => panic!("a handler bug"),
                _ => {}
            }
            (200, serde_json::json!({ "method": method, "path": path, "bytes": body.len() }))
        }
    }

    fn short_limits() -> Limits {
        Limits {
            max_connections_per_source: 4,
            header_timeout: Duration::from_millis(400),
            body_timeout: Duration::from_millis(400),
            max_body: 1000,
            ..Limits::default()
        }
    }

    fn server(limits: Limits) -> SocketAddr {
        serve_limited("127.0.0.1:0".parse().unwrap(), Arc::new(Registry::default()), Echo, limits)
            .unwrap()
    }

    /// Send `request` raw and read the answer until the server closes or 3 s pass.
    fn exchange(addr: SocketAddr, request: &[u8]) -> String {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        s.write_all(request).unwrap();
        read_answer(&mut s)
    }

    fn read_answer(s: &mut TcpStream) -> String {
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            match s.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
        String::from_utf8_lossy(&out).into_owned()
    }

    fn metrics_answer(addr: SocketAddr) -> String {
        exchange(addr, b"GET /metrics HTTP/1.0\r\n\r\n")
    }

    #[test]
    fn an_admitted_request_reaches_the_endpoint_with_its_body() {
        let addr = server(short_limits());
        let answer = exchange(
            addr,
            b"POST /echo HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 5\r\n\r\nhello",
        );
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(answer.contains("application/json"), "{answer}");
        assert!(answer.contains(r#""bytes":5"#), "{answer}");
        assert!(metrics_answer(addr).contains("200 OK"));
    }

    #[test]
    fn a_refused_request_gets_its_status_and_retry_after_unread() {
        let addr = server(short_limits());
        let answer = exchange(
            addr,
            b"POST /closed HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000000\r\n\r\n",
        );
        assert!(answer.starts_with("HTTP/1.1 429"), "{answer}");
        assert!(answer.to_ascii_lowercase().contains("retry-after: 7"), "{answer}");
    }

    #[test]
    fn a_huge_declared_body_is_refused_unread_and_the_server_goes_on() {
        let addr = server(Limits::default());
        // 2^60 bytes declared and none sent: the answer comes from the header alone.
        let answer = exchange(
            addr,
            b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 1152921504606846976\r\n\r\n",
        );
        assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
        assert!(metrics_answer(addr).contains("200 OK"));
    }

    #[test]
    fn a_body_sent_past_the_limit_is_cut_off() {
        let addr = server(short_limits());
        let mut request =
            b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
        for _ in 0..3 {
            request.extend_from_slice(b"1F4\r\n");
            request.extend_from_slice(&[b'x'; 500]);
            request.extend_from_slice(b"\r\n");
        }
        request.extend_from_slice(b"0\r\n\r\n");
        let answer = exchange(addr, &request);
        assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    }

    #[test]
    fn a_slow_body_times_out_while_others_are_served() {
        let addr = server(short_limits());
        let mut slow = TcpStream::connect(addr).unwrap();
        slow.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        slow.write_all(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n0123")
            .unwrap();
        // Served while the slow body is pending.
        assert!(metrics_answer(addr).contains("200 OK"));
        let answer = read_answer(&mut slow);
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    }

    #[test]
    fn a_slow_handler_delays_no_scrape() {
        let addr = server(short_limits());
        let waiting = thread::spawn(move || {
            exchange(addr, b"GET /slow HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        });
        thread::sleep(Duration::from_millis(200));
        let started = std::time::Instant::now();
        assert!(metrics_answer(addr).contains("200 OK"));
        assert!(started.elapsed() < Duration::from_millis(1000), "{:?}", started.elapsed());
        assert!(waiting.join().unwrap().starts_with("HTTP/1.1 200"));
    }

    #[test]
    fn headers_that_never_end_time_out_and_huge_ones_are_refused() {
        let addr = server(short_limits());
        let mut idle = TcpStream::connect(addr).unwrap();
        idle.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        idle.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n").unwrap();
        let started = std::time::Instant::now();
        let answer = read_answer(&mut idle);
        assert!(!answer.contains("200 OK"), "{answer}");
        assert!(started.elapsed() < Duration::from_secs(2), "closed after {:?}", started.elapsed());

        let mut huge = b"GET /metrics HTTP/1.1\r\nHost: x\r\n".to_vec();
        for i in 0..2000 {
            huge.extend_from_slice(format!("X-Filler-{i}: {}\r\n", "y".repeat(20)).as_bytes());
        }
        huge.extend_from_slice(b"\r\n");
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        // The server may close before all of it is written.
        let _ = s.write_all(&huge);
        let answer = read_answer(&mut s);
        assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");
        assert!(metrics_answer(addr).contains("200 OK"));
    }

    #[test]
    fn one_source_cannot_hold_every_connection() {
        let limits = short_limits();
        let cap = limits.max_connections_per_source;
        let addr = server(limits);
        let held: Vec<TcpStream> = (0..cap).map(|_| TcpStream::connect(addr).unwrap()).collect();
        thread::sleep(Duration::from_millis(100));
        let answer = metrics_answer(addr);
        assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
        // The held connections time out on their headers; their places come back.
        thread::sleep(Duration::from_millis(800));
        assert!(metrics_answer(addr).contains("200 OK"));
        drop(held);
    }

    #[test]
    fn the_server_holds_at_most_its_connections_in_all() {
        let addr = server(Limits { max_connections: 2, ..short_limits() });
        let held: Vec<TcpStream> = (0..2).map(|_| TcpStream::connect(addr).unwrap()).collect();
        thread::sleep(Duration::from_millis(100));
        let answer = metrics_answer(addr);
        assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
        drop(held);
        thread::sleep(Duration::from_millis(100));
        assert!(metrics_answer(addr).contains("200 OK"), "places given back on close");
    }

    #[test]
    fn a_panicking_handler_is_answered_500_and_the_server_goes_on() {
        let addr = server(short_limits());
        let answer = exchange(addr, b"GET /panic HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        assert!(answer.starts_with("HTTP/1.1 500"), "{answer}");
        assert!(metrics_answer(addr).contains("200 OK"));
    }

    #[test]
    fn sources_are_addresses_and_ipv6_slash_64s() {
        let v4: IpAddr = "10.0.0.7".parse().unwrap();
        assert_eq!(source_of(v4), v4);
        assert_eq!(source_of("::ffff:10.0.0.7".parse().unwrap()), v4);
        let a = source_of("2001:db8:1:2:aaaa::1".parse().unwrap());
        assert_eq!(a, source_of("2001:db8:1:2:ffff::9".parse().unwrap()));
        assert_ne!(a, source_of("2001:db8:1:3::1".parse().unwrap()));
        assert_eq!(a, "2001:db8:1:2::".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn a_taken_port_is_an_error_at_once() {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = taken.local_addr().unwrap();
        assert!(serve(addr, Arc::new(Registry::default())).is_err());
    }
}
