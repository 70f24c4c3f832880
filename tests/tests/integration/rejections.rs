//! Every rejection path of the state machine, with its stable code, and state left unchanged.

use lemal_client::pipeline::QueryPlan;
use lemal_contracts::ids::{EntityId, ProofKey, ProofKind, QueryId, Verdict};
use lemal_contracts::sampling;
use lemal_contracts::sig::SigningKey;
use lemal_contracts::state::QueryStatus;
use lemal_contracts::tx::{CommitBitmap, NoiseParams, SubmitProof, Tx, TxBody};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

use crate::harness::*;

/// Submit `tx` alone in a block; assert its code, and that the app hash did not move.
fn rejected(tx: Vec<u8>, code: u32, net: &mut Net) {
    let before = net.app_hash(0);
    let results = net.block(vec![tx]);
    assert_eq!(
        results[0].code, code,
        "expected code {code}, got {}: {}",
        results[0].code, results[0].log
    );
    assert!(!results[0].log.is_empty(), "a rejection says why");
    assert_eq!(results[0].codespace, "lemal");
    assert_eq!(net.app_hash(0), before, "a rejected transaction changed state");
}

fn resign(net: &Net, signer: EntityId, body: TxBody, rng: &mut ChaCha20Rng) -> Vec<u8> {
    let key = net.keys.signing_key(signer).unwrap();
    Tx::sign(CHAIN, signer, body, key, rng).encode()
}

fn submit_body(tx: &[u8]) -> SubmitProof {
    match Tx::decode(tx).unwrap().body {
        TxBody::SubmitProof(p) => p,
        _ => panic!("not a submission"),
    }
}

fn registered(net: &mut Net, rng: &mut ChaCha20Rng, deadline: u32) -> QueryPlan {
    let mut plan = plan(net, "SELECT sum(x) FROM y", 0, 400_000);
    plan.registration.proof_deadline = deadline;
    plan.registration.dp_deadline = deadline - 1;
    plan.resign(CHAIN, rng);
    let reg = net.session(&plan).register(rng).unwrap();
    assert_all_ok(&net.block(vec![reg.encode()]));
    plan
}

#[test]
fn malformed_unsigned_and_foreign_transactions_are_rejected_with_their_codes() {
    let mut net = Net::new(4, 3, 5);
    let mut rng = ChaCha20Rng::seed_from_u64(1);
    let plan = plan(&mut net, "SELECT sum(x) FROM y", 0, 400_000);
    let good = net.session(&plan).register(&mut rng).unwrap();

    rejected(vec![0xde, 0xad], 1, &mut net);
    rejected(vec![0u8; 9 << 20], 2, &mut net);
    // A trailing byte moves the signature: the signature check, which runs before the body is
    // decoded, refuses it.
    let mut bytes = good.encode();
    bytes.push(0);
    rejected(bytes, 5, &mut net);

    let foreign = Tx::sign(
        "other-chain",
        good.signer,
        good.body.clone(),
        net.keys.signing_key(good.signer).unwrap(),
        &mut rng,
    );
    rejected(foreign.encode(), 3, &mut net);

    let stranger = Tx::sign(
        CHAIN,
        EntityId::cn(77),
        good.body.clone(),
        &SigningKey::random(&mut rng),
        &mut rng,
    );
    rejected(stranger.encode(), 4, &mut net);

    let mut forged = good.clone();
    forged.signature.0[5] ^= 1;
    rejected(forged.encode(), 5, &mut net);

    let impostor =
        Tx::sign(CHAIN, good.signer, good.body.clone(), &net.keys.cns[1].signing, &mut rng);
    rejected(impostor.encode(), 5, &mut net);

    // The genuine one is accepted once; a replay is refused.
    assert_all_ok(&net.block(vec![good.encode()]));
    rejected(good.encode(), 10, &mut net);
}

