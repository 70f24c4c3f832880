//! The harness: a network of in-process app instances.

use std::sync::{Arc, Mutex, RwLock};

use lemal_app::abci::LemalApp;
use lemal_app::store::Store;
use lemal_app::worker::{Broadcast, Worker};
use lemal_client::data::{DataBounds, Dataset};
use lemal_client::keyring::Keyring;
use lemal_client::pipeline::{self, PlanOptions, QueryPlan, Session};
use lemal_client::sql;
use lemal_contracts::elgamal::DecryptionTable;
use lemal_contracts::group::from_borsh;
use lemal_contracts::ids::{EntityId, ProofKey, QueryId};
use lemal_contracts::proofs::Ledger;
use lemal_contracts::state::{Params, ProofRecord, QueryProgress, Roster, SkipBlock};
use lemal_contracts::tx::Tx;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use sha2::{Digest, Sha256};
use tendermint_abci::Application;
use tendermint_proto::google::protobuf::Timestamp;
use tendermint_proto::v0_38::abci::{
    response_process_proposal::ProposalStatus, ExecTxResult, RequestFinalizeBlock, RequestInfo,
    RequestInitChain, RequestProcessProposal, RequestQuery, ResponseQuery, ValidatorUpdate,
};
use tendermint_proto::v0_38::crypto::{public_key::Sum, PublicKey};

pub const CHAIN: &str = "lemal-inprocess";

/// Collects a worker's broadcasts into the shared mempool.
#[derive(Clone, Default)]
pub struct Mempool(pub Arc<Mutex<Vec<Vec<u8>>>>);

impl Broadcast for Mempool {
    fn broadcast(&mut self, tx: Vec<u8>) -> Result<(), String> {
        self.0.lock().unwrap().push(tx);
        Ok(())
    }
}

pub struct Node {
    pub app: LemalApp,
    pub worker: Option<Worker<Mempool>>,
}

/// One block as the network decided it.
#[derive(Clone)]
pub struct Decided {
    pub height: u64,
    pub txs: Vec<Vec<u8>>,
}

pub struct Net {
    pub dir: tempfile::TempDir,
    pub nodes: Vec<Node>,
    pub keys: Keyring,
    pub roster: Roster,
    pub height: u64,
    pub mempool: Mempool,
    pub history: Vec<Decided>,
    pub init: RequestInitChain,
    pub rng: ChaCha20Rng,
    /// The validator updates of every block that returned some, by height (all nodes agree).
    pub validator_updates: Vec<(u64, Vec<ValidatorUpdate>)>,
    /// The validators' ed25519 keys, by verifying node index.
    pub validator_keys: Vec<[u8; 32]>,
}

fn time(height: u64) -> Timestamp {
    Timestamp { seconds: 1_700_000_000 + height as i64, nanos: 0 }
}

impl Net {
    /// A network of `vns` verifying nodes with `cns` computing nodes and `dps` data providers.
    pub fn new(vns: usize, cns: usize, dps: usize) -> Net {
        Net::with_params(vns, cns, dps, Params::default())
    }

    /// The same, with chain parameters of its own.
    pub fn with_params(vns: usize, cns: usize, dps: usize, params: Params) -> Net {
        let mut rng = ChaCha20Rng::seed_from_u64(42);
        let keys = Keyring::generate(vns, cns, dps, &mut rng);
        let validator_keys: Vec<[u8; 32]> = (0..vns).map(|i| [i as u8 + 1; 32]).collect();
        let addresses: Vec<[u8; 20]> =
            validator_keys.iter().map(|k| Sha256::digest(k)[..20].try_into().unwrap()).collect();
        let genesis = keys.genesis(params, &addresses, &mut rng);
        let (_, roster) = genesis.clone().into_typed().unwrap();
        let init = RequestInitChain {
            time: Some(time(0)),
            chain_id: CHAIN.into(),
            consensus_params: None,
            validators: validator_keys
                .iter()
                .map(|k| ValidatorUpdate {
                    pub_key: Some(PublicKey { sum: Some(Sum::Ed25519(k.to_vec())) }),
                    power: 10,
                })
                .collect(),
            app_state_bytes: serde_json::to_vec(&genesis).unwrap().into(),
            initial_height: 1,
        };
        let dir = tempfile::tempdir().unwrap();
        let mempool = Mempool::default();
        let mut net = Net {
            dir,
            nodes: Vec::new(),
            keys,
            roster,
            height: 0,
            mempool,
            history: Vec::new(),
            init,
            rng,
            validator_updates: Vec::new(),
            validator_keys,
        };
        for i in 0..vns {
            let node = net.open_node(i);
            node.app.init_chain(net.init.clone());
            net.nodes.push(node);
        }
        // Genesis becomes durable with the first block.
        net.block(Vec::new());
        net
    }

