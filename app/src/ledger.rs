//! Typed access to ledger state over any key-value view.
//!
//! The state machine reads and writes through [`KvRead`] / [`KvWrite`]: the block overlay of the
//! authenticated store in production, a plain map in tests. Reads of committed state that fail
//! are not user errors: the store implementation panics on them (a broken store must stop the
//! node rather than let it fork silently).

use std::collections::BTreeMap;

use borsh::{BorshDeserialize, BorshSerialize};
use lemal_contracts::group::{from_borsh, to_borsh};
use lemal_contracts::ids::{EntityId, ProofKey, QueryId};
use lemal_contracts::state::{
    BitmapCommitRecord, Params, ProofRecord, ProposalRecord, QueryProgress, QueryRecord, Roster,
    SkipBlock, StandingRecord, ValidatorRecord, VerdictRecord,
};

use crate::keys;

/// Read access to state.
pub trait KvRead {
    /// The value of `key`.
    fn get(&self, key: &[u8]) -> Option<Vec<u8>>;
    /// Every `(key, value)` whose key starts with `prefix`, in key order.
    fn scan_prefix(&self, prefix: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)>;
}

/// Write access to state.
pub trait KvWrite: KvRead {
    /// Set `key` to `value`.
    fn put(&mut self, key: Vec<u8>, value: Vec<u8>);
    /// Remove `key`.
    fn delete(&mut self, key: Vec<u8>);
}

/// A plain in-memory state, for tests and tools.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MemState(pub BTreeMap<Vec<u8>, Vec<u8>>);

impl KvRead for MemState {
    fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.0.get(key).cloned()
    }
    fn scan_prefix(&self, prefix: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
        self.0
            .range(prefix.to_vec()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }
}

impl KvWrite for MemState {
    fn put(&mut self, key: Vec<u8>, value: Vec<u8>) {
        self.0.insert(key, value);
    }
    fn delete(&mut self, key: Vec<u8>) {
        self.0.remove(&key);
    }
}

fn read<T: BorshDeserialize>(s: &impl KvRead, key: &[u8]) -> Option<T> {
    let bytes = s.get(key)?;
    Some(
        from_borsh(&bytes).unwrap_or_else(|e| {
            panic!("state value under {} does not decode: {e}", hex::encode(key))
        }),
    )
}

fn write<T: BorshSerialize>(s: &mut impl KvWrite, key: Vec<u8>, value: &T) {
    s.put(key, to_borsh(value));
}

/// Typed getters and setters; one function per key of [`crate::keys`].
pub mod get {
    use super::*;

