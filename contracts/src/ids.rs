//! Identifiers: queries, entities, proof kinds and proof keys.
//!
//! Text forms are stable and used in the CLI, the ABCI query paths and the bitmap keys:
//! a query id is 32 lowercase hex digits, an entity is `dp-3`, `cn-0` or `vn-2`, a proof kind is
//! `range`, `aggregation`, `shuffle` or `keyswitch`, and a bitmap key reads
//! `queryID/kind/creator/index/verifier` as in the original report.

use std::fmt;
use std::str::FromStr;

use borsh::{BorshDeserialize, BorshSerialize};
use serde::{Deserialize, Serialize};

use crate::error::DecodeError;

/// JSON (serde) as the type's text form: `Display` out, `FromStr` in.
macro_rules! serde_as_text {
    ($t:ty) => {
        impl Serialize for $t {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }

        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <std::borrow::Cow<'de, str> as Deserialize>::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

/// A query identifier: 16 bytes chosen by the registering party, unique on the ledger.
#[derive(
    Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, BorshSerialize, BorshDeserialize, Default,
)]
pub struct QueryId(pub [u8; 16]);

impl fmt::Display for QueryId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for QueryId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "QueryId({self})")
    }
}

impl FromStr for QueryId {
    type Err = DecodeError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut out = [0u8; 16];
        hex::decode_to_slice(s, &mut out).map_err(|_| DecodeError::Invalid {
            what: "query id",
            why: "expected 32 hex digits",
        })?;
        Ok(Self(out))
    }
}

serde_as_text!(QueryId);

/// The role of an entity in the system.
#[derive(
    Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, BorshSerialize, BorshDeserialize,
)]
#[borsh(use_discriminant = true)]
#[repr(u8)]
pub enum Role {
    /// A data provider.
    Dp = 0,
    /// A computing node.
    Cn = 1,
    /// A verifying node.
    Vn = 2,
}

impl Role {
    /// The text prefix of the role.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Dp => "dp",
            Role::Cn => "cn",
            Role::Vn => "vn",
        }
    }
}

/// An entity of the roster: a role and an index within that role, written `dp-3`.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, BorshSerialize, BorshDeserialize)]
pub struct EntityId {
    /// The role.
    pub role: Role,
    /// The index within the role, from 0.
    pub index: u32,
}

impl EntityId {
    /// A data provider.
    pub const fn dp(index: u32) -> Self {
        Self { role: Role::Dp, index }
    }
    /// A computing node.
    pub const fn cn(index: u32) -> Self {
        Self { role: Role::Cn, index }
    }
    /// A verifying node.
    pub const fn vn(index: u32) -> Self {
        Self { role: Role::Vn, index }
    }

    /// Fixed five-byte encoding (role, big-endian index), used in transcripts and state keys.
    pub fn to_bytes(&self) -> [u8; 5] {
        let i = self.index.to_be_bytes();
        [self.role as u8, i[0], i[1], i[2], i[3]]
    }
}

impl fmt::Display for EntityId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.role.as_str(), self.index)
    }
}

impl fmt::Debug for EntityId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for EntityId {
    type Err = DecodeError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        const BAD: DecodeError =
            DecodeError::Invalid { what: "entity id", why: "expected dp-N, cn-N or vn-N" };
        let (role, index) = s.split_once('-').ok_or(BAD)?;
        let role = match role {
            "dp" => Role::Dp,
            "cn" => Role::Cn,
            "vn" => Role::Vn,
            _ => return Err(BAD),
        };
        if index.is_empty() || !index.bytes().all(|b| b.is_ascii_digit()) {
            return Err(BAD);
        }
        let index = index.parse().map_err(|_| BAD)?;
        Ok(Self { role, index })
    }
}

serde_as_text!(EntityId);

/// The four proof contracts.
#[derive(
    Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, BorshSerialize, BorshDeserialize,
)]
#[borsh(use_discriminant = true)]
#[repr(u8)]
pub enum ProofKind {
    /// A data provider's range proof on its encrypted values.
    Range = 0,
    /// A computing node's homomorphic aggregation.
    Aggregation = 1,
    /// A computing node's verifiable shuffle of the noise list.
    Shuffle = 2,
    /// A computing node's key switch of the result to the querier's key.
    KeySwitch = 3,
}

