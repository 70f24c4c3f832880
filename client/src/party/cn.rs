//! The computing-node daemon: it registers queriers' queries (`POST /register` on its
//! endpoint, within the bounds of [`super::admission`]), and for every open query that names
//! it, submits its aggregation, noise shuffle and key switch as soon as their inputs are on the
//! ledger.
//!
//! It learns what is on the ledger from the chain's events (`lemal.register`, `lemal.proof`,
//! `lemal.proof_phase_end`); the queries it works on are journaled, so after a restart it reads
//! their proofs back from the ledger and goes on where it stopped.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::time::Instant;

use lemal_contracts::group::from_borsh;
use lemal_contracts::ids::{EntityId, ProofKey, ProofKind, QueryId};
use lemal_contracts::state::{QueryRecord, Roster};
use lemal_contracts::tx::{RegisterQuery, Tx, TxBody};
use serde_json::json;

use super::admission::Admission;
use super::{label, Daemon, Metrics, PartyError};
use crate::metrics::{Endpoint, Refused, Reply};
use crate::pipeline::{PartyKeys, Session};
use crate::rpc::{BlockEvents, Node, RpcError};

/// Blocks past the data-provider deadline during which a parent still waits for its child
/// computing nodes' aggregations.
pub const CHILD_GRACE: u64 = 10;

/// A computing node's configuration.
#[derive(Clone, Debug)]
pub struct CnConfig {
    /// Its keys (with its ElGamal share).
    pub keys: PartyKeys,
    /// Proof kinds it falsifies in every query (a demonstration of a cheating node).
    pub cheat: Vec<ProofKind>,
    /// Read per-query cheat orders from `STATE/cheat/<query id>` (demonstrations and tests).
    pub cheat_orders: bool,
}

/// The computing-node daemon's state.
#[derive(Debug)]
pub struct ComputingNode {
    config: CnConfig,
    roster: Roster,
    /// Open queries that name this node.
    open: BTreeMap<QueryId, QueryRecord>,
    /// Proofs of those queries known to be on the ledger.
    on_ledger: BTreeSet<ProofKey>,
}

impl ComputingNode {
    /// A computing node acting with `config` on a chain whose roster is `roster`; it takes up
    /// again the queries its journal lists, reading their proofs from the ledger.
    pub fn resume(config: CnConfig, roster: Roster, daemon: &Daemon) -> Result<Self, PartyError> {
        let mut me =
            ComputingNode { config, roster, open: BTreeMap::new(), on_ledger: BTreeSet::new() };
        for q in &daemon.journal.watching {
            let Ok(q) = q.parse::<QueryId>() else { continue };
            if let Some(record) = daemon.node.query_record(&q)? {
                me.watch(&daemon.node, record)?;
            }
        }
        if !me.open.is_empty() {
            tracing::info!(queries = me.open.len(), "resumed the open queries of the journal");
        }
        Ok(me)
    }

    fn entity(&self) -> EntityId {
        self.config.keys.entity
    }

    /// Start working on `record`'s query, with what of it is already on the ledger.
    fn watch(&mut self, node: &Node, record: QueryRecord) -> Result<(), PartyError> {
        let q = record.registration.query_id;
        for key in record.registration.spec.expected_proofs(q) {
            if node.proof(&key)?.is_some() {
                self.on_ledger.insert(key);
            }
        }
        self.open.insert(q, record);
        Ok(())
    }

    fn cheats(&self, daemon: &Daemon, key: &ProofKey) -> bool {
        self.config.cheat.contains(&key.kind)
            || (self.config.cheat_orders
                && std::fs::read_to_string(daemon.dir.join("cheat").join(key.query.to_string()))
                    .is_ok_and(|s| s.split_whitespace().any(|k| k == key.kind.as_str())))
    }

    /// Handle one committed block.
    pub fn on_block(&mut self, daemon: &mut Daemon, block: &BlockEvents) -> Result<(), PartyError> {
        let me = self.entity();
        let mut changed = false;
        for e in block.of_kind("lemal.register") {
            let Some(q) = e.get("query").and_then(|q| q.parse::<QueryId>().ok()) else { continue };
            let Some(record) = daemon.node.query_record(&q)? else { continue };
            if record.registration.spec.cns.contains(&me.index) && !self.open.contains_key(&q) {
                tracing::info!(query = %q, sql = record.registration.spec.sql, "query registered");
                self.watch(&daemon.node, record)?;
                daemon.journal.watching.insert(q.to_string());
                changed = true;
            }
        }
        for e in block.of_kind("lemal.proof") {
            if let Some(key) = e.get("key").and_then(|k| k.parse::<ProofKey>().ok()) {
                if self.open.contains_key(&key.query) {
                    self.on_ledger.insert(key);
                }
            }
        }
        for e in block.of_kind("lemal.proof_phase_end") {
            let Some(q) = e.get("query").and_then(|q| q.parse::<QueryId>().ok()) else { continue };
            if self.open.remove(&q).is_some() {
                tracing::info!(query = %q, "proof phase over");
                self.on_ledger.retain(|k| k.query != q);
                daemon.journal.watching.remove(&q.to_string());
                daemon.journal.forget(&q);
                changed = true;
            }
        }
        if changed {
            daemon.journal.save(&daemon.dir)?;
        }
        let open: Vec<QueryId> = self.open.keys().copied().collect();
        for q in open {
            self.advance(daemon, &q, block.height)?;
        }
        Ok(())
    }

