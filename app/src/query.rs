//! ABCI `Query` paths. Every answer is the committed, borsh-encoded value; with `prove` set, a
//! single-key answer carries an ICS23 proof (proof op type [`PROOF_OP_TYPE`]) against the app
//! hash of its height, which CometBFT puts in the header of the next block.
//!
//! | path | value | provable |
//! |---|---|---|
//! | `/skipchain/latest` | `SkipBlock` (the head) | yes |
//! | `/skipchain/index/{n}` | `SkipBlock` | yes |
//! | `/skipchain/hash/{hex}` | `SkipBlock` | yes |
//! | `/skipchain/query/{id}` | `SkipBlock` | yes |
//! | `/skipchain/forward/{n}` | forward links `Vec<[u8; 32]>` | yes |
//! | `/query/{id}` | `QueryRecord` (registration) | yes |
//! | `/query/{id}/progress` | `QueryProgress` (status, counts, judged set) | yes |
//! | `/query/{id}/bitmaps[/from/{n}]` | `Page<BitmapCommitRecord>` so far | no (list) |
//! | `/proofs/{id}[/from/{n}]` | `Page<ProofRecord>` of the query | no (list; the skipblock's proofs root authenticates them) |
//! | `/proof/{id}/{kind}/{creator}/{index}` | `ProofRecord` | yes |
//! | `/roster` | `Roster` (every entity ever admitted; see `/standing`) | yes |
//! | `/roster/genesis` | `Roster` as genesis set it | yes |
//! | `/params` | `Params` | yes |
//! | `/standing/{entity}` | `StandingRecord` (not found: in good standing) | yes |
//! | `/standings[/from/{n}]` | `Page<StandingRecord>` | no (list) |
//! | `/verdict/{id}/{kind}/{creator}/{index}` | `VerdictRecord` of the proof's challenge | yes |
//! | `/verdicts/{id}[/from/{n}]` | `Page<VerdictRecord>` of the query's proofs | no (list; each verdict is a skipblock) |
//! | `/unfounded/{entity}` | unfounded challenges it filed (`u32`) | yes |
//! | `/validator/{n}` | `ValidatorRecord` of `vn-n` | yes |
//! | `/validators[/from/{n}]` | `Page<ValidatorRecord>` in verifying-node order | no (list) |
//! | `/proposal/{n}` | `ProposalRecord` | yes |
//! | `/proposals[/from/{n}]` | `Page<ProposalRecord>` | no (list) |
//!
//! A list path answers one [`Page`](lemal_contracts::page::Page) — from entry `n` (0 when
//! `/from/{n}` is left out), at most [`PAGE_ENTRIES`] entries and [`PAGE_BYTES`] of values past
//! the first — so that no answer copies an unbounded list under the store's lock.
//!
//! Errors: code 1 for a malformed path or argument, 2 for a key that does not exist (with a
//! non-existence proof when `prove` is set), 3 for a height the store cannot answer, 4 for
//! `prove` on a list path (lists are not provable).

use lemal_contracts::group::from_borsh;
use lemal_contracts::page::{encode_page, PAGE_BYTES, PAGE_ENTRIES};
use lemal_contracts::query_path::{Lookup, QueryPath};
use tendermint_proto::v0_38::abci::{RequestQuery, ResponseQuery};
use tendermint_proto::v0_38::crypto::{ProofOp, ProofOps};

use crate::keys;
use crate::store::Store;

/// The proof op type of ICS23 proofs over the Jellyfish Merkle tree.
pub const PROOF_OP_TYPE: &str = "ics23:jmt";

/// Query error codes.
pub mod code {
    /// Malformed path or argument.
    pub const BAD_PATH: u32 = 1;
    /// No value under the key.
    pub const NOT_FOUND: u32 = 2;
    /// The store cannot answer at that height.
    pub const BAD_HEIGHT: u32 = 3;
    /// `prove` was set on a list path: lists carry no proof.
    pub const NOT_PROVABLE: u32 = 4;
}

fn fail(code: u32, log: String, height: u64) -> ResponseQuery {
    ResponseQuery {
        code,
        log,
        codespace: "lemal".into(),
        height: i64::try_from(height).unwrap_or(i64::MAX),
        ..Default::default()
    }
}

/// Answer one ABCI query from committed state.
pub fn answer(store: &Store, request: &RequestQuery) -> ResponseQuery {
    let latest = store.committed().height;
    let height = match u64::try_from(request.height) {
        Ok(0) | Err(_) => latest,
        Ok(h) => h,
    };
    if height == 0 || height > latest {
        return fail(
            code::BAD_HEIGHT,
            format!("no committed state at height {height} (latest {latest})"),
            height,
        );
    }
    let target = match request.path.parse::<QueryPath>() {
        Ok(path) => path.lookup(),
        Err(e) => return fail(code::BAD_PATH, e, height),
    };
    let read = |key: &[u8]| store.get_with_proof(key, height);
    let key = match target {
        Lookup::Key(k) => k,
        Lookup::Indexed(index_key) => match read(&index_key) {
            Ok((Some(v), _)) => match from_borsh::<u64>(&v) {
                Ok(index) => keys::block(index),
                Err(e) => {
                    panic!("index value under {} does not decode: {e}", hex::encode(index_key))
                }
            },
            Ok((None, proof)) => {
                let mut r = fail(code::NOT_FOUND, "no such block".into(), height);
                if request.prove {
                    r.key = index_key.clone().into();
                    r.proof_ops = Some(proof_ops(&index_key, &proof));
                }
                return r;
            }
            Err(e) => return fail(code::BAD_HEIGHT, e.to_string(), height),
        },
        Lookup::List(prefix, skip) => {
            if request.prove {
                return fail(
                    code::NOT_PROVABLE,
                    "list paths are not provable: prove each entry by its own key, or a query's \
                     proofs by its skipblock's proofs root"
                        .into(),
                    height,
                );
            }
            if height != latest {
                return fail(
                    code::BAD_HEIGHT,
                    "lists are served at the latest height only".into(),
                    height,
                );
            }
            let (values, more) = store
                .scan_page(&prefix, skip, PAGE_ENTRIES, PAGE_BYTES)
                .unwrap_or_else(|e| panic!("store scan failed: {e}"));
            return ResponseQuery {
                value: encode_page(&values, more).into(),
                height: i64::try_from(height).unwrap_or(i64::MAX),
                ..Default::default()
            };
        }
    };
    match read(&key) {
        Ok((value, proof)) => {
            let mut r = match value {
                Some(v) => ResponseQuery { value: v.into(), ..Default::default() },
                None => fail(code::NOT_FOUND, "not found".into(), height),
            };
            r.key = key.clone().into();
            r.height = i64::try_from(height).unwrap_or(i64::MAX);
            if request.prove {
                r.proof_ops = Some(proof_ops(&key, &proof));
            }
            r
        }
        Err(e) => fail(code::BAD_HEIGHT, e.to_string(), height),
    }
}

fn proof_ops(key: &[u8], proof: &ics23::CommitmentProof) -> ProofOps {
    use prost::Message;
    ProofOps {
        ops: vec![ProofOp {
            r#type: PROOF_OP_TYPE.into(),
            key: key.to_vec(),
            data: proof.encode_to_vec(),
        }],
    }
}
