//! The authenticated, durable key-value store of a verifying node.
//!
//! State is a Jellyfish Merkle tree with SHA-256 hashing (crate `jmt`) persisted in one redb
//! file. Keys and values are non-empty byte strings; the app defines typed keys on top. The app
//! hash of a height is the root of the tree at that height, the tree's version being the block
//! height.
//!
//! One block goes through three steps:
//!
//! 1. execution in an [`Overlay`] of the committed state ([`Store::overlay`]), each transaction
//!    in a child overlay ([`Overlay::transact`]) that is dropped when it fails;
//! 2. [`Store::prepare`] computes the new root in memory from the block's [`WriteSet`], without
//!    writing anything, and returns it in a [`Prepared`] (FinalizeBlock returns its app hash);
//! 3. [`Store::commit`] writes the prepared block — tree nodes, values, stale-node records, key
//!    preimages, the latest-value table and the (height, app hash) record — in one redb write
//!    transaction with immediate durability. A crash before it returns leaves the store at the
//!    previous height and hash; a crash after leaves it at the new ones.
//!
//! Reads of committed state: [`Store::get`] and [`Store::scan_prefix`] at the latest height,
//! [`Store::get_with_proof`] at any committed height with an ICS23 proof that
//! [`verify_proof`] checks against that height's app hash.
//!
//! ```
//! use lemal_app::store::{verify_proof, Store, StoreError};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let dir = tempfile::tempdir()?;
//! let mut store = Store::open(&dir.path().join("state.redb"))?;
//!
//! // FinalizeBlock: each transaction in its own child overlay, dropped if it fails.
//! let mut block = store.overlay()?;
//! block.transact(|tx| tx.put(b"query/1".to_vec(), b"open".to_vec()))?;
//! let refused: Result<(), StoreError> = block.transact(|tx| {
//!     tx.put(b"query/2".to_vec(), b"open".to_vec())?;
//!     Err(StoreError::EmptyValue) // any failure of the transaction
//! });
//! assert!(refused.is_err());
//! let prepared = store.prepare(1, block.into_write_set())?;
//! let app_hash = prepared.app_hash();
//!
//! // Commit.
//! let committed = store.commit(prepared)?;
//! assert_eq!((committed.height, committed.app_hash), (1, app_hash));
//!
//! // Query with proof.
//! let (value, proof) = store.get_with_proof(b"query/1", 1)?;
//! assert!(verify_proof(&app_hash, b"query/1", value.as_deref(), &proof));
//! let (absent, proof) = store.get_with_proof(b"query/2", 1)?;
//! assert!(absent.is_none() && verify_proof(&app_hash, b"query/2", None, &proof));
//! # Ok(())
//! # }
//! ```
//!
//! Tables of the redb file:
//!
//! | table        | key                                   | value                                  |
//! |--------------|---------------------------------------|----------------------------------------|
//! | `meta`       | `"schema"`, `"committed"`             | `lemal-store/1`; height (u64 BE) ‖ app hash |
//! | `jmt_nodes`  | (version, borsh nibble path)          | borsh tree node                        |
//! | `jmt_stale`  | version                               | borsh set of the nodes it made stale   |
//! | `preimages`  | SHA-256 of key                        | raw key                                |
//! | `latest`     | raw key                               | version ‖ latest value (live keys only) |
//! | `earlier_values` | (raw key, version)                | `0` (deleted) or `1` ‖ value           |
//!
//! A key's value at a version is its `latest` value if written at or before that version, else
//! the newest `earlier_values` record at or before it. A block moves each value it replaces from
//! `latest` to `earlier_values`, so a block of new keys writes each value once.
//!
//! Every version stays readable: stale-node records are kept so that old versions can be pruned
//! later, but nothing is pruned yet.

mod integrity;
mod overlay;
mod tables;

#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};

use jmt::storage::{Node, TreeUpdateBatch};
use jmt::{JellyfishMerkleTree, KeyHash, OwnedValue, RootHash};
use redb::{Database, Durability, ReadableTable, WriteTransaction};
use sha2::Sha256;
use thiserror::Error;

