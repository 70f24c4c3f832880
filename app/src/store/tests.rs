//! Tests of the store: commits and reads, durability across reopen, ICS23 proofs, overlay
//! semantics, determinism, and a model-based property test against a plain `BTreeMap`.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::PathBuf;

use ics23::commitment_proof::Proof;
use ics23::CommitmentProof;
use proptest::prelude::*;
use tempfile::TempDir;

use super::*;

/// A store in a fresh temporary directory; the directory lives as long as the returned guard.
pub(super) fn new_store() -> (TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&db_path(&dir)).unwrap();
    (dir, store)
}

pub(super) fn db_path(dir: &TempDir) -> PathBuf {
    dir.path().join("state.redb")
}

/// A write set from `(key, Some(value))` puts and `(key, None)` deletes.
fn write_set(changes: &[(&[u8], Option<&[u8]>)]) -> WriteSet {
    let mut writes = WriteSet::new();
    for (key, value) in changes {
        match value {
            Some(value) => writes.put(key.to_vec(), value.to_vec()).unwrap(),
            None => writes.delete(key.to_vec()).unwrap(),
        }
    }
    writes
}

/// Prepares and commits the next block with `changes`.
pub(super) fn commit_block(store: &mut Store, changes: &[(&[u8], Option<&[u8]>)]) -> Committed {
    let height = store.committed().height + 1;
    let prepared = store.prepare(height, write_set(changes)).unwrap();
    let expected = Committed { height, app_hash: prepared.app_hash() };
    let committed = store.commit(prepared).unwrap();
    assert_eq!(committed, expected);
    assert_eq!(store.committed(), committed);
    committed
}

fn exists(proof: &CommitmentProof) -> &ics23::ExistenceProof {
    match &proof.proof {
        Some(Proof::Exist(exist)) => exist,
        other => panic!("expected an existence proof, got {other:?}"),
    }
}

fn absent(proof: &CommitmentProof) -> &ics23::NonExistenceProof {
    match &proof.proof {
        Some(Proof::Nonexist(absent)) => absent,
        other => panic!("expected a non-existence proof, got {other:?}"),
    }
}

fn flip_last(bytes: &mut [u8]) {
    let last = bytes.last_mut().expect("non-empty bytes to flip");
    *last ^= 1;
}

// ---------------------------------------------------------------------------------------------
// Commits and reads

#[test]
fn fresh_store_is_at_height_zero_with_the_empty_root() {
    let (_dir, store) = new_store();
    assert_eq!(store.committed(), Committed { height: 0, app_hash: EMPTY_ROOT });
    assert_eq!(store.committed(), Committed::GENESIS);
    assert_eq!(store.get(b"anything").unwrap(), None);
    assert!(store.scan_prefix(b"").unwrap().is_empty());
}

#[test]
fn values_are_readable_after_commit_and_not_before() {
    let (_dir, mut store) = new_store();
    let prepared = store.prepare(1, write_set(&[(b"k", Some(b"v"))])).unwrap();
    assert_eq!(store.get(b"k").unwrap(), None, "prepare writes nothing");
    assert_eq!(store.committed(), Committed::GENESIS);
    store.commit(prepared).unwrap();
    assert_eq!(store.get(b"k").unwrap(), Some(b"v".to_vec()));
}

#[test]
fn put_get_and_delete_across_commits() {
    let (_dir, mut store) = new_store();
    let first = commit_block(&mut store, &[(b"a", Some(b"1")), (b"b", Some(b"2"))]);
    let second = commit_block(&mut store, &[(b"a", Some(b"10")), (b"c", Some(b"3"))]);
    let third = commit_block(&mut store, &[(b"b", None), (b"never-written", None)]);

    assert_eq!((first.height, second.height, third.height), (1, 2, 3));
    assert_ne!(first.app_hash, second.app_hash);
    assert_ne!(second.app_hash, third.app_hash);
    assert_eq!(store.get(b"a").unwrap(), Some(b"10".to_vec()));
    assert_eq!(store.get(b"b").unwrap(), None);
    assert_eq!(store.get(b"c").unwrap(), Some(b"3".to_vec()));
    assert_eq!(store.get(b"never-written").unwrap(), None);
    assert_eq!(store.app_hash_at(1).unwrap(), first.app_hash);
    assert_eq!(store.app_hash_at(2).unwrap(), second.app_hash);
    assert_eq!(store.app_hash_at(3).unwrap(), third.app_hash);
}

#[test]
fn block_without_writes_advances_the_height_and_keeps_the_root() {
    let (_dir, mut store) = new_store();
    let first = commit_block(&mut store, &[(b"k", Some(b"v"))]);
    let empty = commit_block(&mut store, &[]);
    assert_eq!(empty, Committed { height: 2, app_hash: first.app_hash });
    assert_eq!(store.app_hash_at(2).unwrap(), first.app_hash);
    let (value, proof) = store.get_with_proof(b"k", 2).unwrap();
    assert_eq!(value, Some(b"v".to_vec()));
    assert!(verify_proof(&empty.app_hash, b"k", Some(b"v"), &proof));
}

#[test]
fn deleting_an_absent_key_keeps_the_root() {
    let (_dir, mut store) = new_store();
    let first = commit_block(&mut store, &[(b"k", Some(b"v"))]);
    let second = commit_block(&mut store, &[(b"absent", None)]);
    assert_eq!(second.app_hash, first.app_hash);
    assert_eq!(store.app_hash_at(2).unwrap(), first.app_hash);
}

#[test]
fn first_block_without_writes_commits_the_empty_root() {
    for changes in [&[][..], &[(&b"absent"[..], None)][..]] {
        let (_dir, mut store) = new_store();
        let first = commit_block(&mut store, changes);
        assert_eq!(first, Committed { height: 1, app_hash: EMPTY_ROOT });
        assert_eq!(store.app_hash_at(1).unwrap(), EMPTY_ROOT);
        let (value, proof) = store.get_with_proof(b"k", 1).unwrap();
        assert_eq!(value, None);
        assert!(verify_proof(&EMPTY_ROOT, b"k", None, &proof));

        let second = commit_block(&mut store, &[(b"k", Some(b"v"))]);
        assert_ne!(second.app_hash, EMPTY_ROOT);
        assert_eq!(store.get(b"k").unwrap(), Some(b"v".to_vec()));
    }
}

