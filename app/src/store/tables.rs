//! The redb tables behind the store, their record encodings, and the read-only views that the
//! Jellyfish Merkle tree and the flat reads walk.
//!
//! Nothing here decides anything: [`super::Store`] chooses what to read and write, this module
//! only knows where records live and how their bytes look.

use jmt::storage::{HasPreimage, LeafNode, Node, NodeKey, TreeReader};
use jmt::{KeyHash, OwnedValue, RootHash, Sha256Jmt, Version};
use redb::{Database, ReadOnlyTable, ReadableDatabase, ReadableTableMetadata, TableDefinition};

use super::{Committed, Entries, StoreError};

/// Store-wide records: the schema marker and the last committed height and app hash.
pub(super) const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
/// Tree nodes: (version, borsh nibble path) → borsh node.
pub(super) const NODES: TableDefinition<(u64, &[u8]), &[u8]> = TableDefinition::new("jmt_nodes");
/// Earlier values: (raw key, version that wrote it) → tagged value (see [`encode_versioned`]),
/// for every value a key held before its latest one, and every deletion. Keyed by the raw key
/// rather than its hash so that a block's writes land near each other in the file.
pub(super) const EARLIER: TableDefinition<(&[u8], u64), &[u8]> =
    TableDefinition::new("earlier_values");
/// Nodes replaced by a version: version → borsh `BTreeSet<StaleNodeIndex>` (one record per block
/// rather than one per node: pruning reads them a version at a time).
pub(super) const STALE: TableDefinition<u64, &[u8]> = TableDefinition::new("jmt_stale");
/// Key preimages: key hash → raw key, kept forever so absence can be proven at any version.
pub(super) const PREIMAGES: TableDefinition<[u8; 32], &[u8]> = TableDefinition::new("preimages");
/// The latest value of every live key, in raw key byte order, for point reads and prefix scans,
/// and for the tree when it asks for a value at or after the version that wrote it: raw key →
/// version (u64 big-endian) ‖ value (see [`encode_latest`]).
pub(super) const LATEST: TableDefinition<&[u8], &[u8]> = TableDefinition::new("latest");

/// Meta key of the schema marker.
pub(super) const SCHEMA_KEY: &str = "schema";
/// The schema marker this code writes and accepts.
pub(super) const SCHEMA: &[u8] = b"lemal-store/1";
/// Meta key of the committed record: height (u64 big-endian) then the 32-byte app hash.
pub(super) const COMMITTED_KEY: &str = "committed";

/// The borsh encoding of the empty nibble path, i.e. the path part of every root node key
/// (a `usize` nibble count of 0 as eight bytes, then an empty byte vector as a `u32` length).
pub(super) const ROOT_PATH: [u8; 12] = [0; 12];

/// Encodes the committed record stored under [`COMMITTED_KEY`].
pub(super) fn encode_committed(committed: &Committed) -> [u8; 40] {
    let mut bytes = [0u8; 40];
    bytes[..8].copy_from_slice(&committed.height.to_be_bytes());
    bytes[8..].copy_from_slice(&committed.app_hash);
    bytes
}

/// Decodes the committed record stored under [`COMMITTED_KEY`].
pub(super) fn decode_committed(bytes: &[u8]) -> Result<Committed, StoreError> {
    let (height, app_hash) = bytes
        .split_first_chunk::<8>()
        .and_then(|(height, rest)| Some((*height, <[u8; 32]>::try_from(rest).ok()?)))
        .ok_or_else(|| {
            StoreError::Corrupt(format!("committed record has {} bytes, not 40", bytes.len()))
        })?;
    Ok(Committed { height: u64::from_be_bytes(height), app_hash })
}

/// Encodes a [`LATEST`] record: the version that wrote the value, then the value.
pub(super) fn encode_latest(version: u64, value: &[u8]) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(value.len() + 8);
    bytes.extend_from_slice(&version.to_be_bytes());
    bytes.extend_from_slice(value);
    bytes
}

