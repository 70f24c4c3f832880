//! The thin ABCI adapter: CometBFT requests in, state-machine calls, responses out.
//!
//! Concurrency: tendermint-abci serves each CometBFT connection (consensus, mempool, query,
//! snapshot) on its own thread with a clone of [`LemalApp`]. The store sits behind a read-write
//! lock — block execution and queries read, Commit writes — and the consensus bookkeeping
//! (genesis writes not yet committed, the block awaiting Commit) behind a mutex.
//!
//! CheckTx holds the consensus mutex only to copy three handles (the machine, the genesis writes,
//! the last block time); its stateless phase — envelope, signature, then the body's decoding —
//! runs under no lock at all, and its stateful phase under the store's read lock only, so a
//! large or hostile transaction never delays FinalizeBlock, the proposal handlers or Commit. A
//! re-check (CheckTx of type `Recheck`, after every block) finds the authenticated transaction in
//! a bounded cache ([`crate::recheck`]) and repeats only the stateful phase.
//!
//! Genesis: InitChain runs the machine's genesis into a write set that is applied at the start of
//! the first block, so the first Commit makes genesis and block one durable together; after a
//! crash before that Commit, CometBFT runs InitChain again.
//!
//! The adapter records CheckTx rejections and the durations of FinalizeBlock and Commit in
//! [`crate::metrics`]; nothing there is read back.
//!
//! Nothing a client sends can panic a handler: every rejection is a code and a log. A store that
//! fails to read or write panics, since continuing would fork this node from the others.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex, PoisonError, RwLock};

use lemal_contracts::state::Timestamp;
use lemal_contracts::tx::Tx;
use tendermint_abci::Application;
use tendermint_proto::google::protobuf::Timestamp as ProtoTime;
use tendermint_proto::v0_38::abci::{
    response_process_proposal::ProposalStatus, CheckTxType, Event as AbciEvent, EventAttribute,
    ExecTxResult, RequestCheckTx, RequestFinalizeBlock, RequestInfo, RequestInitChain,
    RequestPrepareProposal, RequestProcessProposal, RequestQuery, ResponseCheckTx, ResponseCommit,
    ResponseFinalizeBlock, ResponseInfo, ResponseInitChain, ResponsePrepareProposal,
    ResponseProcessProposal, ResponseQuery, ValidatorUpdate as AbciValidatorUpdate,
};
use tendermint_proto::v0_38::crypto::public_key::Sum;
use tendermint_proto::v0_38::crypto::PublicKey as ProtoPublicKey;
use tracing::{debug, error, info, warn};

use crate::codes::TxError;
use crate::ledger::{KvRead, KvWrite};
use crate::machine::{BlockCtx, Event, GenesisValidator, Machine};
use crate::metrics::{Metrics, Stopwatch};
use crate::query;
use crate::recheck::CheckCache;
use crate::store::{Overlay, Prepared, Store, WriteSet};

impl KvRead for Overlay<'_> {
    fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        Overlay::get(self, key).unwrap_or_else(|e| panic!("store read failed: {e}"))
    }
    fn scan_prefix(&self, prefix: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
        Overlay::scan_prefix(self, prefix).unwrap_or_else(|e| panic!("store scan failed: {e}"))
    }
}

impl KvWrite for Overlay<'_> {
    fn put(&mut self, key: Vec<u8>, value: Vec<u8>) {
        Overlay::put(self, key, value).unwrap_or_else(|e| panic!("store write failed: {e}"))
    }
    fn delete(&mut self, key: Vec<u8>) {
        Overlay::delete(self, key).unwrap_or_else(|e| panic!("store write failed: {e}"))
    }
}

/// A committed block, as announced to the verifier worker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CommittedBlock {
    /// CometBFT height.
    pub height: u64,
    /// App hash after it.
    pub app_hash: [u8; 32],
}

