//! Hostile and heavy input, and failures: cheap checks come first, re-checks are cheap, list
//! answers are bounded, the worker re-broadcasts one signed bitmap and does not die quietly.

use std::sync::{Arc, Mutex};

use lemal_app::abci::CommittedBlock;
use lemal_app::query::code;
use lemal_app::worker::{wait, Broadcast, Worker, WorkerExit, REBROADCAST_BLOCKS};
use lemal_contracts::group::from_borsh;
use lemal_contracts::ids::EntityId;
use lemal_contracts::page::{Page, PAGE_ENTRIES};
use lemal_contracts::sig::Signature;
use lemal_contracts::state::{Params, ProofRecord, QueryStatus, SkipBlock};
use lemal_contracts::tx::{SubmitProof, Tx, TxBody};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use tendermint_abci::Application;
use tendermint_proto::v0_38::abci::{CheckTxType, RequestCheckTx};

use crate::harness::*;

fn check(net: &Net, tx: &[u8], kind: CheckTxType) -> u32 {
    let r =
        net.nodes[0].app.check_tx(RequestCheckTx { tx: tx.to_vec().into(), r#type: kind as i32 });
    r.code
}

/// A range-proof submission of `dp-0` whose first output point is replaced by bytes that are not
/// a point, signed over those bytes for `chain` (or with a zeroed signature when `sign` is false).
fn with_invalid_point(net: &Net, chain: &str, sign: bool) -> Vec<u8> {
    let mut rng = ChaCha20Rng::seed_from_u64(11);
    let dp = EntityId::dp(0);
    let ciphertext = lemal_contracts::elgamal::Ciphertext::encrypt_i64(
        net.roster.cns[0].share.point(),
        1,
        &mut rng,
    )
    .0;
    let body = TxBody::SubmitProof(SubmitProof {
        query_id: lemal_contracts::ids::QueryId([3; 16]),
        kind: lemal_contracts::ids::ProofKind::Range,
        index: 0,
        inputs: Vec::new(),
        outputs: vec![ciphertext],
        proof: vec![1],
    });
    let mut tx = Tx::sign(chain, dp, body, net.keys.signing_key(dp).unwrap(), &mut rng);
    if !sign {
        tx.signature = Signature([0; 64]);
    }
    let mut bytes = tx.encode();
    let point = ciphertext.c1.compress().to_bytes();
    let at = bytes.windows(32).position(|w| w == point).unwrap();
    bytes[at..at + 32].copy_from_slice(&[0xff; 32]);
    if sign {
        // Re-sign the tampered bytes, so that only the point is wrong.
        let key = net.keys.signing_key(dp).unwrap();
        let end = bytes.len() - 64;
        let kind = lemal_contracts::sig::MessageKind::SubmitProof;
        let signature = key.sign(kind, &bytes[..end]);
        bytes[end..].copy_from_slice(&signature.0);
    }
    bytes
}

#[test]
fn a_transaction_for_another_chain_is_refused_before_its_body_is_decoded() {
    let mut net = Net::new(4, 1, 1);
    // Its body holds an invalid point: decoding first would answer "malformed" (1); the chain id
    // is looked at first, so it is "wrong chain" (3), in CheckTx and in a block alike.
    let foreign = with_invalid_point(&net, "another-chain", true);
    assert_eq!(check(&net, &foreign, CheckTxType::New), 3);
    assert_eq!(net.block(vec![foreign])[0].code, 3);
}

#[test]
fn a_transaction_with_a_bad_signature_is_refused_before_its_body_is_decoded() {
    let mut net = Net::new(4, 1, 1);
    let unsigned = with_invalid_point(&net, CHAIN, false);
    assert_eq!(check(&net, &unsigned, CheckTxType::New), 5);
    assert_eq!(net.block(vec![unsigned])[0].code, 5);
    // Correctly signed, the same body is refused for what it is: malformed.
    let signed = with_invalid_point(&net, CHAIN, true);
    assert_eq!(check(&net, &signed, CheckTxType::New), 1);
    assert_eq!(net.block(vec![signed])[0].code, 1);
}

#[test]
fn a_recheck_repeats_only_the_checks_against_state() {
    let mut net = Net::new(4, 3, 5);
    let mut rng = ChaCha20Rng::seed_from_u64(12);
    let plan = plan(&mut net, "SELECT sum(x) FROM y", 0, 400_000);
    let reg = net.session(&plan).register(&mut rng).unwrap().encode();
    assert_all_ok(&net.block(vec![reg]));
    let values = dataset(0).local_values(&plan.query, &plan.bounds).unwrap();
    let tx = net.session(&plan).range(EntityId::dp(0), &values, false, &mut rng).unwrap().encode();
    let app = &net.nodes[0].app;
    let before = app.stateless_checks();

    assert_eq!(check(&net, &tx, CheckTxType::New), 0);
    assert_eq!(app.stateless_checks(), before + 1, "a new transaction is decoded and verified");
    assert_eq!(check(&net, &tx, CheckTxType::Recheck), 0);
    assert_eq!(check(&net, &tx, CheckTxType::Recheck), 0);
    assert_eq!(app.stateless_checks(), before + 1, "re-checks decode and verify nothing again");

    // Once the proof is on the ledger, the re-check finds it a duplicate, from state alone.
    assert_all_ok(&net.block(vec![tx.clone()]));
    assert_eq!(check(&net, &tx, CheckTxType::Recheck), 22);
    assert_eq!(net.nodes[0].app.stateless_checks(), before + 1);
    // A failed transaction left the cache: checking it again decodes it again.
    assert_eq!(check(&net, &tx, CheckTxType::Recheck), 22);
    assert_eq!(net.nodes[0].app.stateless_checks(), before + 2);
}

#[test]
fn list_paths_answer_bounded_pages_that_together_hold_every_entry() {
    let dps = PAGE_ENTRIES + 6;
    let mut net = Net::new(4, 1, dps);
    let mut rng = ChaCha20Rng::seed_from_u64(13);
    let plan = plan(&mut net, "SELECT sum(x) FROM y", 0, 400_000);
    let q = plan.registration.query_id;
    let reg = net.session(&plan).register(&mut rng).unwrap().encode();
    assert_all_ok(&net.block(vec![reg]));
    let txs = (0..dps as u32)
        .map(|d| {
            let values = dataset(d).local_values(&plan.query, &plan.bounds).unwrap();
            net.session(&plan).range(EntityId::dp(d), &values, false, &mut rng).unwrap().encode()
        })
        .collect();
    assert_all_ok(&net.block(txs));

    let first: Page<ProofRecord> = net.get(&format!("/proofs/{q}")).unwrap();
    assert_eq!(first.items.len(), PAGE_ENTRIES, "one page holds at most PAGE_ENTRIES");
    assert!(first.more);
    let from = first.next(0).unwrap();
    let second: Page<ProofRecord> = net.get(&format!("/proofs/{q}/from/{from}")).unwrap();
    assert_eq!(second.items.len(), 6);
    assert!(!second.more);
    let keys: Vec<_> = first.items.iter().chain(&second.items).map(|r| r.key).collect();
    assert!(keys.windows(2).all(|w| w[0] < w[1]), "pages continue in key order, no repeats");
    assert_eq!(keys.len(), dps);
    let past: Page<ProofRecord> = net.get(&format!("/proofs/{q}/from/{}", dps + 5)).unwrap();
    assert_eq!(past, Page { items: vec![], more: false });
    assert_eq!(net.query(0, &format!("/proofs/{q}/from/x"), false).code, code::BAD_PATH);
}

#[test]
fn a_proof_asked_of_a_list_path_is_refused_with_its_own_code() {
    let net = Net::new(4, 1, 1);
    let q = lemal_contracts::ids::QueryId([5; 16]);
    for path in [format!("/proofs/{q}"), format!("/query/{q}/bitmaps/from/0")] {
        let r = net.query(0, &path, true);
        assert_eq!(r.code, code::NOT_PROVABLE, "{path}: {}", r.log);
        assert!(r.proof_ops.is_none());
        let r = net.query(0, &path, false);
        assert_eq!(r.code, 0);
        let page: Page<ProofRecord> = from_borsh(&r.value).unwrap();
        assert!(page.items.is_empty() && !page.more);
    }
}

/// Records what a worker broadcasts.
#[derive(Clone, Default)]
struct Recorder(Arc<Mutex<Vec<Vec<u8>>>>);

impl Broadcast for Recorder {
    fn broadcast(&mut self, tx: Vec<u8>) -> Result<(), String> {
        self.0.lock().unwrap().push(tx);
        Ok(())
    }
}

/// A network whose query `plan` is in its commit phase, with no worker running.
fn committing(net: &mut Net) -> lemal_client::pipeline::QueryPlan {
    for node in &mut net.nodes {
        node.worker = None;
    }
    let mut plan = plan(net, "SELECT sum(x) FROM y", 0, 1_000_000);
    plan.registration.commit_window = 50;
    // The querier signs the terms it asks for.
    plan.resign(CHAIN, &mut ChaCha20Rng::seed_from_u64(11));
    let q = plan.registration.query_id;
    run_query(net, &plan, Script::default());
    net.until(3, |n| matches!(n.progress(&q).status, QueryStatus::Committing { .. }));
    plan
}

#[test]
fn a_worker_rebroadcasts_the_same_signed_bitmap_until_it_is_on_the_ledger() {
    let mut net = Net::new(4, 2, 3);
    let plan = committing(&mut net);
    let q = plan.registration.query_id;
    let sent = Recorder::default();
    let store = net.nodes[0].app.store();
    let mut worker = Worker::new(EntityId::vn(0), net.keys.vns[0].clone(), store, sent.clone(), 1);
    assert_eq!(worker.on_commit(net.height), vec![q]);
    for _ in 0..REBROADCAST_BLOCKS {
        net.block(Vec::new());
    }
    assert_eq!(worker.on_commit(net.height), vec![q], "re-broadcast after REBROADCAST_BLOCKS");
    let copies = sent.0.lock().unwrap().clone();
    assert_eq!(copies.len(), 2);
    assert_eq!(copies[0], copies[1], "the same bytes, so one hash and one mempool entry");
    // Once on the ledger, it is not sent again.
    assert_all_ok(&net.block(vec![copies[0].clone()]));
    for _ in 0..REBROADCAST_BLOCKS {
        net.block(Vec::new());
    }
    assert!(worker.on_commit(net.height).is_empty());
}

/// Panics when asked to broadcast.
struct Exploding;

impl Broadcast for Exploding {
    fn broadcast(&mut self, _tx: Vec<u8>) -> Result<(), String> {
        panic!("broadcast exploded");
    }
}

#[test]
fn a_dead_worker_thread_is_reported_with_its_reason() {
    let mut net = Net::new(4, 2, 3);
    committing(&mut net);
    let store = net.nodes[0].app.store();
    let worker = Worker::new(EntityId::vn(0), net.keys.vns[0].clone(), store, Exploding, 1);
    let (tx, rx) = std::sync::mpsc::channel();
    let handle = worker.spawn(rx);
    tx.send(CommittedBlock { height: net.height, app_hash: [0; 32] }).unwrap();
    assert_eq!(wait(handle), WorkerExit::Panicked("broadcast exploded".into()));

    // A worker whose feed closes says so too.
    let store = net.nodes[0].app.store();
    let worker =
        Worker::new(EntityId::vn(1), net.keys.vns[1].clone(), store, Recorder::default(), 1);
    let (tx, rx) = std::sync::mpsc::channel::<CommittedBlock>();
    let handle = worker.spawn(rx);
    drop(tx);
    assert_eq!(wait(handle), WorkerExit::Stopped);
}

#[test]
fn a_computing_node_may_hold_only_the_genesis_maximum_of_open_queries() {
    let mut net = Net::new(4, 1, 1);
    let mut rng = ChaCha20Rng::seed_from_u64(14);
    let max = Params::default().max_open_queries_per_cn as usize;
    let registrations: Vec<Vec<u8>> = (0..=max)
        .map(|_| {
            let plan = plan(&mut net, "SELECT sum(x) FROM y", 0, 400_000);
            net.session(&plan).register(&mut rng).unwrap().encode()
        })
        .collect();
    let results = net.block(registrations);
    assert!(results[..max].iter().all(|r| r.code == 0));
    assert_eq!(results[max].code, 16, "{}", results[max].log);
    // Once its queries are finalized (deadline 12 blocks, window 4), it may register again.
    net.until(20, |n| {
        n.get::<SkipBlock>("/skipchain/latest").is_some_and(|b| b.index as usize >= max)
    });
    let plan = plan(&mut net, "SELECT sum(x) FROM y", 0, 400_000);
    let again = net.session(&plan).register(&mut rng).unwrap().encode();
    assert_all_ok(&net.block(vec![again]));
}
