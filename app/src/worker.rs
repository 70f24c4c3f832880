//! The verifier worker: the off-chain half of a verifying node.
//!
//! It runs on its own threads, never inside an ABCI handler. After every Commit it reads the
//! committed state — each open query's records, and the proofs only of a query that received
//! proofs it has not seen — and releases the store's lock before it builds any statement or
//! verifies anything (a statement's input proofs are read one by one, each under a brief lock).
//! For each open query it:
//!
//! 1. evaluates its VRF for the query once (only it can, from registration on);
//! 2. verifies every received proof its VRF selects, against the statement resolved from ledger
//!    state ([`lemal_contracts::proofs::resolve`]), as soon as the proof and its inputs are
//!    committed — on a small pool of threads;
//! 3. when the proof phase has ended, builds its verdicts (0/1 for what it verified, 2 for what
//!    it was not assigned, 3 for what never arrived), signs a `CommitBitmap` and broadcasts it
//!    through its own CometBFT node's RPC, re-broadcasting the same signed bytes every few blocks
//!    until the commit is on the ledger or the query is closed (the same bytes have the same
//!    hash, so CometBFT's mempool keeps one copy).
//!
//! It records what it verified, how long each verification took, its bitmap broadcasts and how
//! far behind the committed height it is in [`crate::metrics`].
//!
//! Consensus never waits for the worker: a slow worker only means this node's bitmap arrives
//! late (or, after the commit window, not at all, and its entries become 3). A worker that
//! stops — a panic in its thread — is not left to fail quietly: [`wait`] reports why, and
//! `lemal-vn` then exits with an error, so that the operator (or a supervisor) sees it.

use std::collections::BTreeMap;
use std::sync::{mpsc, Arc, PoisonError, RwLock};
use std::thread;
use std::time::Duration;

use lemal_contracts::ids::{EntityId, ProofKey, QueryId, Verdict};
use lemal_contracts::proofs;
use lemal_contracts::sampling::{self, VrfOutput, VrfProof};
use lemal_contracts::sig::SigningKey;
use lemal_contracts::state::{JudgedSet, QueryRecord, QueryStatus};
use lemal_contracts::tx::{CommitBitmap, Tx, TxBody};
use tracing::{debug, info, warn};

use crate::abci::CommittedBlock;
use crate::ledger::get;
use crate::machine::Machine;
use crate::metrics::{Metrics, Stopwatch};
use crate::store::Store;

/// Blocks to wait before broadcasting a bitmap commit again.
pub const REBROADCAST_BLOCKS: u64 = 5;

/// Where the worker sends its transactions.
pub trait Broadcast: Send + 'static {
    /// Submit transaction bytes to the network (asynchronously: inclusion is observed in state).
    fn broadcast(&mut self, tx: Vec<u8>) -> Result<(), String>;
}

/// Broadcasting through a CometBFT node's RPC (`broadcast_tx_sync`).
pub struct RpcBroadcast {
    client: tendermint_rpc::HttpClient,
    runtime: tokio::runtime::Runtime,
}

impl RpcBroadcast {
    /// A client of the node at `url` speaking the CometBFT 0.38 RPC dialect.
    pub fn new(url: &str) -> Result<Self, String> {
        let url: tendermint_rpc::HttpClientUrl =
            url.parse().map_err(|e| format!("rpc url: {e}"))?;
        let client = tendermint_rpc::HttpClient::builder(url)
            .compat_mode(tendermint_rpc::client::CompatMode::V0_38)
            .build()
            .map_err(|e| format!("rpc client: {e}"))?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("runtime: {e}"))?;
        Ok(Self { client, runtime })
    }
}

