//! Following validator-set changes: from a trusted state (a height, its time, and the validator
//! set that signs the next block) to a signed header at a later height, by CometBFT's
//! light-client rules.
//!
//! - **Same set.** When the header names the trusted set as its validators, that set must have
//!   signed it with more than 2/3 of its power ([`super::check_header`]'s rule); no clock is
//!   involved, so a header of any age verifies as long as the trusted set signed it.
//! - **Changed set** (skipping verification, as `tendermint-light-client-verifier` implements
//!   it): the trusted state must be within the trusting period, the header from the past (up to
//!   the clock drift) and later than the trusted state, at least 1/3 of the trusted set's power
//!   ([`FollowOptions::trust_threshold`]) must have signed it, and more than 2/3 of its own set.
//!   When the overlap is too small, the client **bisects**: it verifies the header halfway,
//!   trusts it, and goes on from there; an adjacent header must name exactly the trusted next
//!   set.
//!
//! The "same set" rule departs from CometBFT's light client, which applies the trusting period
//! to every step: the period bounds how long validators stay accountable after they leave, so a
//! set that never left is not exposed to that long-range attack. Every fetched set is checked
//! against the hash its header carries, every signature of an accepted commit is verified, and
//! the walk is bounded ([`MAX_STEPS`]).

use std::fmt;
use std::time::Duration;

use tendermint::block::signed_header::SignedHeader;
use tendermint::trust_threshold::TrustThresholdFraction;
use tendermint::validator::Set as ValidatorSet;
use tendermint::Time;
use tendermint_light_client_verifier::operations::VotingPowerTally;
use tendermint_light_client_verifier::options::Options;
use tendermint_light_client_verifier::types::{TrustedBlockState, UntrustedBlockState};
use tendermint_light_client_verifier::{ProdVerifier, Verdict, Verifier};

use super::checks::{check_position, full_tally};
use super::trust::{hash_bytes, validator_set};
use super::{LightError, SignedPower, TrustError};
use crate::rpc::Node;

/// Most headers one walk fetches and verifies.
pub const MAX_STEPS: usize = 256;

/// Where headers and validator sets come from: a node, or a test's chain.
pub trait HeaderSource {
    /// The signed header of block `height`, unverified.
    fn signed_header(&self, height: u64) -> Result<SignedHeader, LightError>;
    /// The validator set of block `height`, unverified but well formed (members, no zero or
    /// excessive power, no address twice).
    fn validators(&self, height: u64) -> Result<ValidatorSet, LightError>;
}

impl HeaderSource for Node {
    fn signed_header(&self, height: u64) -> Result<SignedHeader, LightError> {
        Ok(Node::signed_header(self, height)?)
    }

    fn validators(&self, height: u64) -> Result<ValidatorSet, LightError> {
        validator_set(Node::validators(self, height)?).map_err(|reason| LightError::Header {
            height,
            reason: format!("its validator set: {reason}"),
        })
    }
}

/// A state the light client trusts: a height, the time of its header, and the set that signs
/// the next block. For a genesis root: height `initial_height − 1`, the genesis time and the
/// genesis validators.
#[derive(Clone, Debug)]
pub struct TrustedState {
    /// The chain id.
    pub chain_id: String,
    /// The trusted height.
    pub height: u64,
    /// Its header's time (the genesis time for a genesis root).
    pub time: Time,
    /// The validator set that signs block `height + 1`.
    pub next_validators: ValidatorSet,
}

/// The light-client rules for changed sets.
#[derive(Clone, Copy, Debug)]
pub struct FollowOptions {
    /// Fraction of the trusted set's power that must sign a header of a changed set (1/3).
    pub trust_threshold: TrustThresholdFraction,
    /// How long a trusted state may be used to accept a changed set.
    pub trusting_period: Duration,
    /// How far ahead of the local clock a header's time may be.
    pub clock_drift: Duration,
}

