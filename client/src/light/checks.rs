//! The light client's predicates: each checks served data against what is already trusted (a
//! validator set, an app hash, proven state) and says what holds. No I/O and no clock; the
//! [`SkipchainState`] they read is authenticated by the caller.

use lemal_contracts::commitment::verify_proof;
use lemal_contracts::ids::{EntityId, ProofKey};
use lemal_contracts::proofs;
use lemal_contracts::state::{
    back_link_target, forward_link_target, proofs_root, skip_height, GenesisRecord, Params,
    ProofRecord, QueryPayload, Roster, RosterChangeRecord, SkipBlock,
};
use lemal_contracts::tx::RegisterQuery;
use serde::Serialize;
use tendermint::block::signed_header::SignedHeader;
use tendermint::trust_threshold::{TrustThreshold, TrustThresholdFraction};
use tendermint_light_client_verifier::operations::{
    ProdVotingPowerCalculator, VotingPowerCalculator,
};
use tendermint_light_client_verifier::types::UntrustedBlockState;
use tendermint_light_client_verifier::{ProdVerifier, Verdict as LightVerdict};

use super::report::{Check, Hop};
use super::trust::TrustedValidators;
use super::{LightError, Mismatch};
use crate::rpc::Answer;

/// Voting power that signed a header, out of the trusted total.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct SignedPower {
    /// Trusted voting power whose valid signature is in the commit.
    pub signed: u64,
    /// Total trusted voting power.
    pub total: u64,
}

/// Check a signed header at `height` against the trusted validator set: the expected height
/// and chain id, the trusted set as validators and next validators, the header hash in the
/// commit, and valid signatures of more than 2/3 of the trusted voting power. Every signature
/// in the commit is checked, and the power that signed is returned.
pub fn check_header(
    signed: &SignedHeader,
    trusted: &TrustedValidators,
    height: u64,
) -> Result<SignedPower, LightError> {
    check_position(signed, height, trusted.chain_id())?;
    let untrusted = UntrustedBlockState {
        signed_header: signed,
        validators: trusted.set(),
        next_validators: Some(trusted.set()),
    };
    match ProdVerifier::default().verify_validator_sets(&untrusted) {
        LightVerdict::Success => {}
        LightVerdict::NotEnoughTrust(tally) => {
            return Err(LightError::Header {
                height,
                reason: format!("not enough voting power signed: {tally}"),
            })
        }
        LightVerdict::Invalid(detail) => {
            return Err(LightError::Header { height, reason: detail.to_string() })
        }
    }
    full_tally(signed, trusted.set(), height)
}

/// The header and its commit are at `height` and, when `chain` is known, for that chain.
pub(super) fn check_position(
    signed: &SignedHeader,
    height: u64,
    chain: Option<&str>,
) -> Result<(), LightError> {
    let fail = |reason: String| LightError::Header { height, reason };
    let header = &signed.header;
    if header.height.value() != height || signed.commit.height.value() != height {
        return Err(fail(format!(
            "served for height {} (commit {}), expected {height}",
            header.height, signed.commit.height
        )));
    }
    if let Some(chain) = chain {
        if header.chain_id.as_str() != chain {
            return Err(fail(format!(
                "chain id {:?}, expected {chain:?}",
                header.chain_id.as_str()
            )));
        }
    }
    Ok(())
}

/// Every signature of the commit checked against `set` (a threshold of 1/1 is never reached
/// early, and an invalid signature is an error); the power that signed must exceed 2/3.
pub(super) fn full_tally(
    signed: &SignedHeader,
    set: &tendermint::validator::Set,
    height: u64,
) -> Result<SignedPower, LightError> {
    let fail = |reason: String| LightError::Header { height, reason };
    let all = TrustThresholdFraction::new(1, 1).map_err(|e| fail(e.to_string()))?;
    let tally = ProdVotingPowerCalculator::default()
        .voting_power_in(signed, set, all)
        .map_err(|e| fail(e.to_string()))?;
    if !TrustThresholdFraction::TWO_THIRDS.is_enough_power(tally.tallied, tally.total) {
        return Err(fail(format!(
            "not enough voting power signed: {} of {}, more than 2/3 needed",
            tally.tallied, tally.total
        )));
    }
    Ok(SignedPower { signed: tally.tallied, total: tally.total })
}

/// Check an ABCI answer against a trusted app hash: it is for `expected_key`, carries an ICS23
/// proof, and the proof shows the answer's value (or its absence) under that key. Returns the
/// value.
pub fn check_answer<'a>(
    app_hash: &[u8; 32],
    path: &str,
    expected_key: &[u8],
    answer: &'a Answer,
) -> Result<Option<&'a [u8]>, LightError> {
    let fail = |reason: String| LightError::Proof { path: path.to_owned(), reason };
    if answer.key != expected_key {
        return Err(fail(format!(
            "answer is for state key {}, expected {}",
            hex::encode(&answer.key),
            hex::encode(expected_key)
        )));
    }
    let proof = answer.proof.as_ref().ok_or_else(|| fail("the answer carries no proof".into()))?;
    let value = answer.value.as_deref();
    if !verify_proof(app_hash, expected_key, value, proof) {
        return Err(fail(format!(
            "the ICS23 proof does not show this {} against app hash {}",
            if value.is_some() { "value" } else { "absence" },
            hex::encode(app_hash)
        )));
    }
    Ok(value)
}