#[test]
fn registrations_that_break_the_rules_are_rejected() {
    let mut net = Net::new(4, 3, 5);
    let mut rng = ChaCha20Rng::seed_from_u64(2);
    let plan = plan(&mut net, "SELECT sum(x) FROM y", 0, 400_000);
    let signer = EntityId::cn(plan.registration.spec.cns[0]);

    let mut r = plan.registration.clone();
    r.spec.cns = vec![0, 1];
    let outsider = EntityId::cn(2);
    rejected(resign(&net, outsider, TxBody::RegisterQuery(Box::new(r)), &mut rng), 12, &mut net);

    let mut r = plan.registration.clone();
    r.spec.dps.push(99);
    rejected(resign(&net, signer, TxBody::RegisterQuery(Box::new(r)), &mut rng), 13, &mut net);

    let mut r = plan.registration.clone();
    r.query_id = QueryId([0xee; 16]); // the querier signed the planned id
    rejected(resign(&net, signer, TxBody::RegisterQuery(Box::new(r)), &mut rng), 14, &mut net);

    let mut r = plan.registration.clone();
    r.proof_deadline = 1_000_000;
    rejected(resign(&net, signer, TxBody::RegisterQuery(Box::new(r)), &mut rng), 15, &mut net);

    let mut r = plan.registration.clone();
    r.threshold_ppm = 0;
    rejected(resign(&net, signer, TxBody::RegisterQuery(Box::new(r)), &mut rng), 1, &mut net);

    // Terms the querier did sign, but the chain's genesis bounds refuse.
    let amended = |net: &Net, rng: &mut ChaCha20Rng, change: &dyn Fn(&mut QueryPlan)| {
        let mut p = plan.clone();
        change(&mut p);
        p.resign(CHAIN, rng);
        resign(net, signer, TxBody::RegisterQuery(Box::new(p.registration)), rng)
    };
    let low = amended(&net, &mut rng, &|p| p.registration.threshold_ppm = 99_999);
    rejected(low, 17, &mut net);
    let rows = amended(&net, &mut rng, &|p| {
        p.registration.spec.noise = NoiseParams { scale: 10, rows: 1025 };
    });
    rejected(rows, 15, &mut net);
    let late =
        amended(&net, &mut rng, &|p| p.registration.dp_deadline = p.registration.proof_deadline);
    rejected(late, 1, &mut net);
}