#[test]
fn first_block_may_start_above_height_one() {
    let (dir, mut store) = new_store();
    let prepared = store.prepare(7, write_set(&[(b"k", Some(b"v"))])).unwrap();
    let first = store.commit(prepared).unwrap();
    assert_eq!(first.height, 7);
    let second = commit_block(&mut store, &[]);
    assert_eq!(second, Committed { height: 8, app_hash: first.app_hash });
    assert!(matches!(store.app_hash_at(6), Err(StoreError::UnknownVersion { version: 6, .. })));
    drop(store);
    let store = Store::open(&db_path(&dir)).unwrap();
    assert_eq!(store.committed(), second);
}

#[test]
fn prepare_refuses_a_height_that_does_not_follow_the_committed_one() {
    let (_dir, mut store) = new_store();
    for requested in [0, MAX_HEIGHT + 1, u64::MAX] {
        assert!(matches!(
            store.prepare(requested, write_set(&[(b"k", Some(b"v"))])),
            Err(StoreError::HeightNotNext { committed: 0, requested: r }) if r == requested
        ));
    }
    assert_eq!(store.prepare(MAX_HEIGHT, WriteSet::new()).unwrap().height(), MAX_HEIGHT);
    commit_block(&mut store, &[(b"k", Some(b"v"))]);
    for requested in [0, 1, 3, u64::MAX] {
        assert!(matches!(
            store.prepare(requested, WriteSet::new()),
            Err(StoreError::HeightNotNext { committed: 1, requested: r }) if r == requested
        ));
    }
}

#[test]
fn misuse_is_refused_without_being_fatal() {
    let refusals = [
        StoreError::HeightNotNext { committed: 1, requested: 3 },
        StoreError::StalePrepared { height: 2, prepared_on: 1, committed: 2 },
        StoreError::UnknownVersion { version: 9, committed: 2 },
        StoreError::EmptyKey,
        StoreError::EmptyValue,
    ];
    assert!(refusals.iter().all(|err| !err.is_fatal()));
    let broken = [
        StoreError::Tree("missing node".into()),
        StoreError::Corrupt("bad record".into()),
        StoreError::IncompatibleSchema { found: "other".into() },
    ];
    assert!(broken.iter().all(StoreError::is_fatal));
}

#[test]
fn store_and_prepared_blocks_can_cross_threads() {
    fn send_and_sync<T: Send + Sync>() {}
    send_and_sync::<Store>();
    send_and_sync::<Prepared>();
    send_and_sync::<WriteSet>();
}

#[test]
fn commit_refuses_a_block_prepared_on_an_older_state() {
    let (_dir, mut store) = new_store();
    let one = store.prepare(1, write_set(&[(b"a", Some(b"1"))])).unwrap();
    let other = store.prepare(1, write_set(&[(b"b", Some(b"2"))])).unwrap();
    let committed = store.commit(one).unwrap();
    assert!(matches!(
        store.commit(other),
        Err(StoreError::StalePrepared { height: 1, prepared_on: 0, committed: 1 })
    ));
    assert_eq!(store.committed(), committed);
    assert_eq!(store.get(b"b").unwrap(), None);
}

#[test]
fn empty_keys_and_empty_values_are_refused() {
    let mut writes = WriteSet::new();
    assert!(matches!(writes.put(Vec::new(), b"v".to_vec()), Err(StoreError::EmptyKey)));
    assert!(matches!(writes.put(b"k".to_vec(), Vec::new()), Err(StoreError::EmptyValue)));
    assert!(matches!(writes.delete(Vec::new()), Err(StoreError::EmptyKey)));
    assert!(writes.is_empty());

    let (_dir, mut store) = new_store();
    commit_block(&mut store, &[(b"k", Some(b"v"))]);
    assert!(matches!(store.get_with_proof(b"", 1), Err(StoreError::EmptyKey)));
    let mut overlay = store.overlay().unwrap();
    assert!(matches!(overlay.put(Vec::new(), b"v".to_vec()), Err(StoreError::EmptyKey)));
    assert!(matches!(overlay.put(b"k".to_vec(), Vec::new()), Err(StoreError::EmptyValue)));
    assert!(matches!(overlay.delete(Vec::new()), Err(StoreError::EmptyKey)));
    assert!(overlay.writes().is_empty());
}

#[test]
fn deleting_every_key_returns_to_the_empty_root() {
    let (_dir, mut store) = new_store();
    commit_block(&mut store, &[(b"a", Some(b"1")), (b"b", Some(b"2"))]);
    let emptied = commit_block(&mut store, &[(b"a", None), (b"b", None)]);
    assert_eq!(emptied.app_hash, EMPTY_ROOT);
    let (value, proof) = store.get_with_proof(b"a", 2).unwrap();
    assert_eq!(value, None);
    assert!(verify_proof(&EMPTY_ROOT, b"a", None, &proof));
    let refilled = commit_block(&mut store, &[(b"a", Some(b"1"))]);
    assert_ne!(refilled.app_hash, EMPTY_ROOT);
}

