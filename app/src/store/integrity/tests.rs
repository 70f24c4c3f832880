//! A damaged store file is refused when it opens, with a message that names the file and what
//! is wrong, and never serves a different state: damage to the bytes (truncation, flipped
//! bytes, which redb's page checksums catch) and damage redb cannot see (records rewritten
//! consistently through redb, which the walk of the committed tree catches).

#![allow(clippy::unwrap_used)]

use std::path::Path;

use jmt::storage::{NibblePath, Node};
use redb::{Database, ReadableTable};
use tempfile::TempDir;

use super::super::tests::{commit_block, db_path, new_store};
use super::super::{tables, Committed, Entries, Store, StoreError};

/// A store of a few blocks with a recognizable value; its committed state.
fn store_of_a_few_blocks() -> (TempDir, Committed) {
    let (dir, mut store) = new_store();
    commit_block(&mut store, &[(b"query/1", Some(b"open")), (b"query/2", Some(b"open"))]);
    commit_block(&mut store, &[(b"proof/1", Some(b"VALUE-TO-FIND-IN-THE-FILE"))]);
    commit_block(&mut store, &[(b"query/2", None), (b"query/3", Some(b"open"))]);
    let committed = commit_block(&mut store, &[(b"query/1", Some(b"closed"))]);
    drop(store);
    (dir, committed)
}

/// What a reopened store serves: its committed record and its values.
fn served(path: &Path) -> Result<(Committed, Entries), StoreError> {
    let store = Store::open(path)?;
    Ok((store.committed(), store.scan_prefix(b"")?))
}

/// Asserts that opening `path` is refused as damaged, naming the file; returns the message.
fn assert_damaged(path: &Path) -> String {
    match served(path) {
        Err(err @ StoreError::Damaged { .. }) => {
            let message = err.to_string();
            assert!(message.starts_with(&format!("store at {} is damaged: ", path.display())));
            assert!(err.is_fatal());
            message
        }
        other => panic!("expected a damaged store, got {other:?}"),
    }
}

fn flip_byte_at(path: &Path, offset: usize) {
    let mut bytes = std::fs::read(path).unwrap();
    bytes[offset] ^= 0x40;
    std::fs::write(path, bytes).unwrap();
}

/// Rewrites the store's records through redb, as a buggy or malicious program would: the pages
/// stay consistent, so only the store's own check can notice.
fn rewrite(path: &Path, edit: impl FnOnce(&redb::WriteTransaction)) {
    let db = Database::create(path).unwrap();
    let txn = db.begin_write().unwrap();
    edit(&txn);
    txn.commit().unwrap();
}

#[test]
fn an_intact_store_reopens_with_its_state_and_the_check_passes_again_and_again() {
    let (dir, committed) = store_of_a_few_blocks();
    let first = served(&db_path(&dir)).unwrap();
    assert_eq!(first.0, committed);
    assert_eq!(served(&db_path(&dir)).unwrap(), first);
}

#[test]
fn a_truncated_store_is_refused_as_damaged() {
    let (dir, _) = store_of_a_few_blocks();
    let path = db_path(&dir);
    let len = std::fs::metadata(&path).unwrap().len();
    for keep in [len / 2, len - 4096, 512] {
        let saved = std::fs::read(&path).unwrap();
        std::fs::OpenOptions::new().write(true).open(&path).unwrap().set_len(keep).unwrap();
        let message = assert_damaged(&path);
        eprintln!("truncated to {keep} of {len} bytes: {message}");
        std::fs::write(&path, saved).unwrap();
    }
    served(&path).unwrap();
}

#[test]
fn a_flipped_byte_in_a_value_is_refused_as_damaged() {
    let (dir, _) = store_of_a_few_blocks();
    let path = db_path(&dir);
    let bytes = std::fs::read(&path).unwrap();
    let marker = b"VALUE-TO-FIND-IN-THE-FILE";
    let at = bytes.windows(marker.len()).position(|w| w == marker).expect("the value is stored");
    flip_byte_at(&path, at + 3);
    eprintln!("{}", assert_damaged(&path));
}

#[test]
fn a_flipped_byte_in_the_committed_record_is_refused_as_damaged() {
    let (dir, committed) = store_of_a_few_blocks();
    let path = db_path(&dir);
    let bytes = std::fs::read(&path).unwrap();
    let record = tables::encode_committed(&committed);
    let at = bytes.windows(record.len()).position(|w| w == record).expect("the record is stored");
    flip_byte_at(&path, at + 20);
    eprintln!("{}", assert_damaged(&path));
}

