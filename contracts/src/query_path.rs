//! The ABCI query paths of the verifying nodes: one typed grammar that the application parses,
//! clients print, and both map to the state key ([`crate::keys`]) behind each path.
//!
//! | path | value |
//! |---|---|
//! | `/skipchain/latest`, `/skipchain/index/{n}`, `/skipchain/hash/{hex}`, `/skipchain/query/{id}` | `SkipBlock` |
//! | `/skipchain/forward/{n}` | forward links `Vec<[u8; 32]>` |
//! | `/query/{id}` / `/query/{id}/progress` | `QueryRecord` / `QueryProgress` |
//! | `/query/{id}/bitmaps[/from/{n}]` | `Page<BitmapCommitRecord>` |
//! | `/proofs/{id}[/from/{n}]` | `Page<ProofRecord>` |
//! | `/proof/{id}/{kind}/{creator}/{index}` | `ProofRecord` |
//! | `/roster`, `/roster/genesis`, `/params` | `Roster`, `Roster`, `Params` |
//! | `/standing/{entity}`, `/standings[/from/{n}]` | `StandingRecord`, `Page<StandingRecord>` |
//! | `/verdict/{id}/{kind}/{creator}/{index}`, `/verdicts/{id}[/from/{n}]` | `VerdictRecord`, `Page<VerdictRecord>` |
//! | `/unfounded/{entity}` | `u32` |
//! | `/validator/{n}`, `/validators[/from/{n}]` | `ValidatorRecord`, `Page<ValidatorRecord>` |
//! | `/proposal/{n}`, `/proposals[/from/{n}]` | `ProposalRecord`, `Page<ProposalRecord>` |

use std::fmt;
use std::str::FromStr;

use crate::group::from_borsh;
use crate::ids::{EntityId, ProofKey, QueryId};
use crate::keys;
use crate::page::Page;
use crate::state::{
    BitmapCommitRecord, Params, ProofRecord, ProposalRecord, QueryProgress, QueryRecord, Roster,
    SkipBlock, StandingRecord, ValidatorRecord, VerdictRecord,
};

/// One query path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QueryPath {
    /// `/skipchain/latest`.
    LatestBlock,
    /// `/skipchain/index/{n}`.
    Block(u64),
    /// `/skipchain/hash/{hex}`.
    BlockByHash([u8; 32]),
    /// `/skipchain/query/{id}`.
    BlockOfQuery(QueryId),
    /// `/skipchain/forward/{n}`.
    Forward(u64),
    /// `/query/{id}`.
    Query(QueryId),
    /// `/query/{id}/progress`.
    Progress(QueryId),
    /// `/query/{id}/bitmaps[/from/{n}]`.
    Bitmaps(QueryId, u32),
    /// `/proofs/{id}[/from/{n}]`.
    Proofs(QueryId, u32),
    /// `/proof/{id}/{kind}/{creator}/{index}`.
    Proof(ProofKey),
    /// `/roster`.
    Roster,
    /// `/roster/genesis`.
    GenesisRoster,
    /// `/params`.
    Params,
    /// `/standing/{entity}`.
    Standing(EntityId),
    /// `/standings[/from/{n}]`.
    Standings(u32),
    /// `/verdict/{id}/{kind}/{creator}/{index}`.
    Verdict(ProofKey),
    /// `/verdicts/{id}[/from/{n}]`.
    Verdicts(QueryId, u32),
    /// `/unfounded/{entity}`.
    Unfounded(EntityId),
    /// `/validator/{n}`.
    Validator(u32),
    /// `/validators[/from/{n}]`.
    Validators(u32),
    /// `/proposal/{n}`.
    Proposal(u64),
    /// `/proposals[/from/{n}]`.
    Proposals(u32),
}

/// Where a path's value lives in state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Lookup {
    /// Under one key: provable.
    Key(Vec<u8>),
    /// Under the block key whose index (a `u64`) this index key holds: provable in two steps.
    Indexed(Vec<u8>),
    /// One page of the values under a prefix, from the given entry on: not provable.
    List(Vec<u8>, usize),
}