impl Broadcast for RpcBroadcast {
    /// `broadcast_tx_sync`, tried twice: the HTTP client keeps its connection to the node alive,
    /// and the node closes idle connections, so the first request after a quiet spell can fail
    /// in transport without having reached the node. A second attempt that finds the
    /// transaction already in the node's cache means the first one did arrive.
    fn broadcast(&mut self, tx: Vec<u8>) -> Result<(), String> {
        use tendermint_rpc::Client;
        let mut last = String::new();
        for attempt in 0..2 {
            if attempt > 0 {
                thread::sleep(Duration::from_millis(100));
            }
            match self.runtime.block_on(self.client.broadcast_tx_sync(tx.clone())) {
                Ok(response) if response.code.is_err() => {
                    return Err(format!(
                        "CheckTx code {}: {}",
                        response.code.value(),
                        response.log
                    ));
                }
                Ok(_) => return Ok(()),
                Err(e) => {
                    let text = e.to_string();
                    if attempt > 0 && text.contains("tx already exists in cache") {
                        return Ok(());
                    }
                    last = format!("broadcast: {text}");
                }
            }
        }
        Err(last)
    }
}

/// What the worker knows about one query.
struct QueryWork {
    vrf: (VrfOutput, VrfProof),
    /// Every proof seen: `None` when the VRF did not select it, else whether it verifies.
    seen: BTreeMap<ProofKey, Option<bool>>,
    last_broadcast: Option<u64>,
    /// The signed bitmap commit, kept until it is on the ledger: every re-broadcast sends
    /// these bytes again.
    signed: Option<Vec<u8>>,
}

/// The worker's state; [`Worker::on_commit`] is one step, so tests can drive it directly.
pub struct Worker<B: Broadcast> {
    me: EntityId,
    key: SigningKey,
    store: Arc<RwLock<Store>>,
    broadcast: B,
    threads: usize,
    queries: BTreeMap<QueryId, QueryWork>,
    /// The chain's configuration, read again after a roster change.
    machine: Option<Machine>,
    /// Test only: report every verified proof as the opposite of what it is (a lying verifying
    /// node, for the tests of challenges and exclusion).
    invert_verdicts: bool,
    metrics: Arc<Metrics>,
}

impl<B: Broadcast> Worker<B> {
    /// A worker for verifying node `me` with its sr25519 `key`.
    pub fn new(
        me: EntityId,
        key: SigningKey,
        store: Arc<RwLock<Store>>,
        broadcast: B,
        threads: usize,
    ) -> Self {
        Self {
            me,
            key,
            store,
            broadcast,
            threads: threads.max(1),
            queries: BTreeMap::new(),
            machine: None,
            invert_verdicts: false,
            metrics: Arc::default(),
        }
    }