    /// Whether the proof `key` can be built at `height`: its inputs are on the ledger (an
    /// aggregation past the data-provider deadline goes ahead with those that are).
    ///
    /// After that deadline a child computing node's aggregation is still awaited for
    /// [`CHILD_GRACE`] blocks: the chain refuses an aggregation that leaves out an input on the
    /// ledger, and a child aggregates what it has as soon as the deadline passes.
    fn ready(&self, record: &QueryRecord, key: &ProofKey, height: u64) -> bool {
        let inputs = record.registration.spec.inputs_of(key);
        let present = |k: &&ProofKey| self.on_ledger.contains(k);
        if inputs.iter().all(|k| present(&k)) {
            return true;
        }
        let deadline = record.dp_deadline_height();
        key.kind == ProofKind::Aggregation
            && height > deadline
            && inputs.iter().any(|k| present(&k))
            && (height > deadline + CHILD_GRACE
                || inputs.iter().filter(|k| k.kind == ProofKind::Aggregation).all(|k| present(&k)))
    }

    /// Submit every proof of query `q` this node owes whose inputs are on the ledger.
    fn advance(&mut self, daemon: &mut Daemon, q: &QueryId, height: u64) -> Result<(), PartyError> {
        let me = self.entity();
        let Some(record) = self.open.get(q).cloned() else { return Ok(()) };
        let reg = &record.registration;
        let owed: Vec<ProofKey> =
            reg.spec.expected_proofs(*q).into_iter().filter(|k| k.creator == me).collect();
        for key in owed {
            daemon.retry_if_outdated(&key)?;
            if self.on_ledger.contains(&key)
                || daemon.signed(&key)
                || !self.ready(&record, &key, height)
            {
                continue;
            }
            let cheat = self.cheats(daemon, &key);
            let session = Session {
                chain_id: &daemon.chain_id,
                keys: &self.config.keys,
                roster: &self.roster,
                registration: reg,
            };
            let start = Instant::now();
            let mut rng = rand_core::OsRng;
            let built = match key.kind {
                ProofKind::Aggregation => session.aggregation(me, &daemon.node, cheat, &mut rng),
                ProofKind::Shuffle => session.shuffle(me, &daemon.node, cheat, &mut rng),
                ProofKind::KeySwitch => session.keyswitch(me, &daemon.node, cheat, &mut rng),
                ProofKind::Range => continue,
            };
            let tx = match built {
                Ok(tx) => tx,
                Err(e) => {
                    // An input the events announced may not be readable yet: next block.
                    tracing::warn!(proof = %key, error = %e, "could not build the proof yet");
                    continue;
                }
            };
            daemon.metrics.proved(key.kind, start);
            if cheat {
                tracing::warn!(proof = %key, "submitting a false proof (cheat)");
            }
            daemon.submit(&key, &tx, height)?;
        }
        Ok(())
    }
}

/// The registration endpoint: `POST /register` with a borsh-encoded, querier-signed
/// [`RegisterQuery`]. The node signs it as registrar and broadcasts it; CheckTx judges it
/// (the querier's proof of possession, the spec, the deadlines). Before a request to
/// `/register` is read, its source must pass the [`Admission`] bounds (403, 429).
#[derive(Debug)]
pub struct Registrar {
    chain_id: String,
    keys: PartyKeys,
    node: Node,
    metrics: Metrics,
    admission: Admission,
}