impl QueryPath {
    /// Where the value lives.
    pub fn lookup(&self) -> Lookup {
        use QueryPath as P;
        let list = |prefix: Vec<u8>, from: &u32| Lookup::List(prefix, *from as usize);
        match self {
            P::LatestBlock => Lookup::Indexed(keys::SKIP_HEAD.to_vec()),
            P::Block(n) => Lookup::Key(keys::block(*n)),
            P::BlockByHash(h) => Lookup::Indexed(keys::block_by_hash(h)),
            P::BlockOfQuery(q) => Lookup::Indexed(keys::block_by_query(q)),
            P::Forward(n) => Lookup::Key(keys::forward(*n)),
            P::Query(q) => Lookup::Key(keys::query(q)),
            P::Progress(q) => Lookup::Key(keys::progress(q)),
            P::Bitmaps(q, from) => list(keys::commits_of(q), from),
            P::Proofs(q, from) => list(keys::proofs_of(q), from),
            P::Proof(k) => Lookup::Key(keys::proof(k)),
            P::Roster => Lookup::Key(keys::ROSTER.to_vec()),
            P::GenesisRoster => Lookup::Key(keys::GENESIS_ROSTER.to_vec()),
            P::Params => Lookup::Key(keys::PARAMS.to_vec()),
            P::Standing(e) => Lookup::Key(keys::standing(*e)),
            P::Standings(from) => list(keys::standings(), from),
            P::Verdict(k) => Lookup::Key(keys::verdict(k)),
            P::Verdicts(q, from) => list(keys::verdicts_of(q), from),
            P::Unfounded(e) => Lookup::Key(keys::unfounded(*e)),
            P::Validator(n) => Lookup::Key(keys::validator(*n)),
            P::Validators(from) => list(keys::validators(), from),
            P::Proposal(n) => Lookup::Key(keys::proposal(*n)),
            P::Proposals(from) => list(keys::proposals(), from),
        }
    }

    /// The value bytes of this path decoded to their type and shown with `Debug`: what
    /// `lemal state` prints.
    pub fn describe_value(&self, bytes: &[u8]) -> Result<String, crate::DecodeError> {
        use QueryPath as P;
        fn show<T: borsh::BorshDeserialize + fmt::Debug>(
            bytes: &[u8],
        ) -> Result<String, crate::DecodeError> {
            Ok(format!("{:#?}", from_borsh::<T>(bytes)?))
        }
        match self {
            P::LatestBlock | P::Block(_) | P::BlockByHash(_) | P::BlockOfQuery(_) => {
                show::<SkipBlock>(bytes)
            }
            P::Forward(_) => show::<Vec<[u8; 32]>>(bytes),
            P::Query(_) => show::<QueryRecord>(bytes),
            P::Progress(_) => show::<QueryProgress>(bytes),
            P::Bitmaps(..) => show::<Page<BitmapCommitRecord>>(bytes),
            P::Proofs(..) => show::<Page<ProofRecord>>(bytes),
            P::Proof(_) => show::<ProofRecord>(bytes),
            P::Roster | P::GenesisRoster => show::<Roster>(bytes),
            P::Params => show::<Params>(bytes),
            P::Standing(_) => show::<StandingRecord>(bytes),
            P::Standings(_) => show::<Page<StandingRecord>>(bytes),
            P::Verdict(_) => show::<VerdictRecord>(bytes),
            P::Verdicts(..) => show::<Page<VerdictRecord>>(bytes),
            P::Unfounded(_) => show::<u32>(bytes),
            P::Validator(_) => show::<ValidatorRecord>(bytes),
            P::Validators(_) => show::<Page<ValidatorRecord>>(bytes),
            P::Proposal(_) => show::<ProposalRecord>(bytes),
            P::Proposals(_) => show::<Page<ProposalRecord>>(bytes),
        }
    }
}

