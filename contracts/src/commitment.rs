//! Checking ICS23 proofs of ledger state against an app hash.
//!
//! The verifying nodes' state is a SHA-256 Jellyfish Merkle tree whose root is the app hash.
//! This module needs only `ics23` and the tree's proof spec, so that a client holding a trusted
//! app hash (from a light-client-verified header) can check a value, or its absence, without
//! trusting the node that served it.

use ics23::commitment_proof::Proof;
use ics23::{CommitmentProof, HostFunctionsManager, InnerOp, ProofSpec};

/// The root of the empty tree: the app hash of a store before its first commit, and after
/// every key has been deleted (the Jellyfish Merkle tree's placeholder hash).
pub const EMPTY_ROOT: [u8; 32] = *b"SPARSE_MERKLE_PLACEHOLDER_HASH__";

/// The ICS23 proof spec of the store's tree: SHA-256 Jellyfish Merkle leaves and binary inner
/// nodes, with keys compared by their SHA-256 hash.
pub fn proof_spec() -> ProofSpec {
    jmt::ics23_spec()
}

/// Whether `proof` shows that, in the tree with root `root`, `key` holds `value` (`Some`) or is
/// absent (`None`).
///
/// Only a single existence proof can show a value and only a single non-existence proof can
/// show an absence; batched or compressed proofs, empty keys and empty values are refused. In
/// the empty tree (root [`EMPTY_ROOT`]) every key is absent, which the store proves with a
/// non-existence proof naming the key and no neighbour. Never panics, whatever the proof holds.
pub fn verify_proof(
    root: &[u8; 32],
    key: &[u8],
    value: Option<&[u8]>,
    proof: &CommitmentProof,
) -> bool {
    if key.is_empty() {
        return false;
    }
    let spec = proof_spec();
    let root = root.to_vec();
    match (value, &proof.proof) {
        (Some(value), Some(Proof::Exist(_))) => {
            !value.is_empty()
                && ics23::verify_membership::<HostFunctionsManager>(proof, &spec, &root, key, value)
        }
        (None, Some(Proof::Nonexist(absent))) => {
            if absent.key != key {
                return false;
            }
            if root == EMPTY_ROOT {
                return absent.left.is_none() && absent.right.is_none();
            }
            if let (Some(left), Some(right)) = (&absent.left, &absent.right) {
                // ics23 walks both paths down from the root while their steps are equal and
                // panics if one runs out first; refuse such a pair before it gets there.
                if !paths_diverge(&left.path, &right.path) {
                    return false;
                }
            }
            ics23::verify_non_membership::<HostFunctionsManager>(proof, &spec, &root, key)
        }
        _ => false,
    }
}

/// Whether two proof paths, compared step by step from the root down, differ at some step
/// before either runs out.
fn paths_diverge(left: &[InnerOp], right: &[InnerOp]) -> bool {
    left.iter()
        .rev()
        .zip(right.iter().rev())
        .any(|(l, r)| l.prefix != r.prefix || l.suffix != r.suffix)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_that_share_every_step_from_the_root_do_not_diverge() {
        let op = |byte: u8| ics23::InnerOp { hash: 1, prefix: vec![byte; 16], suffix: vec![] };
        assert!(!paths_diverge(&[], &[]));
        assert!(!paths_diverge(&[op(1)], &[]));
        assert!(!paths_diverge(&[op(2), op(1)], &[op(3), op(2), op(1)]));
        assert!(paths_diverge(&[op(2), op(1)], &[op(3), op(1)]));
        assert!(paths_diverge(&[op(1)], &[op(2)]));
    }
}
