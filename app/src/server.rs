//! The ABCI socket server CometBFT connects to.
//!
//! CometBFT opens four connections (consensus, mempool, query, snapshot) and on each sends
//! varint-length-prefixed protobuf `Request`s, answered in order by `Response`s. Its socket
//! client follows every synchronous request with a `Flush` and waits for both answers, so the
//! server writes two messages back to back; with Nagle's algorithm on, the second one waits for
//! the peer's delayed acknowledgement of the first (about 40 ms on Linux loopback) on every
//! call, several times per block. Connections here therefore set `TCP_NODELAY`, buffer their
//! answers and write them out when a `Flush` arrives or no further request is waiting.
//!
//! Frames are bounded by [`MAX_FRAME_BYTES`]; an empty, undecodable or oversized request ends
//! that connection with a logged error instead of a panic or an unbounded allocation.
//!
//! The server listens on TCP (loopback) or on a unix socket ([`Listener`]); a unix socket, made
//! readable and writable by its owner only, keeps other local users from speaking ABCI to the
//! application, which any local process can do on a TCP port.

use std::io::{self, BufRead, BufReader, BufWriter, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::thread;

use prost14::Message;
use tendermint_abci::Application;
use tendermint_proto::v0_38::abci::{request, response, Request, Response};
use thiserror::Error;
use tracing::{info, warn};

/// The largest request accepted: above CometBFT's largest block (100 MiB) with room for the
/// rest of a `FinalizeBlock` request.
pub const MAX_FRAME_BYTES: u64 = 128 << 20;

/// Why a connection was closed.
#[derive(Debug, Error)]
pub enum ConnectionError {
    /// Reading or writing the socket failed.
    #[error("i/o: {0}")]
    Io(#[from] io::Error),
    /// The length prefix is not a valid varint.
    #[error("malformed length prefix")]
    BadPrefix,
    /// The length prefix announces a frame over [`MAX_FRAME_BYTES`].
    #[error("request of {0} bytes exceeds the limit of {MAX_FRAME_BYTES}")]
    TooLarge(u64),
    /// The peer closed the connection in the middle of a frame.
    #[error("connection closed inside a frame")]
    Truncated,
    /// The frame is not a protobuf `Request`.
    #[error("undecodable request: {0}")]
    Decode(#[from] prost14::DecodeError),
    /// The request carries no method.
    #[error("request without a method")]
    Empty,
}

/// Where the ABCI server listens, as given on the command line: `127.0.0.1:PORT`,
/// `tcp://127.0.0.1:PORT` (loopback only) or `unix:///path/to.sock`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Address {
    /// A loopback TCP address.
    Tcp(SocketAddr),
    /// A unix socket path.
    Unix(PathBuf),
}

/// The longest unix socket path the kernel accepts (`sun_path` holds 108 bytes with its NUL).
const MAX_UNIX_PATH: usize = 107;

impl std::str::FromStr for Address {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        if let Some(path) = s.strip_prefix("unix://") {
            if !path.starts_with('/') {
                return Err(format!("{s:?}: a unix socket path must be absolute (unix:///path)"));
            }
            if path.len() > MAX_UNIX_PATH {
                return Err(format!("{s:?}: a unix socket path has at most {MAX_UNIX_PATH} bytes"));
            }
            return Ok(Address::Unix(PathBuf::from(path)));
        }
        let addr: SocketAddr =
            s.strip_prefix("tcp://").unwrap_or(s).parse().map_err(|e| {
                format!("{s:?}: expected IP:PORT, tcp://IP:PORT or unix:///path ({e})")
            })?;
        if !addr.ip().is_loopback() {
            return Err(format!("{s:?}: the ABCI server binds to loopback only"));
        }
        Ok(Address::Tcp(addr))
    }
}

impl std::fmt::Display for Address {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Address::Tcp(a) => write!(f, "tcp://{a}"),
            Address::Unix(p) => write!(f, "unix://{}", p.display()),
        }
    }
}

