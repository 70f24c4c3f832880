//! Consequences for a caught cheater: challenges settled on chain, faulty entities refused, a
//! lying verifying node out of the validator set, and roster changes by the verifying nodes.

use lemal_client::pipeline::{self, Cheat, PlanOptions, QueryPlan};
use lemal_client::sql;
use lemal_contracts::elgamal::SecretKey;
use lemal_contracts::ids::{EntityId, ProofKey, ProofKind, QueryId, Verdict};
use lemal_contracts::sampling::PPM_ALL;
use lemal_contracts::sig::SigningKey;
use lemal_contracts::state::{
    cn_pop_context, BlockPayload, Params, ProposalRecord, ProposalStatus, QueryStatus, Roster,
    Standing, StandingCause, StandingRecord, VerdictRecord,
};
use lemal_contracts::tx::{
    ApproveRosterChange, Challenge, CommitBitmap, ProposeRosterChange, RosterChange, Tx, TxBody,
};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use tendermint_proto::v0_38::abci::ExecTxResult;
use tendermint_proto::v0_38::crypto::public_key::Sum;

use crate::harness::*;

fn sign(net: &Net, signer: EntityId, body: TxBody, rng: &mut ChaCha20Rng) -> Vec<u8> {
    Tx::sign(CHAIN, signer, body, net.keys.signing_key(signer).unwrap(), rng).encode()
}

fn challenge(net: &mut Net, by: EntityId, proof: ProofKey, rng: &mut ChaCha20Rng) -> ExecTxResult {
    let tx = sign(net, by, TxBody::Challenge(Challenge { proof }), rng);
    net.block(vec![tx]).remove(0)
}

fn verdict(net: &Net, k: &ProofKey) -> Option<VerdictRecord> {
    net.get(&format!("/verdict/{}/{}/{}/{}", k.query, k.kind, k.creator, k.index))
}

fn standing(net: &Net, e: EntityId) -> Option<StandingRecord> {
    net.get(&format!("/standing/{e}"))
}

/// A plan over the given data providers and computing nodes, every proof checked by every node.
fn plan_over(net: &mut Net, dps: Vec<u32>, cns: Vec<u32>) -> QueryPlan {
    let opts = PlanOptions {
        dps,
        cns,
        bounds: bounds(),
        noise: 0,
        noise_rows: 4,
        threshold_ppm: PPM_ALL,
        dp_deadline: 4,
        proof_deadline: 12,
        commit_window: 4,
    };
    pipeline::plan(CHAIN, sql::parse("SELECT sum(x) FROM y").unwrap(), &opts, &mut net.rng)
}

/// Run `plan` to its skipblock.
fn finalize(net: &mut Net, plan: &QueryPlan, script: Script) {
    run_query(net, plan, script);
    let q = plan.registration.query_id;
    net.until(20, |n| n.block_of(&q).is_some());
}

fn register(net: &mut Net, plan: &QueryPlan) -> ExecTxResult {
    let mut rng = ChaCha20Rng::seed_from_u64(3);
    let reg = net.session(plan).register(&mut rng).unwrap();
    net.block(vec![encode(reg)]).remove(0)
}

fn key(q: QueryId, kind: ProofKind, creator: EntityId) -> ProofKey {
    ProofKey { query: q, kind, creator, index: 0 }
}

