//! The check [`super::Store::open`] runs on the committed state before serving anything from it.
//!
//! redb first verifies the checksum of every page of the file's committed trees (it opens with
//! `set_check_integrity_on_open`), which catches a truncated file and a flipped byte in any
//! live page: tree nodes, values, key preimages, the meta table. This module then checks what
//! checksums cannot, that the contents are the ones the chain agreed on:
//!
//! - the committed (height, app hash) record names a version whose root node exists;
//! - every node of the tree at that version, from the root down, decodes and hashes to the hash
//!   its parent (or, for the root, the committed app hash) records;
//! - every leaf's key hash has its preimage, and the value the store serves for that key at the
//!   committed height hashes to the leaf's value hash;
//! - the latest-value table holds exactly the tree's live keys (no extra, unauthenticated key).
//!
//! What it does not check: nodes and values of earlier versions that the latest tree no longer
//! uses (only redb's checksums cover them; proofs served at old heights are checked by clients
//! against the signed app hash of that height), and the stale-node records (unused until
//! pruning exists). The walk reads the whole latest tree once per open: linear in the number of
//! live keys.

use jmt::storage::{NibblePath, Node};
use jmt::{KeyHash, ValueHash};
use sha2::Sha256;

use super::tables::{self, TreeView};

#[cfg(test)]
mod tests;
use super::{Committed, StoreError, EMPTY_ROOT};

/// Checks the tree committed at `committed.height` against `committed.app_hash`, as described in
/// the module documentation.
pub(super) fn check_committed_state(
    view: &TreeView,
    committed: Committed,
) -> Result<(), StoreError> {
    let height = committed.height;
    if height == 0 {
        if committed.app_hash != EMPTY_ROOT {
            return Err(corrupt(
                height,
                "height 0 is committed with an app hash that is not the empty root",
            ));
        }
        return match view.live_keys()? {
            0 => Ok(()),
            n => Err(corrupt(height, format!("nothing is committed but {n} keys have values"))),
        };
    }
    let mut leaves: u64 = 0;
    // (path, version, hash its parent records) of the nodes left to check.
    let mut pending = vec![(NibblePath::from_iter(std::iter::empty()), height, committed.app_hash)];
    while let Some((path, version, expected)) = pending.pop() {
        let depth = path.num_nibbles();
        let Some(node) = view.node(version, &tables::to_borsh(&path)?)? else {
            return Err(corrupt(
                height,
                match depth {
                    0 => format!("the committed height has no tree root (version {version})"),
                    _ => format!("the tree node of version {version} at depth {depth} is missing"),
                },
            ));
        };
        let hash = match &node {
            Node::Null if depth == 0 => EMPTY_ROOT,
            Node::Null => {
                return Err(corrupt(height, format!("an empty node at depth {depth}")));
            }
            Node::Leaf(leaf) => {
                leaves += 1;
                let key_hash = leaf.key_hash();
                let key = view.key_of(key_hash)?.ok_or_else(|| {
                    corrupt(height, format!("no key for leaf {}", hex::encode(key_hash.0)))
                })?;
                if KeyHash::with::<Sha256>(&key) != key_hash {
                    return Err(corrupt(
                        height,
                        format!("the stored key {} does not hash to its leaf", printable(&key)),
                    ));
                }
                let value = view.value_at(height, key_hash)?.ok_or_else(|| {
                    corrupt(height, format!("key {} has no value", printable(&key)))
                })?;
                let served =
                    jmt::storage::LeafNode::new(key_hash, ValueHash::with::<Sha256>(&value));
                if served.hash::<Sha256>() != leaf.hash::<Sha256>() {
                    return Err(corrupt(
                        height,
                        format!("the value of key {} does not match the tree", printable(&key)),
                    ));
                }
                leaf.hash::<Sha256>()
            }
            Node::Internal(internal) => {
                for (nibble, child) in internal.children_sorted() {
                    let child_path: NibblePath = (0..depth)
                        .map(|i| path.get_nibble(i))
                        .chain(std::iter::once(nibble))
                        .collect();
                    pending.push((child_path, child.version, child.hash));
                }
                internal.hash::<Sha256>()
            }
        };
        if hash != expected {
            return Err(corrupt(
                height,
                match depth {
                    0 => "the tree root does not hash to the committed app hash".to_owned(),
                    _ => format!(
                        "the tree node of version {version} at depth {depth} does not hash to \
                         the hash its parent records"
                    ),
                },
            ));
        }
    }
    let live = view.live_keys()?;
    if live != leaves {
        return Err(corrupt(
            height,
            format!("the latest-value table holds {live} keys, the tree {leaves}"),
        ));
    }
    Ok(())
}

fn corrupt(height: u64, what: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("committed state at height {height}: {what}"))
}

/// A key for a message: as text when it is printable ASCII, else in hex.
fn printable(key: &[u8]) -> String {
    match key.iter().all(|b| b.is_ascii_graphic()) {
        true => format!("{:?}", String::from_utf8_lossy(key)),
        false => format!("0x{}", hex::encode(key)),
    }
}
