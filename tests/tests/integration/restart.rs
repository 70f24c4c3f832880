//! Durability: a node that stops mid-query reopens its store and replays what it missed.

use lemal_app::store::verify_proof;
use lemal_contracts::state::QueryStatus;
use tendermint_abci::Application;
use tendermint_proto::v0_38::abci::{RequestFinalizeBlock, RequestInfo};

use crate::harness::*;

#[test]
fn a_node_restarted_mid_query_replays_to_the_same_app_hash() {
    let mut net = Net::new(4, 3, 5);
    let plan = plan(&mut net, "SELECT avg(x) FROM y WHERE z < 321", 0, 400_000);
    let q = plan.registration.query_id;
    let mut rng = rand_chacha::ChaCha20Rng::from_seed([3; 32]);
    let reg = net.session(&plan).register(&mut rng).unwrap();
    assert_all_ok(&net.block(vec![reg.encode()]));
    let values = dataset(0).local_values(&plan.query, &plan.bounds).unwrap();
    let tx = net
        .session(&plan)
        .range(lemal_contracts::ids::EntityId::dp(0), &values, false, &mut rng)
        .unwrap();

    // vn-3 executes the next block but crashes before Commit, and misses two more.
    let node3 = net.nodes.remove(3);
    let next = Decided { height: net.height + 1, txs: vec![tx.encode()] };
    node3.app.finalize_block(RequestFinalizeBlock {
        txs: next.txs.iter().map(|t| t.clone().into()).collect(),
        height: next.height as i64,
        ..Default::default()
    });
    drop(node3);
    net.height += 1;
    net.apply(&next, 0..3);
    net.history.push(next);
    net.block(vec![]);
    net.block(vec![]);

    // Reopened from disk, it reports the last height it committed and replays the rest.
    let reopened = net.open_node(3);
    let info = reopened.app.info(RequestInfo::default());
    let committed = info.last_block_height as u64;
    assert_eq!(committed, net.height - 3);
    net.nodes.push(reopened);
    let missed: Vec<Decided> =
        net.history.iter().filter(|d| d.height > committed).cloned().collect();
    for d in &missed {
        net.apply(d, 3..4);
    }
    assert_eq!(net.app_hash(3), net.app_hash(0));

    // And it takes part in the rest of the query like the others.
    run_rest(&mut net, &plan);
    net.until(10, |n| n.block_of(&q).is_some());
    assert_eq!(net.app_hash(3), net.app_hash(0));
    assert!(matches!(net.progress(&q).status, QueryStatus::Finalized { .. }));
}

/// The remaining data providers, then every computing node's steps.
fn run_rest(net: &mut Net, plan: &lemal_client::pipeline::QueryPlan) {
    use lemal_contracts::ids::EntityId;
    let mut rng = rand_chacha::ChaCha20Rng::from_seed([4; 32]);
    let spec = plan.registration.spec.clone();
    let mut txs = Vec::new();
    for &d in &spec.dps[1..] {
        let values = dataset(d).local_values(&plan.query, &plan.bounds).unwrap();
        txs.push(
            net.session(plan).range(EntityId::dp(d), &values, false, &mut rng).unwrap().encode(),
        );
    }
    assert_all_ok(&net.block(txs));
    for &c in spec.cns.iter().rev() {
        let tx = net.session(plan).aggregation(EntityId::cn(c), &*net, false, &mut rng).unwrap();
        assert_all_ok(&net.block(vec![tx.encode()]));
    }
    let mut txs = Vec::new();
    for &c in &spec.cns {
        txs.push(
            net.session(plan).keyswitch(EntityId::cn(c), &*net, false, &mut rng).unwrap().encode(),
        );
    }
    assert_all_ok(&net.block(txs));
}

#[test]
fn query_answers_carry_ics23_proofs_against_the_app_hash() {
    let mut net = Net::new(4, 3, 5);
    let plan = plan(&mut net, "SELECT sum(x) FROM y", 0, 400_000);
    let q = plan.registration.query_id;
    let mut rng = rand_chacha::ChaCha20Rng::from_seed([5; 32]);
    let reg = net.session(&plan).register(&mut rng).unwrap();
    assert_all_ok(&net.block(vec![reg.encode()]));
    let root: [u8; 32] = net.app_hash(1).try_into().unwrap();

    // Membership: the registration, as node 1 serves it.
    let r = net.query(1, &format!("/query/{q}"), true);
    assert_eq!(r.code, 0, "{}", r.log);
    assert_eq!(r.height as u64, net.height);
    let proof = decode_proof(&r);
    assert!(verify_proof(&root, &r.key, Some(&r.value), &proof));
    let mut other = r.value.to_vec();
    other[3] ^= 1;
    assert!(!verify_proof(&root, &r.key, Some(&other), &proof), "a changed value must not verify");
    assert!(
        !verify_proof(&[7; 32], &r.key, Some(&r.value), &proof),
        "another root must not verify"
    );

    // Non-membership: a proof nobody submitted.
    let r = net.query(2, &format!("/proof/{q}/range/dp-4/0"), true);
    assert_eq!(r.code, 2);
    let proof = decode_proof(&r);
    assert!(verify_proof(&root, &r.key, None, &proof));
    assert!(!verify_proof(&root, &r.key, Some(b"anything"), &proof));

    // Genesis block 0 is provable too; bad paths and heights are refused with codes.
    let r = net.query(0, "/skipchain/index/0", true);
    assert_eq!(r.code, 0);
    assert!(verify_proof(&root, &r.key, Some(&r.value), &decode_proof(&r)));
    assert_eq!(net.query(0, "/nope", false).code, 1);
    assert_eq!(net.query(0, "/proof/zz/range/dp-0/0", false).code, 1);
    let r = net.nodes[0].app.query(tendermint_proto::v0_38::abci::RequestQuery {
        path: "/roster".into(),
        height: 1_000,
        ..Default::default()
    });
    assert_eq!(r.code, 3);
}

fn decode_proof(r: &tendermint_proto::v0_38::abci::ResponseQuery) -> ics23::CommitmentProof {
    let op = &r.proof_ops.as_ref().expect("a proof was asked for").ops[0];
    <ics23::CommitmentProof as prost::Message>::decode(op.data.as_slice()).unwrap()
}

use rand_core::SeedableRng;