    /// The chain id.
    pub fn chain_id(s: &impl KvRead) -> Option<String> {
        read(s, keys::CHAIN_ID)
    }
    /// The parameters.
    pub fn params(s: &impl KvRead) -> Option<Params> {
        read(s, keys::PARAMS)
    }
    /// The state layout version the chain was started with (`None` before genesis, or for a
    /// chain started before versions were recorded).
    pub fn layout_version(s: &impl KvRead) -> Option<u32> {
        read(s, keys::LAYOUT_VERSION)
    }
    /// The roster.
    pub fn roster(s: &impl KvRead) -> Option<Roster> {
        read(s, keys::ROSTER)
    }
    /// A query's registration.
    pub fn query(s: &impl KvRead, q: &QueryId) -> Option<QueryRecord> {
        read(s, &keys::query(q))
    }
    /// A query's progress.
    pub fn progress(s: &impl KvRead, q: &QueryId) -> Option<QueryProgress> {
        read(s, &keys::progress(q))
    }
    /// Open queries, in id order.
    pub fn open_queries(s: &impl KvRead) -> Vec<QueryId> {
        s.scan_prefix(&keys::open_prefix())
            .into_iter()
            .map(|(k, _)| {
                let mut id = [0u8; 16];
                id.copy_from_slice(&k[1..17]);
                QueryId(id)
            })
            .collect()
    }
    /// How many open queries computing node `cn` registered.
    pub fn open_by_cn(s: &impl KvRead, cn: u32) -> u32 {
        read(s, &keys::open_by_cn(cn)).unwrap_or(0)
    }
    /// The queries on the end-of-block agenda of `height`, in id order.
    pub fn due(s: &impl KvRead, height: u64) -> Vec<QueryId> {
        let prefix = keys::due_at(height);
        s.scan_prefix(&prefix)
            .into_iter()
            .map(|(k, _)| {
                let mut id = [0u8; 16];
                id.copy_from_slice(&k[prefix.len()..prefix.len() + 16]);
                QueryId(id)
            })
            .collect()
    }
    /// Whether a proof is on the ledger (without decoding it).
    pub fn has_proof(s: &impl KvRead, k: &ProofKey) -> bool {
        s.get(&keys::proof(k)).is_some()
    }
    /// An accepted proof.
    pub fn proof(s: &impl KvRead, k: &ProofKey) -> Option<ProofRecord> {
        read(s, &keys::proof(k))
    }
    /// Every accepted proof of a query, in key order.
    pub fn proofs(s: &impl KvRead, q: &QueryId) -> Vec<ProofRecord> {
        s.scan_prefix(&keys::proofs_of(q))
            .into_iter()
            .map(|(k, v)| {
                from_borsh(&v).unwrap_or_else(|e| {
                    panic!("proof record under {} does not decode: {e}", hex::encode(k))
                })
            })
            .collect()
    }
    /// A verifying node's bitmap commit.
    pub fn commit(s: &impl KvRead, q: &QueryId, vn: EntityId) -> Option<BitmapCommitRecord> {
        read(s, &keys::commit(q, vn))
    }
    /// Every bitmap commit of a query, in verifier order.
    pub fn commits(s: &impl KvRead, q: &QueryId) -> Vec<BitmapCommitRecord> {
        s.scan_prefix(&keys::commits_of(q))
            .into_iter()
            .map(|(k, v)| {
                from_borsh(&v).unwrap_or_else(|e| {
                    panic!("commit record under {} does not decode: {e}", hex::encode(k))
                })
            })
            .collect()
    }
    /// The skipchain head index.
    pub fn skip_head(s: &impl KvRead) -> Option<u64> {
        read(s, keys::SKIP_HEAD)
    }
    /// A skipblock by index.
    pub fn block(s: &impl KvRead, index: u64) -> Option<SkipBlock> {
        read(s, &keys::block(index))
    }
    /// A skipblock's forward links.
    pub fn forward(s: &impl KvRead, index: u64) -> Vec<[u8; 32]> {
        read(s, &keys::forward(index)).unwrap_or_default()
    }
    /// Index of the block with this hash.
    pub fn block_by_hash(s: &impl KvRead, hash: &[u8; 32]) -> Option<u64> {
        read(s, &keys::block_by_hash(hash))
    }
    /// Index of the block of this query.
    pub fn block_by_query(s: &impl KvRead, q: &QueryId) -> Option<u64> {
        read(s, &keys::block_by_query(q))
    }
    /// An entity's standing record (`None`: in good standing).
    pub fn standing(s: &impl KvRead, e: EntityId) -> Option<StandingRecord> {
        read(s, &keys::standing(e))
    }
    /// The verdict of a challenged proof.
    pub fn verdict(s: &impl KvRead, k: &ProofKey) -> Option<VerdictRecord> {
        read(s, &keys::verdict(k))
    }
    /// How many unfounded challenges an entity filed.
    pub fn unfounded(s: &impl KvRead, e: EntityId) -> u32 {
        read(s, &keys::unfounded(e)).unwrap_or(0)
    }
    /// A verifying node's validator record.
    pub fn validator(s: &impl KvRead, vn: u32) -> Option<ValidatorRecord> {
        read(s, &keys::validator(vn))
    }
    /// Every validator record, by verifying node index.
    pub fn validators(s: &impl KvRead) -> Vec<(u32, ValidatorRecord)> {
        s.scan_prefix(&keys::validators())
            .into_iter()
            .map(|(k, v)| {
                let mut index = [0u8; 4];
                index.copy_from_slice(&k[1..5]);
                let record = from_borsh(&v).unwrap_or_else(|e| {
                    panic!("validator record under {} does not decode: {e}", hex::encode(&k))
                });
                (u32::from_be_bytes(index), record)
            })
            .collect()
    }
    /// The validator power changes of the block being executed: (verifying node index, power
    /// at the start of the block, new power).
    pub fn validator_updates(s: &impl KvRead) -> Vec<(u32, u64, u64)> {
        read(s, keys::VALIDATOR_UPDATES).unwrap_or_default()
    }
    /// The verification cost spent on challenges at `height`.
    pub fn challenge_spend(s: &impl KvRead, height: u64) -> u64 {
        match read::<(u64, u64)>(s, keys::CHALLENGE_SPEND) {
            Some((h, cost)) if h == height => cost,
            _ => 0,
        }
    }
    /// A roster proposal.
    pub fn proposal(s: &impl KvRead, id: u64) -> Option<ProposalRecord> {
        read(s, &keys::proposal(id))
    }
    /// The next proposal id.
    pub fn next_proposal(s: &impl KvRead) -> u64 {
        read(s, keys::NEXT_PROPOSAL).unwrap_or(0)
    }
    /// A verifying node's latest proposal.
    pub fn proposed_by(s: &impl KvRead, vn: EntityId) -> Option<u64> {
        read(s, &keys::proposed_by(vn))
    }
}

/// Typed setters.
pub mod set {
    use super::*;