#[test]
fn a_wrong_proof_is_settled_on_chain_and_its_creator_is_refused_in_new_queries() {
    let mut net = Net::new(4, 3, 5);
    let mut rng = ChaCha20Rng::seed_from_u64(21);
    let plan = plan_over(&mut net, (0..5).collect(), vec![2, 1, 0]);
    let q = plan.registration.query_id;
    let cheater = EntityId::cn(1);
    let cheat = Cheat { entity: cheater, kind: ProofKind::KeySwitch };
    let wrong = key(q, ProofKind::KeySwitch, cheater);

    // Registered and running, but not finalized: nothing to settle yet.
    let reg = net.session(&plan).register(&mut rng).unwrap();
    assert_all_ok(&net.block(vec![encode(reg)]));
    let r =
        challenge(&mut net, EntityId::dp(0), key(q, ProofKind::Range, EntityId::dp(0)), &mut rng);
    assert_eq!(r.code, 50, "no such proof yet: {}", r.log);

    // Run the rest with a fresh plan of the same shape: the cheat is in the key switch.
    let plan = plan_over(&mut net, (0..5).collect(), vec![2, 1, 0]);
    let q = plan.registration.query_id;
    let wrong = ProofKey { query: q, ..wrong };
    run_query(&mut net, &plan, Script { cheat: Some(cheat), ..Script::default() });
    // The proofs are in, the bitmaps not yet (they follow the challenge into its block).
    let r = challenge(&mut net, EntityId::dp(0), wrong, &mut rng);
    assert_eq!(r.code, 51, "settled only once the query has its block: {}", r.log);
    net.until(20, |n| n.block_of(&q).is_some());
    let r = challenge(&mut net, EntityId::dp(0), wrong, &mut rng);
    assert_eq!(r.code, 0, "{}", r.log);

    // The chain re-verified it: wrong, its creator at fault, no verifying node lied (each of
    // them checked it, at a threshold of 100%, and said 0).
    let settled = verdict(&net, &wrong).expect("the verdict is in state");
    let v = &settled.verdict;
    assert!(!v.valid);
    assert!(!v.reason.is_empty());
    assert_eq!(v.creator_at_fault, Some(cheater));
    assert!(v.vns_at_fault.is_empty());
    assert_eq!(v.challenger, EntityId::dp(0));
    // It is a skipblock of its own, linked to the query's block, which is unchanged.
    let query_block = net.block_of(&q).unwrap();
    assert_eq!(v.query_block, query_block.index);
    assert_eq!(v.query_block_hash, query_block.hash());
    let block: lemal_contracts::state::SkipBlock =
        net.get(&format!("/skipchain/index/{}", settled.block)).unwrap();
    assert_eq!(block.payload, BlockPayload::Verdict(v.clone()));
    assert_eq!(block.index, query_block.index + 1);

    // The cheater is out of good standing, with the verdict as its cause.
    let record = standing(&net, cheater).expect("a standing record");
    assert_eq!(record.standing, Standing::Faulty);
    assert_eq!(record.cause, StandingCause::Verdict { proof: wrong, block: settled.block });
    assert!(standing(&net, EntityId::cn(0)).is_none(), "the honest nodes keep their standing");

    // Settled once: a second challenge is refused.
    let r = challenge(&mut net, EntityId::vn(2), wrong, &mut rng);
    assert_eq!(r.code, 52, "{}", r.log);

    // A new query with the cheater is refused; one without it runs.
    let with = plan_over(&mut net, (0..5).collect(), vec![0, 1]);
    let r = register(&mut net, &with);
    assert_eq!(r.code, 18, "{}", r.log);
    assert!(r.log.contains("cn-1 is faulty"), "{}", r.log);
    let without = plan_over(&mut net, (0..5).collect(), vec![0, 2]);
    finalize(&mut net, &without, Script::default());
    let app_hashes: Vec<Vec<u8>> = (0..4).map(|i| net.app_hash(i)).collect();
    assert!(app_hashes.windows(2).all(|w| w[0] == w[1]));
}

#[test]
fn challenges_of_right_proofs_are_unfounded_and_limited_per_member() {
    let mut net = Net::new(4, 2, 4);
    let mut rng = ChaCha20Rng::seed_from_u64(22);
    let plan = plan_over(&mut net, (0..4).collect(), vec![1, 0]);
    let q = plan.registration.query_id;
    finalize(&mut net, &plan, Script::default());
    let max = Params::default().max_unfounded_challenges;
    let me = EntityId::cn(0);
    for d in 0..max {
        let proof = key(q, ProofKind::Range, EntityId::dp(d));
        let r = challenge(&mut net, me, proof, &mut rng);
        assert_eq!(r.code, 0, "{}", r.log);
        let v = verdict(&net, &proof).unwrap().verdict;
        assert!(v.valid && v.creator_at_fault.is_none() && v.vns_at_fault.is_empty());
        assert!(!v.founded());
        assert_eq!(net.get::<u32>(&format!("/unfounded/{me}")), Some(d + 1));
    }
    // The quota is spent: this member's next challenge is refused before anything is verified.
    let next = key(q, ProofKind::Range, EntityId::dp(max));
    let r = challenge(&mut net, me, next, &mut rng);
    assert_eq!(r.code, 53, "{}", r.log);
    assert!(verdict(&net, &next).is_none());
    // Another member still may; an unknown query or proof is refused.
    let r = challenge(&mut net, EntityId::vn(1), next, &mut rng);
    assert_eq!(r.code, 0, "{}", r.log);
    let r = challenge(
        &mut net,
        EntityId::vn(1),
        key(QueryId([9; 16]), ProofKind::Range, EntityId::dp(0)),
        &mut rng,
    );
    assert_eq!(r.code, 11, "{}", r.log);
    let r =
        challenge(&mut net, EntityId::vn(1), key(q, ProofKind::Shuffle, EntityId::cn(0)), &mut rng);
    assert_eq!(r.code, 50, "{}", r.log);
    // Nobody lost their standing.
    for e in [EntityId::cn(0), EntityId::cn(1), EntityId::vn(1), EntityId::dp(0)] {
        assert!(standing(&net, e).is_none(), "{e}");
    }
}