    /// Record verifications, bitmap broadcasts and the worker's height into `metrics`.
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = metrics;
        self
    }

    /// Test only: make this worker lie, turning every 1 it finds into 0 and every 0 into 1.
    /// `lemal-vn --test-only-invert-verdicts` sets it, to exercise challenges and exclusion.
    pub fn inverting_verdicts(mut self) -> Self {
        self.invert_verdicts = true;
        self
    }

    /// Run until the commit channel closes.
    pub fn run(mut self, rx: mpsc::Receiver<CommittedBlock>) {
        while let Ok(mut block) = rx.recv() {
            // Catch up to the newest block when several arrived meanwhile.
            while let Ok(next) = rx.try_recv() {
                block = next;
            }
            self.on_commit(block.height);
            self.metrics.worker_reached(block.height);
        }
    }

    /// Spawn [`Worker::run`] on its own thread.
    pub fn spawn(self, rx: mpsc::Receiver<CommittedBlock>) -> thread::JoinHandle<()> {
        thread::Builder::new()
            .name(format!("worker-{}", self.me))
            .spawn(move || self.run(rx))
            .expect("the worker thread can be spawned")
    }

    /// One step after the block at `height` was committed. Returns the queries whose bitmap
    /// commit it broadcast.
    pub fn on_commit(&mut self, height: u64) -> Vec<QueryId> {
        let Some((chain_id, work, ready)) = self.gather() else { return Vec::new() };
        // Verification runs without holding the store, so Commit is never blocked by it.
        let results = verify_all(&work, self.threads, &self.metrics);
        for ((q, key, _), valid) in work.iter().zip(results) {
            let valid = if self.invert_verdicts { !valid } else { valid };
            let verdict = Verdict::rule(true, true, valid);
            info!(vn = %self.me, key = %key, verdict = verdict.value(), "verified");
            if let Some(entry) = self.queries.get_mut(q) {
                entry.seen.insert(*key, Some(valid));
            }
        }
        let mut sent = Vec::new();
        for (record, judged) in ready {
            let q = record.registration.query_id;
            let Some(entry) = self.queries.get_mut(&q) else { continue };
            if entry.last_broadcast.is_some_and(|h| height < h + REBROADCAST_BLOCKS) {
                continue;
            }
            let signed = entry.signed.get_or_insert_with(|| {
                let expected = record.registration.spec.expected_proofs(q);
                let verdicts = expected
                    .iter()
                    .zip(&judged.received)
                    .map(|(k, &received)| {
                        // Selected proofs were verified above; the rest were not assigned.
                        let valid = entry.seen.get(k).copied().flatten();
                        Verdict::rule(received, valid.is_some(), valid == Some(true))
                    })
                    .collect();
                let body = TxBody::CommitBitmap(CommitBitmap {
                    query_id: q,
                    vrf: entry.vrf.1,
                    proofs_digest: judged.proofs_root,
                    verdicts,
                });
                Tx::sign(&chain_id, self.me, body, &self.key, rand_core::OsRng).encode()
            });
            entry.last_broadcast = Some(height);
            match self.broadcast.broadcast(signed.clone()) {
                Ok(()) => {
                    info!(vn = %self.me, query = %q, "bitmap broadcast");
                    self.metrics.bitmap_broadcast(true);
                    sent.push(q);
                }
                Err(e) => {
                    warn!(vn = %self.me, query = %q, "bitmap broadcast failed, will retry: {e}");
                    self.metrics.bitmap_broadcast(false);
                }
            }
        }
        debug!(vn = %self.me, height, "worker step");
        sent
    }

    /// The proofs to verify, with their statements, and the queries ready for this node's bitmap
    /// commit. Under the store's read lock it reads only the open queries' records and, of a
    /// query with proofs it has not seen yet, that query's proofs; statements are built after
    /// the lock is released (each input proof is read under the lock on its own: accepted proofs
    /// never change).
    #[allow(clippy::type_complexity)]
    fn gather(&mut self) -> Option<(String, Vec<Job>, Vec<(QueryRecord, JudgedSet)>)> {
        let mut new = Vec::new();
        let mut ready = Vec::new();
        {
            let store = self.store.read().unwrap_or_else(PoisonError::into_inner);
            let view = store.overlay().unwrap_or_else(|e| panic!("store unreadable: {e}"));
            let roster_changed = self.machine.as_ref().is_some_and(|m| {
                get::roster(&view).is_some_and(|r| {
                    r.vns.len() != m.roster().vns.len()
                        || r.cns.len() != m.roster().cns.len()
                        || r.dps.len() != m.roster().dps.len()
                })
            });
            if self.machine.is_none() || roster_changed {
                self.machine = Machine::load(&view);
            }
            let machine = self.machine.as_ref()?;
            let open = get::open_queries(&view);
            self.queries.retain(|q, _| open.contains(q));
            for q in &open {
                let (Some(record), Some(progress)) =
                    (get::query(&view, q), get::progress(&view, q))
                else {
                    continue;
                };
                let entry = self.queries.entry(*q).or_insert_with(|| QueryWork {
                    vrf: sampling::evaluate(
                        &self.key,
                        machine.chain_id(),
                        q,
                        self.me,
                        rand_core::OsRng,
                    ),
                    seen: BTreeMap::new(),
                    last_broadcast: None,
                    signed: None,
                });
                // Every proof seen is recorded: nothing new unless the count grew.
                if progress.received as usize > entry.seen.len() {
                    let threshold = record.registration.threshold_ppm;
                    for proof in get::proofs(&view, q) {
                        if entry.seen.contains_key(&proof.key) {
                            continue;
                        }
                        if !sampling::is_selected(&entry.vrf.0, &proof.key, threshold) {
                            entry.seen.insert(proof.key, None);
                            continue;
                        }
                        new.push((record.registration.clone(), proof));
                    }
                }
                if let (QueryStatus::Committing { .. }, Some(judged)) =
                    (progress.status, progress.judged)
                {
                    // A node out of good standing when the proof phase ended is not asked.
                    if !judged.verifiers.contains(&self.me) {
                        continue;
                    }
                    if get::commit(&view, q, self.me).is_none() {
                        ready.push((record, judged));
                    } else {
                        entry.signed = None;
                    }
                }
            }
        }
        let machine = self.machine.as_ref()?;
        let store = &self.store;
        let lookup = |k: &ProofKey| {
            let store = store.read().unwrap_or_else(PoisonError::into_inner);
            store
                .get(&crate::keys::proof(k))
                .unwrap_or_else(|e| panic!("store unreadable: {e}"))
                .map(|v| {
                    lemal_contracts::group::from_borsh(&v)
                        .unwrap_or_else(|e| panic!("proof record under {k} does not decode: {e}"))
                })
        };
        let work = new
            .into_iter()
            .map(|(registration, proof)| {
                let statement = proofs::resolve(
                    machine.chain_id(),
                    machine.roster(),
                    &registration,
                    &proof,
                    &lookup,
                )
                .map_err(|e| e.to_string());
                (registration.query_id, proof.key, statement.map(|s| (s, proof.proof)))
            })
            .collect();
        Some((machine.chain_id().to_owned(), work, ready))
    }
}