/// A roster change block is self-consistent: it passed with more than 2/3 of the voting power.
pub fn check_roster_change(r: &RosterChangeRecord) -> Check {
    const NAME: &str = "roster change";
    if u128::from(r.approved_power) * 3 <= u128::from(r.total_power) * 2 {
        return Check::fail(
            NAME,
            format!(
                "approved by {} of {} voting power, not more than 2/3",
                r.approved_power, r.total_power
            ),
        );
    }
    Check::pass(
        NAME,
        format!(
            "proposal {}: {} ({}), approved by {} of {} voting power",
            r.proposal, r.change, r.entity, r.approved_power, r.total_power
        ),
    )
}

/// Read access to skipchain state whose answers are authenticated: by a [`LightClient`](super::LightClient) against
/// a verified header, or by construction in tests.
pub trait SkipchainState {
    /// The block at `index`; `None` only when its absence is established.
    fn block(&self, index: u64) -> Result<Option<SkipBlock>, LightError>;
    /// The forward links of block `index`, level by level (empty while it has no successor).
    fn forward_links(&self, index: u64) -> Result<Vec<[u8; 32]>, LightError>;
}

/// Check a block's skip height, each back link (the linked block has that hash) and the
/// forward link of the linked block that points back at it.
pub fn check_links(
    state: &impl SkipchainState,
    block: &SkipBlock,
    params: &Params,
) -> Result<Vec<Check>, LightError> {
    let base = params.skip_base;
    let want = skip_height(block.index, base, params.skip_max_height);
    let links = if block.index == 0 { 0 } else { usize::from(want) };
    let mut checks = vec![if block.height == want && block.back_links.len() == links {
        Check::pass("skip height", format!("height {want}, {links} back links"))
    } else {
        Check::fail(
            "skip height",
            format!(
                "height {} with {} back links; block {} must have height {want} and {links}",
                block.height,
                block.back_links.len(),
                block.index
            ),
        )
    }];
    if block.index == 0 {
        return Ok(checks);
    }
    let hash = block.hash();
    for (level, link) in block.back_links.iter().enumerate() {
        let name = format!("back link {level}");
        let target = back_link_target(block.index, level, base);
        let Some(linked) = state.block(target)? else {
            checks.push(Check::fail(name, format!("block {target} does not exist")));
            continue;
        };
        if linked.hash() != *link {
            checks.push(Check::fail(
                name,
                format!(
                    "points to {}, but block {target} hashes to {}",
                    hex::encode(link),
                    hex::encode(linked.hash())
                ),
            ));
            continue;
        }
        let forward = state.forward_links(target)?;
        if forward.get(level) != Some(&hash) {
            checks.push(Check::fail(
                name,
                format!(
                    "block {target} is linked, but its forward link {level} is {}",
                    forward.get(level).map_or("missing".into(), hex::encode)
                ),
            ));
            continue;
        }
        checks.push(Check::pass(
            name,
            format!("block {target} ({}) links forward to this block", short(link)),
        ));
    }
    Ok(checks)
}

/// Follow forward links from `from` to the latest block, taking the highest link at each step.
///
/// Each hop's target must have the linked hash and a back link at the same level to the block
/// the hop leaves; the walk ends at a block without forward links whose successor is proven
/// absent. With base `b` that is at most `b − 1` hops per level below the top one, plus
/// n / b^(h−1) hops on the top level `h` (the maximum height): O(log n) while that term is
/// small.
pub fn walk_forward(
    state: &impl SkipchainState,
    from: &SkipBlock,
    base: u32,
) -> Result<(Vec<Hop>, SkipBlock), LightError> {
    let mut hops = Vec::new();
    let mut current = from.clone();
    loop {
        let links = state.forward_links(current.index)?;
        let Some((level, link)) = links.iter().enumerate().next_back() else {
            break;
        };
        let to = forward_link_target(current.index, level, base);
        let block = current.index;
        if to <= block {
            return Err(Mismatch::ForwardLinkBackward { block, level }.into());
        }
        let next = state.block(to)?.ok_or(Mismatch::ForwardLinkDangling { block, level, to })?;
        if next.index != to || next.hash() != *link {
            let found = next.hash();
            return Err(Mismatch::ForwardLinkHash { block, level, to, link: *link, found }.into());
        }
        if next.back_links.get(level) != Some(&current.hash()) {
            return Err(Mismatch::NoBackLink { block, level, to }.into());
        }
        hops.push(Hop { from: current.index, to, level, hash: hex::encode(link) });
        current = next;
    }
    let next = current.index.checked_add(1).ok_or(Mismatch::LastIndex)?;
    if state.block(next)?.is_some() {
        return Err(Mismatch::WalkStopsEarly { block: current.index, next }.into());
    }
    Ok((hops, current))
}