#[test]
fn scan_prefix_returns_committed_keys_in_byte_order() {
    let (_dir, mut store) = new_store();
    let keys: [&[u8]; 7] =
        [&[0x02], &[0x01, 0xff], &[0x01], &[0xff, 0xff], &[0x01, 0x00], &[0xff], &[0x00]];
    let changes: Vec<(&[u8], Option<&[u8]>)> = keys.iter().map(|key| (*key, Some(*key))).collect();
    commit_block(&mut store, &changes);

    let scanned = |prefix: &[u8]| -> Vec<Vec<u8>> {
        store.scan_prefix(prefix).unwrap().into_iter().map(|(key, _)| key).collect()
    };
    assert_eq!(scanned(&[0x01]), vec![vec![0x01], vec![0x01, 0x00], vec![0x01, 0xff]]);
    assert_eq!(scanned(&[0xff]), vec![vec![0xff], vec![0xff, 0xff]]);
    assert_eq!(scanned(&[0x01, 0xff]), vec![vec![0x01, 0xff]]);
    assert!(scanned(&[0x03]).is_empty());
    let mut all: Vec<Vec<u8>> = keys.iter().map(|key| key.to_vec()).collect();
    all.sort();
    assert_eq!(scanned(&[]), all);
    for (key, value) in store.scan_prefix(&[]).unwrap() {
        assert_eq!(key, value);
    }
}

// ---------------------------------------------------------------------------------------------
// Durability

#[test]
fn reopen_after_drop_gives_the_same_height_hash_and_values() {
    let (dir, mut store) = new_store();
    commit_block(&mut store, &[(b"a", Some(b"1")), (b"b", Some(b"2"))]);
    let committed = commit_block(&mut store, &[(b"b", None), (b"c", Some(b"3"))]);
    drop(store);

    let mut store = Store::open(&db_path(&dir)).unwrap();
    assert_eq!(store.committed(), committed);
    assert_eq!(store.get(b"a").unwrap(), Some(b"1".to_vec()));
    assert_eq!(store.get(b"b").unwrap(), None);
    assert_eq!(store.get(b"c").unwrap(), Some(b"3".to_vec()));
    let (_, proof) = store.get_with_proof(b"a", 1).unwrap();
    assert!(verify_proof(&store.app_hash_at(1).unwrap(), b"a", Some(b"1"), &proof));
    let next = commit_block(&mut store, &[(b"d", Some(b"4"))]);
    assert_eq!(next.height, 3);
}

#[test]
fn prepared_but_uncommitted_block_is_gone_after_reopen() {
    let (dir, mut store) = new_store();
    let committed = commit_block(&mut store, &[(b"a", Some(b"1"))]);
    let prepared = store.prepare(2, write_set(&[(b"a", Some(b"2")), (b"b", Some(b"3"))])).unwrap();
    assert_ne!(prepared.app_hash(), committed.app_hash);
    drop(prepared);
    drop(store);

    let mut store = Store::open(&db_path(&dir)).unwrap();
    assert_eq!(store.committed(), committed);
    assert_eq!(store.get(b"a").unwrap(), Some(b"1".to_vec()));
    assert_eq!(store.get(b"b").unwrap(), None);
    assert!(matches!(store.app_hash_at(2), Err(StoreError::UnknownVersion { version: 2, .. })));
    // The replayed block gives the same root as the lost one.
    let replayed = commit_block(&mut store, &[(b"a", Some(b"2")), (b"b", Some(b"3"))]);
    assert_eq!(replayed.height, 2);
}

#[test]
fn the_store_file_cannot_be_opened_twice() {
    let (dir, _store) = new_store();
    match Store::open(&db_path(&dir)) {
        Err(err @ StoreError::Database(_)) => assert!(err.is_fatal()),
        other => panic!("expected a database error, got {other:?}"),
    }
}

#[test]
fn open_reports_a_committed_record_that_does_not_match_the_tree() {
    let (dir, mut store) = new_store();
    let committed = commit_block(&mut store, &[(b"a", Some(b"1"))]);
    drop(store);
    {
        let db = Database::create(db_path(&dir)).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let mut meta = txn.open_table(tables::META).unwrap();
            let mut forged = committed;
            forged.app_hash[0] ^= 1;
            meta.insert(tables::COMMITTED_KEY, tables::encode_committed(&forged).as_slice())
                .unwrap();
        }
        txn.commit().unwrap();
    }
    assert!(matches!(Store::open(&db_path(&dir)), Err(StoreError::Damaged { .. })));
}