    /// Open node `i`'s app over its store on disk, with its worker.
    pub fn open_node(&self, i: usize) -> Node {
        let path = self.dir.path().join(format!("vn-{i}.redb"));
        let store = Arc::new(RwLock::new(Store::open(&path).unwrap()));
        let app = LemalApp::new(store.clone());
        let worker = Worker::new(
            EntityId::vn(i as u32),
            self.keys.vns[i].clone(),
            store,
            self.mempool.clone(),
            1,
        );
        Node { app, worker: Some(worker) }
    }

    /// Decide a block holding `txs` followed by everything in the mempool, run it on every
    /// node, check they agree, then let every worker react. Returns the tx results.
    pub fn block(&mut self, mut txs: Vec<Vec<u8>>) -> Vec<ExecTxResult> {
        txs.extend(std::mem::take(&mut *self.mempool.0.lock().unwrap()));
        self.height += 1;
        let decided = Decided { height: self.height, txs };
        let results = self.apply(&decided, 0..self.nodes.len());
        self.history.push(decided);
        self.run_workers();
        results
    }

    /// Run a decided block on the given nodes; all must accept the proposal, agree on results
    /// and app hash.
    pub fn apply(&mut self, d: &Decided, nodes: std::ops::Range<usize>) -> Vec<ExecTxResult> {
        let txs: Vec<prost::bytes::Bytes> = d.txs.iter().map(|t| t.clone().into()).collect();
        let mut outcome: Option<(Vec<ExecTxResult>, Vec<u8>)> = None;
        let mut updates: Option<Vec<ValidatorUpdate>> = None;
        for i in nodes {
            let app = &self.nodes[i].app;
            let process = app.process_proposal(RequestProcessProposal {
                txs: txs.clone(),
                height: d.height as i64,
                time: Some(time(d.height)),
                ..Default::default()
            });
            let accepted = process.status == ProposalStatus::Accept as i32;
            let response = app.finalize_block(RequestFinalizeBlock {
                txs: txs.clone(),
                height: d.height as i64,
                time: Some(time(d.height)),
                ..Default::default()
            });
            app.commit();
            if let Some(first) = &updates {
                assert_eq!(
                    first, &response.validator_updates,
                    "validator updates of vn-{i} differ at height {}",
                    d.height
                );
            }
            updates = Some(response.validator_updates);
            let this = (response.tx_results, response.app_hash.to_vec());
            if let Some(first) = &outcome {
                assert_eq!(first.1, this.1, "app hash of vn-{i} differs at height {}", d.height);
                assert_eq!(first.0, this.0, "tx results of vn-{i} differ at height {}", d.height);
            }
            // ProcessProposal accepts exactly the blocks whose every transaction executes.
            assert_eq!(
                accepted,
                this.0.iter().all(|r| r.code == 0),
                "proposal verdict at {}",
                d.height
            );
            outcome = Some(this);
        }
        if let Some(u) = updates.filter(|u| !u.is_empty()) {
            self.validator_updates.push((d.height, u));
        }
        outcome.map(|o| o.0).unwrap_or_default()
    }

    pub fn run_workers(&mut self) {
        for node in &mut self.nodes {
            if let Some(w) = node.worker.as_mut() {
                w.on_commit(self.height);
            }
        }
    }

    /// Blocks until `done` holds, at most `max` blocks.
    pub fn until(&mut self, max: usize, mut done: impl FnMut(&Net) -> bool) {
        for _ in 0..max {
            if done(self) {
                return;
            }
            self.block(Vec::new());
        }
        assert!(done(self), "condition not reached within {max} blocks");
    }

    pub fn app_hash(&self, i: usize) -> Vec<u8> {
        self.nodes[i].app.info(RequestInfo::default()).last_block_app_hash.to_vec()
    }

    pub fn query(&self, i: usize, path: &str, prove: bool) -> ResponseQuery {
        self.nodes[i].app.query(RequestQuery { path: path.into(), prove, ..Default::default() })
    }

    pub fn get<T: borsh::BorshDeserialize>(&self, path: &str) -> Option<T> {
        let r = self.query(0, path, false);
        (r.code == 0).then(|| from_borsh(&r.value).unwrap())
    }

    pub fn block_of(&self, q: &QueryId) -> Option<SkipBlock> {
        self.get(&format!("/skipchain/query/{q}"))
    }

    pub fn progress(&self, q: &QueryId) -> QueryProgress {
        self.get(&format!("/query/{q}/progress")).unwrap()
    }

    pub fn session<'a>(&'a self, plan: &'a QueryPlan) -> Session<'a> {
        Session {
            chain_id: CHAIN,
            keys: &self.keys,
            roster: &self.roster,
            registration: &plan.registration,
        }
    }
}

