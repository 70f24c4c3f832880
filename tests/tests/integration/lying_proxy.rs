//! A lying RPC node for light-client tests: an HTTP proxy on 127.0.0.1 in front of an honest
//! CometBFT node that forwards every JSON-RPC call and tampers with one kind of answer at a time
//! ([`Tamper`]). It serves one connection at a time, stops when dropped, and stops by itself
//! after [`MAX_CONNECTIONS`] connections or [`LIFETIME`].

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use serde_json::Value;

/// Most connections the proxy serves before it stops.
const MAX_CONNECTIONS: usize = 5_000;
/// Longest the proxy runs.
const LIFETIME: Duration = Duration::from_secs(600);
/// Largest request or answer it relays.
const MAX_MESSAGE: usize = 64 << 20;
/// Socket read and write timeout.
const IO_TIMEOUT: Duration = Duration::from_secs(20);

/// What the proxy lies about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tamper {
    /// Nothing: an honest relay.
    Nothing,
    /// The value of every ABCI query answer (one byte flipped).
    QueryValue,
    /// The ICS23 proof of every ABCI query answer (one byte flipped).
    ProofOps,
    /// The height every ABCI query answer claims (one less).
    AnswerHeight,
    /// The app hash in every signed header (one digit changed).
    HeaderAppHash,
    /// Every commit signature (one byte flipped).
    CommitSignatures,
    /// The validator set (the first validator's power raised by one).
    Validators,
    /// The genesis document (the first validator's power raised by one).
    Genesis,
}

impl Tamper {
    /// Every kind of lie.
    pub const LIES: [Tamper; 7] = [
        Tamper::QueryValue,
        Tamper::ProofOps,
        Tamper::AnswerHeight,
        Tamper::HeaderAppHash,
        Tamper::CommitSignatures,
        Tamper::Validators,
        Tamper::Genesis,
    ];
}

/// The running proxy.
pub struct LyingProxy {
    addr: SocketAddr,
    mode: Arc<Mutex<Tamper>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl LyingProxy {
    /// Start a proxy on 127.0.0.1 (a free port) in front of `upstream`, honest at first.
    pub fn start(upstream: SocketAddr) -> Result<Self> {
        ensure!(upstream.ip().is_loopback(), "the proxy relays to loopback only, not {upstream}");
        let listener = TcpListener::bind("127.0.0.1:0").context("binding the proxy")?;
        let addr = listener.local_addr()?;
        let mode = Arc::new(Mutex::new(Tamper::Nothing));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (mode, stop) = (mode.clone(), stop.clone());
            std::thread::spawn(move || serve(&listener, upstream, &mode, &stop))
        };
        Ok(LyingProxy { addr, mode, stop, thread: Some(thread) })
    }

    /// The proxy's RPC URL.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Lie about `tamper` from now on.
    pub fn set(&self, tamper: Tamper) {
        *self.mode.lock().unwrap_or_else(PoisonError::into_inner) = tamper;
    }
}

impl Drop for LyingProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept call.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

// Not consensus code: the proxy's lifetime is bounded by the wall clock.
#[allow(clippy::disallowed_methods)]
fn serve(listener: &TcpListener, upstream: SocketAddr, mode: &Mutex<Tamper>, stop: &AtomicBool) {
    let started = Instant::now();
    for (served, conn) in listener.incoming().enumerate() {
        if stop.load(Ordering::SeqCst) || served >= MAX_CONNECTIONS || started.elapsed() > LIFETIME
        {
            return;
        }
        let Ok(mut conn) = conn else { continue };
        let tamper = *mode.lock().unwrap_or_else(PoisonError::into_inner);
        if let Err(e) = relay(&mut conn, upstream, tamper) {
            eprintln!("lying proxy: {e:#}");
            let _ = conn.write_all(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n");
        }
        let _ = conn.shutdown(Shutdown::Both);
    }
}

/// Read one HTTP message: head and body (by Content-Length, else to the end of the stream).
fn read_message(stream: &mut TcpStream, to_end: bool) -> Result<(String, Vec<u8>)> {
    let mut data = Vec::new();
    let mut buf = [0u8; 16 << 10];
    let head_end = loop {
        if let Some(i) = data.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = stream.read(&mut buf)?;
        ensure!(n > 0, "connection closed inside the message head");
        data.extend_from_slice(&buf[..n]);
        ensure!(data.len() <= MAX_MESSAGE, "message head too large");
    };
    let head = String::from_utf8_lossy(&data[..head_end]).into_owned();
    let length = head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.trim().eq_ignore_ascii_case("content-length").then(|| value.trim().parse().ok())?
        })
        .filter(|_| !to_end);
    let mut body = data.split_off(head_end);
    loop {
        if length.is_some_and(|l: usize| body.len() >= l) {
            break;
        }
        let n = stream.read(&mut buf)?;
        if n == 0 {
            ensure!(length.is_none(), "connection closed inside the body");
            break;
        }
        body.extend_from_slice(&buf[..n]);
        ensure!(body.len() <= MAX_MESSAGE, "message too large");
    }
    if let Some(l) = length {
        body.truncate(l);
    }
    Ok((head, body))
}