#[test]
fn open_refuses_a_file_of_another_schema() {
    let dir = tempfile::tempdir().unwrap();
    {
        let db = Database::create(db_path(&dir)).unwrap();
        let txn = db.begin_write().unwrap();
        txn.open_table(tables::META).unwrap().insert(tables::SCHEMA_KEY, &b"other/9"[..]).unwrap();
        txn.commit().unwrap();
    }
    match Store::open(&db_path(&dir)) {
        Err(StoreError::IncompatibleSchema { found }) => assert_eq!(found, "other/9"),
        other => panic!("expected an incompatible schema, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// ICS23 proofs

#[test]
fn root_node_keys_are_stored_under_the_empty_path_encoding() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&db_path(&dir)).unwrap();
    let view = TreeView::open(&store.db).unwrap();
    let (_, batch) = JellyfishMerkleTree::<_, Sha256>::new(&view)
        .put_value_set([(KeyHash::with::<Sha256>(b"k"), Some(b"v".to_vec()))], 1)
        .unwrap();
    let roots: Vec<Vec<u8>> = batch
        .node_batch
        .nodes()
        .keys()
        .filter(|key| key.nibble_path().num_nibbles() == 0)
        .map(|key| tables::to_borsh(key.nibble_path()).unwrap())
        .collect();
    assert_eq!(roots, vec![tables::ROOT_PATH.to_vec()]);
}

#[test]
fn membership_proof_verifies_against_the_root_of_its_version_only() {
    let (_dir, mut store) = new_store();
    let keys: Vec<Vec<u8>> = (0u16..40).map(|i| format!("key-{i}").into_bytes()).collect();
    let changes: Vec<(&[u8], Option<&[u8]>)> =
        keys.iter().map(|key| (key.as_slice(), Some(key.as_slice()))).collect();
    let first = commit_block(&mut store, &changes);
    let second = commit_block(&mut store, &[(b"key-7", Some(b"changed"))]);

    for key in &keys {
        let (value, proof) = store.get_with_proof(key, 1).unwrap();
        assert_eq!(value.as_deref(), Some(key.as_slice()));
        assert_eq!(exists(&proof).key, *key);
        assert!(verify_proof(&first.app_hash, key, Some(key), &proof));
        assert!(!verify_proof(&second.app_hash, key, Some(key), &proof), "another root");
        assert!(!verify_proof(&first.app_hash, key, Some(b"other"), &proof), "another value");
        assert!(!verify_proof(&first.app_hash, key, None, &proof), "claimed absent");
        assert!(!verify_proof(&first.app_hash, b"key-x", Some(key), &proof), "another key");
    }
    let (value, proof) = store.get_with_proof(b"key-7", 2).unwrap();
    assert_eq!(value, Some(b"changed".to_vec()));
    assert!(verify_proof(&second.app_hash, b"key-7", Some(b"changed"), &proof));
    assert!(!verify_proof(&first.app_hash, b"key-7", Some(b"changed"), &proof));
    assert!(!verify_proof(&second.app_hash, b"key-7", Some(b"key-7"), &proof));
}

#[test]
fn non_membership_proof_verifies_against_the_root_of_its_version_only() {
    let (_dir, mut store) = new_store();
    let keys: Vec<Vec<u8>> = (0u16..40).map(|i| format!("key-{i}").into_bytes()).collect();
    let changes: Vec<(&[u8], Option<&[u8]>)> =
        keys.iter().map(|key| (key.as_slice(), Some(&b"v"[..]))).collect();
    let first = commit_block(&mut store, &changes);
    let second = commit_block(&mut store, &[(b"missing-3", Some(b"now here"))]);
    assert_ne!(first.app_hash, second.app_hash);

    // Absent keys in the middle of the key-hash order and beyond each end of it.
    let hashes: Vec<KeyHash> = keys.iter().map(KeyHash::with::<Sha256>).collect();
    let (lowest, highest) = (*hashes.iter().min().unwrap(), *hashes.iter().max().unwrap());
    let candidates = (0u32..).map(|i| format!("missing-{i}").into_bytes());
    let middle: Vec<Vec<u8>> = candidates.clone().take(20).collect();
    let below = candidates.clone().find(|k| KeyHash::with::<Sha256>(k) < lowest).unwrap();
    let above = candidates.clone().find(|k| KeyHash::with::<Sha256>(k) > highest).unwrap();

    let mut shapes = BTreeMap::new();
    for key in middle.iter().chain([&below, &above]) {
        let (value, proof) = store.get_with_proof(key, 1).unwrap();
        assert_eq!(value, None);
        let absent = absent(&proof);
        assert_eq!(&absent.key, key);
        *shapes.entry((absent.left.is_some(), absent.right.is_some())).or_insert(0) += 1;
        assert!(verify_proof(&first.app_hash, key, None, &proof));
        assert!(!verify_proof(&second.app_hash, key, None, &proof), "another root");
        assert!(!verify_proof(&first.app_hash, key, Some(b"v"), &proof), "claimed present");
        assert!(!verify_proof(&first.app_hash, b"key-1", None, &proof), "a present key");
    }
    assert!(shapes.contains_key(&(true, true)), "{shapes:?}");
    assert_eq!(shapes.get(&(false, true)), Some(&1), "{shapes:?}");
    assert_eq!(shapes.get(&(true, false)), Some(&1), "{shapes:?}");

    let (_, proof) = store.get_with_proof(b"missing-3", 2).unwrap();
    assert!(verify_proof(&second.app_hash, b"missing-3", Some(b"now here"), &proof));
}

#[test]
fn proofs_of_an_old_version_show_the_value_of_that_version() {
    let (_dir, mut store) = new_store();
    let v1 = commit_block(&mut store, &[(b"k", Some(b"old")), (b"other", Some(b"x"))]);
    let v2 = commit_block(&mut store, &[(b"k", Some(b"new"))]);
    let v3 = commit_block(&mut store, &[(b"k", None)]);

    let (value, proof) = store.get_with_proof(b"k", 1).unwrap();
    assert_eq!(value, Some(b"old".to_vec()));
    assert!(verify_proof(&v1.app_hash, b"k", Some(b"old"), &proof));
    let (value, proof) = store.get_with_proof(b"k", 2).unwrap();
    assert_eq!(value, Some(b"new".to_vec()));
    assert!(verify_proof(&v2.app_hash, b"k", Some(b"new"), &proof));
    let (value, proof) = store.get_with_proof(b"k", 3).unwrap();
    assert_eq!(value, None);
    assert!(verify_proof(&v3.app_hash, b"k", None, &proof));
    assert!(!verify_proof(&v2.app_hash, b"k", None, &proof));
}

#[test]
fn a_key_deleted_and_written_again_has_the_right_value_at_every_version() {
    let (_dir, mut store) = new_store();
    let mut roots = vec![commit_block(&mut store, &[(b"k", Some(b"one")), (b"n", Some(b"x"))])];
    roots.push(commit_block(&mut store, &[(b"k", None)]));
    roots.push(commit_block(&mut store, &[(b"n", Some(b"y"))]));
    roots.push(commit_block(&mut store, &[(b"k", Some(b"two"))]));
    roots.push(commit_block(&mut store, &[(b"k", Some(b"three"))]));
    let expected: [Option<&[u8]>; 5] = [Some(b"one"), None, None, Some(b"two"), Some(b"three")];
    for (committed, expected) in roots.iter().zip(expected) {
        let (value, proof) = store.get_with_proof(b"k", committed.height).unwrap();
        assert_eq!(value.as_deref(), expected, "at height {}", committed.height);
        assert!(verify_proof(&committed.app_hash, b"k", expected, &proof));
    }
    assert_eq!(store.get(b"k").unwrap(), Some(b"three".to_vec()));
}

#[test]
fn insert_only_blocks_reach_the_same_root_as_key_by_key_updates() {
    // A block of puts on a committed tree takes jmt's batch insertion; adding the deletion of
    // an absent key sends the same block through the key-by-key update instead.
    let seed: Vec<(Vec<u8>, Vec<u8>)> =
        (0u16..300).map(|i| (i.to_be_bytes().to_vec(), vec![1, i as u8])).collect();
    let next: Vec<(Vec<u8>, Vec<u8>)> =
        (0u16..600).map(|i| ((i * 3).to_be_bytes().to_vec(), vec![2, i as u8])).collect();
    let run = |extra_delete: bool| -> (Committed, Store, TempDir) {
        let (dir, mut store) = new_store();
        let mut first = WriteSet::new();
        for (key, value) in &seed {
            first.put(key.clone(), value.clone()).unwrap();
        }
        store.commit(store.prepare(1, first).unwrap()).unwrap();
        let mut second = WriteSet::new();
        for (key, value) in &next {
            second.put(key.clone(), value.clone()).unwrap();
        }
        if extra_delete {
            second.delete(b"absent".to_vec()).unwrap();
        }
        let committed = store.commit(store.prepare(2, second).unwrap()).unwrap();
        (committed, store, dir)
    };
    let (batched, batched_store, _a) = run(false);
    let (key_by_key, _, _b) = run(true);
    assert_eq!(batched, key_by_key);
    for (key, value) in next.iter().step_by(37) {
        let (_, proof) = batched_store.get_with_proof(key, 2).unwrap();
        assert!(verify_proof(&batched.app_hash, key, Some(value), &proof));
    }
}

#[test]
fn proofs_of_uncommitted_versions_are_refused() {
    let (_dir, mut store) = new_store();
    assert!(matches!(
        store.get_with_proof(b"k", 0),
        Err(StoreError::UnknownVersion { version: 0, committed: 0 })
    ));
    commit_block(&mut store, &[(b"k", Some(b"v"))]);
    for version in [0, 2, u64::MAX] {
        assert!(matches!(
            store.get_with_proof(b"k", version),
            Err(StoreError::UnknownVersion { version: v, committed: 1 }) if v == version
        ));
    }
}

#[test]
fn absence_in_the_empty_tree_is_proven_against_the_empty_root_only() {
    let (_dir, mut store) = new_store();
    commit_block(&mut store, &[]);
    let (value, proof) = store.get_with_proof(b"k", 1).unwrap();
    assert_eq!(value, None);
    assert!(verify_proof(&EMPTY_ROOT, b"k", None, &proof));
    assert!(!verify_proof(&EMPTY_ROOT, b"other", None, &proof), "another key");
    assert!(!verify_proof(&[7; 32], b"k", None, &proof), "a non-empty root");

    // Against the empty root, a neighbour in the proof is a lie.
    let committed = commit_block(&mut store, &[(b"n", Some(b"v"))]);
    let (_, with_neighbour) = store.get_with_proof(b"k", 2).unwrap();
    assert!(verify_proof(&committed.app_hash, b"k", None, &with_neighbour));
    assert!(!verify_proof(&EMPTY_ROOT, b"k", None, &with_neighbour));
}

#[test]
fn tampered_existence_proofs_are_rejected() {
    let (_dir, mut store) = new_store();
    let changes: Vec<(Vec<u8>, Vec<u8>)> =
        (0u8..30).map(|i| (vec![b'k', i], vec![b'v', i])).collect();
    let borrowed: Vec<(&[u8], Option<&[u8]>)> =
        changes.iter().map(|(k, v)| (k.as_slice(), Some(v.as_slice()))).collect();
    let root = commit_block(&mut store, &borrowed).app_hash;
    let (key, value) = (&changes[5].0, &changes[5].1);
    let (_, proof) = store.get_with_proof(key, 1).unwrap();
    assert!(verify_proof(&root, key, Some(value), &proof));
    let path_len = exists(&proof).path.len();
    assert!(path_len >= 2, "a proof through several inner nodes");

    let tamper = |edit: &dyn Fn(&mut ics23::ExistenceProof)| -> bool {
        let mut tampered = proof.clone();
        if let Some(Proof::Exist(exist)) = &mut tampered.proof {
            edit(exist);
        }
        verify_proof(&root, key, Some(value), &tampered)
    };
    assert!(!tamper(&|p| flip_last(&mut p.key)), "key");
    assert!(!tamper(&|p| flip_last(&mut p.value)), "value");
    assert!(!tamper(&|p| p.leaf.as_mut().unwrap().prefix.push(0)), "leaf prefix");
    assert!(!tamper(&|p| p.leaf = None), "leaf op");
    assert!(
        !tamper(&|p| {
            p.path.pop();
        }),
        "path shortened"
    );
    assert!(!tamper(&|p| p.path.push(p.path[0].clone())), "path lengthened");
    assert!(!tamper(&|p| p.path.swap(0, 1)), "steps swapped");
    for step in 0..path_len {
        assert!(
            !tamper(&|p| {
                let op = &mut p.path[step];
                if op.suffix.is_empty() {
                    flip_last(&mut op.prefix)
                } else {
                    flip_last(&mut op.suffix)
                }
            }),
            "sibling of step {step}"
        );
        assert!(!tamper(&|p| p.path[step].prefix[0] ^= 1), "domain label of step {step}");
    }
    let mut batched = proof.clone();
    batched.proof = Some(Proof::Batch(ics23::BatchProof {
        entries: vec![ics23::BatchEntry {
            proof: Some(ics23::batch_entry::Proof::Exist(exists(&proof).clone())),
        }],
    }));
    assert!(!verify_proof(&root, key, Some(value), &batched), "batched proofs are refused");
    assert!(!verify_proof(&root, key, Some(value), &CommitmentProof { proof: None }));
}

#[test]
fn tampered_non_existence_proofs_are_rejected() {
    let (_dir, mut store) = new_store();
    let changes: Vec<Vec<u8>> = (0u8..30).map(|i| vec![b'k', i]).collect();
    let borrowed: Vec<(&[u8], Option<&[u8]>)> =
        changes.iter().map(|k| (k.as_slice(), Some(&b"v"[..]))).collect();
    let root = commit_block(&mut store, &borrowed).app_hash;

    // Find an absent key with neighbours on both sides.
    let (key, proof) = (0u8..=255)
        .map(|i| vec![b'x', i])
        .map(|key| {
            let (_, proof) = store.get_with_proof(&key, 1).unwrap();
            (key, proof)
        })
        .find(|(_, proof)| {
            let absent = absent(proof);
            absent.left.is_some() && absent.right.is_some()
        })
        .unwrap();
    assert!(verify_proof(&root, &key, None, &proof));

    let tamper = |edit: &dyn Fn(&mut ics23::NonExistenceProof)| -> bool {
        let mut tampered = proof.clone();
        if let Some(Proof::Nonexist(absent)) = &mut tampered.proof {
            edit(absent);
        }
        verify_proof(&root, &key, None, &tampered)
    };
    assert!(!tamper(&|p| p.left = None), "left neighbour dropped");
    assert!(!tamper(&|p| p.right = None), "right neighbour dropped");
    assert!(!tamper(&|p| std::mem::swap(&mut p.left, &mut p.right)), "neighbours swapped");
    assert!(!tamper(&|p| flip_last(&mut p.key)), "key");
    assert!(!tamper(&|p| flip_last(&mut p.left.as_mut().unwrap().value)), "left value");
    assert!(!tamper(&|p| flip_last(&mut p.right.as_mut().unwrap().value)), "right value");
    assert!(!tamper(&|p| p.right = p.left.clone()), "left used twice");
    // A real neighbour that is not adjacent: another present key beyond the true right one.
    let right_hash = KeyHash::with::<Sha256>(&absent(&proof).right.as_ref().unwrap().key);
    let beyond = changes
        .iter()
        .filter(|k| KeyHash::with::<Sha256>(k) > right_hash)
        .map(|k| exists(&store.get_with_proof(k, 1).unwrap().1).clone())
        .next();
    if let Some(beyond) = beyond {
        assert!(!tamper(&|p| p.right = Some(beyond.clone())), "a gap hiding a present key");
    }
    let left_hash = KeyHash::with::<Sha256>(&absent(&proof).left.as_ref().unwrap().key);
    let before = changes
        .iter()
        .filter(|k| KeyHash::with::<Sha256>(k) < left_hash)
        .map(|k| exists(&store.get_with_proof(k, 1).unwrap().1).clone())
        .next();
    if let Some(before) = before {
        assert!(!tamper(&|p| p.left = Some(before.clone())), "a gap hiding a present key");
    }
    assert!(beyond_or_before_tested(&changes, left_hash, right_hash));
}

/// Whether some present key lies outside the pair of neighbours, so a gap was tried.
fn beyond_or_before_tested(keys: &[Vec<u8>], left: KeyHash, right: KeyHash) -> bool {
    keys.iter().map(KeyHash::with::<Sha256>).any(|hash| hash < left || hash > right)
}

#[test]
fn proof_spec_is_the_sha256_jellyfish_spec() {
    let spec = proof_spec();
    assert_eq!(spec, jmt::ics23_spec());
    let leaf = spec.leaf_spec.unwrap();
    assert_eq!(leaf.hash(), ics23::HashOp::Sha256);
    assert_eq!(leaf.prehash_key(), ics23::HashOp::Sha256);
    assert!(spec.prehash_key_before_comparison);
}

// ---------------------------------------------------------------------------------------------
// Overlays

/// A store with `a`, `b1`, `b2`, `c` committed at height 1.
fn store_with_four_keys() -> (TempDir, Store) {
    let (dir, mut store) = new_store();
    commit_block(
        &mut store,
        &[(b"a", Some(b"1")), (b"b1", Some(b"2")), (b"b2", Some(b"3")), (b"c", Some(b"4"))],
    );
    (dir, store)
}

fn pairs(entries: &[(&[u8], &[u8])]) -> Vec<(Vec<u8>, Vec<u8>)> {
    entries.iter().map(|(k, v)| (k.to_vec(), v.to_vec())).collect()
}

#[test]
fn overlay_writes_shadow_committed_values_and_deletes_hide_them() {
    let (_dir, store) = store_with_four_keys();
    let mut block = store.overlay().unwrap();
    assert_eq!(block.get(b"a").unwrap(), Some(b"1".to_vec()), "reads through");
    block.put(b"a".to_vec(), b"10".to_vec()).unwrap();
    block.delete(b"b1".to_vec()).unwrap();
    block.put(b"d".to_vec(), b"5".to_vec()).unwrap();
    assert_eq!(block.get(b"a").unwrap(), Some(b"10".to_vec()));
    assert_eq!(block.get(b"b1").unwrap(), None);
    assert_eq!(block.get(b"d").unwrap(), Some(b"5".to_vec()));
    assert_eq!(store.get(b"a").unwrap(), Some(b"1".to_vec()), "committed state untouched");
    // A put after a delete revives the key, a delete after a put removes it.
    block.put(b"b1".to_vec(), b"20".to_vec()).unwrap();
    block.delete(b"d".to_vec()).unwrap();
    assert_eq!(block.get(b"b1").unwrap(), Some(b"20".to_vec()));
    assert_eq!(block.get(b"d").unwrap(), None);
}

#[test]
fn overlay_scan_merges_writes_and_deletes_in_key_order() {
    let (_dir, store) = store_with_four_keys();
    let mut block = store.overlay().unwrap();
    block.put(b"b0".to_vec(), b"new".to_vec()).unwrap();
    block.put(b"b2".to_vec(), b"shadow".to_vec()).unwrap();
    block.delete(b"b1".to_vec()).unwrap();
    block.put(b"b3".to_vec(), b"tail".to_vec()).unwrap();
    block.delete(b"b9".to_vec()).unwrap();
    block.put(b"c0".to_vec(), b"outside".to_vec()).unwrap();
    assert_eq!(
        block.scan_prefix(b"b").unwrap(),
        pairs(&[(b"b0", b"new"), (b"b2", b"shadow"), (b"b3", b"tail")])
    );
    assert_eq!(
        block.scan_prefix(b"").unwrap(),
        pairs(&[
            (b"a", b"1"),
            (b"b0", b"new"),
            (b"b2", b"shadow"),
            (b"b3", b"tail"),
            (b"c", b"4"),
            (b"c0", b"outside"),
        ])
    );
}

#[test]
fn failed_transaction_leaves_the_block_overlay_unchanged() {
    let (_dir, store) = store_with_four_keys();
    let mut block = store.overlay().unwrap();
    block.put(b"a".to_vec(), b"block".to_vec()).unwrap();
    let before = block.writes().clone();
    let result: Result<(), &str> = block.transact(|tx| {
        tx.put(b"a".to_vec(), b"tx".to_vec()).unwrap();
        tx.delete(b"c".to_vec()).unwrap();
        tx.put(b"e".to_vec(), b"6".to_vec()).unwrap();
        assert_eq!(tx.get(b"a").unwrap(), Some(b"tx".to_vec()));
        Err("rejected")
    });
    assert_eq!(result, Err("rejected"));
    assert_eq!(block.writes(), &before);
    assert_eq!(block.get(b"a").unwrap(), Some(b"block".to_vec()));
    assert_eq!(block.get(b"c").unwrap(), Some(b"4".to_vec()));
    assert_eq!(block.get(b"e").unwrap(), None);
}

#[test]
fn successful_transaction_is_merged_into_the_block_overlay() {
    let (_dir, store) = store_with_four_keys();
    let mut block = store.overlay().unwrap();
    block.put(b"a".to_vec(), b"block".to_vec()).unwrap();
    let seen = block.transact(|tx| -> Result<_, StoreError> {
        let seen = tx.get(b"a")?;
        tx.put(b"a".to_vec(), b"tx".to_vec())?;
        tx.delete(b"c".to_vec())?;
        tx.put(b"e".to_vec(), b"6".to_vec())?;
        assert_eq!(
            tx.scan_prefix(b"")?,
            pairs(&[(b"a", b"tx"), (b"b1", b"2"), (b"b2", b"3"), (b"e", b"6")])
        );
        Ok(seen)
    });
    assert_eq!(seen.unwrap(), Some(b"block".to_vec()), "the transaction reads the block's writes");
    assert_eq!(block.get(b"a").unwrap(), Some(b"tx".to_vec()));
    assert_eq!(block.get(b"c").unwrap(), None);
    assert_eq!(block.get(b"e").unwrap(), Some(b"6".to_vec()));
    assert_eq!(block.writes().len(), 3);
}

#[test]
fn nested_transaction_is_dropped_on_error_and_its_parent_keeps_going() {
    let (_dir, store) = store_with_four_keys();
    let mut block = store.overlay().unwrap();
    let outcome: Result<(), ()> = block.transact(|tx| {
        tx.put(b"outer".to_vec(), b"1".to_vec()).unwrap();
        let inner: Result<(), ()> = tx.transact(|inner| {
            assert_eq!(inner.get(b"outer").unwrap(), Some(b"1".to_vec()));
            inner.put(b"inner".to_vec(), b"2".to_vec()).unwrap();
            inner.delete(b"a".to_vec()).unwrap();
            Err(())
        });
        assert!(inner.is_err());
        assert_eq!(tx.get(b"inner").unwrap(), None);
        assert_eq!(tx.get(b"a").unwrap(), Some(b"1".to_vec()));
        tx.transact(|inner| inner.put(b"kept".to_vec(), b"3".to_vec())).unwrap();
        Ok(())
    });
    assert!(outcome.is_ok());
    let writes = block.into_write_set();
    let keys: Vec<&[u8]> = writes.iter().map(|(key, _)| key).collect();
    assert_eq!(keys, vec![&b"kept"[..], &b"outer"[..]]);
}

#[test]
fn block_overlay_becomes_the_committed_state() {
    let (_dir, mut store) = store_with_four_keys();
    let mut block = store.overlay().unwrap();
    block.transact(|tx| tx.put(b"a".to_vec(), b"10".to_vec())).unwrap();
    block.transact(|tx| tx.delete(b"b1".to_vec())).unwrap();
    let expected = block.scan_prefix(b"").unwrap();
    let writes = block.into_write_set();
    let prepared = store.prepare(2, writes).unwrap();
    store.commit(prepared).unwrap();
    assert_eq!(store.scan_prefix(b"").unwrap(), expected);
}

// ---------------------------------------------------------------------------------------------
// Determinism

#[test]
fn same_writes_give_the_same_app_hash_in_two_independent_stores() {
    let (_dir_a, mut a) = new_store();
    let (_dir_b, mut b) = new_store();
    let keys: Vec<Vec<u8>> = (0u16..200).map(|i| i.to_be_bytes().to_vec()).collect();
    for round in 0u8..3 {
        // Same changes, written into the overlays in opposite orders.
        let mut block_a = a.overlay().unwrap();
        for key in &keys {
            block_a.put(key.clone(), vec![round, key[1]]).unwrap();
        }
        let mut block_b = b.overlay().unwrap();
        for key in keys.iter().rev() {
            block_b.put(key.clone(), vec![round, key[1]]).unwrap();
        }
        let (writes_a, writes_b) = (block_a.into_write_set(), block_b.into_write_set());
        let height = a.committed().height + 1;
        let committed_a = a.commit(a.prepare(height, writes_a).unwrap()).unwrap();
        let committed_b = b.commit(b.prepare(height, writes_b).unwrap()).unwrap();
        assert_eq!(committed_a, committed_b);
    }
}

#[test]
fn app_hash_of_a_fixed_block_is_pinned() {
    // Any change of the tree's hashing or key derivation changes this root and would fork
    // nodes running different versions; it must only change on purpose.
    let (_dir, mut store) = new_store();
    let committed = commit_block(
        &mut store,
        &[(b"alpha", Some(b"1")), (b"beta", Some(b"2")), (b"gamma", None)],
    );
    assert_eq!(hex(&committed.app_hash), PINNED_ROOT);
    assert_eq!(&EMPTY_ROOT, b"SPARSE_MERKLE_PLACEHOLDER_HASH__");
}

const PINNED_ROOT: &str = "140a741feb1bb1c93bd6e0c0cb3f6be8150bbf1d03f4913899dca99d4aec4810";

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

// ---------------------------------------------------------------------------------------------
// Model-based property test

/// The reference model of the store's contents.
type Model = BTreeMap<Vec<u8>, Vec<u8>>;

/// A change or read inside a block or transaction.
#[derive(Clone, Debug)]
enum Op {
    Put(Vec<u8>, Vec<u8>),
    Delete(Vec<u8>),
    Get(Vec<u8>),
    Scan(Vec<u8>),
    /// A transaction of simple operations that commits or fails at its end.
    Tx(Vec<Op>, bool),
}

/// Keys over a tiny alphabet, so that writes collide and prefixes overlap.
fn key() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(0u8..3, 1..4)
}