#[test]
fn flipped_bytes_anywhere_in_the_file_are_refused_or_change_nothing_served() {
    // Every 1409th byte (a prime step, so that offsets fall at many positions within pages),
    // the middle, the last byte and a stored value: either the open refuses the file as
    // damaged, or the byte was in unused space and the store serves exactly the state it
    // committed.
    let (dir, committed) = store_of_a_few_blocks();
    let path = db_path(&dir);
    let intact = served(&path).unwrap();
    assert_eq!(intact.0, committed);
    let saved = std::fs::read(&path).unwrap();
    let marker = b"VALUE-TO-FIND-IN-THE-FILE";
    let value_at = saved.windows(marker.len()).position(|w| w == marker).unwrap();
    let (mut refused, mut harmless) = (0, 0);
    let special = [saved.len() / 2, saved.len() - 1, value_at];
    for offset in (0..saved.len()).step_by(1409).chain(special) {
        flip_byte_at(&path, offset);
        match served(&path) {
            Err(StoreError::Damaged { .. }) => refused += 1,
            Ok(state) if state == intact => harmless += 1,
            other => panic!("a byte flipped at {offset} gave {other:?}"),
        }
        std::fs::write(&path, &saved).unwrap();
    }
    eprintln!(
        "{refused} flips refused as damaged, {harmless} in unused space, of {} bytes",
        saved.len()
    );
    assert!(refused > 0);
    assert_eq!(served(&path).unwrap(), intact);
}

#[test]
fn a_committed_record_moved_to_a_height_without_a_tree_is_refused_as_damaged() {
    let (dir, committed) = store_of_a_few_blocks();
    rewrite(&db_path(&dir), |txn| {
        let moved = Committed { height: committed.height + 1, ..committed };
        let mut meta = txn.open_table(tables::META).unwrap();
        meta.insert(tables::COMMITTED_KEY, tables::encode_committed(&moved).as_slice()).unwrap();
    });
    let message = assert_damaged(&db_path(&dir));
    assert!(message.contains("has no tree root"), "{message}");
}

#[test]
fn a_value_rewritten_behind_the_tree_is_refused_as_damaged() {
    let (dir, committed) = store_of_a_few_blocks();
    rewrite(&db_path(&dir), |txn| {
        let mut latest = txn.open_table(tables::LATEST).unwrap();
        let forged = tables::encode_latest(committed.height, b"open");
        latest.insert(&b"query/1"[..], forged.as_slice()).unwrap();
    });
    let message = assert_damaged(&db_path(&dir));
    assert!(message.contains("the value of key \"query/1\" does not match the tree"), "{message}");
}

#[test]
fn a_key_added_behind_the_tree_is_refused_as_damaged() {
    let (dir, committed) = store_of_a_few_blocks();
    rewrite(&db_path(&dir), |txn| {
        let mut latest = txn.open_table(tables::LATEST).unwrap();
        let forged = tables::encode_latest(committed.height, b"open");
        latest.insert(&b"query/9"[..], forged.as_slice()).unwrap();
    });
    let message = assert_damaged(&db_path(&dir));
    assert!(message.contains("the latest-value table holds 4 keys, the tree 3"), "{message}");
}

#[test]
fn a_missing_or_changed_tree_node_is_refused_as_damaged() {
    for change in ["remove", "replace"] {
        let (dir, committed) = store_of_a_few_blocks();
        rewrite(&db_path(&dir), |txn| {
            let mut nodes = txn.open_table(tables::NODES).unwrap();
            // A child of the latest root written by an earlier block: the latest tree uses it.
            let root: Node = {
                let stored = nodes.get((committed.height, &tables::ROOT_PATH[..])).unwrap();
                borsh::from_slice(stored.unwrap().value()).unwrap()
            };
            let Node::Internal(root) = root else {
                panic!("the root of three keys is an inner node")
            };
            let (nibble, child) = root
                .children_sorted()
                .find(|(_, child)| child.version < committed.height)
                .map(|(nibble, child)| (nibble, child.clone()))
                .expect("a child of an earlier version");
            let path = tables::to_borsh(&std::iter::once(nibble).collect::<NibblePath>()).unwrap();
            let key = (child.version, path.as_slice());
            match change {
                "remove" => {
                    nodes.remove(key).unwrap().unwrap();
                }
                _ => {
                    let mut other = nodes.get(key).unwrap().unwrap().value().to_vec();
                    let last = other.len() - 1;
                    other[last] ^= 1;
                    nodes.insert(key, other.as_slice()).unwrap();
                }
            }
        });
        let message = assert_damaged(&db_path(&dir));
        eprintln!("{change}: {message}");
    }
}
