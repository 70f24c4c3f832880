//! What a cheater can no longer do: each test mounts one attack and expects the chain to refuse.

use lemal_contracts::ids::{EntityId, ProofKey, ProofKind};
use lemal_contracts::proofs::Ledger;
use lemal_contracts::state::BlockPayload;
use lemal_contracts::state::QueryRecord;
use lemal_contracts::tx::{NoiseParams, RegisterQuery, SubmitProof, Tx, TxBody};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

use crate::harness::*;

fn sign(net: &Net, signer: EntityId, body: TxBody, rng: &mut ChaCha20Rng) -> Vec<u8> {
    Tx::sign(CHAIN, signer, body, net.keys.signing_key(signer).unwrap(), rng).encode()
}

#[test]
fn a_computing_node_cannot_register_the_queriers_query_on_its_own_terms() {
    let mut net = Net::new(4, 3, 5);
    let mut rng = ChaCha20Rng::seed_from_u64(11);
    let plan = plan(&mut net, "SELECT sum(x) FROM y", 100, 400_000);
    let cheat = EntityId::cn(plan.registration.spec.cns[1]);
    let front_run = |net: &mut Net, rng: &mut ChaCha20Rng, change: &dyn Fn(&mut RegisterQuery)| {
        let mut r = plan.registration.clone();
        change(&mut r);
        let results = net.block(vec![sign(net, cheat, TxBody::RegisterQuery(Box::new(r)), rng)]);
        (results[0].code, results[0].log.clone())
    };
    // A computing node sees the querier's registration in the mempool and front-runs it with
    // the same id and querier signature, on its own terms: no noise, a lower threshold, more
    // time, fewer data providers. The querier signed none of these.
    type Change = Box<dyn Fn(&mut RegisterQuery)>;
    let changes: Vec<(&str, Change)> = vec![
        ("no noise", Box::new(|r| r.spec.noise = NoiseParams::NONE)),
        ("tiny noise", Box::new(|r| r.spec.noise.scale = 1)),
        ("threshold", Box::new(|r| r.threshold_ppm = 100_000)),
        ("proof deadline", Box::new(|r| r.proof_deadline += 100)),
        ("data providers", Box::new(|r| r.spec.dps.truncate(r.spec.cns.len()))),
    ];
    for (what, change) in changes {
        let (code, log) = front_run(&mut net, &mut rng, &*change);
        assert_eq!(code, 14, "{what}: {log}");
    }
    // Even re-signed by some key of its own, a threshold of 1 ppm is below the chain's minimum.
    let (code, log) = front_run(&mut net, &mut rng, &|r| r.threshold_ppm = 1);
    assert_eq!(code, 17, "{log}");
    // The querier's own registration still goes through, with its terms and its noise.
    let (code, log) = front_run(&mut net, &mut rng, &|_| ());
    assert_eq!(code, 0, "{log}");
    let q = plan.registration.query_id;
    let record: QueryRecord = net.get(&format!("/query/{q}")).unwrap();
    assert_eq!(record.registration.spec.noise, NoiseParams { scale: 100, rows: 4 });
    assert_eq!(record.registration.spec.noise_list(), vec![-139, -29, 29, 139]);
}

/// A signed aggregation by `cn` listing exactly `inputs`, with their honest sum.
fn aggregation_of(
    net: &Net,
    plan: &lemal_client::pipeline::QueryPlan,
    cn: u32,
    inputs: Vec<ProofKey>,
    rng: &mut ChaCha20Rng,
) -> Vec<u8> {
    let values: Vec<_> = inputs.iter().map(|k| net.proof(k).unwrap().outputs).collect();
    let sum = lemal_contracts::proofs::aggregation::aggregate(&values).unwrap();
    let body = SubmitProof {
        query_id: plan.registration.query_id,
        kind: ProofKind::Aggregation,
        index: 0,
        inputs,
        outputs: sum,
        proof: vec![1],
    };
    sign(net, EntityId::cn(cn), TxBody::SubmitProof(body), rng)
}

/// Registers the plan and submits the range proofs of every data provider but `silent`.
fn with_range_proofs(net: &mut Net, plan: &lemal_client::pipeline::QueryPlan, silent: &[u32]) {
    let mut rng = ChaCha20Rng::seed_from_u64(13);
    let reg = net.session(plan).register(&mut rng).unwrap();
    assert_all_ok(&net.block(vec![reg.encode()]));
    let mut txs = Vec::new();
    for &d in plan.registration.spec.dps.iter().filter(|d| !silent.contains(d)) {
        let values = dataset(d).local_values(&plan.query, &plan.bounds).unwrap();
        let tx = net.session(plan).range(EntityId::dp(d), &values, false, &mut rng).unwrap();
        txs.push(tx.encode());
    }
    assert_all_ok(&net.block(txs));
}

