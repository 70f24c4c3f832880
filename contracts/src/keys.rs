//! The state layout: every key of the verifying nodes' authenticated store, in one place.
//!
//! It lives in this crate because both sides need it: the application writes under these keys,
//! and clients compute them to check ICS23 proofs without trusting the node's choice of key.
//!
//! Each key is a one-byte prefix followed by fixed-width big-endian fields, so prefix scans come
//! out in numeric order. Values are borsh-encoded; the value type of each prefix is fixed here.
//!
//! | prefix | key fields | value |
//! |---|---|---|
//! | `0x01` | — | chain id (`String`) |
//! | `0x02` | — | [`Params`](crate::state::Params) |
//! | `0x03` | — | [`Roster`](crate::state::Roster) |
//! | `0x04` | — | the genesis [`Roster`](crate::state::Roster), never changed (block 0 records its hash) |
//! | `0x05` | — | the state layout version (`u32`, [`STATE_VERSION`]) the chain was started with |
//! | `0x10` | query id (16) | [`QueryRecord`](crate::state::QueryRecord) |
//! | `0x11` | query id (16) | [`QueryProgress`](crate::state::QueryProgress) |
//! | `0x12` | query id (16) | `[1]` — the query is open (not finalized) |
//! | `0x13` | height (8), query id (16) | `[1]` — the query's phase may end in that block |
//! | `0x14` | computing node index (4) | open queries it registered (`u32`) |
//! | `0x20` | query id (16), kind (1), creator (5), index (4) | [`ProofRecord`](crate::state::ProofRecord) |
//! | `0x30` | query id (16), verifier (5) | [`BitmapCommitRecord`](crate::state::BitmapCommitRecord) |
//! | `0x40` | — | skipchain head index (`u64`) |
//! | `0x41` | index (8) | [`SkipBlock`](crate::state::SkipBlock) |
//! | `0x42` | index (8) | forward links (`Vec<[u8; 32]>`, filled level by level) |
//! | `0x43` | block hash (32) | index (`u64`) |
//! | `0x44` | query id (16) | index (`u64`) |
//! | `0x50` | entity (5) | [`StandingRecord`](crate::state::StandingRecord) — absent: in good standing |
//! | `0x51` | query id (16), kind (1), creator (5), index (4) | [`VerdictRecord`](crate::state::VerdictRecord) of the proof's challenge |
//! | `0x52` | entity (5) | unfounded challenges it filed (`u32`) |
//! | `0x53` | verifying node index (4) | [`ValidatorRecord`](crate::state::ValidatorRecord) |
//! | `0x54` | — | validator power changes of the block being executed (`Vec<(u32, u64, u64)>`: node, power before, power after) |
//! | `0x55` | — | verification cost spent on challenges: (`u64` height, `u64` cost) |
//! | `0x56` | proposal id (8) | [`ProposalRecord`](crate::state::ProposalRecord) |
//! | `0x57` | — | the next proposal id (`u64`) |
//! | `0x58` | verifying node (5) | id of its latest proposal (`u64`) |

use crate::ids::{EntityId, ProofKey, QueryId};

/// Chain id, written at InitChain.
pub const CHAIN_ID: &[u8] = &[0x01];
/// Chain parameters.
pub const PARAMS: &[u8] = &[0x02];
/// The roster.
pub const ROSTER: &[u8] = &[0x03];
/// The roster as genesis set it.
pub const GENESIS_ROSTER: &[u8] = &[0x04];
/// The state layout version the chain was started with.
pub const LAYOUT_VERSION: &[u8] = &[0x05];

/// The version of the state layout and value encodings this code reads and writes. A chain
/// started by an earlier version (which wrote no version, or another one) is refused at start
/// instead of being misread.
pub const STATE_VERSION: u32 = 2;
/// Skipchain head index.
pub const SKIP_HEAD: &[u8] = &[0x40];
/// Validator power changes of the block being executed (drained at its end).
pub const VALIDATOR_UPDATES: &[u8] = &[0x54];
/// Verification cost spent on challenges in the latest block that settled one.
pub const CHALLENGE_SPEND: &[u8] = &[0x55];
/// The next roster proposal id.
pub const NEXT_PROPOSAL: &[u8] = &[0x57];