/// Decodes a [`LATEST`] record written by [`encode_latest`].
pub(super) fn decode_latest(bytes: &[u8]) -> Result<(u64, &[u8]), StoreError> {
    match bytes.split_first_chunk::<8>() {
        Some((version, value)) if !value.is_empty() => Ok((u64::from_be_bytes(*version), value)),
        _ => Err(StoreError::Corrupt("latest-value record shorter than 9 bytes".into())),
    }
}

/// Encodes a versioned tree value: tag 0 for a deletion, tag 1 followed by the value bytes.
pub(super) fn encode_versioned(value: Option<&[u8]>) -> Vec<u8> {
    match value {
        None => vec![0],
        Some(value) => {
            let mut bytes = Vec::with_capacity(value.len() + 1);
            bytes.push(1);
            bytes.extend_from_slice(value);
            bytes
        }
    }
}

/// Decodes a versioned tree value written by [`encode_versioned`].
fn decode_versioned(bytes: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
    match bytes.split_first() {
        Some((0, [])) => Ok(None),
        Some((1, value)) => Ok(Some(value.to_vec())),
        _ => Err(StoreError::Corrupt("versioned value with an invalid tag".into())),
    }
}

/// The borsh encoding of a value the store writes (tree nodes, nibble paths).
pub(super) fn to_borsh(value: &impl borsh::BorshSerialize) -> Result<Vec<u8>, StoreError> {
    borsh::to_vec(value).map_err(|err| StoreError::Corrupt(format!("borsh encoding: {err}")))
}

/// The key of a tree node in [`NODES`]: its version and the borsh encoding of its path.
pub(super) fn node_key_parts(key: &NodeKey) -> Result<(u64, Vec<u8>), StoreError> {
    Ok((key.version(), to_borsh(key.nibble_path())?))
}

/// A consistent read-only view of the tree tables, as of the moment it was opened.
pub(super) struct TreeView {
    nodes: ReadOnlyTable<(u64, &'static [u8]), &'static [u8]>,
    latest: ReadOnlyTable<&'static [u8], &'static [u8]>,
    earlier: ReadOnlyTable<(&'static [u8], u64), &'static [u8]>,
    preimages: ReadOnlyTable<[u8; 32], &'static [u8]>,
}

impl TreeView {
    /// Opens a view of the latest committed tree.
    pub(super) fn open(db: &Database) -> Result<Self, StoreError> {
        let txn = db.begin_read()?;
        Ok(Self {
            nodes: txn.open_table(NODES)?,
            latest: txn.open_table(LATEST)?,
            earlier: txn.open_table(EARLIER)?,
            preimages: txn.open_table(PREIMAGES)?,
        })
    }

    /// The node stored under (`version`, `path`), if any.
    pub(super) fn node(&self, version: u64, path: &[u8]) -> Result<Option<Node>, StoreError> {
        let Some(bytes) = self.nodes.get((version, path))? else {
            return Ok(None);
        };
        borsh::from_slice(bytes.value())
            .map(Some)
            .map_err(|err| StoreError::Corrupt(format!("tree node at version {version}: {err}")))
    }

    /// The root node of `version`, if that version was committed.
    pub(super) fn root(&self, version: u64) -> Result<Option<Node>, StoreError> {
        self.node(version, &ROOT_PATH)
    }

    /// The raw key hashing to `key_hash`, if such a key was ever written.
    pub(super) fn key_of(&self, key_hash: KeyHash) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.preimages.get(key_hash.0)?.map(|key| key.value().to_vec()))
    }

    /// The value of the key hashing to `key_hash` at `version`: the newest one written at or
    /// before it, `None` if there is none or the newest change was a deletion.
    pub(super) fn value_at(
        &self,
        version: u64,
        key_hash: KeyHash,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        let Some(key) = self.key_of(key_hash)? else {
            return Ok(None);
        };
        if let Some(record) = self.latest.get(key.as_slice())? {
            let (written, value) = decode_latest(record.value())?;
            if written <= version {
                return Ok(Some(value.to_vec()));
            }
        }
        match self.earlier.range((key.as_slice(), 0)..=(key.as_slice(), version))?.next_back() {
            None => Ok(None),
            Some(entry) => decode_versioned(entry?.1.value()),
        }
    }