    /// The chain id.
    pub fn chain_id(s: &mut impl KvWrite, v: &str) {
        write(s, keys::CHAIN_ID.to_vec(), &v.to_owned())
    }
    /// The parameters.
    pub fn params(s: &mut impl KvWrite, v: &Params) {
        write(s, keys::PARAMS.to_vec(), v)
    }
    /// The roster.
    pub fn roster(s: &mut impl KvWrite, v: &Roster) {
        write(s, keys::ROSTER.to_vec(), v)
    }
    /// The state layout version.
    pub fn layout_version(s: &mut impl KvWrite, v: u32) {
        write(s, keys::LAYOUT_VERSION.to_vec(), &v)
    }
    /// The roster as genesis set it.
    pub fn genesis_roster(s: &mut impl KvWrite, v: &Roster) {
        write(s, keys::GENESIS_ROSTER.to_vec(), v)
    }
    /// A query's registration.
    pub fn query(s: &mut impl KvWrite, q: &QueryId, v: &QueryRecord) {
        write(s, keys::query(q), v)
    }
    /// A query's progress.
    pub fn progress(s: &mut impl KvWrite, q: &QueryId, v: &QueryProgress) {
        write(s, keys::progress(q), v)
    }
    /// Mark a query open or closed.
    pub fn open(s: &mut impl KvWrite, q: &QueryId, open: bool) {
        if open {
            s.put(keys::open(q), vec![1])
        } else {
            s.delete(keys::open(q))
        }
    }
    /// How many open queries computing node `cn` registered (the key is removed at zero).
    pub fn open_by_cn(s: &mut impl KvWrite, cn: u32, count: u32) {
        match count {
            0 => s.delete(keys::open_by_cn(cn)),
            n => write(s, keys::open_by_cn(cn), &n),
        }
    }
    /// Put a query on the end-of-block agenda of `height`.
    pub fn due(s: &mut impl KvWrite, height: u64, q: &QueryId) {
        s.put(keys::due(height, q), vec![1])
    }
    /// Take a query off the agenda of `height`.
    pub fn done(s: &mut impl KvWrite, height: u64, q: &QueryId) {
        s.delete(keys::due(height, q))
    }
    /// An accepted proof.
    pub fn proof(s: &mut impl KvWrite, v: &ProofRecord) {
        write(s, keys::proof(&v.key), v)
    }
    /// A bitmap commit.
    pub fn commit(s: &mut impl KvWrite, q: &QueryId, v: &BitmapCommitRecord) {
        write(s, keys::commit(q, v.vn), v)
    }
    /// The skipchain head index.
    pub fn skip_head(s: &mut impl KvWrite, index: u64) {
        write(s, keys::SKIP_HEAD.to_vec(), &index)
    }
    /// A skipblock and its hash and query indexes.
    pub fn block(s: &mut impl KvWrite, b: &SkipBlock, hash: &[u8; 32]) {
        write(s, keys::block(b.index), b);
        write(s, keys::block_by_hash(hash), &b.index);
        if let Some(q) = b.query_id() {
            write(s, keys::block_by_query(&q), &b.index);
        }
    }
    /// A skipblock's forward links.
    pub fn forward(s: &mut impl KvWrite, index: u64, links: &Vec<[u8; 32]>) {
        write(s, keys::forward(index), links)
    }
    /// An entity's standing record.
    pub fn standing(s: &mut impl KvWrite, v: &StandingRecord) {
        write(s, keys::standing(v.entity), v)
    }
    /// The verdict of a challenged proof.
    pub fn verdict(s: &mut impl KvWrite, v: &VerdictRecord) {
        write(s, keys::verdict(&v.verdict.proof), v)
    }
    /// How many unfounded challenges an entity filed.
    pub fn unfounded(s: &mut impl KvWrite, e: EntityId, count: u32) {
        write(s, keys::unfounded(e), &count)
    }
    /// A verifying node's validator record.
    pub fn validator(s: &mut impl KvWrite, vn: u32, v: &ValidatorRecord) {
        write(s, keys::validator(vn), v)
    }
    /// The validator power changes of the block being executed (the key is removed when empty).
    pub fn validator_updates(s: &mut impl KvWrite, updates: &Vec<(u32, u64, u64)>) {
        match updates.is_empty() {
            true => s.delete(keys::VALIDATOR_UPDATES.to_vec()),
            false => write(s, keys::VALIDATOR_UPDATES.to_vec(), updates),
        }
    }
    /// The verification cost spent on challenges at `height`.
    pub fn challenge_spend(s: &mut impl KvWrite, height: u64, cost: u64) {
        write(s, keys::CHALLENGE_SPEND.to_vec(), &(height, cost))
    }
    /// A roster proposal.
    pub fn proposal(s: &mut impl KvWrite, v: &ProposalRecord) {
        write(s, keys::proposal(v.id), v)
    }
    /// The next proposal id.
    pub fn next_proposal(s: &mut impl KvWrite, id: u64) {
        write(s, keys::NEXT_PROPOSAL.to_vec(), &id)
    }
    /// A verifying node's latest proposal.
    pub fn proposed_by(s: &mut impl KvWrite, vn: EntityId, id: u64) {
        write(s, keys::proposed_by(vn), &id)
    }
}