fn simple_op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (key(), proptest::collection::vec(any::<u8>(), 1..4)).prop_map(|(k, v)| Op::Put(k, v)),
        2 => key().prop_map(Op::Delete),
        1 => key().prop_map(Op::Get),
        1 => proptest::collection::vec(0u8..3, 0..2).prop_map(Op::Scan),
    ]
}

fn block_op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => simple_op(),
        1 => (proptest::collection::vec(simple_op(), 0..6), any::<bool>())
            .prop_map(|(ops, ok)| Op::Tx(ops, ok)),
    ]
}

/// A block of operations, and whether to reopen the store after committing it.
fn blocks() -> impl Strategy<Value = Vec<(Vec<Op>, bool)>> {
    proptest::collection::vec((proptest::collection::vec(block_op(), 0..12), any::<bool>()), 1..5)
}

/// Applies `ops` to `overlay` and to the model `view`, checking every read against the model.
fn run_ops(overlay: &mut Overlay<'_>, view: &mut Model, ops: &[Op]) {
    for op in ops {
        match op {
            Op::Put(key, value) => {
                overlay.put(key.clone(), value.clone()).unwrap();
                view.insert(key.clone(), value.clone());
            }
            Op::Delete(key) => {
                overlay.delete(key.clone()).unwrap();
                view.remove(key);
            }
            Op::Get(key) => assert_eq!(overlay.get(key).unwrap().as_ref(), view.get(key)),
            Op::Scan(prefix) => {
                let expected: Vec<(Vec<u8>, Vec<u8>)> = view
                    .iter()
                    .filter(|(key, _)| key.starts_with(prefix))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                assert_eq!(overlay.scan_prefix(prefix).unwrap(), expected);
            }
            Op::Tx(inner, commits) => {
                let mut tx_view = view.clone();
                let result = overlay.transact(|tx| {
                    run_ops(tx, &mut tx_view, inner);
                    if *commits {
                        Ok(())
                    } else {
                        Err(())
                    }
                });
                assert_eq!(result.is_ok(), *commits);
                if *commits {
                    *view = tx_view;
                }
            }
        }
    }
}