    /// How many keys the latest-value table holds.
    pub(super) fn live_keys(&self) -> Result<u64, StoreError> {
        Ok(self.latest.len()?)
    }

    /// The root hash of `version`, if that version was committed.
    pub(super) fn root_hash(&self, version: u64) -> Result<Option<[u8; 32]>, StoreError> {
        let tree = Sha256Jmt::new(self);
        let root = tree.get_root_hash_option(version).map_err(StoreError::from_tree)?;
        Ok(root.map(|RootHash(hash)| hash))
    }
}

impl TreeReader for TreeView {
    fn get_node_option(&self, node_key: &NodeKey) -> anyhow::Result<Option<Node>> {
        let (version, path) = node_key_parts(node_key)?;
        Ok(self.node(version, &path)?)
    }

    fn get_value_option(
        &self,
        max_version: Version,
        key_hash: KeyHash,
    ) -> anyhow::Result<Option<OwnedValue>> {
        Ok(self.value_at(max_version, key_hash)?)
    }

    fn get_rightmost_leaf(&self) -> anyhow::Result<Option<(NodeKey, LeafNode)>> {
        // Only tree restoration from chunks asks for this, and the store never restores.
        Err(anyhow::anyhow!("the store does not support tree restoration"))
    }
}

impl HasPreimage for TreeView {
    fn preimage(&self, key_hash: KeyHash) -> anyhow::Result<Option<Vec<u8>>> {
        Ok(self.key_of(key_hash)?)
    }
}

/// A consistent read-only view of the latest value of every key.
pub(super) struct LatestView {
    table: ReadOnlyTable<&'static [u8], &'static [u8]>,
}

impl LatestView {
    /// Opens a view of the latest committed values.
    pub(super) fn open(db: &Database) -> Result<Self, StoreError> {
        Ok(Self { table: db.begin_read()?.open_table(LATEST)? })
    }

    /// The latest committed value of `key`.
    pub(super) fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        match self.table.get(key)? {
            None => Ok(None),
            Some(record) => Ok(Some(decode_latest(record.value())?.1.to_vec())),
        }
    }

    /// Every committed key starting with `prefix` and its value, in key byte order.
    pub(super) fn scan_prefix(&self, prefix: &[u8]) -> Result<Entries, StoreError> {
        let mut found = Vec::new();
        for entry in self.table.range::<&[u8]>(prefix..)? {
            let (key, value) = entry?;
            let key = key.value();
            if !key.starts_with(prefix) {
                break;
            }
            found.push((key.to_vec(), decode_latest(value.value())?.1.to_vec()));
        }
        Ok(found)
    }

    /// The values of the committed keys starting with `prefix`, from the `skip`-th on, at most
    /// `max_entries` of them and, past the first, at most `max_bytes` in total; and whether more
    /// follow. Only the values returned are copied.
    pub(super) fn page(
        &self,
        prefix: &[u8],
        skip: usize,
        max_entries: usize,
        max_bytes: usize,
    ) -> Result<(Vec<Vec<u8>>, bool), StoreError> {
        let mut values: Vec<Vec<u8>> = Vec::new();
        let mut bytes = 0usize;
        let entries = self.table.range::<&[u8]>(prefix..)?;
        for entry in entries.skip(skip) {
            let (key, record) = entry?;
            if !key.value().starts_with(prefix) {
                return Ok((values, false));
            }
            let record = record.value();
            let value = decode_latest(record)?.1;
            let full = values.len() >= max_entries
                || (!values.is_empty() && bytes.saturating_add(value.len()) > max_bytes);
            if full {
                return Ok((values, true));
            }
            bytes += value.len();
            values.push(value.to_vec());
        }
        Ok((values, false))
    }
}