/// A bound ABCI listener.
#[derive(Debug)]
pub enum Listener {
    /// On a loopback TCP port.
    Tcp(TcpListener),
    /// On a unix socket.
    Unix(UnixListener),
}

impl Listener {
    /// Bind `address`. A unix socket replaces a stale socket file at its path (never another
    /// kind of file) and is made accessible to its owner only (mode 0600).
    pub fn bind(address: &Address) -> io::Result<Listener> {
        match address {
            Address::Tcp(a) => Ok(Listener::Tcp(TcpListener::bind(a)?)),
            Address::Unix(path) => {
                remove_stale_socket(path)?;
                let listener = UnixListener::bind(path)?;
                std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
                Ok(Listener::Unix(listener))
            }
        }
    }
}

fn remove_stale_socket(path: &Path) -> io::Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_socket() => std::fs::remove_file(path),
        Ok(_) => Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!("{} exists and is not a socket", path.display()),
        )),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// A connected stream the server can read and write from two handles.
pub trait Stream: Read + Write + Send + Sized + 'static {
    /// A second handle on the same connection.
    fn try_clone(&self) -> io::Result<Self>;
    /// Socket options set before the first request.
    fn configure(&self) -> io::Result<()> {
        Ok(())
    }
}

impl Stream for TcpStream {
    fn try_clone(&self) -> io::Result<Self> {
        TcpStream::try_clone(self)
    }
    fn configure(&self) -> io::Result<()> {
        self.set_nodelay(true)
    }
}

impl Stream for UnixStream {
    fn try_clone(&self) -> io::Result<Self> {
        UnixStream::try_clone(self)
    }
}

/// Accept connections on `listener` forever, one thread per connection.
///
/// Returns only when accepting fails.
pub fn serve<A: Application>(listener: Listener, app: A) -> io::Result<()> {
    for n in 0u64.. {
        let (name, spawned) = match &listener {
            Listener::Tcp(l) => {
                let (stream, peer) = l.accept()?;
                let name = peer.to_string();
                (name.clone(), spawn_connection(stream, name, app.clone()))
            }
            Listener::Unix(l) => {
                let (stream, _) = l.accept()?;
                let name = format!("unix#{n}");
                (name.clone(), spawn_connection(stream, name, app.clone()))
            }
        };
        spawned?;
        info!(peer = %name, "ABCI connection");
    }
    Ok(())
}

fn spawn_connection<S: Stream, A: Application>(stream: S, peer: String, app: A) -> io::Result<()> {
    thread::Builder::new().name(format!("abci-{peer}")).spawn(move || {
        match connection(stream, &app) {
            Ok(()) => info!(%peer, "ABCI connection closed"),
            Err(e) => warn!(%peer, "ABCI connection dropped: {e}"),
        }
    })?;
    Ok(())
}

/// Serve one connection until the peer closes it.
pub fn connection<S: Stream, A: Application>(stream: S, app: &A) -> Result<(), ConnectionError> {
    stream.configure()?;
    let mut reader = BufReader::with_capacity(1 << 16, stream.try_clone()?);
    let mut writer = BufWriter::with_capacity(1 << 16, stream);
    let mut frame = Vec::new();
    while read_frame(&mut reader, &mut frame)? {
        let request = Request::decode(frame.as_slice())?;
        let value = request.value.ok_or(ConnectionError::Empty)?;
        let flush = matches!(value, request::Value::Flush(_));
        let answer = Response { value: Some(dispatch(app, value)) };
        writer.write_all(&answer.encode_length_delimited_to_vec())?;
        if flush || reader.buffer().is_empty() {
            writer.flush()?;
        }
    }
    writer.flush()?;
    Ok(())
}

