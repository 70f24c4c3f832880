//! What a cheater can no longer do: each test mounts one attack and expects the chain to refuse.

use lemal_contracts::ids::EntityId;
use lemal_contracts::state::QueryRecord;
use lemal_contracts::tx::{NoiseParams, RegisterQuery, Tx, TxBody};
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
    assert_eq!(code, 16, "{log}");
    // The querier's own registration still goes through, with its terms and its noise.
    let (code, log) = front_run(&mut net, &mut rng, &|_| ());
    assert_eq!(code, 0, "{log}");
    let q = plan.registration.query_id;
    let record: QueryRecord = net.get(&format!("/query/{q}")).unwrap();
    assert_eq!(record.registration.spec.noise, NoiseParams { scale: 100, rows: 4 });
    assert_eq!(record.registration.spec.noise_list(), vec![-139, -29, 29, 139]);
}
