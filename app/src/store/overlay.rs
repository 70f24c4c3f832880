//! Block execution on top of committed state: a [`WriteSet`] of pending puts and deletes, and the
//! [`Overlay`] that layers one over committed state (for a block) or over another overlay (for a
//! transaction inside that block).
//!
//! Reads see the innermost write first, then each enclosing layer, then committed state. A
//! transaction runs in a child overlay through [`Overlay::transact`]: its writes reach the block
//! only when it returns `Ok`, and vanish with it when it returns `Err`.

use std::collections::BTreeMap;

use super::tables::LatestView;
use super::{Entries, Store, StoreError};

/// Pending changes to the store: for each raw key, its new value or its deletion.
///
/// Keys and values are never empty: ICS23 proofs cannot express an empty key or an empty
/// value, so both are refused here, where writes enter the store, rather than discovered when
/// a proof is asked for.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WriteSet {
    entries: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
}

impl WriteSet {
    /// An empty write set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records that `key` now holds `value`, replacing any earlier change to `key`.
    pub fn put(&mut self, key: Vec<u8>, value: Vec<u8>) -> Result<(), StoreError> {
        if key.is_empty() {
            return Err(StoreError::EmptyKey);
        }
        if value.is_empty() {
            return Err(StoreError::EmptyValue);
        }
        self.entries.insert(key, Some(value));
        Ok(())
    }

    /// Records that `key` is deleted, replacing any earlier change to `key`.
    pub fn delete(&mut self, key: Vec<u8>) -> Result<(), StoreError> {
        if key.is_empty() {
            return Err(StoreError::EmptyKey);
        }
        self.entries.insert(key, None);
        Ok(())
    }

    /// The pending change to `key`: `None` if untouched, `Some(None)` if deleted.
    pub fn change(&self, key: &[u8]) -> Option<Option<&[u8]>> {
        self.entries.get(key).map(Option::as_deref)
    }

    /// Every pending change in key byte order; a `None` value is a deletion.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], Option<&[u8]>)> {
        self.entries.iter().map(|(key, value)| (key.as_slice(), value.as_deref()))
    }

    /// The number of keys changed.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no key is changed.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The changes, by value, in key byte order.
    pub(super) fn into_changes(self) -> impl Iterator<Item = (Vec<u8>, Option<Vec<u8>>)> {
        self.entries.into_iter()
    }

    /// Applies `later` on top of `self`: its changes win.
    fn absorb(&mut self, later: WriteSet) {
        self.entries.extend(later.entries);
    }

    /// The changes to keys starting with `prefix`, in key byte order.
    fn with_prefix<'s>(
        &'s self,
        prefix: &'s [u8],
    ) -> impl Iterator<Item = (&'s Vec<u8>, &'s Option<Vec<u8>>)> + 's {
        self.entries
            .range::<[u8], _>((std::ops::Bound::Included(prefix), std::ops::Bound::Unbounded))
            .take_while(move |(key, _)| key.starts_with(prefix))
    }
}

/// What an overlay reads through when a key is not in its own write set.
enum Below<'a> {
    /// Committed state, read from one snapshot taken when the block overlay was created; the
    /// borrow of the store forbids committing while the overlay lives.
    Committed { latest: LatestView, _store: &'a Store },
    /// The enclosing overlay (a transaction's block).
    Parent(&'a Overlay<'a>),
}

/// A write set layered on committed state, or on an enclosing overlay.
///
/// Create the block overlay with [`Store::overlay`], run each transaction with
/// [`Overlay::transact`], then hand [`Overlay::into_write_set`] to [`Store::prepare`].
pub struct Overlay<'a> {
    below: Below<'a>,
    writes: WriteSet,
}

impl Store {
    /// Opens an overlay for one block on top of the latest committed state.
    pub fn overlay(&self) -> Result<Overlay<'_>, StoreError> {
        let latest = LatestView::open(&self.db)?;
        Ok(Overlay { below: Below::Committed { latest, _store: self }, writes: WriteSet::new() })
    }
}

impl<'a> Overlay<'a> {
    /// The current value of `key`: this overlay's change if any, else what lies below.
    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        match self.writes.change(key) {
            Some(change) => Ok(change.map(<[u8]>::to_vec)),
            None => match &self.below {
                Below::Committed { latest, .. } => latest.get(key),
                Below::Parent(parent) => parent.get(key),
            },
        }
    }

    /// Sets `key` to `value` in this overlay.
    pub fn put(&mut self, key: Vec<u8>, value: Vec<u8>) -> Result<(), StoreError> {
        self.writes.put(key, value)
    }

    /// Deletes `key` in this overlay (deleting an absent key is not an error).
    pub fn delete(&mut self, key: Vec<u8>) -> Result<(), StoreError> {
        self.writes.delete(key)
    }

    /// Every live key starting with `prefix` and its current value, in key byte order: this
    /// overlay's puts shadow and its deletes hide what lies below.
    pub fn scan_prefix(&self, prefix: &[u8]) -> Result<Entries, StoreError> {
        let below = match &self.below {
            Below::Committed { latest, .. } => latest.scan_prefix(prefix)?,
            Below::Parent(parent) => parent.scan_prefix(prefix)?,
        };
        let mut below = below.into_iter().peekable();
        let mut merged = Vec::new();
        for (key, change) in self.writes.with_prefix(prefix) {
            while let Some(entry) = below.next_if(|(below_key, _)| below_key < key) {
                merged.push(entry);
            }
            // An entry below with the same key is shadowed (put) or hidden (delete).
            let _shadowed = below.next_if(|(below_key, _)| below_key == key);
            if let Some(value) = change {
                merged.push((key.clone(), value.clone()));
            }
        }
        merged.extend(below);
        Ok(merged)
    }

    /// Runs `f` in a child overlay that reads through this one. When `f` returns `Ok`, the
    /// child's writes are merged into this overlay; when it returns `Err`, they are dropped and
    /// this overlay is exactly as before.
    pub fn transact<T, E>(
        &mut self,
        f: impl FnOnce(&mut Overlay<'_>) -> Result<T, E>,
    ) -> Result<T, E> {
        let (result, writes) = {
            let mut child = Overlay { below: Below::Parent(self), writes: WriteSet::new() };
            let result = f(&mut child);
            (result, child.writes)
        };
        if result.is_ok() {
            self.writes.absorb(writes);
        }
        result
    }

    /// The changes made in this overlay so far (not those of enclosing overlays).
    pub fn writes(&self) -> &WriteSet {
        &self.writes
    }

    /// The changes made in this overlay, ready for [`Store::prepare`].
    pub fn into_write_set(self) -> WriteSet {
        self.writes
    }
}