/// The consensus bookkeeping between requests.
#[derive(Default)]
struct Consensus {
    machine: Option<Arc<Machine>>,
    /// Genesis writes waiting for the first block.
    genesis: Option<Arc<WriteSet>>,
    /// The executed block waiting for Commit.
    pending: Option<Prepared>,
    /// Time of the last finalized block (CheckTx runs "in" the next block).
    last_time: Timestamp,
}

struct Shared {
    store: Arc<RwLock<Store>>,
    consensus: Mutex<Consensus>,
    committed_tx: Mutex<Option<mpsc::Sender<CommittedBlock>>>,
    /// Authenticated transactions by hash, for re-checks.
    checked: Mutex<CheckCache>,
    /// Stateless checks CheckTx ran (decoding and signature), for tests and diagnostics.
    stateless_checks: AtomicU64,
    /// Recorded here, never read by the machine.
    metrics: Arc<Metrics>,
}

/// The ABCI application; cheap to clone (one clone per CometBFT connection).
#[derive(Clone)]
pub struct LemalApp {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for LemalApp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LemalApp").finish_non_exhaustive()
    }
}

fn time_of(t: Option<ProtoTime>) -> Timestamp {
    t.map_or_else(Timestamp::default, |t| Timestamp {
        seconds: t.seconds,
        nanos: u32::try_from(t.nanos).unwrap_or(0),
    })
}

fn height_of(h: i64) -> u64 {
    u64::try_from(h).unwrap_or(0)
}

fn abci_events(events: Vec<Event>) -> Vec<AbciEvent> {
    events
        .into_iter()
        .map(|e| AbciEvent {
            r#type: e.kind.to_owned(),
            attributes: e
                .attributes
                .into_iter()
                .map(|(k, v)| EventAttribute { key: k.to_owned(), value: v, index: true })
                .collect(),
        })
        .collect()
}

fn apply(overlay: &mut Overlay<'_>, writes: &WriteSet) {
    for (k, v) in writes.iter() {
        match v {
            Some(v) => KvWrite::put(overlay, k.to_vec(), v.to_vec()),
            None => KvWrite::delete(overlay, k.to_vec()),
        }
    }
}

impl LemalApp {
    /// Wrap a store. The machine is loaded from committed state if genesis already ran.
    pub fn new(store: Arc<RwLock<Store>>) -> Self {
        Self::with_metrics(store, Arc::default())
    }

    /// [`LemalApp::new`], recording CheckTx rejections and the durations of FinalizeBlock and
    /// Commit into `metrics`.
    pub fn with_metrics(store: Arc<RwLock<Store>>, metrics: Arc<Metrics>) -> Self {
        let machine = {
            let guard = store.read().unwrap_or_else(PoisonError::into_inner);
            let view = guard.overlay().unwrap_or_else(|e| panic!("store unreadable: {e}"));
            Machine::load(&view).map(Arc::new)
        };
        let consensus = Consensus { machine, ..Consensus::default() };
        LemalApp {
            shared: Arc::new(Shared {
                store,
                consensus: Mutex::new(consensus),
                committed_tx: Mutex::new(None),
                checked: Mutex::new(CheckCache::default()),
                stateless_checks: AtomicU64::new(0),
                metrics,
            }),
        }
    }

    /// Announce every committed block on `tx` (the verifier worker listens).
    pub fn on_commit(&self, tx: mpsc::Sender<CommittedBlock>) {
        *self.shared.committed_tx.lock().unwrap_or_else(PoisonError::into_inner) = Some(tx);
    }

    /// The shared store (for the worker and tools).
    pub fn store(&self) -> Arc<RwLock<Store>> {
        self.shared.store.clone()
    }

    fn consensus(&self) -> std::sync::MutexGuard<'_, Consensus> {
        self.shared.consensus.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn checked(&self) -> std::sync::MutexGuard<'_, CheckCache> {
        self.shared.checked.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// How many times CheckTx ran the stateless phase (decoding and signature) rather than
    /// finding the transaction already authenticated.
    pub fn stateless_checks(&self) -> u64 {
        self.shared.stateless_checks.load(Ordering::Relaxed)
    }