/// Ledger lookups through node 0's committed state.
impl Ledger for Net {
    fn proof(&self, key: &ProofKey) -> Option<ProofRecord> {
        self.get(&format!("/proof/{}/{}/{}/{}", key.query, key.kind, key.creator, key.index))
    }
}

pub fn bounds() -> DataBounds {
    DataBounds { min: 0, max: 1000, rows: 20 }
}

/// A plan of `sql` over every DP and CN of the net.
pub fn plan(net: &mut Net, sql: &str, noise: u32, threshold_ppm: u32) -> QueryPlan {
    let opts = PlanOptions {
        dps: (0..net.keys.dps.len() as u32).collect(),
        cns: (0..net.keys.cns.len() as u32).rev().collect(),
        bounds: bounds(),
        noise,
        noise_rows: 4,
        threshold_ppm,
        dp_deadline: 4,
        proof_deadline: 12,
        commit_window: 4,
    };
    pipeline::plan(CHAIN, sql::parse(sql).unwrap(), &opts, &mut net.rng)
}

pub fn dataset(dp: u32) -> Dataset {
    Dataset::synthetic(1000 + u64::from(dp), "x", "z", bounds().rows, &bounds())
}

pub fn encode(tx: Tx) -> Vec<u8> {
    tx.encode()
}

/// What the parties do, and which one cheats.
#[derive(Default, Clone, Copy)]
pub struct Script {
    pub cheat: Option<pipeline::Cheat>,
    /// A data provider that never submits.
    pub silent_dp: Option<u32>,
}

/// Run the whole query: registration, range proofs, aggregations children first, shuffles in
/// order, key switches; one block per step. Returns the expected plaintext totals.
pub fn run_query(net: &mut Net, plan: &QueryPlan, script: Script) -> Vec<i64> {
    let spec = plan.registration.spec.clone();
    let q = plan.registration.query_id;
    let mut rng = ChaCha20Rng::seed_from_u64(7);
    let cheats =
        |who: EntityId, kind| script.cheat.is_some_and(|c| c.entity == who && c.kind == kind);
    let reg = net.session(plan).register(&mut rng).unwrap();
    assert_all_ok(&net.block(vec![encode(reg)]));
    let mut totals = vec![0i64; spec.width()];
    let mut txs = Vec::new();
    for &d in &spec.dps {
        if script.silent_dp == Some(d) {
            continue;
        }
        let values = dataset(d).local_values(&plan.query, &plan.bounds).unwrap();
        for (t, v) in totals.iter_mut().zip(&values) {
            *t += v;
        }
        let dp = EntityId::dp(d);
        let tx = net
            .session(plan)
            .range(dp, &values, cheats(dp, lemal_contracts::ids::ProofKind::Range), &mut rng)
            .unwrap();
        txs.push(encode(tx));
    }
    assert_all_ok(&net.block(txs));
    if script.silent_dp.is_some() {
        // An aggregation may leave out the silent data provider only after the DP deadline.
        for _ in 0..plan.registration.dp_deadline {
            net.block(Vec::new());
        }
    }
    for &c in spec.cns.iter().rev() {
        let cn = EntityId::cn(c);
        let tx = net
            .session(plan)
            .aggregation(
                cn,
                &*net,
                cheats(cn, lemal_contracts::ids::ProofKind::Aggregation),
                &mut rng,
            )
            .unwrap();
        assert_all_ok(&net.block(vec![encode(tx)]));
    }
    if spec.has_noise() {
        for &c in &spec.cns {
            let cn = EntityId::cn(c);
            let tx = net
                .session(plan)
                .shuffle(cn, &*net, cheats(cn, lemal_contracts::ids::ProofKind::Shuffle), &mut rng)
                .unwrap();
            assert_all_ok(&net.block(vec![encode(tx)]));
        }
    }
    let mut txs = Vec::new();
    for &c in &spec.cns {
        let cn = EntityId::cn(c);
        let tx = net
            .session(plan)
            .keyswitch(cn, &*net, cheats(cn, lemal_contracts::ids::ProofKind::KeySwitch), &mut rng)
            .unwrap();
        txs.push(encode(tx));
    }
    assert_all_ok(&net.block(txs));
    let _ = q;
    totals
}

pub fn assert_all_ok(results: &[ExecTxResult]) {
    for r in results {
        assert_eq!(r.code, 0, "transaction rejected: {}", r.log);
    }
}

pub fn decrypt(plan: &QueryPlan, block: &SkipBlock) -> Vec<i64> {
    let lemal_contracts::state::BlockPayload::Query(p) = &block.payload else {
        panic!("not a query block")
    };
    pipeline::decrypt(plan, &p.result, &DecryptionTable::with_bounds(24, 12)).unwrap()
}