/// Why a worker thread ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WorkerExit {
    /// It panicked, with this message.
    Panicked(String),
    /// Its channel of committed blocks closed (the application was dropped).
    Stopped,
}

impl std::fmt::Display for WorkerExit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WorkerExit::Panicked(why) => write!(f, "the verifier worker panicked: {why}"),
            WorkerExit::Stopped => write!(f, "the verifier worker stopped: its block feed closed"),
        }
    }
}

/// Wait for the worker thread of `handle` to end, and say why it did.
pub fn wait(handle: thread::JoinHandle<()>) -> WorkerExit {
    match handle.join() {
        Ok(()) => WorkerExit::Stopped,
        Err(payload) => WorkerExit::Panicked(
            payload
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic without a message".to_owned()),
        ),
    }
}

/// One verification: the query, the proof key, and the resolved statement with the proof bytes
/// (or why the statement could not be resolved).
type Job = (QueryId, ProofKey, Result<(proofs::Statement, Vec<u8>), String>);

/// Verify each job on `threads` threads, recording each outcome and its time in `metrics`:
/// whether each proof verifies. A statement that cannot be resolved from the ledger makes the
/// proof wrong.
fn verify_all(work: &[Job], threads: usize, metrics: &Metrics) -> Vec<bool> {
    let one = |(_, key, job): &Job| {
        let stopwatch = Stopwatch::start();
        let result = job
            .as_ref()
            .map_err(Clone::clone)
            .and_then(|(statement, proof)| statement.verify(proof).map_err(|e| e.to_string()));
        metrics.proof_verified(key.kind, result.is_ok(), stopwatch.seconds());
        if let Err(e) = &result {
            warn!(key = %key, "proof rejected: {e}");
        }
        result.is_ok()
    };
    if threads <= 1 || work.len() <= 1 {
        return work.iter().map(one).collect();
    }
    let chunk = work.len().div_ceil(threads);
    thread::scope(|s| {
        let handles: Vec<_> = work
            .chunks(chunk)
            .map(|c| s.spawn(move || c.iter().map(one).collect::<Vec<_>>()))
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    })
}