/// Prefix of query registrations.
pub const QUERY: u8 = 0x10;
/// Prefix of query progress records.
pub const PROGRESS: u8 = 0x11;
/// Prefix of the open-query set.
pub const OPEN: u8 = 0x12;
/// Prefix of the end-of-block agenda.
pub const DUE: u8 = 0x13;
/// Prefix of the open-query count per registrar.
pub const OPEN_BY_CN: u8 = 0x14;
/// Prefix of accepted proofs.
pub const PROOF: u8 = 0x20;
/// Prefix of accepted bitmap commits.
pub const COMMIT: u8 = 0x30;
/// Prefix of skipblocks by index.
pub const BLOCK: u8 = 0x41;
/// Prefix of forward links by index.
pub const FORWARD: u8 = 0x42;
/// Prefix of the block-hash index.
pub const BLOCK_BY_HASH: u8 = 0x43;
/// Prefix of the query-id index.
pub const BLOCK_BY_QUERY: u8 = 0x44;
/// Prefix of standing records.
pub const STANDING: u8 = 0x50;
/// Prefix of challenge verdicts.
pub const VERDICT: u8 = 0x51;
/// Prefix of unfounded-challenge counts.
pub const UNFOUNDED: u8 = 0x52;
/// Prefix of validator records.
pub const VALIDATOR: u8 = 0x53;
/// Prefix of roster proposals.
pub const PROPOSAL: u8 = 0x56;
/// Prefix of each verifying node's latest proposal.
pub const PROPOSED_BY: u8 = 0x58;

fn with(prefix: u8, parts: &[&[u8]]) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + parts.iter().map(|p| p.len()).sum::<usize>());
    k.push(prefix);
    for p in parts {
        k.extend_from_slice(p);
    }
    k
}

/// A query's registration.
pub fn query(q: &QueryId) -> Vec<u8> {
    with(QUERY, &[&q.0])
}

/// A query's progress.
pub fn progress(q: &QueryId) -> Vec<u8> {
    with(PROGRESS, &[&q.0])
}

/// A query's membership in the open set.
pub fn open(q: &QueryId) -> Vec<u8> {
    with(OPEN, &[&q.0])
}

/// Prefix of the open set.
pub fn open_prefix() -> Vec<u8> {
    vec![OPEN]
}

/// An entry of the end-of-block agenda: the query's phase may end at the end of `height`.
pub fn due(height: u64, q: &QueryId) -> Vec<u8> {
    with(DUE, &[&height.to_be_bytes(), &q.0])
}

/// Prefix of the agenda of one height.
pub fn due_at(height: u64) -> Vec<u8> {
    with(DUE, &[&height.to_be_bytes()])
}

/// How many open queries computing node `cn` registered.
pub fn open_by_cn(cn: u32) -> Vec<u8> {
    with(OPEN_BY_CN, &[&cn.to_be_bytes()])
}

/// An accepted proof.
pub fn proof(k: &ProofKey) -> Vec<u8> {
    with(PROOF, &[&k.query.0, &[k.kind as u8], &k.creator.to_bytes(), &k.index.to_be_bytes()])
}

/// Prefix of every proof of a query.
pub fn proofs_of(q: &QueryId) -> Vec<u8> {
    with(PROOF, &[&q.0])
}

/// A verifying node's bitmap commit for a query.
pub fn commit(q: &QueryId, vn: EntityId) -> Vec<u8> {
    with(COMMIT, &[&q.0, &vn.to_bytes()])
}

/// Prefix of every bitmap commit of a query.
pub fn commits_of(q: &QueryId) -> Vec<u8> {
    with(COMMIT, &[&q.0])
}

/// A skipblock.
pub fn block(index: u64) -> Vec<u8> {
    with(BLOCK, &[&index.to_be_bytes()])
}

/// A skipblock's forward links.
pub fn forward(index: u64) -> Vec<u8> {
    with(FORWARD, &[&index.to_be_bytes()])
}

/// The block-hash index.
pub fn block_by_hash(hash: &[u8; 32]) -> Vec<u8> {
    with(BLOCK_BY_HASH, &[hash])
}

/// The query-id index.
pub fn block_by_query(q: &QueryId) -> Vec<u8> {
    with(BLOCK_BY_QUERY, &[&q.0])
}