impl fmt::Display for QueryPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use QueryPath as P;
        let from = |f: &mut fmt::Formatter<'_>, n: &u32| match n {
            0 => Ok(()),
            n => write!(f, "/from/{n}"),
        };
        let key = |k: &ProofKey| format!("{}/{}/{}/{}", k.query, k.kind, k.creator, k.index);
        match self {
            P::LatestBlock => f.write_str("/skipchain/latest"),
            P::Block(n) => write!(f, "/skipchain/index/{n}"),
            P::BlockByHash(h) => write!(f, "/skipchain/hash/{}", hex::encode(h)),
            P::BlockOfQuery(q) => write!(f, "/skipchain/query/{q}"),
            P::Forward(n) => write!(f, "/skipchain/forward/{n}"),
            P::Query(q) => write!(f, "/query/{q}"),
            P::Progress(q) => write!(f, "/query/{q}/progress"),
            P::Bitmaps(q, n) => write!(f, "/query/{q}/bitmaps").and_then(|()| from(f, n)),
            P::Proofs(q, n) => write!(f, "/proofs/{q}").and_then(|()| from(f, n)),
            P::Proof(k) => write!(f, "/proof/{}", key(k)),
            P::Roster => f.write_str("/roster"),
            P::GenesisRoster => f.write_str("/roster/genesis"),
            P::Params => f.write_str("/params"),
            P::Standing(e) => write!(f, "/standing/{e}"),
            P::Standings(n) => f.write_str("/standings").and_then(|()| from(f, n)),
            P::Verdict(k) => write!(f, "/verdict/{}", key(k)),
            P::Verdicts(q, n) => write!(f, "/verdicts/{q}").and_then(|()| from(f, n)),
            P::Unfounded(e) => write!(f, "/unfounded/{e}"),
            P::Validator(n) => write!(f, "/validator/{n}"),
            P::Validators(n) => f.write_str("/validators").and_then(|()| from(f, n)),
            P::Proposal(n) => write!(f, "/proposal/{n}"),
            P::Proposals(n) => f.write_str("/proposals").and_then(|()| from(f, n)),
        }
    }
}

impl FromStr for QueryPath {
    type Err = String;