pub use lemal_contracts::commitment::{proof_spec, verify_proof};
pub use overlay::{Overlay, WriteSet};

use tables::{LatestView, TreeView};

pub use lemal_contracts::commitment::EMPTY_ROOT;
const _: () = assert!(
    matches!(JellyfishMerkleTree::<'static, TreeView, Sha256>::EMPTY_ROOT.0, EMPTY_ROOT),
    "the shared empty root is the tree's"
);

/// The highest block height the store accepts: CometBFT heights are signed 64-bit integers.
pub const MAX_HEIGHT: u64 = i64::MAX as u64;

/// Key-value pairs in key byte order, as prefix scans return them.
pub type Entries = Vec<(Vec<u8>, Vec<u8>)>;

/// Why the store refused an operation or could not perform it.
///
/// [`StoreError::is_fatal`] tells the two kinds apart: a store that cannot be used (I/O failure,
/// damaged or foreign contents), on which the ABCI layer stops rather than answer from a broken
/// state, and a refused misuse that leaves the store unchanged.
#[derive(Debug, Error)]
pub enum StoreError {
    /// The database file could not be opened, read or written.
    #[error("database: {0}")]
    Database(#[from] redb::Error),
    /// The Merkle tree could not be read or updated: a node it needs is missing or it broke one
    /// of its own invariants.
    #[error("merkle tree: {0}")]
    Tree(String),
    /// A record is malformed or inconsistent with the others.
    #[error("corrupt store: {0}")]
    Corrupt(String),
    /// The file failed the integrity check of [`Store::open`]: it was truncated, changed or
    /// damaged since this store last wrote it. Nothing is served from it; the node's state can
    /// be rebuilt by deleting the file and letting CometBFT replay the chain to the app.
    #[error(
        "store at {} is damaged: {reason}; it serves nothing: delete it to rebuild the state \
         by replaying the chain",
        path.display()
    )]
    Damaged {
        /// The database file.
        path: PathBuf,
        /// What the check found.
        reason: String,
    },
    /// The file was written by another program or another version of this store.
    #[error("incompatible store schema {found:?}")]
    IncompatibleSchema {
        /// The schema marker found in the file.
        found: String,
    },
    /// [`Store::prepare`] was asked for a height that does not follow the committed one.
    #[error("block height {requested} does not follow committed height {committed}")]
    HeightNotNext {
        /// The committed height.
        committed: u64,
        /// The height asked for.
        requested: u64,
    },
    /// [`Store::commit`] was given a block prepared on a state that is no longer the committed
    /// one.
    #[error(
        "block {height} was prepared on height {prepared_on}, but height {committed} is committed"
    )]
    StalePrepared {
        /// The height of the prepared block.
        height: u64,
        /// The committed height the block was prepared on.
        prepared_on: u64,
        /// The committed height now.
        committed: u64,
    },
    /// A proof was asked for a version that is not committed.
    #[error("version {version} is not committed (latest committed height is {committed})")]
    UnknownVersion {
        /// The version asked for.
        version: u64,
        /// The latest committed height.
        committed: u64,
    },
    /// An empty key, which no proof could cover.
    #[error("keys must not be empty")]
    EmptyKey,
    /// An empty value, which no proof could cover.
    #[error("values must not be empty")]
    EmptyValue,
}

impl StoreError {
    /// Whether the store itself is unusable, as opposed to one request being refused.
    pub fn is_fatal(&self) -> bool {
        match self {
            StoreError::Database(_)
            | StoreError::Tree(_)
            | StoreError::Corrupt(_)
            | StoreError::Damaged { .. }
            | StoreError::IncompatibleSchema { .. } => true,
            StoreError::HeightNotNext { .. }
            | StoreError::StalePrepared { .. }
            | StoreError::UnknownVersion { .. }
            | StoreError::EmptyKey
            | StoreError::EmptyValue => false,
        }
    }

