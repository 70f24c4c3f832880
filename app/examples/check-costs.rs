//! What hostile transactions cost CheckTx, and whether they hold up consensus, through the real
//! ABCI handlers on a real store. All cases run in the same process, side by side:
//!
//! - `wrong_chain_points`: a transaction of the chain's maximum size whose body is valid point
//!   encodings (one ciphertext repeated), signed for another chain — it needs no key;
//! - `garbage`: random bytes of the same size;
//! - `bad_signature_points`: the same body for this chain, from a roster signer, with a wrong
//!   signature;
//! - `finalize_alone` / `finalize_during_check`: FinalizeBlock + Commit of an empty block, alone,
//!   and while another thread keeps CheckTx busy with `wrong_chain_points` transactions;
//! - `check_new` / `check_recheck`: CheckTx of a valid range-proof submission as a new
//!   transaction and as a re-check.
//!
//! `cargo run --release -p lemal-app --example check-costs -- [--json] [--reps N]`

// A measurement tool: it reads the wall clock.
#![allow(clippy::disallowed_methods)]

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Instant;

use lemal_app::abci::LemalApp;
use lemal_app::store::Store;
use lemal_contracts::elgamal::{Ciphertext, PossessionProof, SecretKey};
use lemal_contracts::ids::{EntityId, ProofKind, QueryId};
use lemal_contracts::proofs::range::{self, Bounds};
use lemal_contracts::sig::SigningKey;
use lemal_contracts::state::{
    cn_pop_context, CnEntry, DpEntry, GenesisState, Params, Roster, VnEntry,
};
use lemal_contracts::transcript::ProofContext;
use lemal_contracts::tx::{
    NoiseParams, Operation, QuerySpec, RegisterQuery, SubmitProof, Tx, TxBody,
};
use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};
use tendermint_abci::Application;
use tendermint_proto::v0_38::abci::{RequestCheckTx, RequestFinalizeBlock, RequestInitChain};

const CHAIN: &str = "lemal-bench";