#[test]
fn a_block_settles_challenges_within_its_budget() {
    // A budget of one unit: each block settles its first challenge only.
    let params = Params { challenge_budget: 1, ..Params::default() };
    let mut net = Net::with_params(4, 2, 4, params);
    let mut rng = ChaCha20Rng::seed_from_u64(23);
    let plan = plan_over(&mut net, (0..4).collect(), vec![1, 0]);
    let q = plan.registration.query_id;
    finalize(&mut net, &plan, Script::default());
    let txs: Vec<Vec<u8>> = (0..3)
        .map(|d| {
            let proof = key(q, ProofKind::Range, EntityId::dp(d));
            sign(&net, EntityId::vn(d), TxBody::Challenge(Challenge { proof }), &mut rng)
        })
        .collect();
    let results = net.block(txs.clone());
    let codes: Vec<u32> = results.iter().map(|r| r.code).collect();
    assert_eq!(codes, vec![0, 54, 54], "{results:?}");
    // The refused ones fit later blocks, one per block.
    assert_eq!(
        net.block(vec![txs[1].clone(), txs[2].clone()]).iter().map(|r| r.code).collect::<Vec<_>>(),
        vec![0, 54]
    );
    assert_eq!(net.block(vec![txs[2].clone()])[0].code, 0);
    for d in 0..3 {
        assert!(verdict(&net, &key(q, ProofKind::Range, EntityId::dp(d))).is_some());
    }
}

#[test]
fn a_lying_verifying_node_is_found_at_fault_and_leaves_the_validator_set_once() {
    let mut net = Net::new(4, 2, 4);
    let mut rng = ChaCha20Rng::seed_from_u64(24);
    let liar = EntityId::vn(3);
    let worker = net.nodes[3].worker.take().unwrap();
    net.nodes[3].worker = Some(worker.inverting_verdicts());
    let plan = plan_over(&mut net, (0..4).collect(), vec![1, 0]);
    let q = plan.registration.query_id;
    finalize(&mut net, &plan, Script::default());
    let right = key(q, ProofKind::Aggregation, EntityId::cn(0));
    let Some(BlockPayload::Query(p)) = net.block_of(&q).map(|b| b.payload) else { panic!() };
    assert_eq!(p.bitmap.get(&right, liar), Some(Verdict::Wrong), "the liar said 0");
    assert_eq!(p.bitmap.get(&right, EntityId::vn(0)), Some(Verdict::Correct));

    let updates_before = net.validator_updates.len();
    let r = challenge(&mut net, EntityId::vn(0), right, &mut rng);
    assert_eq!(r.code, 0, "{}", r.log);
    let v = verdict(&net, &right).unwrap().verdict;
    assert!(v.valid && v.founded());
    assert_eq!(v.vns_at_fault, vec![liar]);
    assert_eq!(standing(&net, liar).map(|s| s.standing), Some(Standing::Faulty));
    // CometBFT is told once: power 0 for the liar's consensus key.
    assert_eq!(net.validator_updates.len(), updates_before + 1);
    let (_, updates) = net.validator_updates.last().unwrap().clone();
    assert_eq!(updates.len(), 1);
    assert_eq!(updates[0].power, 0);
    let Some(Sum::Ed25519(k)) = updates[0].pub_key.as_ref().and_then(|k| k.sum.clone()) else {
        panic!("an ed25519 key")
    };
    assert_eq!(k, net.validator_keys[3].to_vec());
    let validator: lemal_contracts::state::ValidatorRecord = net.get("/validator/3").unwrap();
    assert_eq!(validator.power, 0);

    // A second founded challenge against the same liar changes nothing more.
    let also = key(q, ProofKind::Range, EntityId::dp(1));
    assert_eq!(challenge(&mut net, EntityId::vn(1), also, &mut rng).code, 0);
    assert_eq!(verdict(&net, &also).unwrap().verdict.vns_at_fault, vec![liar]);
    net.block(Vec::new());
    assert_eq!(net.validator_updates.len(), updates_before + 1, "no update is returned twice");

    // The next query expects three bitmaps, and finalizes with them.
    let next = plan_over(&mut net, (0..4).collect(), vec![0, 1]);
    let n = next.registration.query_id;
    finalize(&mut net, &next, Script::default());
    let Some(BlockPayload::Query(p)) = net.block_of(&n).map(|b| b.payload) else { panic!() };
    assert_eq!(p.bitmap.verifiers, vec![EntityId::vn(0), EntityId::vn(1), EntityId::vn(2)]);
    assert!(p.absent.is_empty());
    // A bitmap the liar signs anyway is refused.
    let plan3 = plan_over(&mut net, (0..4).collect(), vec![0, 1]);
    let q3 = plan3.registration.query_id;
    run_query(&mut net, &plan3, Script::default());
    let progress = net.progress(&q3);
    assert!(matches!(progress.status, QueryStatus::Committing { .. }));
    let judged = progress.judged.unwrap();
    assert!(!judged.verifiers.contains(&liar));
    let (_, vrf) =
        lemal_contracts::sampling::evaluate(&net.keys.vns[3], CHAIN, &q3, liar, &mut rng);
    let body = TxBody::CommitBitmap(CommitBitmap {
        query_id: q3,
        vrf,
        proofs_digest: judged.proofs_root,
        verdicts: vec![Verdict::NotSelected; judged.received.len()],
    });
    let r = net.block(vec![sign(&net, liar, body, &mut rng)]).remove(0);
    assert_eq!(r.code, 35, "{}", r.log);
}