    /// Turns an error reported by the tree back into the store error it carries, if any.
    fn from_tree(err: anyhow::Error) -> Self {
        match err.downcast::<StoreError>() {
            Ok(err) => err,
            Err(err) => StoreError::Tree(format!("{err:#}")),
        }
    }
}

/// Converts each redb error type through [`redb::Error`].
macro_rules! from_redb {
    ($($error:ty),+ $(,)?) => {$(
        impl From<$error> for StoreError {
            fn from(err: $error) -> Self {
                StoreError::Database(err.into())
            }
        }
    )+};
}

from_redb!(
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError,
    redb::SetDurabilityError,
);

/// What the last commit made durable.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Committed {
    /// The height of the last committed block; 0 before the first commit.
    pub height: u64,
    /// The app hash (tree root) after that block; [`EMPTY_ROOT`] before the first commit.
    pub app_hash: [u8; 32],
}

impl Committed {
    /// The state of a store before its first commit.
    pub const GENESIS: Committed = Committed { height: 0, app_hash: EMPTY_ROOT };
}

/// A block whose new root is computed but not yet written; hand it to [`Store::commit`].
pub struct Prepared {
    base: Committed,
    next: Committed,
    /// Tree nodes: (version, borsh nibble path, borsh node).
    nodes: Vec<(u64, Vec<u8>, Vec<u8>)>,
    /// The nodes this block makes stale, borsh-encoded, if any.
    stale: Option<Vec<u8>>,
    /// The block's changes in key byte order.
    changes: Vec<Change>,
}

/// One key's change in a prepared block.
struct Change {
    key: Vec<u8>,
    key_hash: [u8; 32],
    value: Option<Vec<u8>>,
}

impl std::fmt::Debug for Prepared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prepared")
            .field("base", &self.base)
            .field("next", &self.next)
            .field("changes", &self.changes.len())
            .field("nodes", &self.nodes.len())
            .finish_non_exhaustive()
    }
}

impl Prepared {
    /// The height of the block.
    pub fn height(&self) -> u64 {
        self.next.height
    }

    /// The app hash after the block.
    pub fn app_hash(&self) -> [u8; 32] {
        self.next.app_hash
    }
}

/// The authenticated store: one redb file holding the Merkle tree and the latest values.
pub struct Store {
    db: Database,
    committed: Committed,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("committed", &self.committed).finish_non_exhaustive()
    }
}