/// Read one length-prefixed frame into `frame`; `false` at a clean end of stream.
fn read_frame(reader: &mut impl BufRead, frame: &mut Vec<u8>) -> Result<bool, ConnectionError> {
    let mut len: u64 = 0;
    for i in 0..10 {
        let mut byte = [0u8];
        if reader.read(&mut byte)? == 0 {
            return if i == 0 { Ok(false) } else { Err(ConnectionError::Truncated) };
        }
        len |= u64::from(byte[0] & 0x7f) << (7 * i);
        if byte[0] & 0x80 == 0 {
            if len > MAX_FRAME_BYTES {
                return Err(ConnectionError::TooLarge(len));
            }
            frame.clear();
            let got = reader.take(len).read_to_end(frame)?;
            if got as u64 != len {
                return Err(ConnectionError::Truncated);
            }
            return Ok(true);
        }
    }
    Err(ConnectionError::BadPrefix)
}

/// The application's answer to one request.
fn dispatch<A: Application>(app: &A, value: request::Value) -> response::Value {
    use request::Value as Q;
    use response::Value as R;
    match value {
        Q::Echo(r) => R::Echo(app.echo(r)),
        Q::Flush(_) => R::Flush(app.flush()),
        Q::Info(r) => R::Info(app.info(r)),
        Q::InitChain(r) => R::InitChain(app.init_chain(r)),
        Q::Query(r) => R::Query(app.query(r)),
        Q::CheckTx(r) => R::CheckTx(app.check_tx(r)),
        Q::Commit(_) => R::Commit(app.commit()),
        Q::ListSnapshots(_) => R::ListSnapshots(app.list_snapshots()),
        Q::OfferSnapshot(r) => R::OfferSnapshot(app.offer_snapshot(r)),
        Q::LoadSnapshotChunk(r) => R::LoadSnapshotChunk(app.load_snapshot_chunk(r)),
        Q::ApplySnapshotChunk(r) => R::ApplySnapshotChunk(app.apply_snapshot_chunk(r)),
        Q::PrepareProposal(r) => R::PrepareProposal(app.prepare_proposal(r)),
        Q::ProcessProposal(r) => R::ProcessProposal(app.process_proposal(r)),
        Q::ExtendVote(r) => R::ExtendVote(app.extend_vote(r)),
        Q::VerifyVoteExtension(r) => R::VerifyVoteExtension(app.verify_vote_extension(r)),
        Q::FinalizeBlock(r) => R::FinalizeBlock(app.finalize_block(r)),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, SocketAddr};
    use tendermint_proto::v0_38::abci::{RequestEcho, RequestFlush};

    /// An application that answers with the defaults (and echoes).
    #[derive(Clone)]
    struct Defaults;
    impl Application for Defaults {}

    fn start() -> SocketAddr {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let addr = listener.local_addr().unwrap();
        thread::spawn(move || serve(Listener::Tcp(listener), Defaults));
        addr
    }

    #[test]
    fn a_unix_socket_serves_its_owner_only_and_answers_like_tcp() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("abci.sock");
        let address: Address = format!("unix://{}", path.display()).parse().unwrap();
        std::fs::write(&path, b"stale").unwrap();
        assert!(Listener::bind(&address).is_err(), "a file that is not a socket is kept");
        std::fs::remove_file(&path).unwrap();
        let listener = Listener::bind(&address).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        thread::spawn(move || serve(listener, Defaults));
        let mut s = UnixStream::connect(&path).unwrap();
        s.write_all(&request(request::Value::Echo(RequestEcho { message: "u".into() }))).unwrap();
        let answer = read_response(&mut BufReader::new(s)).unwrap().value;
        assert!(matches!(answer, Some(response::Value::Echo(e)) if e.message == "u"));
        // A second bind replaces the stale socket left by the first.
        assert!(Listener::bind(&address).is_ok());
    }

    #[test]
    fn addresses_are_loopback_tcp_or_absolute_unix_paths() {
        let tcp: SocketAddr = "127.0.0.1:26658".parse().unwrap();
        assert_eq!("127.0.0.1:26658".parse(), Ok(Address::Tcp(tcp)));
        assert_eq!("tcp://127.0.0.1:26658".parse(), Ok(Address::Tcp(tcp)));
        assert_eq!("unix:///run/a.sock".parse(), Ok(Address::Unix("/run/a.sock".into())));
        assert!("0.0.0.0:26658".parse::<Address>().is_err(), "not loopback");
        assert!("unix://relative.sock".parse::<Address>().is_err());
        assert!(format!("unix:///{}", "a".repeat(200)).parse::<Address>().is_err());
        assert_eq!(Address::Tcp(tcp).to_string(), "tcp://127.0.0.1:26658");
    }

    fn request(value: request::Value) -> Vec<u8> {
        Request { value: Some(value) }.encode_length_delimited_to_vec()
    }

    fn read_response(reader: &mut impl BufRead) -> Option<Response> {
        let mut frame = Vec::new();
        read_frame(reader, &mut frame).ok()?.then(|| Response::decode(&frame[..]).unwrap())
    }

    #[test]
    fn answers_pipelined_requests_in_order() {
        let mut s = TcpStream::connect(start()).unwrap();
        let mut bytes = Vec::new();
        for m in ["a", "b"] {
            bytes.extend(request(request::Value::Echo(RequestEcho { message: m.into() })));
        }
        bytes.extend(request(request::Value::Flush(RequestFlush {})));
        s.write_all(&bytes).unwrap();
        let mut reader = BufReader::new(s);
        let answers: Vec<_> = (0..3).map(|_| read_response(&mut reader).unwrap().value).collect();
        assert!(matches!(&answers[0], Some(response::Value::Echo(e)) if e.message == "a"));
        assert!(matches!(&answers[1], Some(response::Value::Echo(e)) if e.message == "b"));
        assert!(matches!(&answers[2], Some(response::Value::Flush(_))));
    }

    fn closed_after(bytes: &[u8]) -> bool {
        let mut s = TcpStream::connect(start()).unwrap();
        s.write_all(bytes).unwrap();
        s.shutdown(std::net::Shutdown::Write).unwrap();
        read_response(&mut BufReader::new(s)).is_none()
    }

    #[test]
    fn bad_frames_close_the_connection_without_an_answer() {
        // A request without a method.
        assert!(closed_after(&Request { value: None }.encode_length_delimited_to_vec()));
        // Bytes that are not a Request.
        assert!(closed_after(&[3, 0xff, 0xff, 0xff]));
        // A length over the limit.
        let mut huge = Vec::new();
        prost14::encoding::encode_varint(MAX_FRAME_BYTES + 1, &mut huge);
        assert!(closed_after(&huge));
        // An 11-byte varint.
        assert!(closed_after(&[0xff; 11]));
        // A frame cut short.
        let whole = request(request::Value::Echo(RequestEcho { message: "abc".into() }));
        assert!(closed_after(&whole[..whole.len() - 1]));
        // The uncut frame is answered: the checks above fail for the right reason.
        assert!(!closed_after(&whole));
    }

    #[test]
    fn frame_errors_are_reported() {
        let mut frame = Vec::new();
        let mut huge = Vec::new();
        prost14::encoding::encode_varint(MAX_FRAME_BYTES + 1, &mut huge);
        assert!(matches!(
            read_frame(&mut &huge[..], &mut frame),
            Err(ConnectionError::TooLarge(n)) if n == MAX_FRAME_BYTES + 1
        ));
        assert!(matches!(
            read_frame(&mut &[0xffu8; 11][..], &mut frame),
            Err(ConnectionError::BadPrefix)
        ));
        assert!(matches!(
            read_frame(&mut &[5u8, 1, 2][..], &mut frame),
            Err(ConnectionError::Truncated)
        ));
        assert!(matches!(
            read_frame(&mut &[0x80u8][..], &mut frame),
            Err(ConnectionError::Truncated)
        ));
        assert!(matches!(read_frame(&mut &[][..], &mut frame), Ok(false)));
        assert!(matches!(read_frame(&mut &[2u8, 7, 9][..], &mut frame), Ok(true)));
        assert_eq!(frame, [7, 9]);
    }
}