    fn from_str(path: &str) -> Result<Self, String> {
        use QueryPath as P;
        let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
        let query = |s: &str| s.parse::<QueryId>().map_err(|e| format!("{e}"));
        let entity = |s: &str| s.parse::<EntityId>().map_err(|e| format!("{e}"));
        let number =
            |what: &str, s: &str| s.parse::<u64>().map_err(|_| format!("bad {what} {s:?}"));
        let from = |n: &str| n.parse::<u32>().map_err(|_| format!("bad page start {n:?}"));
        let index = |s: &str| s.parse::<u32>().map_err(|_| format!("bad index {s:?}"));
        let proof_key =
            |id: &str, kind: &str, creator: &str, i: &str| -> Result<ProofKey, String> {
                Ok(ProofKey {
                    query: query(id)?,
                    kind: kind.parse().map_err(|e| format!("{e}"))?,
                    creator: entity(creator)?,
                    index: index(i)?,
                })
            };
        Ok(match parts.as_slice() {
            ["skipchain", "latest"] => P::LatestBlock,
            ["skipchain", "index", n] => P::Block(number("index", n)?),
            ["skipchain", "forward", n] => P::Forward(number("index", n)?),
            ["skipchain", "hash", h] => {
                let mut hash = [0u8; 32];
                hex::decode_to_slice(h, &mut hash).map_err(|_| format!("bad block hash {h:?}"))?;
                P::BlockByHash(hash)
            }
            ["skipchain", "query", id] => P::BlockOfQuery(query(id)?),
            ["query", id] => P::Query(query(id)?),
            ["query", id, "progress"] => P::Progress(query(id)?),
            ["query", id, "bitmaps"] => P::Bitmaps(query(id)?, 0),
            ["query", id, "bitmaps", "from", n] => P::Bitmaps(query(id)?, from(n)?),
            ["proofs", id] => P::Proofs(query(id)?, 0),
            ["proofs", id, "from", n] => P::Proofs(query(id)?, from(n)?),
            ["proof", id, kind, creator, i] => P::Proof(proof_key(id, kind, creator, i)?),
            ["roster"] => P::Roster,
            ["roster", "genesis"] => P::GenesisRoster,
            ["params"] => P::Params,
            ["standing", e] => P::Standing(entity(e)?),
            ["standings"] => P::Standings(0),
            ["standings", "from", n] => P::Standings(from(n)?),
            ["verdict", id, kind, creator, i] => P::Verdict(proof_key(id, kind, creator, i)?),
            ["verdicts", id] => P::Verdicts(query(id)?, 0),
            ["verdicts", id, "from", n] => P::Verdicts(query(id)?, from(n)?),
            ["unfounded", e] => P::Unfounded(entity(e)?),
            ["validator", n] => P::Validator(index(n)?),
            ["validators"] => P::Validators(0),
            ["validators", "from", n] => P::Validators(from(n)?),
            ["proposal", n] => P::Proposal(number("proposal", n)?),
            ["proposals"] => P::Proposals(0),
            ["proposals", "from", n] => P::Proposals(from(n)?),
            _ => return Err(format!("unknown query path {path:?}")),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::ProofKind;

    fn samples() -> Vec<QueryPath> {
        let q = QueryId([0xab; 16]);
        let k = ProofKey { query: q, kind: ProofKind::Shuffle, creator: EntityId::cn(2), index: 0 };
        use QueryPath as P;
        vec![
            P::LatestBlock,
            P::Block(7),
            P::BlockByHash([3; 32]),
            P::BlockOfQuery(q),
            P::Forward(2),
            P::Query(q),
            P::Progress(q),
            P::Bitmaps(q, 0),
            P::Bitmaps(q, 64),
            P::Proofs(q, 0),
            P::Proofs(q, 5),
            P::Proof(k),
            P::Roster,
            P::GenesisRoster,
            P::Params,
            P::Standing(EntityId::vn(3)),
            P::Standings(0),
            P::Standings(1),
            P::Verdict(k),
            P::Verdicts(q, 0),
            P::Verdicts(q, 9),
            P::Unfounded(EntityId::dp(0)),
            P::Validator(1),
            P::Validators(0),
            P::Validators(2),
            P::Proposal(4),
            P::Proposals(0),
            P::Proposals(3),
        ]
    }

    #[test]
    fn every_path_round_trips_through_its_text() {
        for p in samples() {
            let text = p.to_string();
            assert_eq!(text.parse::<QueryPath>(), Ok(p), "{text}");
        }
    }

    #[test]
    fn paths_name_the_documented_keys() {
        let q = QueryId([1; 16]);
        assert_eq!(QueryPath::Query(q).lookup(), Lookup::Key(keys::query(&q)));
        assert_eq!(QueryPath::LatestBlock.lookup(), Lookup::Indexed(keys::SKIP_HEAD.to_vec()));
        assert_eq!(QueryPath::Proofs(q, 5).lookup(), Lookup::List(keys::proofs_of(&q), 5));
        assert_eq!(QueryPath::GenesisRoster.lookup(), Lookup::Key(keys::GENESIS_ROSTER.to_vec()));
    }

    #[test]
    fn malformed_paths_are_refused() {
        for bad in [
            "",
            "/",
            "/roster/x",
            "/proof/ab/range/dp-0/0",
            "/skipchain/index/-1",
            "/standing/xx-1",
            "/proposals/from/x",
            "/skipchain/hash/zz",
        ] {
            assert!(bad.parse::<QueryPath>().is_err(), "{bad}");
        }
    }
}