impl Store {
    /// Creates the database file at `path`, or reopens it at its last committed height.
    ///
    /// Reopening checks the file before anything is served from it (`store/integrity.rs`): redb
    /// verifies the checksum of every page of the committed trees, the schema marker must be
    /// this store's, and the whole tree at the committed height must hash, node by node and
    /// value by value, to the committed app hash, with exactly the tree's live keys in the
    /// latest-value table. A file that fails is refused with [`StoreError::Damaged`], never
    /// repaired by rolling back. The file is locked while the store is open.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let damaged = |reason: String| StoreError::Damaged { path: path.to_owned(), reason };
        // redb promises errors rather than panics on a damaged file once it checks integrity
        // on open; a panic would still be a damaged file, so it is reported as one.
        let opened = std::panic::catch_unwind(|| Store::open_checked(path))
            .map_err(|panic| damaged(format!("reading it panicked: {}", panic_message(&panic))))?;
        opened.map_err(|err| match err {
            StoreError::Corrupt(reason) | StoreError::Tree(reason) => damaged(reason),
            StoreError::Database(redb::Error::Corrupted(reason)) => {
                damaged(format!("redb integrity check: {reason}"))
            }
            // What redb finds in a file that is not (or no longer) a database it wrote.
            StoreError::Database(redb::Error::Io(err))
                if matches!(
                    err.kind(),
                    std::io::ErrorKind::InvalidData | std::io::ErrorKind::UnexpectedEof
                ) =>
            {
                damaged(format!("redb: {err}"))
            }
            other => other,
        })
    }

    /// [`Store::open`] without the damage report.
    fn open_checked(path: &Path) -> Result<Store, StoreError> {
        let db = Database::builder().set_check_integrity_on_open(true).create(path)?;
        let txn = begin_durable_write(&db)?;
        let committed = {
            let mut meta = txn.open_table(tables::META)?;
            // Create every table, so that read transactions always find them.
            txn.open_table(tables::NODES)?;
            txn.open_table(tables::EARLIER)?;
            txn.open_table(tables::STALE)?;
            txn.open_table(tables::PREIMAGES)?;
            txn.open_table(tables::LATEST)?;
            let schema = meta.get(tables::SCHEMA_KEY)?.map(|found| found.value().to_vec());
            match schema {
                None => {
                    meta.insert(tables::SCHEMA_KEY, tables::SCHEMA)?;
                }
                Some(found) if found == tables::SCHEMA => {}
                Some(found) => {
                    return Err(StoreError::IncompatibleSchema {
                        found: String::from_utf8_lossy(&found).into_owned(),
                    })
                }
            }
            let record = meta.get(tables::COMMITTED_KEY)?;
            match record {
                None => Committed::GENESIS,
                Some(bytes) => tables::decode_committed(bytes.value())?,
            }
        };
        txn.commit()?;
        integrity::check_committed_state(&TreeView::open(&db)?, committed)?;
        Ok(Store { db, committed })
    }

    /// The height and app hash the last commit made durable.
    pub fn committed(&self) -> Committed {
        self.committed
    }

    /// The committed value of `key` at the latest height.
    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        LatestView::open(&self.db)?.get(key)
    }

    /// Every committed key starting with `prefix` and its value at the latest height, in key
    /// byte order.
    pub fn scan_prefix(&self, prefix: &[u8]) -> Result<Entries, StoreError> {
        LatestView::open(&self.db)?.scan_prefix(prefix)
    }

    /// One page of the values under `prefix` at the latest height: from the `skip`-th entry in
    /// key order, at most `max_entries` values and, past the first, at most `max_bytes` in total;
    /// and whether more follow.
    pub fn scan_page(
        &self,
        prefix: &[u8],
        skip: usize,
        max_entries: usize,
        max_bytes: usize,
    ) -> Result<(Vec<Vec<u8>>, bool), StoreError> {
        LatestView::open(&self.db)?.page(prefix, skip, max_entries, max_bytes)
    }

    /// The app hash committed at `version` (a block height).
    pub fn app_hash_at(&self, version: u64) -> Result<[u8; 32], StoreError> {
        self.check_committed_version(version)?;
        TreeView::open(&self.db)?
            .root_hash(version)?
            .ok_or(StoreError::UnknownVersion { version, committed: self.committed.height })
    }

    /// The value of `key` at `version` (a committed block height) with an ICS23 proof against
    /// the app hash of that version: an existence proof when the key is present, a
    /// non-existence proof when it is absent. Check it with [`verify_proof`].
    pub fn get_with_proof(
        &self,
        key: &[u8],
        version: u64,
    ) -> Result<(Option<Vec<u8>>, ics23::CommitmentProof), StoreError> {
        if key.is_empty() {
            return Err(StoreError::EmptyKey);
        }
        self.check_committed_version(version)?;
        let view = TreeView::open(&self.db)?;
        match view.root(version)? {
            None => Err(StoreError::UnknownVersion { version, committed: self.committed.height }),
            // An empty tree has no neighbours to prove an absence with: the root says it all.
            Some(Node::Null) => Ok((None, empty_tree_proof(key))),
            Some(_) => JellyfishMerkleTree::<_, Sha256>::new(&view)
                .get_with_ics23_proof(key.to_vec(), version)
                .map_err(StoreError::from_tree),
        }
    }

    /// Computes the root after applying `writes` to the committed state as block `height`,
    /// without writing anything.
    ///
    /// `height` must be the committed height plus one; the first block may have any height
    /// from 1 (a chain may start above height 1). Heights stop at [`MAX_HEIGHT`]. A block
    /// without writes keeps the root.
    pub fn prepare(&self, height: u64, writes: WriteSet) -> Result<Prepared, StoreError> {
        let base = self.committed;
        let follows = match base.height {
            0 => (1..=MAX_HEIGHT).contains(&height),
            committed => committed.checked_add(1) == Some(height) && height <= MAX_HEIGHT,
        };
        if !follows {
            return Err(StoreError::HeightNotNext { committed: base.height, requested: height });
        }

        let changes: Vec<Change> = writes
            .into_changes()
            .map(|(key, value)| Change { key_hash: KeyHash::with::<Sha256>(&key).0, key, value })
            .collect();
        let tree_changes =
            changes.iter().map(|change| (KeyHash(change.key_hash), change.value.clone())).collect();

        let view = TreeView::open(&self.db)?;
        let (app_hash, batch) = update_tree(&view, base, height, tree_changes)?;

        let mut nodes = Vec::with_capacity(batch.node_batch.nodes().len());
        let mut has_root = false;
        for (key, node) in batch.node_batch.nodes() {
            let (version, path) = tables::node_key_parts(key)?;
            if version != height {
                // When the tree was empty before the first block and stays empty, jmt records
                // the empty root under the version below; that version never existed here.
                if path == tables::ROOT_PATH && *node == Node::Null {
                    continue;
                }
                return Err(StoreError::Tree(format!(
                    "update of version {height} wrote a node of version {version}"
                )));
            }
            has_root |= path == tables::ROOT_PATH;
            nodes.push((version, path, tables::to_borsh(node)?));
        }
        if !has_root {
            // Same case: make the empty root of this version explicit.
            if base.app_hash != EMPTY_ROOT || app_hash != EMPTY_ROOT {
                return Err(StoreError::Tree(format!("update of version {height} left no root")));
            }
            nodes.push((height, tables::ROOT_PATH.to_vec(), tables::to_borsh(&Node::Null)?));
        }

        let stale = match batch.stale_node_index_batch.is_empty() {
            true => None,
            false => Some(tables::to_borsh(&batch.stale_node_index_batch)?),
        };

        Ok(Prepared { base, next: Committed { height, app_hash }, nodes, stale, changes })
    }

    /// Writes a prepared block durably and makes it the committed state.
    ///
    /// Everything goes in one redb write transaction with immediate durability: when this
    /// returns `Ok`, the block survives a crash; when it fails, nothing of it was written.
    pub fn commit(&mut self, prepared: Prepared) -> Result<Committed, StoreError> {
        if prepared.base != self.committed {
            return Err(StoreError::StalePrepared {
                height: prepared.next.height,
                prepared_on: prepared.base.height,
                committed: self.committed.height,
            });
        }
        let txn = begin_durable_write(&self.db)?;
        {
            let mut nodes = txn.open_table(tables::NODES)?;
            for (version, path, node) in &prepared.nodes {
                nodes.insert((*version, path.as_slice()), node.as_slice())?;
            }
            if let Some(stale) = &prepared.stale {
                let mut table = txn.open_table(tables::STALE)?;
                table.insert(prepared.next.height, stale.as_slice())?;
            }
            let mut latest = txn.open_table(tables::LATEST)?;
            let mut earlier = txn.open_table(tables::EARLIER)?;
            let mut preimages = txn.open_table(tables::PREIMAGES)?;
            let height = prepared.next.height;
            for Change { key, key_hash, value } in &prepared.changes {
                let key = key.as_slice();
                let previous = match latest.get(key)? {
                    None => None,
                    Some(record) => {
                        let (version, value) = tables::decode_latest(record.value())?;
                        Some((version, tables::encode_versioned(Some(value))))
                    }
                };
                // The value being replaced or deleted moves to the earlier values.
                if let Some((version, replaced)) = &previous {
                    earlier.insert((key, *version), replaced.as_slice())?;
                }
                match value {
                    Some(value) => {
                        latest.insert(key, tables::encode_latest(height, value).as_slice())?;
                        if previous.is_none() {
                            preimages.insert(key_hash, key)?;
                        }
                    }
                    None if previous.is_some() => {
                        latest.remove(key)?;
                        earlier.insert((key, height), tables::encode_versioned(None).as_slice())?;
                    }
                    // Deleting an absent key changes nothing.
                    None => {}
                }
            }
            let mut meta = txn.open_table(tables::META)?;
            meta.insert(
                tables::COMMITTED_KEY,
                tables::encode_committed(&prepared.next).as_slice(),
            )?;
        }
        txn.commit()?;
        self.committed = prepared.next;
        Ok(self.committed)
    }

    /// Refuses versions outside the committed range.
    fn check_committed_version(&self, version: u64) -> Result<(), StoreError> {
        if version == 0 || version > self.committed.height {
            return Err(StoreError::UnknownVersion { version, committed: self.committed.height });
        }
        Ok(())
    }
}

