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
use lemal_contracts::ids::{EntityId, ProofKey, ProofKind, QueryId};
use lemal_contracts::page::{encode_page, PAGE_BYTES, PAGE_ENTRIES};
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

enum Target {
    /// One key: provable.
    Key(Vec<u8>),
    /// A key resolved through an index key holding a `u64` block index.
    Indexed(Vec<u8>),
    /// One page of the values under a prefix, from the given entry on.
    List(Vec<u8>, usize),
}

fn parse_path(path: &str) -> Result<Target, String> {
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let query_id = |s: &str| s.parse::<QueryId>().map_err(|e| format!("{e}"));
    let entity = |s: &str| s.parse::<EntityId>().map_err(|e| format!("{e}"));
    let from =
        |n: &str| n.parse::<u32>().map(|n| n as usize).map_err(|_| format!("bad page start {n:?}"));
    Ok(match parts.as_slice() {
        ["skipchain", "latest"] => Target::Indexed(keys::SKIP_HEAD.to_vec()),
        ["skipchain", "index", n] => {
            Target::Key(keys::block(n.parse().map_err(|_| format!("bad index {n:?}"))?))
        }
        ["skipchain", "forward", n] => {
            Target::Key(keys::forward(n.parse().map_err(|_| format!("bad index {n:?}"))?))
        }
        ["skipchain", "hash", h] => {
            let mut hash = [0u8; 32];
            hex::decode_to_slice(h, &mut hash).map_err(|_| format!("bad block hash {h:?}"))?;
            Target::Indexed(keys::block_by_hash(&hash))
        }
        ["skipchain", "query", id] => Target::Indexed(keys::block_by_query(&query_id(id)?)),
        ["query", id] => Target::Key(keys::query(&query_id(id)?)),
        ["query", id, "progress"] => Target::Key(keys::progress(&query_id(id)?)),
        ["query", id, "bitmaps"] => Target::List(keys::commits_of(&query_id(id)?), 0),
        ["query", id, "bitmaps", "from", n] => {
            Target::List(keys::commits_of(&query_id(id)?), from(n)?)
        }
        ["proofs", id] => Target::List(keys::proofs_of(&query_id(id)?), 0),
        ["proofs", id, "from", n] => Target::List(keys::proofs_of(&query_id(id)?), from(n)?),
        ["proof", id, kind, creator, index] => Target::Key(keys::proof(&ProofKey {
            query: query_id(id)?,
            kind: kind.parse::<ProofKind>().map_err(|e| e.to_string())?,
            creator: creator.parse::<EntityId>().map_err(|e| e.to_string())?,
            index: index.parse().map_err(|_| format!("bad index {index:?}"))?,
        })),
        ["roster"] => Target::Key(keys::ROSTER.to_vec()),
        ["roster", "genesis"] => Target::Key(keys::GENESIS_ROSTER.to_vec()),
        ["standing", e] => Target::Key(keys::standing(entity(e)?)),
        ["standings"] => Target::List(keys::standings(), 0),
        ["standings", "from", n] => Target::List(keys::standings(), from(n)?),
        ["verdict", id, kind, creator, index] => Target::Key(keys::verdict(&ProofKey {
            query: query_id(id)?,
            kind: kind.parse::<ProofKind>().map_err(|e| e.to_string())?,
            creator: entity(creator)?,
            index: index.parse().map_err(|_| format!("bad index {index:?}"))?,
        })),
        ["verdicts", id] => Target::List(keys::verdicts_of(&query_id(id)?), 0),
        ["verdicts", id, "from", n] => Target::List(keys::verdicts_of(&query_id(id)?), from(n)?),
        ["unfounded", e] => Target::Key(keys::unfounded(entity(e)?)),
        ["validator", n] => {
            Target::Key(keys::validator(n.parse().map_err(|_| format!("bad index {n:?}"))?))
        }
        ["validators"] => Target::List(keys::validators(), 0),
        ["validators", "from", n] => Target::List(keys::validators(), from(n)?),
        ["proposal", n] => {
            Target::Key(keys::proposal(n.parse().map_err(|_| format!("bad proposal {n:?}"))?))
        }
        ["proposals"] => Target::List(keys::proposals(), 0),
        ["proposals", "from", n] => Target::List(keys::proposals(), from(n)?),
        ["params"] => Target::Key(keys::PARAMS.to_vec()),
        _ => return Err(format!("unknown query path {path:?}")),
    })
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
    let target = match parse_path(&request.path) {
        Ok(t) => t,
        Err(e) => return fail(code::BAD_PATH, e, height),
    };
    let read = |key: &[u8]| store.get_with_proof(key, height);
    let key = match target {
        Target::Key(k) => k,
        Target::Indexed(index_key) => match read(&index_key) {
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
        Target::List(prefix, skip) => {
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