#[test]
fn proof_submissions_that_break_the_rules_are_rejected() {
    let mut net = Net::new(4, 3, 5);
    let mut rng = ChaCha20Rng::seed_from_u64(3);
    let plan = registered(&mut net, &mut rng, 30);
    let spec = plan.registration.spec.clone();
    let values = dataset(0).local_values(&plan.query, &plan.bounds).unwrap();
    let dp0 = net.session(&plan).range(EntityId::dp(0), &values, false, &mut rng).unwrap().encode();

    // Unknown query.
    let mut p = submit_body(&dp0);
    p.query_id = QueryId([9; 16]);
    rejected(resign(&net, EntityId::dp(0), TxBody::SubmitProof(p), &mut rng), 11, &mut net);
    // Unexpected: index 1, or a roster DP outside the query.
    let mut p = submit_body(&dp0);
    p.index = 1;
    rejected(resign(&net, EntityId::dp(0), TxBody::SubmitProof(p), &mut rng), 21, &mut net);
    // Wrong output count.
    let mut p = submit_body(&dp0);
    p.outputs.push(p.outputs[0]);
    rejected(resign(&net, EntityId::dp(0), TxBody::SubmitProof(p), &mut rng), 23, &mut net);
    // An aggregation whose input is not on the ledger yet, or not its own.
    let root = spec.cns[0];
    let own = spec.aggregation_inputs(plan.registration.query_id, root);
    let foreign: ProofKey = spec
        .expected_proofs(plan.registration.query_id)
        .into_iter()
        .find(|k| k.kind == ProofKind::Range && !own.contains(k))
        .unwrap();
    let agg = |inputs: Vec<ProofKey>| SubmitProof {
        query_id: plan.registration.query_id,
        kind: ProofKind::Aggregation,
        index: 0,
        inputs,
        outputs: submit_body(&dp0).outputs,
        proof: vec![1],
    };
    rejected(
        resign(&net, EntityId::cn(root), TxBody::SubmitProof(agg(vec![own[0]])), &mut rng),
        24,
        &mut net,
    );
    rejected(
        resign(&net, EntityId::cn(root), TxBody::SubmitProof(agg(vec![foreign])), &mut rng),
        25,
        &mut net,
    );
    // A key switch before the root aggregation exists.
    let ks = SubmitProof {
        kind: ProofKind::KeySwitch,
        inputs: vec![],
        proof: vec![0; spec.proof_len(ProofKind::KeySwitch)],
        ..agg(vec![])
    };
    rejected(resign(&net, EntityId::cn(root), TxBody::SubmitProof(ks), &mut rng), 24, &mut net);
    // A bitmap while proofs are still being collected.
    let (_, vrf) = sampling::evaluate(
        &net.keys.vns[0],
        CHAIN,
        &plan.registration.query_id,
        EntityId::vn(0),
        &mut rng,
    );
    let early = CommitBitmap {
        query_id: plan.registration.query_id,
        vrf,
        proofs_digest: [0; 32],
        verdicts: vec![],
    };
    rejected(resign(&net, EntityId::vn(0), TxBody::CommitBitmap(early), &mut rng), 30, &mut net);

    // Accepted once, then a duplicate.
    assert_all_ok(&net.block(vec![dp0.clone()]));
    let again =
        net.session(&plan).range(EntityId::dp(0), &values, false, &mut rng).unwrap().encode();
    rejected(again, 22, &mut net);
}

#[test]
fn proofs_not_of_their_kinds_exact_length_are_refused() {
    let mut net = Net::new(4, 3, 5);
    let mut rng = ChaCha20Rng::seed_from_u64(6);
    let plan = registered(&mut net, &mut rng, 30);
    let values = dataset(0).local_values(&plan.query, &plan.bounds).unwrap();
    let dp0 = net.session(&plan).range(EntityId::dp(0), &values, false, &mut rng).unwrap().encode();
    let sized = |net: &Net, extra: isize, rng: &mut ChaCha20Rng| {
        let mut p = submit_body(&dp0);
        let len = p.proof.len().checked_add_signed(extra).unwrap();
        p.proof.resize(len, 0);
        resign(net, EntityId::dp(0), TxBody::SubmitProof(p), rng)
    };
    // Padding that the proof parser would never read, and a truncated proof: both are refused
    // against the query's statement shape before anything is stored.
    rejected(sized(&net, 1, &mut rng), 26, &mut net);
    rejected(sized(&net, 64, &mut rng), 26, &mut net);
    rejected(sized(&net, -1, &mut rng), 26, &mut net);
    // Beyond the largest proof of its kind, it is refused statelessly, before any state is read.
    let mut p = submit_body(&dp0);
    p.kind = ProofKind::Aggregation;
    p.inputs = plan.registration.spec.aggregation_inputs(plan.registration.query_id, 0);
    p.proof = vec![1; 1 << 20];
    rejected(resign(&net, EntityId::cn(0), TxBody::SubmitProof(p), &mut rng), 1, &mut net);
    // The exact length is accepted.
    assert_all_ok(&net.block(vec![dp0]));
}

#[test]
fn a_proof_after_the_deadline_is_refused() {
    let mut net = Net::new(4, 3, 5);
    let mut rng = ChaCha20Rng::seed_from_u64(4);
    let plan = registered(&mut net, &mut rng, 2);
    let q = plan.registration.query_id;
    net.until(5, |n| n.progress(&q).status != QueryStatus::Collecting);
    let values = dataset(1).local_values(&plan.query, &plan.bounds).unwrap();
    let late =
        net.session(&plan).range(EntityId::dp(1), &values, false, &mut rng).unwrap().encode();
    let results = net.block(vec![late]);
    assert_eq!(results[0].code, 20, "{}", results[0].log);
}

