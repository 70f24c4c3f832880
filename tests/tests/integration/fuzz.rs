//! Fuzzing on stable Rust: arbitrary bytes, structured mutations of valid transactions (flipped,
//! cut, extended, spliced, a length prefix set to 2^32−1, a body changed and signed again by its
//! rightful signer) and arbitrary query paths, fed to a verifying node's CheckTx,
//! ProcessProposal and Query. Whatever comes in: no panic, every refusal a documented code with
//! a reason, and the committed state untouched.
//!
//! `LEMAL_FUZZ_CASES` sets the number of cases per target (default 96, what `make test` runs);
//! `make fuzz` runs 200 000. A failing case is shrunk and printed.

use std::cell::RefCell;
use std::collections::BTreeMap;

use lemal_app::codes::TABLE;
use lemal_app::query::code as query_code;
use lemal_contracts::tx::Envelope;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use tendermint_abci::Application;
use tendermint_proto::v0_38::abci::{
    response_process_proposal::ProposalStatus, CheckTxType, RequestCheckTx, RequestInfo,
    RequestProcessProposal, RequestQuery,
};

use crate::harness::*;

fn cases() -> u32 {
    std::env::var("LEMAL_FUZZ_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(96)
}

fn runner() -> TestRunner {
    TestRunner::new(Config { cases: cases(), failure_persistence: None, ..Config::default() })
}

/// A network that ran one query with noise to the end, and one registration it never saw: every
/// kind of transaction, some replays, one fresh.
fn corpus() -> (Net, Vec<Vec<u8>>) {
    let mut net = Net::new(4, 3, 5);
    let honest = plan(&mut net, "SELECT sum(x) FROM y", 2, 1_000_000);
    run_query(&mut net, &honest, Script::default());
    let q = honest.registration.query_id;
    net.until(30, |n| n.block_of(&q).is_some());
    let mut txs: Vec<Vec<u8>> = net.history.iter().flat_map(|d| d.txs.clone()).collect();
    let fresh = plan(&mut net, "SELECT count(x) FROM y", 0, 400_000);
    let mut rng = ChaCha20Rng::seed_from_u64(99);
    txs.push(net.session(&fresh).register(&mut rng).expect("registration").encode());
    assert!(txs.len() > 10, "the corpus holds every kind of transaction");
    (net, txs)
}

/// One change to transaction bytes; positions are taken modulo the length.
#[derive(Clone, Debug)]
enum Mutation {
    Flip(usize, u8),
    Truncate(usize),
    Append(Vec<u8>),
    Insert(usize, Vec<u8>),
    MaxLengthPrefix(usize),
    Splice(usize, usize, usize),
    /// Change a byte of the body and sign again with the signer's own key.
    Resign(usize, u8),
}

fn mutation(corpus_len: usize) -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), 1..=255u8).prop_map(|(p, x)| Mutation::Flip(p, x)),
        any::<usize>().prop_map(Mutation::Truncate),
        proptest::collection::vec(any::<u8>(), 1..64).prop_map(Mutation::Append),
        (any::<usize>(), proptest::collection::vec(any::<u8>(), 1..16))
            .prop_map(|(p, b)| Mutation::Insert(p, b)),
        any::<usize>().prop_map(Mutation::MaxLengthPrefix),
        (0..corpus_len, any::<usize>(), any::<usize>())
            .prop_map(|(o, a, b)| Mutation::Splice(o, a, b)),
        (any::<usize>(), 1..=255u8).prop_map(|(p, x)| Mutation::Resign(p, x)),
    ]
}

fn mutate(net: &Net, corpus: &[Vec<u8>], mut bytes: Vec<u8>, m: &Mutation) -> Vec<u8> {
    let at = |p: usize, len: usize| if len == 0 { 0 } else { p % len };
    match m {
        Mutation::Flip(p, x) => {
            if !bytes.is_empty() {
                let i = at(*p, bytes.len());
                bytes[i] ^= x;
            }
        }
        Mutation::Truncate(p) => bytes.truncate(at(*p, bytes.len())),
        Mutation::Append(extra) => bytes.extend_from_slice(extra),
        Mutation::Insert(p, extra) => {
            let i = at(*p, bytes.len() + 1);
            bytes.splice(i..i, extra.iter().copied());
        }
        Mutation::MaxLengthPrefix(p) => {
            if bytes.len() >= 4 {
                let i = at(*p, bytes.len() - 3);
                bytes[i..i + 4].copy_from_slice(&u32::MAX.to_le_bytes());
            }
        }
        Mutation::Splice(other, a, b) => {
            let other = &corpus[*other];
            let cut = at(*a, bytes.len() + 1);
            let from = at(*b, other.len() + 1);
            bytes.truncate(cut);
            bytes.extend_from_slice(&other[from..]);
        }
        Mutation::Resign(p, x) => {
            let Ok(envelope) = Envelope::parse(&bytes) else { return bytes };
            let header = 4 + envelope.chain_id.len() + 5;
            let Some(key) = net.keys.signing_key(envelope.signer) else { return bytes };
            let mut signed = envelope.signed.to_vec();
            if signed.len() > header {
                let i = header + at(*p, signed.len() - header);
                signed[i] ^= x;
            }
            let signature = key.sign(envelope.kind, &signed);
            signed.extend_from_slice(&signature.0);
            bytes = signed;
        }
    }
    bytes
}