    /// CheckTx: the stateless and stateful checks of `tx` against the committed state (and the
    /// genesis writes while block 1 is pending). The stateless phase runs under no lock, and a
    /// re-check skips it when the transaction is in the cache of authenticated ones; a
    /// transaction that passes enters the cache, a re-checked one that fails leaves it.
    fn check(&self, tx: &[u8], recheck: bool) -> Result<(), TxError> {
        let (machine, genesis, last_time) = {
            let consensus = self.consensus();
            let machine = consensus.machine.clone().ok_or(TxError::NotReady)?;
            (machine, consensus.genesis.clone(), consensus.last_time)
        };
        // Hashing a large transaction costs more than refusing a bad one: a new one is hashed
        // only once it passed.
        let hash = recheck.then(|| Tx::hash(tx));
        let cached = hash.and_then(|h| self.checked().get(&h));
        let decoded = match cached {
            Some(decoded) => decoded,
            None => {
                self.shared.stateless_checks.fetch_add(1, Ordering::Relaxed);
                Arc::new(machine.decode_and_authenticate(tx)?)
            }
        };
        let result = {
            let store = self.shared.store.read().unwrap_or_else(PoisonError::into_inner);
            let mut overlay = store.overlay().unwrap_or_else(|e| panic!("store unreadable: {e}"));
            let committed = store.committed().height;
            // The genesis writes belong on top of an empty store only: if block 1 was committed
            // since they were copied, they are in the store already.
            if let (Some(g), 0) = (&genesis, committed) {
                apply(&mut overlay, g);
            }
            let ctx = BlockCtx { height: committed + 1, time: last_time };
            machine.check_against_state(&overlay, &ctx, &decoded)
        };
        match (&result, hash) {
            (Ok(()), hash) => {
                let hash = hash.unwrap_or_else(|| Tx::hash(tx));
                self.checked().insert(hash, decoded, tx.len());
            }
            (Err(_), Some(hash)) => self.checked().remove(&hash),
            (Err(_), None) => {}
        }
        result
    }

    /// Run `txs` through the block's checks and execution on a scratch overlay; returns each
    /// result.
    fn simulate(
        &self,
        height: u64,
        time: Timestamp,
        txs: &[prost::bytes::Bytes],
    ) -> Vec<Result<(), TxError>> {
        let consensus = self.consensus();
        let Some(machine) = consensus.machine.as_ref() else {
            return txs.iter().map(|_| Err(TxError::NotReady)).collect();
        };
        let store = self.shared.store.read().unwrap_or_else(PoisonError::into_inner);
        let mut overlay = store.overlay().unwrap_or_else(|e| panic!("store unreadable: {e}"));
        if let Some(g) = &consensus.genesis {
            apply(&mut overlay, g);
        }
        let ctx = BlockCtx { height, time };
        machine
            .authenticate_block(txs)
            .into_iter()
            .map(|tx| overlay.transact(|child| machine.execute(child, &ctx, tx?)).map(|_| ()))
            .collect()
    }
}

impl Application for LemalApp {
    fn info(&self, _request: RequestInfo) -> ResponseInfo {
        let store = self.shared.store.read().unwrap_or_else(PoisonError::into_inner);
        let c = store.committed();
        info!(height = c.height, app_hash = %hex::encode(c.app_hash), "info");
        ResponseInfo {
            data: "lemal-vn".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            app_version: 1,
            last_block_height: i64::try_from(c.height).unwrap_or(i64::MAX),
            last_block_app_hash: if c.height == 0 {
                Default::default()
            } else {
                c.app_hash.to_vec().into()
            },
        }
    }

