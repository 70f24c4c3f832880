//! What CheckTx already knows about transactions in the mempool: the decoded, authenticated
//! transaction per hash, so that the re-check CometBFT runs on every mempool transaction after
//! each block repeats only the cheap stateful phase, not the decoding and the signature.
//!
//! The stateless result depends only on the bytes and on the machine's genesis configuration
//! (chain id, roster, parameters), which is fixed for the life of the process; the cache is
//! cleared at InitChain. It is bounded in entries and in transaction bytes: the oldest entries
//! go first, and a transaction whose entry was evicted is simply decoded again.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use lemal_contracts::tx::Tx;

/// Most transactions remembered (CometBFT's default mempool holds 5000).
pub const MAX_ENTRIES: usize = 10_000;
/// Most transaction bytes remembered (decoded transactions take a few times that in memory).
pub const MAX_BYTES: usize = 64 << 20;

/// A bounded, first-in-first-out map from transaction hash to authenticated transaction.
#[derive(Debug)]
pub struct CheckCache {
    max_entries: usize,
    max_bytes: usize,
    bytes: usize,
    entries: BTreeMap<[u8; 32], (Arc<Tx>, usize)>,
    order: VecDeque<[u8; 32]>,
}

impl Default for CheckCache {
    fn default() -> Self {
        Self::with_limits(MAX_ENTRIES, MAX_BYTES)
    }
}

impl CheckCache {
    /// An empty cache holding at most `max_entries` transactions of `max_bytes` in total.
    pub fn with_limits(max_entries: usize, max_bytes: usize) -> Self {
        Self { max_entries, max_bytes, bytes: 0, entries: BTreeMap::new(), order: VecDeque::new() }
    }

    /// The authenticated transaction of `hash`, if remembered.
    pub fn get(&self, hash: &[u8; 32]) -> Option<Arc<Tx>> {
        self.entries.get(hash).map(|(tx, _)| tx.clone())
    }

    /// Remember `tx` (of `len` encoded bytes) under `hash`, evicting the oldest entries to stay
    /// within the bounds. A transaction larger than the whole byte budget is not remembered.
    pub fn insert(&mut self, hash: [u8; 32], tx: Arc<Tx>, len: usize) {
        if len > self.max_bytes || self.max_entries == 0 || self.entries.contains_key(&hash) {
            return;
        }
        while self.entries.len() >= self.max_entries || self.bytes + len > self.max_bytes {
            let Some(oldest) = self.order.pop_front() else { break };
            self.forget(&oldest);
        }
        self.entries.insert(hash, (tx, len));
        self.order.push_back(hash);
        self.bytes += len;
    }

    /// Forget `hash` (the transaction left the mempool).
    pub fn remove(&mut self, hash: &[u8; 32]) {
        if self.forget(hash) {
            self.order.retain(|h| h != hash);
        }
    }

    fn forget(&mut self, hash: &[u8; 32]) -> bool {
        match self.entries.remove(hash) {
            Some((_, len)) => {
                self.bytes -= len;
                true
            }
            None => false,
        }
    }

    /// Forget everything.
    pub fn clear(&mut self) {
        *self = Self::with_limits(self.max_entries, self.max_bytes);
    }

    /// Transactions remembered.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Encoded bytes of the transactions remembered.
    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lemal_contracts::ids::{EntityId, ProofKind, QueryId};
    use lemal_contracts::sig::Signature;
    use lemal_contracts::tx::{SubmitProof, TxBody};

    fn tx() -> Arc<Tx> {
        Arc::new(Tx {
            chain_id: "c".into(),
            signer: EntityId::dp(0),
            body: TxBody::SubmitProof(SubmitProof {
                query_id: QueryId([0; 16]),
                kind: ProofKind::Range,
                index: 0,
                inputs: Vec::new(),
                outputs: Vec::new(),
                proof: Vec::new(),
            }),
            signature: Signature([0; 64]),
        })
    }

    fn hash(i: u8) -> [u8; 32] {
        [i; 32]
    }

    #[test]
    fn the_cache_stays_within_its_entry_and_byte_bounds_oldest_first() {
        let mut cache = CheckCache::with_limits(3, 100);
        for i in 0..5 {
            cache.insert(hash(i), tx(), 10);
        }
        assert_eq!(cache.len(), 3);
        assert!(cache.get(&hash(1)).is_none(), "the oldest went first");
        assert!(cache.get(&hash(4)).is_some());
        cache.insert(hash(9), tx(), 95);
        assert_eq!((cache.len(), cache.bytes()), (1, 95), "bytes bound evicts too");
        cache.insert(hash(10), tx(), 101);
        assert!(cache.get(&hash(10)).is_none(), "larger than the budget: not remembered");
        cache.remove(&hash(9));
        assert!(cache.is_empty());
        assert_eq!(cache.bytes(), 0);
    }
}