#[test]
fn forged_bitmaps_are_rejected() {
    let mut net = Net::new(4, 3, 5);
    for node in &mut net.nodes {
        node.worker = None; // bitmaps are crafted by hand here
    }
    let mut rng = ChaCha20Rng::seed_from_u64(5);
    let mut plan = plan(&mut net, "SELECT sum(x) FROM y", 0, 500_000);
    plan.registration.commit_window = 50; // the window stays open through every attempt
    plan.resign(CHAIN, &mut rng);
    let q = plan.registration.query_id;
    run_query(&mut net, &plan, Script::default());
    net.until(3, |n| matches!(n.progress(&q).status, QueryStatus::Committing { .. }));
    let judged = net.progress(&q).judged.unwrap();
    let expected = plan.registration.spec.expected_proofs(q);
    let honest = |net: &Net, vn: u32, rng: &mut ChaCha20Rng| {
        let (out, vrf) =
            sampling::evaluate(&net.keys.vns[vn as usize], CHAIN, &q, EntityId::vn(vn), rng);
        let verdicts: Vec<Verdict> = expected
            .iter()
            .map(|k| {
                if sampling::is_selected(&out, k, 500_000) {
                    Verdict::Correct
                } else {
                    Verdict::NotSelected
                }
            })
            .collect();
        CommitBitmap { query_id: q, vrf, proofs_digest: judged.proofs_root, verdicts }
    };
    let sign = |net: &Net, vn: u32, c: CommitBitmap, rng: &mut ChaCha20Rng| {
        resign(net, EntityId::vn(vn), TxBody::CommitBitmap(c), rng)
    };

    // A selected proof marked "not selected", and an unselected one marked verified.
    let mut c = honest(&net, 0, &mut rng);
    let sel =
        c.verdicts.iter().position(|v| *v == Verdict::Correct).expect("some proof selected at 50%");
    c.verdicts[sel] = Verdict::NotSelected;
    rejected(sign(&net, 0, c, &mut rng), 33, &mut net);
    let mut c = honest(&net, 0, &mut rng);
    let unsel = c
        .verdicts
        .iter()
        .position(|v| *v == Verdict::NotSelected)
        .expect("some proof not selected at 50%");
    c.verdicts[unsel] = Verdict::Correct;
    rejected(sign(&net, 0, c, &mut rng), 33, &mut net);
    // A received proof marked not received; a verdict missing.
    let mut c = honest(&net, 0, &mut rng);
    c.verdicts[0] = Verdict::NotReceived;
    rejected(sign(&net, 0, c, &mut rng), 33, &mut net);
    let mut c = honest(&net, 0, &mut rng);
    c.verdicts.pop();
    rejected(sign(&net, 0, c, &mut rng), 33, &mut net);
    // Another VN's VRF.
    let mut c = honest(&net, 0, &mut rng);
    c.vrf = honest(&net, 1, &mut rng).vrf;
    rejected(sign(&net, 0, c, &mut rng), 32, &mut net);
    // Another proof set.
    let mut c = honest(&net, 0, &mut rng);
    c.proofs_digest[0] ^= 1;
    rejected(sign(&net, 0, c, &mut rng), 34, &mut net);
    // A data provider cannot commit a bitmap (its role is refused at decoding).
    let c = honest(&net, 0, &mut rng);
    rejected(resign(&net, EntityId::dp(0), TxBody::CommitBitmap(c), &mut rng), 1, &mut net);

    // The honest one is accepted, once.
    let c = honest(&net, 0, &mut rng);
    assert_all_ok(&net.block(vec![sign(&net, 0, c.clone(), &mut rng)]));
    rejected(sign(&net, 0, c, &mut rng), 31, &mut net);
}