impl Endpoint for Registrar {
    fn admit(&self, method: &str, path: &str, peer: IpAddr) -> Result<(), Refused> {
        match (method, path) {
            ("POST", "/register") => {}
            ("GET", "/") => return Ok(()),
            _ => return Err(Refused::not_found(method, path, SERVED)),
        }
        self.admission.admit(peer, Instant::now()).map_err(|refusal| {
            self.count(refusal.outcome());
            tracing::debug!(source = %peer, outcome = refusal.outcome(), "registration refused");
            let error = match refusal.retry_after_secs() {
                Some(secs) => format!("too many registrations from {peer}; retry in {secs} s"),
                None => format!("registrations from {peer} are not allowed"),
            };
            Refused {
                status: refusal.status(),
                body: json!({ "error": error }),
                retry_after: refusal.retry_after_secs(),
            }
        })
    }

    fn handle(&self, method: &str, path: &str, body: &[u8]) -> Reply {
        let (status, doc, outcome) = self.answer(method, path, body);
        if path == "/register" {
            self.count(outcome);
        }
        (status, doc)
    }
}

/// What the registration endpoint serves, named in its `404`s.
const SERVED: &str = "POST /register, GET / or GET /metrics";

impl Registrar {
    /// A registrar broadcasting to the node at `rpc`, admitting requests by `admission`.
    pub fn new(
        chain_id: String,
        keys: PartyKeys,
        rpc: &str,
        metrics: Metrics,
        admission: Admission,
    ) -> Result<Self, RpcError> {
        Ok(Registrar { chain_id, keys, node: Node::connect(rpc)?, metrics, admission })
    }

    /// One more registration request with this `outcome`.
    fn count(&self, outcome: &str) {
        self.metrics.registrations.get_or_create(&label("outcome", outcome)).inc();
    }