fn documented(code: u32) -> bool {
    code == 0 || TABLE.iter().any(|(c, _, _)| *c == code)
}

fn app_hash(net: &Net) -> Vec<u8> {
    net.nodes[0].app.info(RequestInfo::default()).last_block_app_hash.to_vec()
}

/// CheckTx (new and re-check) and ProcessProposal of `tx` on node 0: documented codes, a reason
/// for each refusal, a proposal verdict, and no change to committed state. Counts each CheckTx
/// code in `seen`.
fn feed(net: &Net, tx: &[u8], seen: &RefCell<BTreeMap<u32, u64>>) -> Result<(), TestCaseError> {
    let app = &net.nodes[0].app;
    let before = app_hash(net);
    for kind in [CheckTxType::New, CheckTxType::Recheck] {
        let r = app.check_tx(RequestCheckTx { tx: tx.to_vec().into(), r#type: kind as i32 });
        prop_assert!(documented(r.code), "undocumented CheckTx code {}: {}", r.code, r.log);
        *seen.borrow_mut().entry(r.code).or_default() += 1;
        if r.code != 0 {
            prop_assert!(
                !r.log.is_empty() && r.codespace == "lemal",
                "code {} says nothing",
                r.code
            );
        }
    }
    let p = app.process_proposal(RequestProcessProposal {
        txs: vec![tx.to_vec().into()],
        height: net.height as i64 + 1,
        ..Default::default()
    });
    prop_assert!(
        p.status == ProposalStatus::Accept as i32 || p.status == ProposalStatus::Reject as i32,
        "proposal status {}",
        p.status
    );
    prop_assert_eq!(app_hash(net), before, "checking a transaction changed state");
    Ok(())
}

#[test]
fn arbitrary_bytes_and_mutated_transactions_get_documented_codes_and_change_nothing() {
    let (net, corpus) = corpus();
    let n = corpus.len();
    let seen = RefCell::new(BTreeMap::new());
    let input = prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..1024).prop_map(|b| (None, b, Vec::new())),
        (0..n, proptest::collection::vec(mutation(n), 0..4)).prop_map(|(i, ms)| (
            Some(i),
            Vec::new(),
            ms
        )),
    ];
    runner()
        .run(&input, |(original, raw, mutations)| {
            let tx = match original {
                None => raw,
                Some(i) => {
                    mutations.iter().fold(corpus[i].clone(), |b, m| mutate(&net, &corpus, b, m))
                }
            };
            feed(&net, &tx, &seen)
        })
        .unwrap();
    // A valid transaction with each byte of its body flipped and signed again by its signer:
    // every field's decoding and check, not only the signature.
    let sample = corpus.iter().max_by_key(|t| t.len().min(4096)).expect("a transaction");
    for i in 0..sample.len().min(4096) {
        let flipped = mutate(&net, &corpus, sample.clone(), &Mutation::Resign(i, 0x80));
        feed(&net, &flipped, &seen).unwrap();
    }
    // The valid transactions themselves: replays, and the fresh registration.
    for tx in &corpus {
        feed(&net, tx, &seen).unwrap();
    }
    let seen = seen.into_inner();
    eprintln!("fuzz: CheckTx codes seen (code: count): {seen:?}");
    // The inputs reach past the envelope: refusals by the body's decoding and by state are
    // among them, not only signature failures.
    for code in [1, 5] {
        assert!(seen.contains_key(&code), "no input was refused with code {code}: {seen:?}");
    }
    assert!(seen.keys().any(|c| *c >= 10), "no input reached the checks against state: {seen:?}");
}

#[test]
fn arbitrary_query_paths_heights_and_proof_flags_get_documented_codes() {
    let (net, _) = corpus();
    let prefixes = [
        "",
        "/",
        "/skipchain/latest",
        "/skipchain/index/",
        "/skipchain/hash/",
        "/skipchain/query/",
        "/skipchain/forward/",
        "/query/",
        "/proofs/",
        "/proof/",
        "/roster",
        "/params",
    ];
    let height = net.height as i64;
    let input = (
        proptest::sample::select(prefixes.to_vec()),
        "[ -~]{0,80}",
        -2..height + 3,
        any::<bool>(),
        proptest::collection::vec(any::<u8>(), 0..32),
    );
    let app = &net.nodes[0].app;
    let before = app_hash(&net);
    runner()
        .run(&input, |(prefix, suffix, height, prove, data)| {
            let r = app.query(RequestQuery {
                data: data.into(),
                path: format!("{prefix}{suffix}"),
                height,
                prove,
            });
            let known = [
                0,
                query_code::BAD_PATH,
                query_code::NOT_FOUND,
                query_code::BAD_HEIGHT,
                query_code::NOT_PROVABLE,
            ];
            prop_assert!(known.contains(&r.code), "undocumented query code {}: {}", r.code, r.log);
            Ok(())
        })
        .unwrap();
    assert_eq!(app_hash(&net), before);
}