/// Check the block's statement of which data providers the result covers against the proof
/// records (authenticated by [`check_proofs_root`]): `covered` must be what the aggregation tree
/// on the ledger reaches ([`proofs::covered_dps`], the chain's own rule) and `uncovered` the
/// query's other data providers.
pub fn check_coverage(
    payload: &QueryPayload,
    registration: &RegisterQuery,
    records: &[ProofRecord],
) -> Check {
    const NAME: &str = "coverage";
    let ledger =
        |k: &ProofKey| records.binary_search_by(|r| r.key.cmp(k)).ok().map(|i| records[i].clone());
    let covered = proofs::covered_dps(registration, &ledger);
    let uncovered: Vec<EntityId> = registration
        .spec
        .dps
        .iter()
        .map(|&d| EntityId::dp(d))
        .filter(|d| covered.binary_search(d).is_err())
        .collect();
    if covered != payload.covered || uncovered != payload.uncovered {
        return Check::fail(
            NAME,
            format!(
                "the block says it covers {} and not {}; the proofs cover {} and not {}",
                payload.covered.len(),
                payload.uncovered.len(),
                covered.len(),
                uncovered.len()
            ),
        );
    }
    Check::pass(
        NAME,
        format!(
            "the result covers {} of {} data providers",
            covered.len(),
            registration.spec.dps.len()
        ),
    )
}

/// Check that the proof records a node lists for a query are exactly the ones the block's
/// proofs root commits to: of this query, in strictly increasing key order, each an expected
/// proof, and hashing to the root.
pub fn check_proofs_root(payload: &QueryPayload, records: &[ProofRecord]) -> Check {
    const NAME: &str = "proofs root";
    let q = payload.query_id;
    if let Some(r) = records.iter().find(|r| r.key.query != q) {
        return Check::fail(NAME, format!("the list holds {}, of another query", r.key));
    }
    if let Some(w) = records.windows(2).find(|w| w[0].key >= w[1].key) {
        return Check::fail(NAME, format!("{} is listed after {}", w[1].key, w[0].key));
    }
    if let Some(r) = records.iter().find(|r| payload.bitmap.proofs.binary_search(&r.key).is_err()) {
        return Check::fail(NAME, format!("{} is not an expected proof of the query", r.key));
    }
    let hashes: Vec<[u8; 32]> = records.iter().map(ProofRecord::hash).collect();
    let root = proofs_root(&hashes);
    if root != payload.proofs_root {
        return Check::fail(
            NAME,
            format!(
                "{} listed proofs hash to {}, the block commits to {}",
                records.len(),
                hex::encode(root),
                hex::encode(payload.proofs_root)
            ),
        );
    }
    Check::pass(
        NAME,
        format!("{} proof bodies hash to the block's root {}", records.len(), short(&root)),
    )
}

/// Check a query block's bitmap against the query's registration, the roster and the proofs
/// received: rows are the expected proofs, columns the roster's verifying nodes, the reported
/// and absent nodes split the columns, absent nodes' columns and the rows of proofs never
/// received are all 3, and a reporting node marks a received proof with 0, 1 or 2.
pub fn check_bitmap(
    payload: &QueryPayload,
    registration: &RegisterQuery,
    roster: &Roster,
    received: &[ProofRecord],
) -> Check {
    const NAME: &str = "bitmap";
    let bitmap = &payload.bitmap;
    let q = payload.query_id;
    if registration.query_id != q {
        return Check::fail(NAME, format!("registration of {}, not {q}", registration.query_id));
    }
    if bitmap.proofs != registration.spec.expected_proofs(q) {
        return Check::fail(NAME, "its rows are not the query's expected proofs");
    }
    // The columns are the verifying nodes in good standing when the proof phase ended: roster
    // members, in roster order.
    let in_roster = bitmap.verifiers.iter().all(|v| roster.vn_ids().contains(v));
    if !in_roster || bitmap.verifiers.windows(2).any(|w| w[0] >= w[1]) {
        return Check::fail(NAME, "its columns are not verifying nodes of the roster, in order");
    }
    let cols = bitmap.verifiers.len();
    if !bitmap.is_well_formed() {
        return Check::fail(
            NAME,
            format!(
                "{} verdicts for {} proofs × {cols} verifiers",
                bitmap.verdicts.len(),
                bitmap.proofs.len()
            ),
        );
    }
    if payload.threshold_ppm != registration.threshold_ppm {
        return Check::fail(
            NAME,
            format!(
                "threshold {} ppm, the query registered {}",
                payload.threshold_ppm, registration.threshold_ppm
            ),
        );
    }
    let mut split: Vec<EntityId> =
        payload.reported.iter().chain(&payload.absent).copied().collect();
    split.sort_unstable();
    if split != bitmap.verifiers {
        return Check::fail(NAME, "reported and absent nodes do not split the verifiers");
    }
    for (key, row) in bitmap.rows() {
        let got = received.binary_search_by(|r| r.key.cmp(key)).is_ok();
        for (vn, &v) in bitmap.verifiers.iter().zip(row) {
            // Neither the node's selection nor the proof's validity is known here.
            if !v.allowed(got && payload.reported.contains(vn), None, None) {
                return Check::fail(
                    NAME,
                    format!(
                        "{} is {} for {vn} on {key} ({}received, {vn} {})",
                        key.bitmap_key(*vn),
                        v.value(),
                        if got { "" } else { "not " },
                        if payload.reported.contains(vn) { "reported" } else { "absent" }
                    ),
                );
            }
        }
    }
    Check::pass(
        NAME,
        format!(
            "{} proofs × {cols} verifiers, {} reported, {} absent",
            bitmap.proofs.len(),
            payload.reported.len(),
            payload.absent.len()
        ),
    )
}

