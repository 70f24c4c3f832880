//! Signed headers for tests: validator sets with their keys, headers and commits.

use tendermint::block::signed_header::SignedHeader;
use tendermint::block::{self, Commit, CommitSig, Header, Height, Round};
use tendermint::validator::Info as ValidatorInfo;
use tendermint::vote::{Type as VoteType, ValidatorIndex, Vote};

use super::trust::validator_set;
use super::{RootReport, TrustKind, TrustedValidators};

/// The chain id of test headers.
pub(crate) const CHAIN: &str = "lemal-test";

/// A validator set with its ed25519 keys, in the set's order.
pub(crate) struct Validators {
    pub(crate) keys: Vec<ed25519_consensus::SigningKey>,
    pub(crate) trusted: TrustedValidators,
}

pub(crate) fn validators(seed: u8, powers: &[u32]) -> Validators {
    let keys: Vec<ed25519_consensus::SigningKey> = (0..powers.len())
        .map(|i| ed25519_consensus::SigningKey::from([seed.wrapping_add(i as u8); 32]))
        .collect();
    let infos: Vec<ValidatorInfo> = keys
        .iter()
        .zip(powers)
        .map(|(k, &p)| {
            let pk = tendermint::PublicKey::from_raw_ed25519(&k.verification_key().to_bytes())
                .expect("32-byte key");
            ValidatorInfo::new(pk, p.into())
        })
        .collect();
    let set = validator_set(infos).expect("valid set");
    // Keys in the set's order, so that signer positions are commit positions.
    let keys = set
        .validators()
        .iter()
        .map(|v| {
            keys.iter()
                .find(|k| {
                    v.pub_key.ed25519().map(|p| p.as_bytes().to_vec())
                        == Some(k.verification_key().to_bytes().to_vec())
                })
                .expect("every validator has a key")
                .clone()
        })
        .collect();
    let trusted = TrustedValidators {
        set,
        chain_id: Some(CHAIN.to_owned()),
        from: None,
        root: RootReport {
            kind: TrustKind::Genesis,
            fingerprint: String::new(),
            source: "test validators".into(),
        },
    };
    Validators { keys, trusted }
}

pub(crate) fn header(vals: &Validators, chain: &str, height: u64, app_hash: [u8; 32]) -> Header {
    header_at(vals, vals, chain, height, 1_700_000_000, app_hash)
}

/// A header of `vals` naming `next` as the next validators, at `time` (Unix seconds).
pub(crate) fn header_at(
    vals: &Validators,
    next: &Validators,
    chain: &str,
    height: u64,
    time: i64,
    app_hash: [u8; 32],
) -> Header {
    let hash = vals.trusted.set().hash();
    Header {
        version: block::header::Version { block: 11, app: 1 },
        chain_id: chain.try_into().expect("chain id"),
        height: Height::try_from(height).expect("height"),
        time: tendermint::Time::from_unix_timestamp(time, 0).expect("time"),
        last_block_id: None,
        last_commit_hash: None,
        data_hash: None,
        validators_hash: hash,
        next_validators_hash: next.trusted.set().hash(),
        consensus_hash: tendermint::Hash::Sha256([7; 32]),
        app_hash: tendermint::AppHash::try_from(app_hash.to_vec()).expect("app hash"),
        last_results_hash: None,
        evidence_hash: None,
        proposer_address: vals.trusted.set().validators()[0].address,
    }
}

/// The header signed by the validators at `signers` (positions in the set).
pub(crate) fn sign(vals: &Validators, header: Header, signers: &[usize]) -> SignedHeader {
    let block_id = block::Id {
        hash: header.hash(),
        part_set_header: block::parts::Header::new(1, tendermint::Hash::Sha256([9; 32]))
            .expect("part set header"),
    };
    let time = header.time;
    let signatures = vals
        .trusted
        .set()
        .validators()
        .iter()
        .enumerate()
        .map(|(i, v)| {
            if !signers.contains(&i) {
                return CommitSig::BlockIdFlagAbsent;
            }
            let vote = Vote {
                vote_type: VoteType::Precommit,
                height: header.height,
                round: Round::default(),
                block_id: Some(block_id),
                timestamp: Some(time),
                validator_address: v.address,
                validator_index: ValidatorIndex::try_from(i as u32).expect("index"),
                signature: None,
                extension: Vec::new(),
                extension_signature: None,
            };
            let bytes = vote.into_signable_vec(header.chain_id.clone());
            let sig = vals.keys[i].sign(&bytes).to_bytes();
            CommitSig::BlockIdFlagCommit {
                validator_address: v.address,
                timestamp: time,
                signature: tendermint::Signature::try_from(sig.as_slice()).ok(),
            }
        })
        .collect();
    let commit = Commit { height: header.height, round: Round::default(), block_id, signatures };
    SignedHeader::new(header, commit).expect("heights agree")
}