impl Default for FollowOptions {
    /// One third, two weeks, ten seconds.
    fn default() -> Self {
        FollowOptions {
            trust_threshold: TrustThresholdFraction::ONE_THIRD,
            trusting_period: Duration::from_secs(14 * 24 * 3600),
            clock_drift: Duration::from_secs(10),
        }
    }
}

/// A header reached from a trusted state.
#[derive(Clone, Debug)]
pub struct Followed {
    /// The verified header.
    pub header: SignedHeader,
    /// Its validator set.
    pub validators: ValidatorSet,
    /// The power of that set that signed it.
    pub power: SignedPower,
    /// The intermediate heights verified on the way (bisection), in order; empty when the
    /// trusted state led to the header in one step.
    pub via: Vec<u64>,
}

enum Step {
    Verified(SignedPower),
    /// Too little of the trusted set signed: bisect.
    TooLittleOverlap(Overlap),
}

/// A header of a changed validator set that too little of the trusted set signed.
struct Overlap {
    /// The hash of the trusted set.
    trusted_set: [u8; 32],
    /// The trusted height.
    trusted_height: u64,
    /// The trusted power that signed.
    tally: VotingPowerTally,
}

impl fmt::Display for Overlap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the validator set changed from {} at height {} and too little of it signed: {}",
            hex::encode(self.trusted_set),
            self.trusted_height,
            self.tally
        )
    }
}

/// Verify the header at `target` from `trusted`, bisecting across validator-set changes.
pub fn follow(
    source: &impl HeaderSource,
    trusted: &TrustedState,
    target: u64,
    options: &FollowOptions,
    now: Time,
) -> Result<Followed, LightError> {
    if target <= trusted.height {
        return Err(TrustError::StateNotBefore { trusted: trusted.height, target }.into());
    }
    let mut trusted = trusted.clone();
    let mut pending = vec![target];
    let mut via = Vec::new();
    for _ in 0..MAX_STEPS {
        let Some(&height) = pending.last() else { break };
        let header = source.signed_header(height)?;
        let validators = source.validators(height)?;
        match step(&trusted, &header, &validators, height, options, now)? {
            Step::Verified(power) if height == target => {
                return Ok(Followed { header, validators, power, via });
            }
            Step::Verified(_) => {
                let next = source.validators(height + 1)?;
                if next.hash() != header.header.next_validators_hash {
                    return Err(LightError::Header {
                        height,
                        reason: format!(
                            "the next validator set served hashes to {}, the header names {}",
                            hex::encode(hash_bytes(&next.hash())),
                            hex::encode(hash_bytes(&header.header.next_validators_hash))
                        ),
                    });
                }
                trusted = TrustedState {
                    chain_id: trusted.chain_id,
                    height,
                    time: header.header.time,
                    next_validators: next,
                };
                via.push(height);
                pending.pop();
            }
            Step::TooLittleOverlap(overlap) => {
                let pivot = trusted.height + (height - trusted.height) / 2;
                if pivot == trusted.height {
                    return Err(LightError::Header { height, reason: overlap.to_string() });
                }
                pending.push(pivot);
            }
        }
    }
    Err(LightError::Header {
        height: target,
        reason: format!("not reached from height {} in {MAX_STEPS} steps", trusted.height),
    })
}