    fn answer(
        &self,
        method: &str,
        path: &str,
        body: &[u8],
    ) -> (u16, serde_json::Value, &'static str) {
        match (method, path) {
            ("POST", "/register") => {}
            ("GET", "/") => {
                return (
                    200,
                    json!({ "entity": self.keys.entity.to_string(), "chain_id": self.chain_id }),
                    "-",
                );
            }
            _ => {
                let (status, doc) = Refused::not_found(method, path, SERVED).reply();
                return (status, doc, "-");
            }
        }
        let reg: RegisterQuery = match from_borsh(body) {
            Ok(r) => r,
            Err(e) => {
                return (400, json!({ "error": format!("not a registration: {e}") }), "malformed");
            }
        };
        let me = self.keys.entity;
        if !reg.spec.cns.contains(&me.index) {
            return (
                403,
                json!({ "error": format!("{me} is not among the query's computing nodes") }),
                "not_named",
            );
        }
        let q = reg.query_id;
        let tx = Tx::sign(
            &self.chain_id,
            me,
            TxBody::RegisterQuery(Box::new(reg)),
            &self.keys.signing,
            rand_core::OsRng,
        );
        match self.node.broadcast(&tx) {
            Ok(hash) => {
                tracing::info!(query = %q, tx = hex::encode(hash), "registration broadcast");
                (200, json!({ "query": q.to_string(), "tx": hex::encode(hash) }), "broadcast")
            }
            Err(RpcError::Rejected { code, log }) => {
                tracing::warn!(query = %q, code, %log, "registration refused by CheckTx");
                (422, json!({ "error": log, "code": code }), "refused")
            }
            Err(e) => (502, json!({ "error": e.to_string() }), "node_error"),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::net::{SocketAddr, TcpStream};
    use std::num::NonZeroU32;
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;
    use crate::party::admission::{Cidr, RateLimit};
    use crate::party::tests::sample_registration;
    use lemal_contracts::sig::SigningKey;
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    fn rate(per_minute: u32, burst: u32) -> RateLimit {
        RateLimit {
            per_minute: NonZeroU32::new(per_minute).expect("non-zero"),
            burst: NonZeroU32::new(burst).expect("non-zero"),
        }
    }

    /// A registrar of cn-2 admitting `allow` at `limit`, whose node is never reached (the
    /// requests below are refused first), with its metrics and their registry.
    fn registrar_with(
        allow: Vec<Cidr>,
        limit: RateLimit,
    ) -> (Registrar, Metrics, prometheus_client::registry::Registry) {
        let mut rng = ChaCha20Rng::seed_from_u64(3);
        let keys = PartyKeys {
            entity: EntityId::cn(2),
            signing: SigningKey::random(&mut rng),
            share: Some(lemal_contracts::elgamal::SecretKey::random(&mut rng)),
        };
        let (metrics, registry) = Metrics::new();
        let admission = Admission::new(allow, limit);
        let r =
            Registrar::new("chain".into(), keys, "http://127.0.0.1:1", metrics.clone(), admission)
                .expect("registrar");
        (r, metrics, registry)
    }

    fn registrar() -> Registrar {
        registrar_with(Vec::new(), rate(600, 100)).0
    }

    fn counted(metrics: &Metrics, outcome: &str) -> u64 {
        metrics.registrations.get_or_create(&label("outcome", outcome)).get()
    }

    /// Serve `r` on a free loopback port.
    fn serve(r: Registrar, registry: prometheus_client::registry::Registry) -> SocketAddr {
        let any: SocketAddr = "127.0.0.1:0".parse().expect("address");
        crate::metrics::serve_with(any, Arc::new(registry), r).expect("serving")
    }

    /// Send one HTTP/1.1 request and read the whole answer: its status and its text.
    fn request(addr: SocketAddr, method: &str, path: &str, body: &[u8]) -> (u16, String) {
        let mut s = TcpStream::connect(addr).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {}\r\n\
             Connection: close\r\n\r\n",
            body.len()
        );
        s.write_all(head.as_bytes()).and_then(|()| s.write_all(body)).expect("send");
        let mut text = String::new();
        s.read_to_string(&mut text).expect("answer");
        let status = text.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
        (status, text)
    }

    /// The value of header `name` in an answer's text.
    fn header<'a>(text: &'a str, name: &str) -> Option<&'a str> {
        let head = text.split("\r\n\r\n").next()?;
        head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }

    #[test]
    fn the_endpoint_refuses_garbage_and_queries_that_do_not_name_it() {
        let r = registrar();
        let (status, doc) = r.handle("POST", "/register", b"not borsh");
        assert_eq!(status, 400, "{doc}");
        let mut body = borsh::to_vec(&sample_registration(vec![2])).expect("encode");
        body.push(0);
        assert_eq!(r.handle("POST", "/register", &body).0, 400, "trailing bytes");
        let body = borsh::to_vec(&sample_registration(vec![0, 1])).expect("encode");
        let (status, doc) = r.handle("POST", "/register", &body);
        assert_eq!(status, 403);
        assert!(doc["error"].as_str().is_some_and(|e| e.contains("cn-2 is not among")), "{doc}");
        assert_eq!(r.handle("GET", "/register", b"").0, 404);
        assert_eq!(r.handle("GET", "/", b"").1["entity"], "cn-2");
        assert_eq!((counted(&r.metrics, "malformed"), counted(&r.metrics, "not_named")), (2, 1));
    }

    #[test]
    fn a_client_over_its_rate_is_answered_429_with_retry_after_before_its_body_is_read() {
        let (r, metrics, registry) = registrar_with(Vec::new(), rate(1, 2));
        let addr = serve(r, registry);
        for _ in 0..2 {
            assert_eq!(request(addr, "POST", "/register", b"not borsh").0, 400);
        }
        let (status, text) = request(addr, "POST", "/register", b"not borsh");
        assert_eq!(status, 429, "{text}");
        let wait: u64 = header(&text, "Retry-After").and_then(|v| v.parse().ok()).expect(&text);
        assert!((1..=60).contains(&wait), "{text}");
        assert!(text.contains("too many registrations from 127.0.0.1"), "{text}");
        // The refused body was never decoded; the rest of the endpoint is not limited.
        assert_eq!((counted(&metrics, "malformed"), counted(&metrics, "rate_limited")), (2, 1));
        assert_eq!(request(addr, "GET", "/", b"").0, 200);
        let m = crate::metrics::scrape(&format!("http://{addr}/metrics")).expect("metrics");
        let refused = [("outcome", "rate_limited")];
        assert_eq!(m.get("lemal_cn_registrations_total", &refused), Some(1.0));
    }

    #[test]
    fn a_source_off_the_allow_list_is_answered_403_and_takes_no_token() {
        let lan: Cidr = "10.0.0.0/8".parse().expect("block");
        let (r, metrics, registry) = registrar_with(vec![lan], rate(1, 1));
        let addr = serve(r, registry);
        for _ in 0..3 {
            let (status, text) = request(addr, "POST", "/register", b"not borsh");
            assert_eq!(status, 403, "{text}");
            assert!(header(&text, "Retry-After").is_none(), "{text}");
            assert!(text.contains("registrations from 127.0.0.1 are not allowed"), "{text}");
        }
        assert_eq!((counted(&metrics, "not_allowed"), counted(&metrics, "malformed")), (3, 0));
        assert_eq!(counted(&metrics, "rate_limited"), 0);
        let loopback: Cidr = "127.0.0.0/8".parse().expect("block");
        let (r, metrics, registry) = registrar_with(vec![lan, loopback], rate(1, 1));
        let addr = serve(r, registry);
        assert_eq!(request(addr, "POST", "/register", b"not borsh").0, 400);
        assert_eq!(counted(&metrics, "malformed"), 1);
    }
}
