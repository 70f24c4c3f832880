//! Whole queries through the network: results, bitmaps, skipblocks.

use lemal_client::pipeline::Cheat;
use lemal_contracts::ids::{EntityId, Verdict};
use lemal_contracts::sampling::PPM_ALL;
use lemal_contracts::state::{BlockPayload, QueryPayload, SkipBlock};

use crate::harness::*;

fn payload(b: &SkipBlock) -> &QueryPayload {
    match &b.payload {
        BlockPayload::Query(p) => p,
        _ => panic!("not a query block"),
    }
}

#[test]
fn full_query_ends_in_a_skipblock_whose_result_decrypts_to_the_plain_answer() {
    let mut net = Net::new(4, 3, 5);
    let plan = plan(&mut net, "SELECT avg(x) FROM y WHERE z < 321", 0, 400_000);
    let q = plan.registration.query_id;
    let totals = run_query(&mut net, &plan, Script::default());
    net.until(10, |n| n.block_of(&q).is_some());
    let block = net.block_of(&q).unwrap();
    let p = payload(&block);
    assert_eq!(block.index, 1, "the first query block follows genesis");
    assert_eq!(block.back_links.len(), usize::from(block.height));
    assert_eq!(decrypt(&plan, &block), totals, "no noise: the exact local totals");
    // Rows: 5 range proofs and an aggregation + key switch per CN; columns: the 4 VNs.
    assert_eq!(p.bitmap.proofs.len(), 5 + 2 * 3);
    assert_eq!(p.bitmap.verifiers, (0..4).map(EntityId::vn).collect::<Vec<_>>());
    assert!(p.bitmap.verdicts.iter().all(|v| matches!(v, Verdict::Correct | Verdict::NotSelected)));
    let [wrong, correct, unselected, missing] = p.bitmap.counts();
    assert_eq!((wrong, missing), (0, 0));
    assert_eq!(correct + unselected, 11 * 4);
    assert!(correct > 0, "at 40% some proof is selected by some VN");
    assert_eq!(p.reported.len(), 4);
    assert!(p.absent.is_empty());
    // The bitmap's key strings are the report's.
    let (key, _) = p.bitmap.entries().next().unwrap();
    assert!(key.starts_with(&format!("{q}/range/dp-0/0/vn-")), "{key}");
    // Every node appended the same block.
    for i in 1..4 {
        assert_eq!(net.app_hash(i), net.app_hash(0));
    }
}

#[test]
fn noise_from_the_shuffle_chain_lands_on_the_sum_only() {
    let mut net = Net::new(4, 3, 5);
    let plan = plan(&mut net, "SELECT avg(x) FROM y", 5, PPM_ALL);
    let q = plan.registration.query_id;
    let totals = run_query(&mut net, &plan, Script::default());
    net.until(10, |n| n.block_of(&q).is_some());
    let block = net.block_of(&q).unwrap();
    let result = decrypt(&plan, &block);
    let noise: Vec<i64> = plan.registration.spec.noise_list().chunks(2).map(|r| r[0]).collect();
    assert!(
        noise.contains(&(result[0] - totals[0])),
        "noise {} not from the public list",
        result[0] - totals[0]
    );
    assert_eq!(result[1], totals[1], "the count carries no noise");
    // Threshold 1: every VN verified every proof, all correct (shuffles included).
    let p = payload(&block);
    assert_eq!(p.bitmap.proofs.len(), 5 + 3 * 3);
    assert!(p.bitmap.verdicts.iter().all(|v| *v == Verdict::Correct));
}

#[test]
fn each_invalid_proof_is_marked_wrong_by_every_verifier() {
    let mut net = Net::new(4, 3, 5);
    for cheat in ["dp-1", "cn-0:aggregation", "cn-1:shuffle", "cn-2:keyswitch"] {
        let cheat: Cheat = cheat.parse().unwrap();
        let plan = plan(&mut net, "SELECT sum(x) FROM y WHERE z > 100", 3, PPM_ALL);
        let q = plan.registration.query_id;
        run_query(&mut net, &plan, Script { cheat: Some(cheat), ..Script::default() });
        net.until(10, |n| n.block_of(&q).is_some());
        let block = net.block_of(&q).unwrap();
        let p = payload(&block);
        for (key, verdicts) in p.bitmap.rows() {
            let bad = key.creator == cheat.entity && key.kind == cheat.kind;
            let want = if bad { Verdict::Wrong } else { Verdict::Correct };
            assert!(verdicts.iter().all(|v| *v == want), "{cheat:?}: {key} has {verdicts:?}");
        }
    }
}

#[test]
fn a_missing_proof_becomes_not_received_at_the_deadline() {
    let mut net = Net::new(4, 3, 5);
    let plan = plan(&mut net, "SELECT count(*) FROM y", 0, PPM_ALL);
    let q = plan.registration.query_id;
    run_query(&mut net, &plan, Script { silent_dp: Some(3), ..Script::default() });
    net.until(20, |n| n.block_of(&q).is_some());
    let block = net.block_of(&q).unwrap();
    let p = payload(&block);
    let (_, row) = p.bitmap.rows().find(|(k, _)| k.creator == EntityId::dp(3)).unwrap();
    assert!(row.iter().all(|v| *v == Verdict::NotReceived));
    assert_eq!(p.bitmap.counts()[3], 4);
    // The others still aggregate to the count of the four that answered.
    let expected: i64 = [0, 1, 2, 4]
        .iter()
        .map(|&d| dataset(d).local_values(&plan.query, &plan.bounds).unwrap()[0])
        .sum();
    assert_eq!(decrypt(&plan, &block), vec![expected]);
}

#[test]
fn an_absent_verifier_becomes_not_received_after_the_commit_window() {
    let mut net = Net::new(4, 3, 5);
    net.nodes[3].worker = None;
    let plan = plan(&mut net, "SELECT sum(x) FROM y", 0, 400_000);
    let q = plan.registration.query_id;
    run_query(&mut net, &plan, Script::default());
    net.until(20, |n| n.block_of(&q).is_some());
    let block = net.block_of(&q).unwrap();
    let p = payload(&block);
    assert_eq!(p.absent, vec![EntityId::vn(3)]);
    assert_eq!(p.reported, (0..3).map(EntityId::vn).collect::<Vec<_>>());
    for key in &p.bitmap.proofs {
        assert_eq!(p.bitmap.get(key, EntityId::vn(3)), Some(Verdict::NotReceived), "{key}");
    }
}