#[test]
fn an_aggregation_cannot_leave_out_an_input_that_is_on_the_ledger() {
    let mut net = Net::new(4, 3, 5);
    let mut rng = ChaCha20Rng::seed_from_u64(12);
    let plan = plan(&mut net, "SELECT sum(x) FROM y", 0, 400_000);
    let q = plan.registration.query_id;
    let spec = plan.registration.spec.clone();
    with_range_proofs(&mut net, &plan, &[]);
    // A computing node with two data providers sums only the first and drops the other.
    let cn = spec.cns[1];
    let allowed = spec.aggregation_inputs(q, cn);
    assert_eq!(allowed.len(), 2);
    let partial = aggregation_of(&net, &plan, cn, vec![allowed[0]], &mut rng);
    let results = net.block(vec![partial.clone()]);
    assert_eq!(results[0].code, 27, "{}", results[0].log);
    // Still refused after the DP deadline: the dropped input is on the ledger.
    for _ in 0..plan.registration.dp_deadline {
        net.block(Vec::new());
    }
    let results = net.block(vec![partial]);
    assert_eq!(results[0].code, 27, "{}", results[0].log);
    // The root cannot drop a whole subtree either, once the child's aggregation is in.
    let complete = aggregation_of(&net, &plan, cn, allowed, &mut rng);
    assert_all_ok(&net.block(vec![complete]));
    let root = spec.cns[0];
    let without_child: Vec<ProofKey> = spec
        .aggregation_inputs(q, root)
        .into_iter()
        .filter(|k| k.creator != EntityId::cn(cn) && net.proof(k).is_some())
        .collect();
    let results = net.block(vec![aggregation_of(&net, &plan, root, without_child, &mut rng)]);
    assert_eq!(results[0].code, 27, "{}", results[0].log);
}

#[test]
fn a_missing_data_provider_may_be_left_out_only_after_the_dp_deadline_and_is_named() {
    let mut net = Net::new(4, 3, 5);
    let mut rng = ChaCha20Rng::seed_from_u64(14);
    let plan = plan(&mut net, "SELECT sum(x) FROM y", 0, 400_000);
    let q = plan.registration.query_id;
    let spec = plan.registration.spec.clone();
    let cn = spec.cns[1];
    let allowed = spec.aggregation_inputs(q, cn);
    let silent = allowed[1].creator.index;
    with_range_proofs(&mut net, &plan, &[silent]);
    // Before the DP deadline the missing data provider may still arrive: no aggregation yet.
    let early = aggregation_of(&net, &plan, cn, vec![allowed[0]], &mut rng);
    let results = net.block(vec![early]);
    assert_eq!(results[0].code, 27, "{}", results[0].log);
    let record: lemal_contracts::state::QueryRecord = net.get(&format!("/query/{q}")).unwrap();
    net.until(10, |n| n.height > record.dp_deadline_height());
    let late = aggregation_of(&net, &plan, cn, vec![allowed[0]], &mut rng);
    assert_all_ok(&net.block(vec![late]));
    // The honest rest of the query runs; the skipblock names who the result covers.
    for c in [spec.cns[2], spec.cns[0]] {
        let tx = net.session(&plan).aggregation(EntityId::cn(c), &net, false, &mut rng).unwrap();
        assert_all_ok(&net.block(vec![tx.encode()]));
    }
    let mut txs = Vec::new();
    for &c in &spec.cns {
        let tx = net.session(&plan).keyswitch(EntityId::cn(c), &net, false, &mut rng).unwrap();
        txs.push(tx.encode());
    }
    assert_all_ok(&net.block(txs));
    net.until(20, |n| n.block_of(&q).is_some());
    let block = net.block_of(&q).unwrap();
    let BlockPayload::Query(p) = &block.payload else { panic!("not a query block") };
    let everyone_else: Vec<EntityId> =
        spec.dps.iter().filter(|&&d| d != silent).map(|&d| EntityId::dp(d)).collect();
    assert_eq!(p.covered, everyone_else);
    assert_eq!(p.uncovered, vec![EntityId::dp(silent)]);
}