    fn init_chain(&self, request: RequestInitChain) -> ResponseInitChain {
        let mut validators = Vec::with_capacity(request.validators.len());
        for v in &request.validators {
            let key = match v.pub_key.as_ref().and_then(|k| k.sum.as_ref()) {
                Some(Sum::Ed25519(key)) => <[u8; 32]>::try_from(key.as_slice()).ok(),
                _ => None,
            };
            let (Some(pub_key), Ok(power)) = (key, u64::try_from(v.power)) else {
                error!("genesis validator without a 32-byte ed25519 key or with negative power");
                eprintln!("lemal-vn: every genesis validator needs an ed25519 key and a power");
                std::process::exit(2);
            };
            validators.push(GenesisValidator { pub_key, power });
        }
        let ctx =
            BlockCtx { height: height_of(request.initial_height), time: time_of(request.time) };
        let store = self.shared.store.read().unwrap_or_else(PoisonError::into_inner);
        let mut overlay = store.overlay().unwrap_or_else(|e| panic!("store unreadable: {e}"));
        let machine = match Machine::genesis(
            &mut overlay,
            &request.chain_id,
            &request.app_state_bytes,
            &validators,
            &ctx,
        ) {
            Ok(m) => m,
            Err(e) => {
                // An invalid genesis cannot be served: say what is wrong and stop.
                error!("{e:#}");
                eprintln!("lemal-vn: {e:#}");
                std::process::exit(2);
            }
        };
        let writes = overlay.into_write_set();
        let app_hash = store
            .prepare(ctx.height.max(1), writes.clone())
            .unwrap_or_else(|e| panic!("store cannot compute the genesis root: {e}"))
            .app_hash();
        drop(store);
        info!(chain_id = %request.chain_id, app_hash = %hex::encode(app_hash), "genesis");
        let mut consensus = self.consensus();
        consensus.machine = Some(Arc::new(machine));
        consensus.genesis = Some(Arc::new(writes));
        consensus.last_time = ctx.time;
        drop(consensus);
        self.checked().clear();
        ResponseInitChain {
            consensus_params: None,
            validators: request.validators,
            app_hash: app_hash.to_vec().into(),
        }
    }

    fn check_tx(&self, request: RequestCheckTx) -> ResponseCheckTx {
        let recheck = request.r#type == CheckTxType::Recheck as i32;
        match self.check(&request.tx, recheck) {
            Ok(()) => ResponseCheckTx { code: 0, ..Default::default() },
            Err(e) => {
                debug!(code = e.code(), recheck, "check_tx rejected: {e:#}");
                self.shared.metrics.check_tx_rejected(e.code(), recheck);
                ResponseCheckTx {
                    code: e.code(),
                    log: e.to_string(),
                    codespace: TxError::CODESPACE.into(),
                    ..Default::default()
                }
            }
        }
    }

    fn prepare_proposal(&self, request: RequestPrepareProposal) -> ResponsePrepareProposal {
        let height = height_of(request.height);
        let results = self.simulate(height, time_of(request.time), &request.txs);
        let max = usize::try_from(request.max_tx_bytes).unwrap_or(usize::MAX);
        let mut total = 0usize;
        let mut txs = Vec::new();
        for (tx, result) in request.txs.into_iter().zip(results) {
            if result.is_err() || total + tx.len() > max {
                continue;
            }
            total += tx.len();
            txs.push(tx);
        }
        ResponsePrepareProposal { txs }
    }

    fn process_proposal(&self, request: RequestProcessProposal) -> ResponseProcessProposal {
        let height = height_of(request.height);
        let results = self.simulate(height, time_of(request.time), &request.txs);
        let status = match results.iter().position(Result::is_err) {
            None => ProposalStatus::Accept,
            Some(i) => {
                warn!(height, tx = i, "rejecting proposal with an invalid transaction");
                ProposalStatus::Reject
            }
        };
        ResponseProcessProposal { status: status as i32 }
    }