/// An entity's standing record.
pub fn standing(e: EntityId) -> Vec<u8> {
    with(STANDING, &[&e.to_bytes()])
}

/// Prefix of every standing record.
pub fn standings() -> Vec<u8> {
    vec![STANDING]
}

/// The verdict of a challenged proof.
pub fn verdict(k: &ProofKey) -> Vec<u8> {
    with(VERDICT, &[&k.query.0, &[k.kind as u8], &k.creator.to_bytes(), &k.index.to_be_bytes()])
}

/// Prefix of every verdict about a query's proofs.
pub fn verdicts_of(q: &QueryId) -> Vec<u8> {
    with(VERDICT, &[&q.0])
}

/// How many unfounded challenges an entity filed.
pub fn unfounded(e: EntityId) -> Vec<u8> {
    with(UNFOUNDED, &[&e.to_bytes()])
}

/// A verifying node's validator record.
pub fn validator(vn: u32) -> Vec<u8> {
    with(VALIDATOR, &[&vn.to_be_bytes()])
}

/// Prefix of every validator record.
pub fn validators() -> Vec<u8> {
    vec![VALIDATOR]
}

/// A roster proposal.
pub fn proposal(id: u64) -> Vec<u8> {
    with(PROPOSAL, &[&id.to_be_bytes()])
}

/// Prefix of every roster proposal.
pub fn proposals() -> Vec<u8> {
    vec![PROPOSAL]
}

/// A verifying node's latest proposal.
pub fn proposed_by(vn: EntityId) -> Vec<u8> {
    with(PROPOSED_BY, &[&vn.to_bytes()])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::ProofKind;

    #[test]
    fn proof_keys_of_a_query_share_its_prefix_and_sort_like_proof_keys() {
        let q = QueryId([3; 16]);
        let mut keys: Vec<ProofKey> = [
            (ProofKind::KeySwitch, EntityId::cn(0)),
            (ProofKind::Range, EntityId::dp(300)),
            (ProofKind::Range, EntityId::dp(2)),
            (ProofKind::Aggregation, EntityId::cn(1)),
        ]
        .into_iter()
        .map(|(kind, creator)| ProofKey { query: q, kind, creator, index: 0 })
        .collect();
        let mut encoded: Vec<Vec<u8>> = keys.iter().map(proof).collect();
        assert!(encoded.iter().all(|k| k.starts_with(&proofs_of(&q))));
        keys.sort_unstable();
        encoded.sort_unstable();
        assert_eq!(encoded, keys.iter().map(proof).collect::<Vec<_>>());
    }

    #[test]
    fn block_keys_sort_by_index() {
        assert!(block(255) < block(256));
        assert!(block(1) < block(u64::MAX));
    }

    #[test]
    fn keys_are_the_documented_bytes() {
        assert_eq!(block(0x0102), [0x41, 0, 0, 0, 0, 0, 0, 1, 2]);
        assert_eq!(forward(1), [0x42, 0, 0, 0, 0, 0, 0, 0, 1]);
        assert_eq!(block_by_hash(&[5; 32]), [&[0x43][..], &[5; 32]].concat());
        assert_eq!(block_by_query(&QueryId([6; 16])), [&[0x44][..], &[6; 16]].concat());
        assert_eq!(query(&QueryId([6; 16])), [&[0x10][..], &[6; 16]].concat());
        assert_eq!(
            due(0x0102, &QueryId([6; 16])),
            [&[0x13, 0, 0, 0, 0, 0, 0, 1, 2][..], &[6; 16]].concat()
        );
        assert!(due(7, &QueryId([9; 16])).starts_with(&due_at(7)));
        assert_eq!(standing(EntityId::vn(2)), [0x50, 2, 0, 0, 0, 2]);
        assert_eq!(validator(3), [0x53, 0, 0, 0, 3]);
        assert_eq!(proposal(1), [0x56, 0, 0, 0, 0, 0, 0, 0, 1]);
        let k = ProofKey {
            query: QueryId([6; 16]),
            kind: crate::ids::ProofKind::Range,
            creator: EntityId::dp(1),
            index: 0,
        };
        assert_eq!(verdict(&k)[1..], proof(&k)[1..], "a verdict is keyed like its proof");
        assert!(verdict(&k).starts_with(&verdicts_of(&k.query)));
    }
}