fn step(
    trusted: &TrustedState,
    signed: &SignedHeader,
    validators: &ValidatorSet,
    height: u64,
    options: &FollowOptions,
    now: Time,
) -> Result<Step, LightError> {
    let fail = |reason: String| LightError::Header { height, reason };
    check_position(signed, height, Some(&trusted.chain_id))?;
    let header = &signed.header;
    let untrusted =
        UntrustedBlockState { signed_header: signed, validators, next_validators: None };
    let verifier = ProdVerifier::default();
    if header.validators_hash == trusted.next_validators.hash() {
        // The trusted set itself signs: its own 2/3, no clock.
        match verifier.verify_validator_sets(&untrusted) {
            Verdict::Success => {}
            Verdict::NotEnoughTrust(tally) => {
                return Err(fail(format!("not enough voting power signed: {tally}")))
            }
            Verdict::Invalid(detail) => return Err(fail(detail.to_string())),
        }
    } else {
        let chain_id = header.chain_id.clone();
        let state = TrustedBlockState {
            chain_id: &chain_id,
            header_time: trusted.time,
            height: tendermint::block::Height::try_from(trusted.height)
                .map_err(|e| fail(e.to_string()))?,
            next_validators: &trusted.next_validators,
            next_validators_hash: trusted.next_validators.hash(),
        };
        let opts = Options {
            trust_threshold: options.trust_threshold,
            trusting_period: options.trusting_period,
            clock_drift: options.clock_drift,
        };
        match verifier.verify_update_header(untrusted, state, &opts, now) {
            Verdict::Success => {}
            Verdict::NotEnoughTrust(tally) => {
                return Ok(Step::TooLittleOverlap(Overlap {
                    trusted_set: hash_bytes(&trusted.next_validators.hash()),
                    trusted_height: trusted.height,
                    tally,
                }))
            }
            Verdict::Invalid(detail) => return Err(fail(detail.to_string())),
        }
    }
    Ok(Step::Verified(full_tally(signed, validators, height)?))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::light::testkit::{header_at, sign, validators, Validators, CHAIN};

    /// The genesis time of test chains; block h is T0 + h seconds.
    const T0: i64 = 1_700_000_000;

    /// Headers and validator sets by height.
    struct Chain {
        headers: BTreeMap<u64, SignedHeader>,
        sets: BTreeMap<u64, ValidatorSet>,
    }

    impl HeaderSource for Chain {
        fn signed_header(&self, height: u64) -> Result<SignedHeader, LightError> {
            self.headers.get(&height).cloned().ok_or(LightError::TooEarly(height))
        }

        fn validators(&self, height: u64) -> Result<ValidatorSet, LightError> {
            self.sets.get(&height).cloned().ok_or(LightError::TooEarly(height))
        }
    }

    /// Blocks 1..=n, block h signed by every member of `sets[set_of(h)]`.
    fn chain(n: u64, sets: &[&Validators], set_of: impl Fn(u64) -> usize) -> Chain {
        let mut c = Chain { headers: BTreeMap::new(), sets: BTreeMap::new() };
        for h in 1..=n + 1 {
            c.sets.insert(h, sets[set_of(h)].trusted.set().clone());
        }
        for h in 1..=n {
            let (vals, next) = (sets[set_of(h)], sets[set_of(h + 1)]);
            let header = header_at(vals, next, CHAIN, h, T0 + h as i64, [h as u8; 32]);
            let everyone: Vec<usize> = (0..vals.keys.len()).collect();
            c.headers.insert(h, sign(vals, header, &everyone));
        }
        c
    }

    fn genesis(first: &Validators) -> TrustedState {
        TrustedState {
            chain_id: CHAIN.into(),
            height: 0,
            time: Time::from_unix_timestamp(T0, 0).expect("time"),
            next_validators: first.trusted.set().clone(),
        }
    }

    fn at(secs_after_genesis: i64) -> Time {
        Time::from_unix_timestamp(T0 + secs_after_genesis, 0).expect("time")
    }

    const DAY: i64 = 24 * 3600;

    #[test]
    fn an_unchanged_set_is_followed_in_one_step_whatever_the_clock() {
        let a = validators(1, &[10, 10, 10, 10]);
        let c = chain(20, &[&a], |_| 0);
        let f = follow(&c, &genesis(&a), 20, &FollowOptions::default(), at(3650 * DAY))
            .expect("the genesis set signed it");
        assert!(f.via.is_empty());
        assert_eq!(f.power, SignedPower { signed: 40, total: 40 });
        assert_eq!(f.header.header.height.value(), 20);
    }

    #[test]
    fn a_set_that_keeps_a_third_of_the_trusted_power_is_followed_in_one_step() {
        let a = validators(1, &[10, 10, 10, 10]);
        let b = validators(3, &[10, 10, 10, 10]); // shares two of a's four validators
        let c = chain(20, &[&a, &b], |h| usize::from(h > 10));
        let f = follow(&c, &genesis(&a), 20, &FollowOptions::default(), at(60)).expect("followed");
        assert!(f.via.is_empty(), "{:?}", f.via);
        assert_eq!(f.validators.hash(), b.trusted.set().hash());
    }

    #[test]
    fn a_replaced_set_is_reached_by_bisection_through_the_header_that_named_it() {
        let a = validators(1, &[10, 10, 10, 10]);
        let new = validators(100, &[10, 10, 10]); // no validator in common
        let c = chain(20, &[&a, &new], |h| usize::from(h > 10));
        let f = follow(&c, &genesis(&a), 20, &FollowOptions::default(), at(60)).expect("followed");
        assert_eq!(f.via, vec![10], "block 10 names the new set as the next validators");
        assert_eq!(f.power, SignedPower { signed: 30, total: 30 });
    }

    #[test]
    fn a_header_signed_by_a_set_the_chain_never_had_is_refused() {
        let a = validators(1, &[10, 10, 10, 10]);
        let forger = validators(100, &[10, 10, 10]);
        let mut c = chain(20, &[&a], |_| 0);
        let forged = header_at(&forger, &forger, CHAIN, 20, T0 + 20, [0xee; 32]);
        c.headers.insert(20, sign(&forger, forged, &[0, 1, 2]));
        c.sets.insert(20, forger.trusted.set().clone());
        let refused = follow(&c, &genesis(&a), 20, &FollowOptions::default(), at(60));
        assert!(matches!(refused, Err(LightError::Header { .. })), "{refused:?}");
    }

    #[test]
    fn a_changed_set_is_not_followed_from_an_expired_trusted_state() {
        let a = validators(1, &[10, 10, 10, 10]);
        let b = validators(3, &[10, 10, 10, 10]);
        let changed = chain(20, &[&a, &b], |h| usize::from(h > 10));
        let late = at(30 * DAY);
        let refused = follow(&changed, &genesis(&a), 20, &FollowOptions::default(), late);
        let e = refused.expect_err("the trusting period is over").to_string();
        assert!(e.contains("not within trusting period"), "{e}");
        // The same clock with an unchanged set: the genesis set still signs.
        let unchanged = chain(20, &[&a], |_| 0);
        assert!(follow(&unchanged, &genesis(&a), 20, &FollowOptions::default(), late).is_ok());
    }

    #[test]
    fn a_changed_set_with_a_header_from_the_future_is_refused() {
        let a = validators(1, &[10, 10, 10, 10]);
        let b = validators(3, &[10, 10, 10, 10]);
        let c = chain(20, &[&a, &b], |h| usize::from(h > 10));
        // The local clock says genesis + 5 s; block 20 claims genesis + 20 s, beyond the drift.
        let e = follow(&c, &genesis(&a), 20, &FollowOptions::default(), at(5))
            .expect_err("from the future")
            .to_string();
        assert!(e.contains("header from the future"), "{e}");
    }

    #[test]
    fn a_validator_set_served_for_another_header_is_refused() {
        let a = validators(1, &[10, 10, 10, 10]);
        let b = validators(3, &[10, 10, 10, 10]);
        let mut c = chain(20, &[&a, &b], |h| usize::from(h > 10));
        c.sets.insert(20, a.trusted.set().clone());
        assert!(matches!(
            follow(&c, &genesis(&a), 20, &FollowOptions::default(), at(60)),
            Err(LightError::Header { .. })
        ));
    }

    #[test]
    fn the_trusted_state_must_precede_the_header() {
        let a = validators(1, &[10, 10, 10, 10]);
        let c = chain(5, &[&a], |_| 0);
        let mut state = genesis(&a);
        state.height = 5;
        assert!(matches!(
            follow(&c, &state, 5, &FollowOptions::default(), at(60)),
            Err(LightError::Trust(TrustError::StateNotBefore { trusted: 5, target: 5 }))
        ));
    }
}