/// Check block 0's genesis record against the chain id and the proven roster and parameters.
pub fn check_genesis_record(
    record: &GenesisRecord,
    chain_id: &str,
    roster: &Roster,
    params: &Params,
) -> Check {
    const NAME: &str = "genesis record";
    if record.chain_id != chain_id {
        return Check::fail(NAME, format!("chain id {:?}, expected {chain_id:?}", record.chain_id));
    }
    let state = GenesisRecord::new(chain_id, roster, params);
    if record.roster_hash != state.roster_hash {
        return Check::fail(NAME, "the roster hash is not the hash of the roster in state");
    }
    if record.params_hash != state.params_hash {
        return Check::fail(NAME, "the parameters hash is not the hash of the parameters in state");
    }
    Check::pass(NAME, format!("chain {chain_id}, roster and parameters match state"))
}

fn short(hash: &[u8; 32]) -> String {
    hex::encode(&hash[..6])
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::light::state_key;
    use crate::light::testkit::{header, params, run, sign, validators, MemChain, CHAIN};
    use lemal_contracts::group::to_borsh;
    use lemal_contracts::ids::{QueryId, Verdict};
    use tendermint::block::CommitSig;

    // ----- signed headers ------------------------------------------------------------------

    #[test]
    fn header_signed_by_every_validator_verifies_with_full_power() {
        let vals = validators(1, &[10, 10, 10, 10]);
        let signed = sign(&vals, header(&vals, CHAIN, 5, [3; 32]), &[0, 1, 2, 3]);
        let power = check_header(&signed, &vals.trusted, 5).expect("verifies");
        assert_eq!(power, SignedPower { signed: 40, total: 40 });
    }

    #[test]
    fn header_signed_by_more_than_two_thirds_of_the_power_verifies() {
        let vals = validators(1, &[10, 10, 10, 10]);
        let signed = sign(&vals, header(&vals, CHAIN, 5, [3; 32]), &[0, 2, 3]);
        assert_eq!(
            check_header(&signed, &vals.trusted, 5).expect("verifies"),
            SignedPower { signed: 30, total: 40 }
        );
    }

    #[test]
    fn header_signed_by_two_thirds_or_less_of_the_power_is_refused() {
        let vals = validators(1, &[10, 10, 10, 10]);
        let signed = sign(&vals, header(&vals, CHAIN, 5, [3; 32]), &[0, 1]);
        assert!(matches!(check_header(&signed, &vals.trusted, 5), Err(LightError::Header { .. })));
        // Power, not head count: one heavy validator of four holds 70 %.
        let vals = validators(1, &[70, 10, 10, 10]);
        let heavy = vals.trusted.set().validators().iter().position(|v| v.power() == 70);
        let heavy = heavy.expect("heavy validator");
        let signed = sign(&vals, header(&vals, CHAIN, 5, [3; 32]), &[heavy]);
        assert!(check_header(&signed, &vals.trusted, 5).is_ok());
        let light: Vec<usize> = (0..4).filter(|&i| i != heavy).collect();
        let signed = sign(&vals, header(&vals, CHAIN, 5, [3; 32]), &light);
        assert!(check_header(&signed, &vals.trusted, 5).is_err());
    }

    #[test]
    fn header_whose_app_hash_was_changed_after_signing_is_refused() {
        let vals = validators(1, &[10, 10, 10, 10]);
        let mut signed = sign(&vals, header(&vals, CHAIN, 5, [3; 32]), &[0, 1, 2, 3]);
        signed.header.app_hash = tendermint::AppHash::try_from(vec![4; 32]).expect("app hash");
        assert!(matches!(check_header(&signed, &vals.trusted, 5), Err(LightError::Header { .. })));
    }

    #[test]
    fn header_signed_by_another_validator_set_is_refused() {
        let vals = validators(1, &[10, 10, 10, 10]);
        let other = validators(50, &[10, 10, 10, 10]);
        let signed = sign(&other, header(&other, CHAIN, 5, [3; 32]), &[0, 1, 2, 3]);
        assert!(matches!(check_header(&signed, &vals.trusted, 5), Err(LightError::Header { .. })));
        // Claiming the trusted set's hash does not help when the others signed.
        let mut forged = header(&other, CHAIN, 5, [3; 32]);
        forged.validators_hash = vals.trusted.set().hash();
        forged.next_validators_hash = vals.trusted.set().hash();
        let signed = sign(&other, forged, &[0, 1, 2, 3]);
        assert!(check_header(&signed, &vals.trusted, 5).is_err());
    }

    #[test]
    fn header_of_another_chain_is_refused() {
        let vals = validators(1, &[10, 10, 10, 10]);
        let signed = sign(&vals, header(&vals, "other-chain", 5, [3; 32]), &[0, 1, 2, 3]);
        let err = check_header(&signed, &vals.trusted, 5).expect_err("other chain");
        assert!(err.to_string().contains("chain id"), "{err}");
    }

    #[test]
    fn header_at_another_height_than_asked_is_refused() {
        let vals = validators(1, &[10, 10, 10, 10]);
        let signed = sign(&vals, header(&vals, CHAIN, 6, [3; 32]), &[0, 1, 2, 3]);
        assert!(check_header(&signed, &vals.trusted, 5).is_err());
    }

    #[test]
    fn commit_with_a_forged_signature_is_refused_even_when_enough_others_signed() {
        let vals = validators(1, &[10, 10, 10, 10]);
        for victim in 0..4 {
            let mut signed = sign(&vals, header(&vals, CHAIN, 5, [3; 32]), &[0, 1, 2, 3]);
            let forged = tendermint::Signature::try_from([1u8; 64].as_slice()).ok();
            if let CommitSig::BlockIdFlagCommit { signature, .. } =
                &mut signed.commit.signatures[victim]
            {
                *signature = forged;
            }
            assert!(check_header(&signed, &vals.trusted, 5).is_err(), "victim {victim}");
        }
    }

    #[test]
    fn commit_that_counts_one_validator_twice_is_refused() {
        let vals = validators(1, &[10, 10, 10, 10]);
        let mut signed = sign(&vals, header(&vals, CHAIN, 5, [3; 32]), &[0, 1]);
        signed.commit.signatures[2] = signed.commit.signatures[0].clone();
        signed.commit.signatures[3] = signed.commit.signatures[1].clone();
        assert!(check_header(&signed, &vals.trusted, 5).is_err());
    }

    // ----- state proofs ----------------------------------------------------------------------

    /// An in-memory Jellyfish Merkle tree, as the verifying nodes' store builds it.
    #[derive(Default)]
    struct MemTree {
        nodes: BTreeMap<jmt::storage::NodeKey, jmt::storage::Node>,
        values: BTreeMap<(jmt::Version, jmt::KeyHash), Option<Vec<u8>>>,
        preimages: BTreeMap<jmt::KeyHash, Vec<u8>>,
    }

    impl jmt::storage::HasPreimage for MemTree {
        fn preimage(&self, key_hash: jmt::KeyHash) -> anyhow::Result<Option<Vec<u8>>> {
            Ok(self.preimages.get(&key_hash).cloned())
        }
    }

    impl jmt::storage::TreeReader for MemTree {
        fn get_node_option(
            &self,
            key: &jmt::storage::NodeKey,
        ) -> anyhow::Result<Option<jmt::storage::Node>> {
            Ok(self.nodes.get(key).cloned())
        }

        fn get_value_option(
            &self,
            max_version: jmt::Version,
            key_hash: jmt::KeyHash,
        ) -> anyhow::Result<Option<Vec<u8>>> {
            Ok(self
                .values
                .iter()
                .filter(|((v, k), _)| *k == key_hash && *v <= max_version)
                .max_by_key(|((v, _), _)| *v)
                .and_then(|(_, value)| value.clone()))
        }

        fn get_rightmost_leaf(
            &self,
        ) -> anyhow::Result<Option<(jmt::storage::NodeKey, jmt::storage::LeafNode)>> {
            Ok(None)
        }
    }

    impl MemTree {
        fn with(entries: &[(Vec<u8>, Vec<u8>)]) -> (MemTree, [u8; 32]) {
            let mut tree = MemTree::default();
            let set = entries
                .iter()
                .map(|(k, v)| (jmt::KeyHash::with::<sha2::Sha256>(k), Some(v.clone())))
                .collect::<Vec<_>>();
            let (root, batch) =
                jmt::Sha256Jmt::new(&tree).put_value_set(set, 1).expect("tree update");
            tree.nodes.extend(batch.node_batch.nodes().clone());
            tree.values.extend(batch.node_batch.values().clone());
            for (k, _) in entries {
                tree.preimages.insert(jmt::KeyHash::with::<sha2::Sha256>(k), k.clone());
            }
            (tree, root.0)
        }

        fn answer(&self, key: &[u8]) -> Answer {
            let (value, proof) =
                jmt::Sha256Jmt::new(self).get_with_ics23_proof(key.to_vec(), 1).expect("proof");
            Answer { key: key.to_vec(), value, height: 1, proof: Some(proof) }
        }
    }

    fn state_with_blocks() -> (MemTree, [u8; 32], Vec<SkipBlock>) {
        let chain = MemChain::build(3, &params(2, 4));
        let mut entries: Vec<(Vec<u8>, Vec<u8>)> =
            chain.blocks.iter().map(|b| (state_key::block(b.index), to_borsh(b))).collect();
        entries.push((state_key::ROSTER.to_vec(), vec![1, 2, 3]));
        let (tree, root) = MemTree::with(&entries);
        (tree, root, chain.blocks)
    }

    #[test]
    fn value_proven_under_its_key_is_accepted() {
        let (tree, root, blocks) = state_with_blocks();
        let key = state_key::block(2);
        let answer = tree.answer(&key);
        let value = check_answer(&root, "/skipchain/index/2", &key, &answer).expect("proven");
        assert_eq!(value, Some(to_borsh(&blocks[2]).as_slice()));
    }

    #[test]
    fn absence_proven_under_its_key_is_accepted() {
        let (tree, root, _) = state_with_blocks();
        let key = state_key::block(9);
        let answer = tree.answer(&key);
        assert_eq!(check_answer(&root, "/skipchain/index/9", &key, &answer).expect("proven"), None);
    }

    #[test]
    fn tampered_value_is_rejected() {
        let (tree, root, blocks) = state_with_blocks();
        let key = state_key::block(2);
        let mut answer = tree.answer(&key);
        let mut forged = blocks[2].clone();
        forged.ledger_height += 1;
        answer.value = Some(to_borsh(&forged));
        assert!(matches!(check_answer(&root, "p", &key, &answer), Err(LightError::Proof { .. })));
    }

    #[test]
    fn answer_proven_under_another_key_is_rejected() {
        let (tree, root, _) = state_with_blocks();
        // A valid proof of block 3, served for block 2.
        let answer = tree.answer(&state_key::block(3));
        assert!(check_answer(&root, "p", &state_key::block(2), &answer).is_err());
        // The same proof with the asked key written over the answer's key.
        let mut relabelled = answer.clone();
        relabelled.key = state_key::block(2);
        assert!(check_answer(&root, "p", &state_key::block(2), &relabelled).is_err());
    }

    #[test]
    fn proof_against_another_app_hash_is_rejected() {
        let (tree, mut root, _) = state_with_blocks();
        let key = state_key::block(1);
        let answer = tree.answer(&key);
        root[31] ^= 1;
        assert!(check_answer(&root, "p", &key, &answer).is_err());
    }

    #[test]
    fn answer_without_proof_is_rejected() {
        let (tree, root, _) = state_with_blocks();
        let key = state_key::block(1);
        let mut answer = tree.answer(&key);
        answer.proof = None;
        assert!(check_answer(&root, "p", &key, &answer).is_err());
    }

    #[test]
    fn claimed_absence_of_an_existing_value_is_rejected() {
        let (tree, root, _) = state_with_blocks();
        let key = state_key::block(1);
        let mut answer = tree.answer(&key);
        answer.value = None;
        assert!(check_answer(&root, "p", &key, &answer).is_err());
        // And a proof of absence of another key does not prove this one absent.
        let mut absent = tree.answer(&state_key::block(9));
        absent.key = key.clone();
        assert!(check_answer(&root, "p", &key, &absent).is_err());
    }

    // ----- skipchain links -------------------------------------------------------------------

    fn failed(checks: &[Check]) -> Vec<&str> {
        checks.iter().filter(|c| !c.passed).map(|c| c.name.as_str()).collect()
    }

    #[test]
    fn every_block_of_an_honest_chain_passes_height_and_link_checks() {
        for p in [params(2, 4), params(3, 3), params(2, 16), params(4, 2)] {
            let chain = MemChain::build(40, &p);
            for block in &chain.blocks {
                let checks = check_links(&chain, block, &p).expect("state available");
                assert!(failed(&checks).is_empty(), "block {}: {checks:?}", block.index);
                assert_eq!(checks.len(), 1 + block.back_links.len());
            }
        }
    }

    fn detail<'c>(checks: &'c [Check], name: &str) -> &'c str {
        checks.iter().find(|c| c.name == name).map_or("", |c| c.detail.as_str())
    }

    #[test]
    fn block_with_a_wrong_skip_height_is_caught() {
        let p = params(2, 4);
        let chain = MemChain::build(8, &p);
        let mut block = chain.blocks[4].clone();
        block.height = 2;
        assert_eq!(failed(&check_links(&chain, &block, &p).expect("checks"))[0], "skip height");
        let mut block = chain.blocks[0].clone();
        block.height = 3;
        assert_eq!(failed(&check_links(&chain, &block, &p).expect("checks")), ["skip height"]);
        // A dropped back link is a shape error too.
        let mut block = chain.blocks[4].clone();
        block.back_links.pop();
        assert_eq!(failed(&check_links(&chain, &block, &p).expect("checks"))[0], "skip height");
    }

    #[test]
    fn tampered_back_link_is_caught() {
        let p = params(2, 4);
        let chain = MemChain::build(8, &p);
        for level in 0..3 {
            let mut block = chain.blocks[4].clone();
            block.back_links[level][0] ^= 1;
            let checks = check_links(&chain, &block, &p).expect("checks");
            let name = format!("back link {level}");
            assert!(failed(&checks).contains(&name.as_str()), "{checks:?}");
            assert!(detail(&checks, &name).contains("hashes to"), "{checks:?}");
        }
        // A back link to a real block, but the wrong one.
        let mut block = chain.blocks[6].clone();
        block.back_links[1] = chain.blocks[3].hash();
        let checks = check_links(&chain, &block, &p).expect("checks");
        assert!(detail(&checks, "back link 1").contains("block 4 hashes to"), "{checks:?}");
    }

    #[test]
    fn altered_block_no_longer_matches_its_ancestors_forward_links() {
        let p = params(2, 4);
        let chain = MemChain::build(8, &p);
        let mut block = chain.blocks[4].clone();
        block.ledger_height += 1;
        let checks = check_links(&chain, &block, &p).expect("checks");
        assert_eq!(failed(&checks), ["back link 0", "back link 1", "back link 2"]);
        // ... and its successor's back link no longer matches it.
        let mut altered = chain.clone();
        altered.blocks[4] = block;
        let checks = check_links(&altered, &altered.blocks[5], &p).expect("checks");
        assert_eq!(failed(&checks), ["back link 0"]);
    }

    #[test]
    fn missing_forward_link_or_linked_block_is_caught() {
        let p = params(2, 4);
        let mut chain = MemChain::build(8, &p);
        chain.forward[2].clear();
        let checks = check_links(&chain, &chain.blocks[3], &p).expect("checks");
        assert_eq!(failed(&checks), ["back link 0"]);
        let mut chain = MemChain::build(8, &p);
        chain.blocks.truncate(4);
        let block = MemChain::build(8, &p).blocks[5].clone();
        let checks = check_links(&chain, &block, &p).expect("checks");
        assert_eq!(failed(&checks), ["back link 0"]);
        assert!(detail(&checks, "back link 0").contains("does not exist"));
    }

    #[test]
    fn walk_from_genesis_reaches_the_latest_block_in_logarithmic_hops() {
        let p = params(2, 16);
        for n in 0..=130u64 {
            let chain = MemChain::build(n, &p);
            let (hops, latest) = walk_forward(&chain, &chain.blocks[0], 2).expect("walk");
            assert_eq!(latest, chain.blocks[n as usize], "n = {n}");
            let bound = 2 * (64 - n.leading_zeros() as usize);
            assert!(hops.len() <= bound, "n = {n}: {} hops", hops.len());
            assert!(hops.windows(2).all(|w| w[0].to == w[1].from));
        }
        let chain = MemChain::build(1000, &p);
        let (hops, _) = walk_forward(&chain, &chain.blocks[0], 2).expect("walk");
        assert!(hops.len() <= 20, "{} hops to block 1000", hops.len());
        let p3 = params(3, 5);
        let chain = MemChain::build(500, &p3);
        let (hops, latest) = walk_forward(&chain, &chain.blocks[0], 3).expect("walk");
        assert_eq!(latest.index, 500);
        assert!(hops.len() <= 2 * 6 + 500 / 81, "{} hops", hops.len());
    }

    #[test]
    fn walk_from_any_block_reaches_the_latest_block() {
        let p = params(2, 4);
        let chain = MemChain::build(37, &p);
        for from in &chain.blocks {
            let (hops, latest) = walk_forward(&chain, from, 2).expect("walk");
            assert_eq!(latest.index, 37);
            assert_eq!(hops.first().map_or(from.index, |h| h.from), from.index);
        }
    }

    #[test]
    fn walk_refuses_a_forward_link_to_a_block_with_another_hash() {
        let p = params(2, 4);
        let mut chain = MemChain::build(20, &p);
        chain.blocks[16].ledger_height += 1;
        assert!(matches!(
            walk_forward(&chain, &chain.blocks[0].clone(), 2),
            Err(LightError::Mismatch(Mismatch::ForwardLinkHash { to: 16, .. }))
        ));
    }

    #[test]
    fn walk_refuses_a_forward_link_answered_by_a_block_that_does_not_link_back() {
        let p = params(2, 4);
        let mut chain = MemChain::build(20, &p);
        // Block 8 re-hashed with a broken back link, and the forward link rewritten to match.
        let mut forged = chain.blocks[8].clone();
        forged.back_links[3] = [0; 32];
        chain.forward[0][3] = forged.hash();
        chain.blocks[8] = forged;
        assert!(matches!(
            walk_forward(&chain, &chain.blocks[0].clone(), 2),
            Err(LightError::Mismatch(Mismatch::NoBackLink { block: 0, level: 3, to: 8 }))
        ));
    }

    #[test]
    fn walk_refuses_to_stop_before_the_latest_block() {
        let p = params(2, 4);
        let mut chain = MemChain::build(12, &p);
        for links in &mut chain.forward[..12] {
            links.clear();
        }
        for from in [0, 11] {
            assert!(matches!(
                walk_forward(&chain, &chain.blocks[from].clone(), 2),
                Err(LightError::Mismatch(Mismatch::WalkStopsEarly { block, next }))
                    if block == from as u64 && next == block + 1
            ));
        }
        assert!(walk_forward(&chain, &chain.blocks[12].clone(), 2).is_ok());
    }

    // ----- proofs root, bitmap, genesis record -------------------------------------------------

    #[test]
    fn a_block_that_misstates_its_coverage_is_caught() {
        let mut run = run(None, 600_000);
        let reg = run.plan.registration.clone();
        assert!(check_coverage(&run.payload, &reg, &run.records).passed);
        assert_eq!(run.payload.covered.len(), reg.spec.dps.len(), "every data provider is in");
        let dropped = run.payload.covered.pop().expect("some data provider is covered");
        assert!(!check_coverage(&run.payload, &reg, &run.records).passed, "claims less");
        run.payload.uncovered.push(dropped);
        assert!(!check_coverage(&run.payload, &reg, &run.records).passed, "claims it missing");
    }

    #[test]
    fn omitted_proof_is_caught_by_the_proofs_root() {
        let run = run(None, 1_000_000);
        for i in 0..run.records.len() {
            let mut records = run.records.clone();
            records.remove(i);
            assert!(!check_proofs_root(&run.payload, &records).passed, "without record {i}");
        }
    }

    #[test]
    fn altered_proof_body_is_caught_by_the_proofs_root() {
        let run = run(None, 1_000_000);
        let mut records = run.records.clone();
        records[0].proof[10] ^= 1;
        assert!(!check_proofs_root(&run.payload, &records).passed);
        let mut records = run.records.clone();
        records[3].inputs.pop();
        assert!(!check_proofs_root(&run.payload, &records).passed);
        let mut records = run.records.clone();
        records[1].outputs[0] = records[2].outputs[0];
        assert!(!check_proofs_root(&run.payload, &records).passed);
        // The acceptance height is not part of the proof's hash.
        let mut records = run.records.clone();
        records[1].height += 5;
        assert!(check_proofs_root(&run.payload, &records).passed);
    }

    #[test]
    fn reordered_duplicated_or_foreign_proofs_are_caught() {
        let run = run(None, 1_000_000);
        let mut records = run.records.clone();
        records.swap(0, 1);
        assert!(!check_proofs_root(&run.payload, &records).passed);
        let mut records = run.records.clone();
        records.insert(1, records[0].clone());
        assert!(!check_proofs_root(&run.payload, &records).passed);
        // A proof of another query, even with the root recomputed over it.
        let mut payload = run.payload.clone();
        let mut records = run.records.clone();
        records[0].key.query = QueryId([0xee; 16]);
        payload.proofs_root =
            proofs_root(&records.iter().map(ProofRecord::hash).collect::<Vec<_>>());
        assert!(!check_proofs_root(&payload, &records).passed);
        // An unexpected proof of this query, root recomputed.
        let mut records = run.records.clone();
        records[0].key.index = 7;
        records.sort_by_key(|r| r.key);
        payload.proofs_root =
            proofs_root(&records.iter().map(ProofRecord::hash).collect::<Vec<_>>());
        let check = check_proofs_root(&payload, &records);
        assert!(!check.passed && check.detail.contains("not an expected proof"), "{check:?}");
    }

    #[test]
    fn bitmap_must_have_the_expected_rows_and_the_rosters_columns() {
        let mut r = run(None, 600_000);
        r.payload.bitmap.proofs.swap(0, 1);
        assert!(!r.bitmap_check().passed);
        r.payload.bitmap.proofs.swap(0, 1);
        r.payload.bitmap.verifiers.swap(0, 1);
        assert!(!r.bitmap_check().passed);
        r.payload.bitmap.verifiers.swap(0, 1);
        r.payload.bitmap.verdicts.pop();
        assert!(!r.bitmap_check().passed);
        r.payload.bitmap.verdicts.push(Verdict::NotSelected);
        assert!(r.bitmap_check().passed);
        r.payload.threshold_ppm += 1;
        assert!(!r.bitmap_check().passed);
        r.payload.threshold_ppm -= 1;
        r.payload.absent.push(EntityId::vn(0));
        assert!(!r.bitmap_check().passed);
        r.payload.absent.clear();
        r.payload.reported.pop();
        assert!(!r.bitmap_check().passed);
    }

    #[test]
    fn bitmap_must_mark_exactly_the_proofs_never_received_as_not_received() {
        let mut run = run(None, 600_000);
        let (key, vn) = run.find(false, None);
        run.set_verdict(key, vn, Verdict::NotReceived);
        assert!(!run.bitmap_check().passed);
        run.set_verdict(key, vn, Verdict::NotSelected);
        assert!(run.bitmap_check().passed);
        run.records.retain(|r| r.key != key);
        assert!(!run.bitmap_check().passed, "{key} still has verdicts 0..2");
    }

    #[test]
    fn bitmap_of_another_registration_is_caught() {
        let mut run = run(None, 600_000);
        run.plan.registration.query_id = QueryId([1; 16]);
        assert!(!run.bitmap_check().passed);
    }

    #[test]
    fn genesis_record_must_match_chain_roster_and_parameters() {
        let run = run(None, 1_000_000);
        let record = GenesisRecord::new(CHAIN, &run.roster, &run.params);
        assert!(check_genesis_record(&record, CHAIN, &run.roster, &run.params).passed);
        assert!(!check_genesis_record(&record, "other", &run.roster, &run.params).passed);
        let mut roster = run.roster.clone();
        roster.dps.pop();
        assert!(!check_genesis_record(&record, CHAIN, &roster, &run.params).passed);
        let params = Params { skip_base: 3, ..run.params.clone() };
        assert!(!check_genesis_record(&record, CHAIN, &run.roster, &params).passed);
    }
}