fn micros(start: Instant) -> f64 {
    start.elapsed().as_secs_f64() * 1e6
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

struct Fixture {
    genesis: Vec<u8>,
    register: Vec<u8>,
    submission: Vec<u8>,
    wrong_chain: Vec<u8>,
    garbage: Vec<u8>,
    bad_signature: Vec<u8>,
}

/// A submission body of `n` copies of one valid ciphertext.
fn points_body(query_id: QueryId, c: Ciphertext, n: usize) -> TxBody {
    TxBody::SubmitProof(SubmitProof {
        query_id,
        kind: ProofKind::Range,
        index: 0,
        inputs: Vec::new(),
        outputs: vec![c; n],
        proof: Vec::new(),
    })
}

fn fixture() -> Fixture {
    let mut rng = ChaCha20Rng::seed_from_u64(2026);
    let cn_sign = SigningKey::random(&mut rng);
    let dp_sign = SigningKey::random(&mut rng);
    let share = SecretKey::random(&mut rng);
    let params = Params::default();
    let roster = Roster {
        vns: (0..4u8)
            .map(|i| VnEntry {
                validator_address: [i; 20],
                key: SigningKey::random(&mut rng).verifying_key(),
            })
            .collect(),
        cns: vec![CnEntry {
            key: cn_sign.verifying_key(),
            share: share.public(),
            share_pop: share.prove_possession(&cn_pop_context(EntityId::cn(0)), &mut rng),
        }],
        dps: vec![DpEntry { key: dp_sign.verifying_key() }],
    };
    let genesis = serde_json::to_vec(&GenesisState::from_typed(&params, &roster)).expect("json");
    let query_id = QueryId([1; 16]);
    let querier = SecretKey::random(&mut rng);
    let bounds = vec![Bounds { lo: 0, hi: 100_000 }];
    let registration = RegisterQuery {
        query_id,
        querier_key: querier.public(),
        querier_sig: PossessionProof::default(),
        spec: QuerySpec {
            sql: "SELECT sum(x) FROM y".into(),
            operation: Operation::Sum,
            range_bits: 32,
            bounds: bounds.clone(),
            dps: vec![0],
            cns: vec![0],
            noise: NoiseParams::NONE,
        },
        threshold_ppm: 400_000,
        dp_deadline: 500,
        proof_deadline: 1000,
        commit_window: 10,
    }
    .sign_as_querier(CHAIN, &querier, &mut rng);
    let register = Tx::sign(
        CHAIN,
        EntityId::cn(0),
        TxBody::RegisterQuery(Box::new(registration)),
        &cn_sign,
        &mut rng,
    )
    .encode();
    let key = *share.public().point();
    let dp = EntityId::dp(0);
    let context = ProofContext { chain_id: CHAIN.into(), query_id, prover: dp, index: 0 };
    let (st, proof) =
        range::encrypt_and_prove(context, &key, 32, &bounds, &[7], &mut rng).expect("prove");
    let c = st.ciphertexts[0];
    let body = TxBody::SubmitProof(SubmitProof {
        query_id,
        kind: ProofKind::Range,
        index: 0,
        inputs: Vec::new(),
        outputs: st.ciphertexts,
        proof: proof.to_bytes(),
    });
    let submission = Tx::sign(CHAIN, dp, body, &dp_sign, &mut rng).encode();

    // As many ciphertexts as the size limit allows (header and signature take < 200 bytes).
    let max = params.max_tx_bytes as usize;
    let n = (max - 200) / 64;
    let foreign = Tx::sign("another-chain", dp, points_body(query_id, c, n), &dp_sign, &mut rng);
    let wrong_chain = foreign.encode();
    assert!(wrong_chain.len() <= max);
    // A well-formed signature, but over other bytes: the check runs to its end.
    let mut bad = Tx::sign(CHAIN, dp, points_body(query_id, c, n), &dp_sign, &mut rng);
    bad.signature = foreign.signature;
    let bad_signature = bad.encode();
    let mut garbage = vec![0u8; wrong_chain.len()];
    rng.fill_bytes(&mut garbage);
    Fixture { genesis, register, submission, wrong_chain, garbage, bad_signature }
}

fn finalize(app: &LemalApp, height: i64, txs: &[Vec<u8>]) {
    let r = app.finalize_block(RequestFinalizeBlock {
        txs: txs.iter().map(|t| t.clone().into()).collect(),
        height,
        ..Default::default()
    });
    assert!(r.tx_results.iter().all(|t| t.code == 0), "every transaction is valid");
    app.commit();
}

/// CheckTx of `tx` (the request is built before the clock starts).
fn check(app: &LemalApp, tx: &[u8], recheck: bool) -> (f64, u32) {
    let request = RequestCheckTx { tx: tx.to_vec().into(), r#type: i32::from(recheck) };
    let t = Instant::now();
    let r = app.check_tx(request);
    (micros(t), r.code)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let json = args.iter().any(|a| a == "--json");
    let reps: usize = args
        .iter()
        .position(|a| a == "--reps")
        .and_then(|i| args.get(i + 1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let f = fixture();
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(&dir.path().join("state.redb")).expect("store");
    let app = LemalApp::new(Arc::new(RwLock::new(store)));
    app.init_chain(RequestInitChain {
        chain_id: CHAIN.into(),
        app_state_bytes: f.genesis.clone().into(),
        initial_height: 1,
        ..Default::default()
    });
    finalize(&app, 1, &[]);
    finalize(&app, 2, std::slice::from_ref(&f.register));
    let mut height = 3;

    let mut cases: Vec<(&str, Vec<f64>, u32)> = Vec::new();
    for (name, tx) in [
        ("wrong_chain_points", &f.wrong_chain),
        ("garbage", &f.garbage),
        ("bad_signature_points", &f.bad_signature),
    ] {
        let runs: Vec<(f64, u32)> = (0..reps).map(|_| check(&app, tx, false)).collect();
        let code = runs[0].1;
        cases.push((name, runs.into_iter().map(|r| r.0).collect(), code));
    }

    let mut alone = Vec::new();
    for _ in 0..reps {
        let t = Instant::now();
        finalize(&app, height, &[]);
        height += 1;
        alone.push(micros(t));
    }
    let busy = AtomicBool::new(true);
    let mut during = Vec::new();
    std::thread::scope(|s| {
        s.spawn(|| {
            while busy.load(Ordering::Relaxed) {
                check(&app, &f.wrong_chain, false);
            }
        });
        for _ in 0..reps {
            // Let the checker get into its transaction first.
            std::thread::sleep(std::time::Duration::from_millis(5));
            let t = Instant::now();
            finalize(&app, height, &[]);
            height += 1;
            during.push(micros(t));
        }
        busy.store(false, Ordering::Relaxed);
    });
    cases.push(("finalize_alone", alone, 0));
    cases.push(("finalize_during_check", during, 0));

    let (mut new, mut recheck) = (Vec::new(), Vec::new());
    let (mut new_code, mut recheck_code) = (0, 0);
    for _ in 0..reps {
        let (t, c) = check(&app, &f.submission, false);
        new.push(t);
        new_code = c;
        let (t, c) = check(&app, &f.submission, true);
        recheck.push(t);
        recheck_code = c;
    }
    cases.push(("check_new", new, new_code));
    cases.push(("check_recheck", recheck, recheck_code));

    let size = f.wrong_chain.len();
    if json {
        let rows: Vec<_> = cases
            .iter()
            .map(|(name, xs, code)| {
                serde_json::json!({ "case": name, "median_us": median(xs.clone()).round(), "code": code })
            })
            .collect();
        println!("{}", serde_json::json!({ "tx_bytes": size, "reps": reps, "cases": rows }));
    } else {
        println!("CheckTx and consensus under hostile transactions ({size}-byte txs, {reps} reps)");
        for (name, xs, code) in &cases {
            println!("  {name:<22} median {:>12.1} µs   code {code}", median(xs.clone()));
        }
    }
}