/// Applies `changes` to the tree committed at `base` as version `height`, in memory: the new
/// root and the nodes, values and stale-node records to write.
///
/// A block that only inserts or updates keys on top of a committed tree goes through jmt's batch
/// insertion, which hashes each new node once; a block that deletes, the first block, and the
/// empty block go through jmt's key-by-key update, which handles every case. Both give the same
/// root: the tree's shape depends only on its contents.
fn update_tree(
    view: &TreeView,
    base: Committed,
    height: u64,
    changes: Vec<(KeyHash, Option<OwnedValue>)>,
) -> Result<([u8; 32], TreeUpdateBatch), StoreError> {
    let tree = JellyfishMerkleTree::<_, Sha256>::new(view);
    // The batch insertion reads the root of version `height - 1`, which exists once a block is
    // committed (heights follow each other), and refuses an empty write set.
    let insert_only =
        base.height > 0 && !changes.is_empty() && changes.iter().all(|(_, value)| value.is_some());
    if insert_only {
        let puts = changes.into_iter().filter_map(|(key_hash, value)| Some((key_hash, value?)));
        let (roots, batch) = tree
            .batch_put_value_sets(vec![puts.collect()], None, height)
            .map_err(StoreError::from_tree)?;
        match roots.as_slice() {
            [RootHash(root)] => Ok((*root, batch)),
            _ => Err(StoreError::Tree(format!("{} roots for one version", roots.len()))),
        }
    } else {
        let (RootHash(root), batch) =
            tree.put_value_set(changes, height).map_err(StoreError::from_tree)?;
        Ok((root, batch))
    }
}

/// Begins a write transaction whose commit is durable when it returns.
fn begin_durable_write(db: &Database) -> Result<WriteTransaction, StoreError> {
    let mut txn = db.begin_write()?;
    txn.set_durability(Durability::Immediate)?;
    // Two fsyncs per commit: a crash then never leaves a half-written newest commit, so the
    // integrity check on open can refuse every newest commit that fails its checksums (damage
    // from outside) instead of silently falling back to the commit before it.
    txn.set_two_phase_commit(true);
    Ok(txn)
}

/// The message of a caught panic.
fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    match (panic.downcast_ref::<&str>(), panic.downcast_ref::<String>()) {
        (Some(message), _) => (*message).to_owned(),
        (_, Some(message)) => message.clone(),
        _ => "a panic without a message".to_owned(),
    }
}

/// The proof that `key` is absent from the empty tree: a non-existence proof with no neighbour,
/// which [`verify_proof`] accepts against [`EMPTY_ROOT`] only.
fn empty_tree_proof(key: &[u8]) -> ics23::CommitmentProof {
    ics23::CommitmentProof {
        proof: Some(ics23::commitment_proof::Proof::Nonexist(ics23::NonExistenceProof {
            key: key.to_vec(),
            left: None,
            right: None,
        })),
    }
}