    fn finalize_block(&self, request: RequestFinalizeBlock) -> ResponseFinalizeBlock {
        let stopwatch = Stopwatch::start();
        let ctx = BlockCtx { height: height_of(request.height), time: time_of(request.time) };
        let mut consensus = self.consensus();
        let Some(machine) = consensus.machine.clone() else {
            panic!("FinalizeBlock before InitChain: the store holds no genesis");
        };
        let store = self.shared.store.read().unwrap_or_else(PoisonError::into_inner);
        let mut overlay = store.overlay().unwrap_or_else(|e| panic!("store unreadable: {e}"));
        if let Some(g) = consensus.genesis.take() {
            apply(&mut overlay, &g);
        }
        let mut tx_results = Vec::with_capacity(request.txs.len());
        for tx in machine.authenticate_block(&request.txs) {
            let result = overlay.transact(|child| machine.execute(child, &ctx, tx?));
            tx_results.push(match result {
                Ok(events) => {
                    ExecTxResult { code: 0, events: abci_events(events), ..Default::default() }
                }
                Err(e) => {
                    debug!(code = e.code(), "tx rejected: {e:#}");
                    ExecTxResult {
                        code: e.code(),
                        log: e.to_string(),
                        codespace: TxError::CODESPACE.into(),
                        ..Default::default()
                    }
                }
            });
        }
        let end = machine.end_block(&mut overlay, &ctx);
        // A roster change applies from the next block on: every node reloads the machine's
        // roster at the same point, and a restarted node loads it from the same state.
        if overlay.writes().change(lemal_contracts::keys::ROSTER).is_some() {
            let reloaded = Machine::load(&overlay).expect("the roster was just written");
            info!(height = ctx.height, "roster changed");
            consensus.machine = Some(Arc::new(reloaded));
        }
        let writes = overlay.into_write_set();
        let prepared = store
            .prepare(ctx.height, writes)
            .unwrap_or_else(|e| panic!("store cannot prepare block {}: {e}", ctx.height));
        let app_hash = prepared.app_hash();
        drop(store);
        consensus.pending = Some(prepared);
        consensus.last_time = ctx.time;
        info!(height = ctx.height, txs = request.txs.len(), app_hash = %hex::encode(app_hash), "finalized");
        let validator_updates: Vec<AbciValidatorUpdate> = end
            .validator_updates
            .iter()
            .map(|u| AbciValidatorUpdate {
                pub_key: Some(ProtoPublicKey { sum: Some(Sum::Ed25519(u.pub_key.to_vec())) }),
                power: i64::try_from(u.power).expect("powers are at most MAX_VN_POWER"),
            })
            .collect();
        for u in &end.validator_updates {
            info!(height = ctx.height, key = %hex::encode(u.pub_key), power = u.power, "validator update");
        }
        self.shared.metrics.finalize_block_took(stopwatch.seconds());
        ResponseFinalizeBlock {
            events: abci_events(end.events),
            tx_results,
            validator_updates,
            consensus_param_updates: None,
            app_hash: app_hash.to_vec().into(),
        }
    }

    fn commit(&self) -> ResponseCommit {
        let stopwatch = Stopwatch::start();
        let mut consensus = self.consensus();
        let prepared = consensus.pending.take().expect("Commit without a finalized block");
        let committed = {
            let mut store = self.shared.store.write().unwrap_or_else(PoisonError::into_inner);
            store.commit(prepared).unwrap_or_else(|e| panic!("store commit failed: {e}"))
        };
        drop(consensus);
        self.shared.metrics.commit_took(stopwatch.seconds());
        self.shared.metrics.block_committed(committed.height);
        if let Some(tx) =
            self.shared.committed_tx.lock().unwrap_or_else(PoisonError::into_inner).as_ref()
        {
            // The worker may have stopped; consensus does not depend on it.
            let _ =
                tx.send(CommittedBlock { height: committed.height, app_hash: committed.app_hash });
        }
        ResponseCommit { retain_height: 0 }
    }

    fn query(&self, request: RequestQuery) -> ResponseQuery {
        let store = self.shared.store.read().unwrap_or_else(PoisonError::into_inner);
        query::answer(&store, &request)
    }
}