fn relay(conn: &mut TcpStream, upstream: SocketAddr, tamper: Tamper) -> Result<()> {
    conn.set_read_timeout(Some(IO_TIMEOUT))?;
    conn.set_write_timeout(Some(IO_TIMEOUT))?;
    let (_, request) = read_message(conn, false)?;
    let method = serde_json::from_slice::<Value>(&request)
        .ok()
        .and_then(|v| v["method"].as_str().map(str::to_owned))
        .unwrap_or_default();
    // HTTP/1.0 upstream: the answer comes whole, not chunked, and the connection closes.
    let mut up = TcpStream::connect_timeout(&upstream, IO_TIMEOUT)?;
    up.set_read_timeout(Some(IO_TIMEOUT))?;
    up.set_write_timeout(Some(IO_TIMEOUT))?;
    write!(
        up,
        "POST / HTTP/1.0\r\nHost: {upstream}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n",
        request.len()
    )?;
    up.write_all(&request)?;
    let (head, body) = read_message(&mut up, true)?;
    ensure!(head.starts_with("HTTP/1."), "upstream answered {head:?}");
    let body = match tamper {
        Tamper::Nothing => body,
        _ => {
            let mut doc: Value = serde_json::from_slice(&body).context("upstream's JSON")?;
            lie(&method, &mut doc["result"], tamper)?;
            serde_json::to_vec(&doc)?
        }
    };
    write!(
        conn,
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n",
        body.len()
    )?;
    conn.write_all(&body)?;
    Ok(())
}

fn flip_base64(v: &mut Value) -> Result<()> {
    let mut bytes = BASE64.decode(v.as_str().context("not a string")?)?;
    match bytes.len() {
        0 => bytes.push(1),
        n => bytes[n / 2] ^= 0x01,
    }
    *v = Value::String(BASE64.encode(bytes));
    Ok(())
}

fn raise_power(v: &mut Value) -> Result<()> {
    let power: u64 = v.as_str().context("power is not a string")?.parse()?;
    *v = Value::String((power + 1).to_string());
    Ok(())
}

/// Tamper with the `result` of `method`, when `tamper` concerns it.
fn lie(method: &str, result: &mut Value, tamper: Tamper) -> Result<()> {
    match (method, tamper) {
        ("abci_query", Tamper::QueryValue) => flip_base64(&mut result["response"]["value"])?,
        ("abci_query", Tamper::ProofOps) => {
            let op = &mut result["response"]["proofOps"]["ops"][0]["data"];
            if op.is_string() {
                flip_base64(op)?;
            }
        }
        ("abci_query", Tamper::AnswerHeight) => {
            let h = &mut result["response"]["height"];
            let height: u64 = h.as_str().context("height")?.parse()?;
            *h = Value::String(height.saturating_sub(1).to_string());
        }
        ("commit", Tamper::HeaderAppHash) => {
            let hash = &mut result["signed_header"]["header"]["app_hash"];
            let text = hash.as_str().context("app hash")?;
            let first = if text.starts_with('0') { "1" } else { "0" };
            *hash = Value::String(format!("{first}{}", &text[1..]));
        }
        ("commit", Tamper::CommitSignatures) => {
            let sigs = result["signed_header"]["commit"]["signatures"]
                .as_array_mut()
                .context("signatures")?;
            for sig in sigs {
                if sig["signature"].is_string() {
                    flip_base64(&mut sig["signature"])?;
                }
            }
        }
        ("validators", Tamper::Validators) => {
            raise_power(&mut result["validators"][0]["voting_power"])?
        }
        ("genesis_chunked", Tamper::Genesis) => {
            let data = BASE64.decode(result["data"].as_str().context("genesis data")?)?;
            let mut genesis: Value = serde_json::from_slice(&data)?;
            raise_power(&mut genesis["validators"][0]["power"])?;
            result["data"] = Value::String(BASE64.encode(serde_json::to_vec(&genesis)?));
        }
        ("genesis", Tamper::Genesis) => bail!("the client asked for the unchunked genesis"),
        _ => {}
    }
    Ok(())
}
