//! Paged list answers of the ABCI query paths (`/proofs/{id}`, `/query/{id}/bitmaps`).
//!
//! A list path answers one page: the entries from position `from` (in state-key order), at most
//! [`PAGE_ENTRIES`] of them and, past the first, no more than [`PAGE_BYTES`] in total, and
//! whether more follow. Clients ask again from `from + items.len()` until `more` is false
//! ([`Page::next`]). Lists are answered from the latest state only and are not provable; a
//! client that needs one height checks that every page came from the same one.

use borsh::{BorshDeserialize, BorshSerialize};

/// Most entries in one page.
pub const PAGE_ENTRIES: usize = 64;

/// Most value bytes in one page; a page holds at least one entry, whatever its size.
pub const PAGE_BYTES: usize = 4 << 20;

/// One page of a list.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct Page<T> {
    /// The entries, in state-key order.
    pub items: Vec<T>,
    /// Whether entries follow this page.
    pub more: bool,
}

impl<T> Page<T> {
    /// Where the next page starts, given where this one started; `None` after the last page.
    pub fn next(&self, from: u32) -> Option<u32> {
        let len = u32::try_from(self.items.len()).ok()?;
        (self.more && len > 0).then(|| from.checked_add(len)).flatten()
    }
}

/// The path of the page of `list` (a list path such as `/proofs/{id}`) starting at entry `from`.
pub fn page_path(list: &str, from: u32) -> String {
    format!("{list}/from/{from}")
}

/// The borsh encoding of a page from already-encoded values: a `u32` count, the values back to
/// back, the `more` flag — the same bytes as `Page { items, more }` encodes to.
pub fn encode_page(values: &[Vec<u8>], more: bool) -> Vec<u8> {
    let count = u32::try_from(values.len()).expect("a page holds at most PAGE_ENTRIES values");
    let total: usize = values.iter().map(Vec::len).sum();
    let mut out = Vec::with_capacity(5 + total);
    out.extend_from_slice(&count.to_le_bytes());
    for v in values {
        out.extend_from_slice(v);
    }
    out.push(u8::from(more));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::group::{from_borsh, to_borsh};

    #[test]
    fn a_page_encoded_from_values_decodes_as_a_page() {
        let items = vec![7u64, 8, 9];
        let values: Vec<Vec<u8>> = items.iter().map(to_borsh).collect();
        let page: Page<u64> = from_borsh(&encode_page(&values, true)).expect("decodes");
        assert_eq!(page, Page { items: items.clone(), more: true });
        assert_eq!(to_borsh(&page), encode_page(&values, true));
        assert_eq!(page.next(10), Some(13));
        assert_eq!(Page { items, more: false }.next(10), None);
        assert_eq!(Page::<u64> { items: vec![], more: true }.next(0), None, "no progress, no loop");
    }

    #[test]
    fn page_paths_follow_the_grammar() {
        assert_eq!(page_path("/proofs/00ff", 64), "/proofs/00ff/from/64");
    }
}