fn propose(net: &mut Net, by: u32, change: RosterChange, rng: &mut ChaCha20Rng) -> ExecTxResult {
    let body = TxBody::ProposeRosterChange(Box::new(ProposeRosterChange { change }));
    let tx = sign(net, EntityId::vn(by), body, rng);
    net.block(vec![tx]).remove(0)
}

fn approve(net: &mut Net, by: u32, proposal: u64, rng: &mut ChaCha20Rng) -> ExecTxResult {
    let body = TxBody::ApproveRosterChange(ApproveRosterChange { proposal });
    let tx = sign(net, EntityId::vn(by), body, rng);
    net.block(vec![tx]).remove(0)
}

fn proposal(net: &Net, id: u64) -> ProposalRecord {
    net.get(&format!("/proposal/{id}")).unwrap()
}

#[test]
fn roster_changes_take_effect_above_two_thirds_of_the_voting_power() {
    let params = Params { min_validators: 3, proposal_ttl: 5, ..Params::default() };
    let mut net = Net::with_params(4, 2, 4, params);
    let mut rng = ChaCha20Rng::seed_from_u64(25);
    // Four validators of power 10: a change needs more than 26 2/3, three approvals.
    let new_dp = SigningKey::random(&mut rng);
    let r = propose(&mut net, 0, RosterChange::AddDp { key: new_dp.verifying_key() }, &mut rng);
    assert_eq!(r.code, 0, "{}", r.log);
    assert!(matches!(proposal(&net, 0).status, ProposalStatus::Open { .. }));
    // The proposer's next proposal waits for this one.
    let r = propose(&mut net, 0, RosterChange::Remove { entity: EntityId::dp(0) }, &mut rng);
    assert_eq!(r.code, 64, "{}", r.log);
    assert_eq!(approve(&mut net, 1, 0, &mut rng).code, 0);
    assert_eq!(approve(&mut net, 1, 0, &mut rng).code, 63, "one approval per node");
    assert!(matches!(proposal(&net, 0).status, ProposalStatus::Open { .. }), "20 of 40");
    let roster: Roster = net.get("/roster").unwrap();
    assert_eq!(roster.dps.len(), 4);
    assert_eq!(approve(&mut net, 2, 0, &mut rng).code, 0);
    let ProposalStatus::Applied { block, .. } = proposal(&net, 0).status else {
        panic!("30 of 40 passes: {:?}", proposal(&net, 0).status)
    };
    let roster: Roster = net.get("/roster").unwrap();
    assert_eq!(roster.dps.len(), 5);
    assert_eq!(roster.dps[4].key, new_dp.verifying_key());
    let b: lemal_contracts::state::SkipBlock =
        net.get(&format!("/skipchain/index/{block}")).unwrap();
    let BlockPayload::RosterChange(rc) = b.payload else { panic!("a roster change block") };
    assert_eq!((rc.entity, rc.approved_power, rc.total_power), (EntityId::dp(4), 30, 40));
    let r = approve(&mut net, 3, 0, &mut rng);
    assert_eq!(r.code, 62, "{}", r.log);
    assert_eq!(approve(&mut net, 3, 9, &mut rng).code, 61);
    // The genesis roster is kept as it was.
    let genesis: Roster = net.get("/roster/genesis").unwrap();
    assert_eq!(genesis.dps.len(), 4);

    // A computing node whose proof of possession names another index is refused at once.
    let share = SecretKey::random(&mut rng);
    let wrong_pop = share.prove_possession(&cn_pop_context(EntityId::cn(5)), &mut rng);
    let change = RosterChange::AddCn {
        key: SigningKey::random(&mut rng).verifying_key(),
        share: share.public(),
        share_pop: wrong_pop,
    };
    assert_eq!(propose(&mut net, 1, change, &mut rng).code, 60);

    // Removing a verifying node: 3 of 4 approve; it leaves the validator set, once.
    let before = net.validator_updates.len();
    assert_eq!(
        propose(&mut net, 1, RosterChange::Remove { entity: EntityId::vn(3) }, &mut rng).code,
        0
    );
    assert_eq!(approve(&mut net, 2, 1, &mut rng).code, 0);
    assert_eq!(net.validator_updates.len(), before);
    assert_eq!(approve(&mut net, 0, 1, &mut rng).code, 0);
    assert_eq!(net.validator_updates.len(), before + 1);
    assert_eq!(net.validator_updates.last().unwrap().1[0].power, 0);
    let removed = standing(&net, EntityId::vn(3)).unwrap();
    assert_eq!(removed.standing, Standing::Removed);
    assert_eq!(removed.cause, StandingCause::Proposal { id: 1 });
    // vn-3 no longer votes; removing another would leave 2 validators, below min_validators 3.
    assert_eq!(approve(&mut net, 3, 0, &mut rng).code, 18);
    let r = propose(&mut net, 2, RosterChange::Remove { entity: EntityId::vn(0) }, &mut rng);
    assert_eq!(r.code, 60, "{}", r.log);
    assert!(r.log.contains("min_validators"), "{}", r.log);

    // Power: vn-0 to 25 of 45 total; approvals now count by power.
    assert_eq!(propose(&mut net, 2, RosterChange::SetPower { vn: 0, power: 25 }, &mut rng).code, 0);
    assert_eq!(approve(&mut net, 1, 2, &mut rng).code, 0);
    assert!(matches!(proposal(&net, 2).status, ProposalStatus::Open { .. }), "20 of 30");
    assert_eq!(approve(&mut net, 0, 2, &mut rng).code, 0);
    assert!(matches!(proposal(&net, 2).status, ProposalStatus::Applied { .. }));
    assert_eq!(net.validator_updates.last().unwrap().1[0].power, 25);

    // A proposal expires after proposal_ttl blocks.
    assert_eq!(
        propose(&mut net, 2, RosterChange::Remove { entity: EntityId::dp(1) }, &mut rng).code,
        0
    );
    for _ in 0..6 {
        net.block(Vec::new());
    }
    assert_eq!(approve(&mut net, 0, 3, &mut rng).code, 62);

    // Only verifying nodes may propose: any other signer is refused at decoding.
    let body = TxBody::ProposeRosterChange(Box::new(ProposeRosterChange {
        change: RosterChange::Remove { entity: EntityId::dp(1) },
    }));
    let tx = sign(&net, EntityId::cn(0), body, &mut rng);
    assert_eq!(net.block(vec![tx])[0].code, 1);

    // The added data provider takes part in a new query.
    let plan = plan_over(&mut net, vec![0, 2, 4], vec![1, 0]);
    let r = register(&mut net, &plan);
    assert_eq!(r.code, 0, "{}", r.log);
    let app_hashes: Vec<Vec<u8>> = (0..4).map(|i| net.app_hash(i)).collect();
    assert!(app_hashes.windows(2).all(|w| w[0] == w[1]));
}