impl ProofKind {
    /// All kinds, in ledger order.
    pub const ALL: [ProofKind; 4] =
        [ProofKind::Range, ProofKind::Aggregation, ProofKind::Shuffle, ProofKind::KeySwitch];

    /// The text form.
    pub fn as_str(self) -> &'static str {
        match self {
            ProofKind::Range => "range",
            ProofKind::Aggregation => "aggregation",
            ProofKind::Shuffle => "shuffle",
            ProofKind::KeySwitch => "keyswitch",
        }
    }
}

impl fmt::Display for ProofKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ProofKind {
    type Err = DecodeError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ProofKind::ALL.into_iter().find(|k| k.as_str() == s).ok_or(DecodeError::Invalid {
            what: "proof kind",
            why: "expected range, aggregation, shuffle or keyswitch",
        })
    }
}

/// The ledger identity of one proof: (query, kind, creator, index).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, BorshSerialize, BorshDeserialize)]
pub struct ProofKey {
    /// The query.
    pub query: QueryId,
    /// The proof contract.
    pub kind: ProofKind,
    /// The entity expected to produce the proof.
    pub creator: EntityId,
    /// The "deterministic info" of the report: the proof's index for (query, kind, creator).
    pub index: u32,
}

impl fmt::Display for ProofKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}/{}", self.query, self.kind, self.creator, self.index)
    }
}

impl fmt::Debug for ProofKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for ProofKey {
    type Err = DecodeError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut parts = s.split('/');
        let mut next = || {
            parts.next().ok_or(DecodeError::Invalid {
                what: "proof key",
                why: "expected query/kind/creator/index",
            })
        };
        let query = next()?.parse()?;
        let kind = next()?.parse()?;
        let creator = next()?.parse()?;
        let index = next()?
            .parse()
            .map_err(|_| DecodeError::Invalid { what: "proof key", why: "bad index" })?;
        if parts.next().is_some() {
            return Err(DecodeError::Invalid { what: "proof key", why: "too many parts" });
        }
        Ok(Self { query, kind, creator, index })
    }
}

serde_as_text!(ProofKey);

impl ProofKey {
    /// The report's bitmap key string: `queryID/kind/creator/index/verifier`.
    pub fn bitmap_key(&self, verifier: EntityId) -> String {
        format!("{self}/{verifier}")
    }
}

/// A verifying node's verdict on one proof, as stored in the bitmap.
#[derive(
    Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, BorshSerialize, BorshDeserialize,
)]
#[borsh(use_discriminant = true)]
#[repr(u8)]
pub enum Verdict {
    /// 0: verified and wrong.
    Wrong = 0,
    /// 1: verified and correct.
    Correct = 1,
    /// 2: not selected for verification.
    NotSelected = 2,
    /// 3: not received (missing at its deadline, or the verifier was absent).
    NotReceived = 3,
}

/// JSON as the report's integer value.
impl Serialize for Verdict {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u8(self.value())
    }
}

impl Verdict {
    /// The report's integer value.
    pub fn value(self) -> u8 {
        self as u8
    }

    /// The verdict rule: what a verifying node owes on one expected proof. A proof it did not
    /// receive (missing at its deadline, or the node absent) is 3, one its VRF did not select
    /// 2, and one it verified 1 when the proof holds and 0 when it does not.
    ///
    /// The chain checks bitmap commits with it, the verifying nodes fill them with it, and the
    /// light client and the auditor hold bitmaps against it ([`Verdict::allowed`]).
    ///
    /// ```
    /// use lemal_contracts::ids::Verdict;
    /// assert_eq!(Verdict::rule(false, true, true), Verdict::NotReceived);
    /// assert_eq!(Verdict::rule(true, false, false), Verdict::NotSelected);
    /// assert_eq!(Verdict::rule(true, true, false), Verdict::Wrong);
    /// assert_eq!(Verdict::rule(true, true, true), Verdict::Correct);
    /// ```
    pub fn rule(received: bool, selected: bool, valid: bool) -> Verdict {
        match (received, selected, valid) {
            (false, _, _) => Verdict::NotReceived,
            (true, false, _) => Verdict::NotSelected,
            (true, true, false) => Verdict::Wrong,
            (true, true, true) => Verdict::Correct,
        }
    }