/// Every key of the tiny alphabet, to probe reads and proofs exhaustively.
fn all_keys() -> Vec<Vec<u8>> {
    let mut keys = vec![Vec::new()];
    let mut all = Vec::new();
    for _ in 0..3 {
        keys = keys
            .iter()
            .flat_map(|prefix| {
                (0u8..3).map(move |b| {
                    let mut key = prefix.clone();
                    key.push(b);
                    key
                })
            })
            .collect();
        all.extend(keys.iter().cloned());
    }
    all
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn store_and_overlays_behave_like_a_btreemap(blocks in blocks()) {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(&db_path(&dir)).unwrap();
        let mut model = Model::new();
        let probes = all_keys();
        // The committed state and contents of every height so far.
        let mut history: Vec<(Committed, Model)> = Vec::new();

        for (ops, reopen) in &blocks {
            let mut view = model.clone();
            let mut block = store.overlay().unwrap();
            run_ops(&mut block, &mut view, ops);
            let writes = block.into_write_set();
            let height = store.committed().height + 1;
            let prepared = store.prepare(height, writes).unwrap();
            let committed = store.commit(prepared).unwrap();
            model = view;
            if *reopen {
                drop(store);
                store = Store::open(&db_path(&dir)).unwrap();
                prop_assert_eq!(store.committed(), committed);
            }

            let scanned: Model = store.scan_prefix(b"").unwrap().into_iter().collect();
            prop_assert_eq!(&scanned, &model);
            for key in &probes {
                prop_assert_eq!(store.get(key).unwrap(), model.get(key).cloned());
            }
            history.push((committed, model.clone()));
            // Proofs at every committed height show the contents of that height.
            for (then, contents) in &history {
                prop_assert_eq!(store.app_hash_at(then.height).unwrap(), then.app_hash);
                for key in probes.iter().step_by(4) {
                    let (value, proof) = store.get_with_proof(key, then.height).unwrap();
                    prop_assert_eq!(&value, &contents.get(key).cloned());
                    prop_assert!(verify_proof(&then.app_hash, key, value.as_deref(), &proof));
                }
            }
        }

        // The root depends on the contents only: one block writing the final contents into a
        // fresh store reaches the same app hash.
        let (_fresh_dir, mut fresh) = new_store();
        let mut writes = WriteSet::new();
        for (key, value) in &model {
            writes.put(key.clone(), value.clone()).unwrap();
        }
        let rebuilt = fresh.commit(fresh.prepare(1, writes).unwrap()).unwrap();
        prop_assert_eq!(rebuilt.app_hash, store.committed().app_hash);
    }
}