    /// Whether [`Verdict::rule`] can give `self` on a proof so `received`, when the node's
    /// selection and the proof's validity are known (`Some`) or not (`None`). The chain knows
    /// the selection of a bitmap commit but not the validity; a light client holding only the
    /// bitmap knows neither.
    pub fn allowed(self, received: bool, selected: Option<bool>, valid: Option<bool>) -> bool {
        let cases = |known: Option<bool>| match known {
            Some(b) => vec![b],
            None => vec![false, true],
        };
        cases(selected)
            .into_iter()
            .any(|s| cases(valid).into_iter().any(|v| Verdict::rule(received, s, v) == self))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_forms_round_trip() {
        let key = ProofKey {
            query: QueryId([0xab; 16]),
            kind: ProofKind::Shuffle,
            creator: EntityId::cn(2),
            index: 0,
        };
        let s = key.to_string();
        assert_eq!(s, format!("{}/shuffle/cn-2/0", "ab".repeat(16)));
        assert_eq!(s.parse::<ProofKey>(), Ok(key));
        assert_eq!(key.bitmap_key(EntityId::vn(1)), format!("{s}/vn-1"));
    }

    #[test]
    fn malformed_text_is_rejected() {
        for bad in ["", "dp", "dp-", "dp-x", "xx-1", "dp-+1", "dp-99999999999"] {
            assert!(bad.parse::<EntityId>().is_err(), "{bad}");
        }
        assert!("abc".parse::<QueryId>().is_err());
        assert!("range2".parse::<ProofKind>().is_err());
    }

    const ALL: [Verdict; 4] =
        [Verdict::Wrong, Verdict::Correct, Verdict::NotSelected, Verdict::NotReceived];

    #[test]
    fn verdict_rule_gives_each_value_for_one_case_only() {
        for received in [false, true] {
            for selected in [false, true] {
                for valid in [false, true] {
                    let v = Verdict::rule(received, selected, valid);
                    let want = match (received, selected, valid) {
                        (false, ..) => 3,
                        (true, false, _) => 2,
                        (true, true, false) => 0,
                        (true, true, true) => 1,
                    };
                    assert_eq!(v.value(), want, "{received} {selected} {valid}");
                }
            }
        }
    }

    #[test]
    fn a_proof_not_received_allows_only_not_received() {
        for v in ALL {
            let ok = v.allowed(false, None, None);
            assert_eq!(ok, v == Verdict::NotReceived, "{v:?}");
        }
    }

    #[test]
    fn a_received_proof_allows_any_verdict_but_not_received_when_nothing_else_is_known() {
        for v in ALL {
            assert_eq!(v.allowed(true, None, None), v != Verdict::NotReceived, "{v:?}");
        }
    }

    #[test]
    fn a_known_selection_fixes_whether_the_proof_was_verified() {
        let allowed = |selected| ALL.into_iter().filter(move |v| v.allowed(true, selected, None));
        assert_eq!(allowed(Some(false)).collect::<Vec<_>>(), [Verdict::NotSelected]);
        assert_eq!(allowed(Some(true)).collect::<Vec<_>>(), [Verdict::Wrong, Verdict::Correct]);
    }

    #[test]
    fn a_known_validity_fixes_the_verdict_of_a_selected_proof() {
        assert!(Verdict::Correct.allowed(true, Some(true), Some(true)));
        assert!(!Verdict::Wrong.allowed(true, Some(true), Some(true)));
        assert!(Verdict::NotSelected.allowed(true, None, Some(true)));
        assert!(!Verdict::Wrong.allowed(true, None, Some(true)));
    }

    #[test]
    fn verdicts_serialize_as_their_integer_value() {
        let json = serde_json::to_string(&ALL).expect("json");
        assert_eq!(json, "[0,1,2,3]");
    }

    #[test]
    fn unknown_enum_tags_are_rejected() {
        assert!(crate::group::from_borsh::<ProofKind>(&[4]).is_err());
        assert!(crate::group::from_borsh::<Verdict>(&[4]).is_err());
        assert!(crate::group::from_borsh::<Role>(&[3]).is_err());
    }
}
