//! Trust roots: what a light client trusts, and the file of known chains that remembers it.
//!
//! A light client checks everything a node serves against one validator set, and that set must
//! come from somewhere the *user* chose — never from the node being checked. The roots:
//!
//! | root | the trusted set | fingerprint |
//! |---|---|---|
//! | [`TrustRoot::Genesis`] | validators of a genesis document the caller holds | its [genesis fingerprint](GenesisInfo::fingerprint) |
//! | [`TrustRoot::KnownGenesis`] | validators of the node's genesis, if it has the recorded fingerprint | the recorded fingerprint |
//! | [`TrustRoot::ValidatorsHash`] | the set the node serves, if it hashes to the pinned hash | the pinned hash |
//! | [`TrustRoot::Header`] | the set a pinned header names (by height and hash) | the pinned header hash |
//!
//! A root that the node contradicts — another genesis under a known chain id, another header
//! at the pinned height — is refused as [`LightError::DifferentChain`], never followed.
//!
//! [`KnownChains`] is the user's record of chain id → root (`lemal trust add|list|remove`),
//! kept as TOML in the user's config directory.
//!
//! A genesis or a pinned header resolves to a trusted state (a height, its time and the set
//! that signs the next block) from which later headers are followed across validator-set
//! changes ([`super::follow`]); a pinned validator-set hash admits that set only.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tendermint::block::signed_header::SignedHeader;
use tendermint::validator::{Info as ValidatorInfo, Set as ValidatorSet};

use super::{LightError, TrustError};
use crate::rpc::{Node, MAX_VALIDATORS};

/// Domain label of the genesis fingerprint.
const GENESIS_FINGERPRINT_LABEL: &[u8] = b"lemal/genesis-fingerprint/v1";

/// The parts of a CometBFT genesis document a light client trusts, with its fingerprint.
#[derive(Clone, Debug)]
pub struct GenesisInfo {
    chain_id: String,
    time: tendermint::Time,
    initial_height: u64,
    validators: ValidatorSet,
    fingerprint: [u8; 32],
}

impl GenesisInfo {
    /// Parse a CometBFT genesis document (JSON). `source` names where it came from, for errors.
    ///
    /// Refused: not JSON, no chain id, a validator whose address is not its key's, and the
    /// validator sets the light client refuses (none, a zero or excessive power, an address twice).
    pub fn from_json(json: &[u8], source: &str) -> Result<Self, LightError> {
        let fail = |error: GenesisError| TrustError::Genesis { origin: source.to_owned(), error };
        let doc: serde_json::Value =
            serde_json::from_slice(json).map_err(|e| fail(GenesisError::NotJson(e)))?;
        let chain_id = doc
            .get("chain_id")
            .and_then(serde_json::Value::as_str)
            .filter(|c| !c.is_empty())
            .ok_or_else(|| fail(GenesisError::NoChainId))?
            .to_owned();
        let entries: Vec<GenesisValidator> = match doc.get("validators") {
            None | Some(serde_json::Value::Null) => Vec::new(),
            Some(v) => {
                serde_json::from_value(v.clone()).map_err(|e| fail(GenesisError::Validators(e)))?
            }
        };
        let mut infos = Vec::with_capacity(entries.len());
        for v in entries {
            let info = ValidatorInfo::new(v.pub_key, v.power);
            if let Some(address) = &v.address {
                if !address.eq_ignore_ascii_case(&hex::encode(info.address.as_bytes())) {
                    return Err(
                        fail(GenesisError::ValidatorAddress { address: address.clone() }).into()
                    );
                }
            }
            infos.push(info);
        }
        let validators = validator_set(infos).map_err(|e| fail(GenesisError::ValidatorSet(e)))?;
        let (fingerprint, time, initial_height) = genesis_fingerprint(&doc).map_err(fail)?;
        Ok(GenesisInfo { chain_id, time, initial_height, validators, fingerprint })
    }

    /// Read and parse the genesis file at `path`.
    pub fn from_file(path: &Path) -> Result<Self, LightError> {
        let bytes = std::fs::read(path)
            .map_err(|error| TrustError::UnreadableGenesis { path: path.to_owned(), error })?;
        Self::from_json(&bytes, &format!("genesis file {}", path.display()))
    }

    /// The chain id.
    pub fn chain_id(&self) -> &str {
        &self.chain_id
    }

    /// The genesis validators.
    pub fn validators(&self) -> &ValidatorSet {
        &self.validators
    }

    /// SHA-256 over a domain label and a canonical JSON form of the fields that make a chain:
    /// chain id, genesis time (re-rendered in RFC 3339), initial height (0 read as 1, as
    /// CometBFT does), the validators' keys
    /// and powers in order, app hash and `app_state` (keys sorted, no whitespace). The same for
    /// the file a localnet wrote and for the document its node serves (which CometBFT
    /// re-encodes); different for two chains that share a chain id but not their validators or
    /// application state. Consensus parameters are left out: CometBFT fills in defaults when it
    /// serves them, and they do not decide who signs.
    pub fn fingerprint(&self) -> [u8; 32] {
        self.fingerprint
    }
}

#[derive(Deserialize)]
struct GenesisValidator {
    #[serde(default)]
    address: Option<String>,
    pub_key: tendermint::PublicKey,
    power: tendermint::vote::Power,
}

/// Why a genesis document is refused.
#[derive(Debug, thiserror::Error)]
pub enum GenesisError {
    /// It is not JSON.
    #[error("not a genesis document: {0}")]
    NotJson(serde_json::Error),
    /// It has no chain id, or an empty one.
    #[error("no chain_id")]
    NoChainId,
    /// Its validators are not a list of validators (key and power).
    #[error("validators: {0}")]
    Validators(serde_json::Error),
    /// A validator's address is not its public key's.
    #[error("validator address {address} does not match its public key")]
    ValidatorAddress {
        /// The address as written.
        address: String,
    },
    /// Its validators are not a set the light client accepts.
    #[error("{0}")]
    ValidatorSet(ValidatorSetError),
    /// It has no genesis time.
    #[error("no genesis_time")]
    NoTime,
    /// Its genesis time is not an RFC 3339 time.
    #[error("genesis_time {text:?}: {error}")]
    Time {
        /// The time as written.
        text: String,
        /// Why it does not parse.
        error: tendermint::Error,
    },
    /// Its initial height, written as a string, is not a number.
    #[error("initial_height {text:?}: {error}")]
    HeightText {
        /// The height as written.
        text: String,
        /// Why it does not parse.
        error: std::num::ParseIntError,
    },
    /// Its initial height is neither a string nor a non-negative integer.
    #[error("initial_height {0} is not a height")]
    Height(serde_json::Value),
    /// Its app hash is not a string.
    #[error("app_hash {0} is not a string")]
    AppHash(serde_json::Value),
}

/// The fingerprint, genesis time and initial height of a genesis document.
fn genesis_fingerprint(
    doc: &serde_json::Value,
) -> Result<([u8; 32], tendermint::Time, u64), GenesisError> {
    use serde_json::Value;
    let field = |name: &str| doc.get(name).cloned().unwrap_or(Value::Null);
    let genesis_time = match doc.get("genesis_time").and_then(Value::as_str) {
        Some(t) => tendermint::Time::parse_from_rfc3339(t)
            .map_err(|error| GenesisError::Time { text: t.to_owned(), error })?,
        None => return Err(GenesisError::NoTime),
    };
    let time = genesis_time.to_rfc3339();
    let initial_height = match field("initial_height") {
        Value::Null => 1,
        Value::String(s) => {
            s.parse::<u64>().map_err(|error| GenesisError::HeightText { text: s.clone(), error })?
        }
        Value::Number(n) => {
            n.as_u64().ok_or_else(|| GenesisError::Height(Value::Number(n.clone())))?
        }
        other => return Err(GenesisError::Height(other)),
    };
    // CometBFT reads an initial height of 0 as 1, and serves it so.
    let initial_height = initial_height.max(1);
    let validators: Vec<Value> = match field("validators") {
        Value::Array(vs) => vs
            .iter()
            .map(|v| {
                serde_json::json!({
                    "pub_key": v.get("pub_key").cloned().unwrap_or(Value::Null),
                    "power": v.get("power").cloned().unwrap_or(Value::Null),
                })
            })
            .collect(),
        _ => Vec::new(),
    };
    let app_hash = match field("app_hash") {
        Value::Null => String::new(),
        Value::String(s) => s.to_ascii_lowercase(),
        other => return Err(GenesisError::AppHash(other)),
    };
    let canonical = serde_json::json!({
        "chain_id": field("chain_id"),
        "genesis_time": time,
        "initial_height": initial_height.to_string(),
        "validators": validators,
        "app_hash": app_hash,
        "app_state": field("app_state"),
    });
    let mut text = String::new();
    write_canonical(&canonical, &mut text);
    let mut h = Sha256::new();
    h.update(GENESIS_FINGERPRINT_LABEL);
    h.update(text.as_bytes());
    Ok((h.finalize().into(), genesis_time, initial_height))
}

/// JSON with object keys sorted and no whitespace.
fn write_canonical(v: &serde_json::Value, out: &mut String) {
    use serde_json::Value;
    match v {
        Value::Object(map) => {
            let mut entries: Vec<_> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            out.push('{');
            for (i, (k, v)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push(':');
                write_canonical(v, out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(v, out);
            }
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

/// What a light client trusts.
#[derive(Clone, Debug)]
pub enum TrustRoot {
    /// The validators of a genesis document the caller holds.
    Genesis {
        /// The document.
        genesis: GenesisInfo,
        /// Where it came from (e.g. `genesis file PATH`).
        source: String,
    },
    /// A known chain recorded by its genesis fingerprint: the node's genesis must have it, and
    /// its validators are then trusted.
    KnownGenesis {
        /// The chain id it was recorded under.
        chain_id: String,
        /// The recorded fingerprint.
        fingerprint: [u8; 32],
        /// Where the record is.
        source: String,
    },
    /// The validator set with this hash (as headers carry it in `validators_hash`).
    ValidatorsHash {
        /// The pinned hash.
        hash: [u8; 32],
        /// The chain id it must sign for, if the caller knows it.
        chain_id: Option<String>,
    },
    /// The header of this height with this hash, and the validator set it names.
    Header {
        /// Its height.
        height: u64,
        /// Its hash.
        hash: [u8; 32],
        /// Where the pin comes from.
        source: String,
    },
}

/// The kind of a trust root, in reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TrustKind {
    /// A genesis document the caller holds.
    Genesis,
    /// A known chain's genesis fingerprint.
    KnownGenesis,
    /// A pinned validator-set hash.
    ValidatorsHash,
    /// A pinned header.
    Header,
}

impl fmt::Display for TrustKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TrustKind::Genesis => "genesis",
            TrustKind::KnownGenesis => "known chain (genesis fingerprint)",
            TrustKind::ValidatorsHash => "validator-set hash",
            TrustKind::Header => "trusted header",
        })
    }
}

/// A trust root as reports name it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RootReport {
    /// What kind of root.
    pub kind: TrustKind,
    /// Its fingerprint (hex): the genesis fingerprint, validator-set hash or header hash.
    pub fingerprint: String,
    /// Where it comes from.
    pub source: String,
}

impl fmt::Display for RootReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} from {}, fingerprint {}", self.kind, self.source, self.fingerprint)
    }
}

impl TrustRoot {
    /// Trust the genesis validators of the CometBFT genesis file at `path`.
    pub fn genesis_file(path: &Path) -> Result<TrustRoot, LightError> {
        Ok(TrustRoot::Genesis {
            genesis: GenesisInfo::from_file(path)?,
            source: format!("genesis file {}", path.display()),
        })
    }

    /// Trust the validator set with this hash (64 hex digits).
    pub fn validators_hash_hex(
        hex_hash: &str,
        chain_id: Option<String>,
    ) -> Result<Self, LightError> {
        Ok(TrustRoot::ValidatorsHash {
            hash: parse_hash(hex_hash, TrustKind::ValidatorsHash)?,
            chain_id,
        })
    }

    /// Trust the header given as `HEIGHT:HASH` (hash in hex, as CometBFT light clients take it).
    pub fn header_pin(pin: &str, source: &str) -> Result<Self, LightError> {
        let (height, hash) = pin
            .trim()
            .split_once(':')
            .ok_or_else(|| TrustError::HeaderPin { pin: pin.to_owned() })?;
        let height: u64 = height
            .parse()
            .ok()
            .filter(|h| *h > 0)
            .ok_or_else(|| TrustError::HeaderPinHeight { height: height.to_owned() })?;
        Ok(TrustRoot::Header {
            height,
            hash: parse_hash(hash, TrustKind::Header)?,
            source: source.to_owned(),
        })
    }

    /// How reports name this root.
    pub fn report(&self) -> RootReport {
        let (kind, fingerprint, source) = match self {
            TrustRoot::Genesis { genesis, source } => {
                (TrustKind::Genesis, genesis.fingerprint, source.clone())
            }
            TrustRoot::KnownGenesis { fingerprint, source, .. } => {
                (TrustKind::KnownGenesis, *fingerprint, source.clone())
            }
            TrustRoot::ValidatorsHash { hash, chain_id } => (
                TrustKind::ValidatorsHash,
                *hash,
                match chain_id {
                    Some(c) => format!("pinned validator-set hash for chain {c}"),
                    None => "pinned validator-set hash".into(),
                },
            ),
            TrustRoot::Header { height, hash, source } => {
                (TrustKind::Header, *hash, format!("{source} at height {height}"))
            }
        };
        RootReport { kind, fingerprint: hex::encode(fingerprint), source }
    }

    /// What a root the caller holds whole (a genesis document) trusts, with no node to ask;
    /// `None` for the roots that must be checked against a node.
    pub fn held(&self) -> Option<TrustedValidators> {
        match self {
            TrustRoot::Genesis { genesis, .. } => {
                Some(TrustedValidators::genesis(genesis, self.report()))
            }
            _ => None,
        }
    }

    /// What this root trusts, checked against what the node serves: for a genesis or a pinned
    /// header, a state to follow validator-set changes from ([`super::follow`]); for a pinned
    /// validator-set hash, the set that must sign the header at `height` itself.
    pub fn resolve(&self, node: &Node, height: u64) -> Result<TrustedValidators, LightError> {
        let root = self.report();
        match self {
            TrustRoot::Genesis { genesis, .. } => Ok(TrustedValidators::genesis(genesis, root)),
            TrustRoot::KnownGenesis { chain_id, fingerprint, .. } => {
                let served = GenesisInfo::from_json(
                    &node.genesis()?,
                    &format!("the genesis served by {}", node.url()),
                )?;
                check_known_genesis(chain_id, fingerprint, &served)?;
                Ok(TrustedValidators::genesis(&served, root))
            }
            TrustRoot::ValidatorsHash { hash, chain_id } => {
                let set = served_set(node, height)?;
                check_pinned_set(&set, hash)?;
                Ok(TrustedValidators { set, chain_id: chain_id.clone(), from: None, root })
            }
            TrustRoot::Header { height: pinned, hash, .. } => {
                let signed = node.signed_header(*pinned)?;
                let set = served_set(node, *pinned)?;
                let next = served_set(node, pinned + 1)?;
                let chain_id = check_pinned_header(&signed, &set, &next, *pinned, hash)?;
                Ok(TrustedValidators {
                    set: next,
                    chain_id: Some(chain_id),
                    from: Some((*pinned, signed.header.time)),
                    root,
                })
            }
        }
    }
}

/// The validator set the node serves for `height`, which a pin is checked against.
fn served_set(node: &Node, height: u64) -> Result<ValidatorSet, LightError> {
    validator_set(node.validators(height)?)
        .map_err(|error| TrustError::ServedValidators { height, error }.into())
}

/// The hash pinning a root of this `kind`, from 64 hex digits.
fn parse_hash(text: &str, kind: TrustKind) -> Result<[u8; 32], TrustError> {
    let mut hash = [0u8; 32];
    hex::decode_to_slice(text.trim(), &mut hash)
        .map_err(|_| TrustError::NotAHash { kind, text: text.to_owned() })?;
    Ok(hash)
}

/// The served genesis is the known chain's: same chain id and fingerprint.
pub fn check_known_genesis(
    chain_id: &str,
    fingerprint: &[u8; 32],
    served: &GenesisInfo,
) -> Result<(), LightError> {
    if served.chain_id != chain_id || served.fingerprint != *fingerprint {
        return Err(LightError::DifferentChain {
            chain_id: chain_id.to_owned(),
            detail: format!(
                "its genesis (chain {}) has fingerprint {}, the known one {}",
                served.chain_id,
                hex::encode(served.fingerprint),
                hex::encode(fingerprint)
            ),
        });
    }
    Ok(())
}

/// The set hashes to the pinned hash.
pub fn check_pinned_set(set: &ValidatorSet, pinned: &[u8; 32]) -> Result<(), LightError> {
    let hash = hash_bytes(&set.hash());
    if hash != *pinned {
        return Err(TrustError::ValidatorsHashMismatch { pinned: *pinned, served: hash }.into());
    }
    Ok(())
}

/// The header at `height` is the pinned one, `set` is the validator set it names and `next` the
/// next validator set it names. Returns its chain id.
pub fn check_pinned_header(
    signed: &SignedHeader,
    set: &ValidatorSet,
    next: &ValidatorSet,
    height: u64,
    pinned: &[u8; 32],
) -> Result<String, LightError> {
    let header = &signed.header;
    let chain_id = header.chain_id.to_string();
    let hash = hash_bytes(&header.hash());
    if header.height.value() != height || hash != *pinned {
        return Err(LightError::DifferentChain {
            chain_id,
            detail: format!(
                "its header at height {} hashes to {}, the trusted header at height {height} to {}",
                header.height,
                hex::encode(hash),
                hex::encode(pinned)
            ),
        });
    }
    for (what, served, named) in [
        ("validator set", set, header.validators_hash),
        ("next validator set", next, header.next_validators_hash),
    ] {
        if served.hash() != named {
            return Err(LightError::Header {
                height,
                reason: format!(
                    "the {what} served for it hashes to {}, the trusted header names {}",
                    hex::encode(hash_bytes(&served.hash())),
                    hex::encode(hash_bytes(&named))
                ),
            });
        }
    }
    Ok(chain_id)
}

/// A validator set the light client trusts, with the chain id it signs for (when known) and
/// the root the trust comes from. With `from`, the set signs the block after that height
/// (whose header has that time) and later sets are followed from there; without, only this set
/// may sign.
#[derive(Clone, Debug)]
pub struct TrustedValidators {
    pub(super) set: ValidatorSet,
    pub(super) chain_id: Option<String>,
    pub(super) from: Option<(u64, tendermint::Time)>,
    pub(super) root: RootReport,
}

impl TrustedValidators {
    fn genesis(genesis: &GenesisInfo, root: RootReport) -> Self {
        TrustedValidators {
            set: genesis.validators.clone(),
            chain_id: Some(genesis.chain_id.clone()),
            from: Some((genesis.initial_height.saturating_sub(1), genesis.time)),
            root,
        }
    }

    /// The trusted state to follow validator-set changes from, if this set is one.
    pub fn state(&self) -> Option<super::TrustedState> {
        let (height, time) = self.from?;
        Some(super::TrustedState {
            chain_id: self.chain_id.clone()?,
            height,
            time,
            next_validators: self.set.clone(),
        })
    }

    /// The set's hash, as headers carry it in `validators_hash`.
    pub fn hash(&self) -> [u8; 32] {
        hash_bytes(&self.set.hash())
    }

    /// The set.
    pub fn set(&self) -> &ValidatorSet {
        &self.set
    }

    /// The chain id the set signs for, when known.
    pub fn chain_id(&self) -> Option<&str> {
        self.chain_id.as_deref()
    }

    /// The root the trust comes from.
    pub fn root(&self) -> &RootReport {
        &self.root
    }
}

/// Why a list of validators is refused as a validator set.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ValidatorSetError {
    /// The list is empty.
    #[error("no validators")]
    Empty,
    /// The list is longer than [`MAX_VALIDATORS`].
    #[error("{0} validators, more than {MAX_VALIDATORS}")]
    TooMany(usize),
    /// A validator, by address, has no voting power.
    #[error("validator {0} has no voting power")]
    NoPower(tendermint::account::Id),
    /// The powers add up to more than CometBFT allows.
    #[error("total voting power above CometBFT's maximum")]
    TooMuchPower,
    /// Two validators share an address.
    #[error("a validator address appears twice")]
    DuplicateAddress,
}

/// A validator set from its members, refusing what would make the verifier misbehave: no
/// members, a zero or excessive power, or one address twice.
pub(super) fn validator_set(infos: Vec<ValidatorInfo>) -> Result<ValidatorSet, ValidatorSetError> {
    if infos.is_empty() {
        return Err(ValidatorSetError::Empty);
    }
    if infos.len() > MAX_VALIDATORS {
        return Err(ValidatorSetError::TooMany(infos.len()));
    }
    let mut total = 0u64;
    for v in &infos {
        if v.power() == 0 {
            return Err(ValidatorSetError::NoPower(v.address));
        }
        total = total
            .checked_add(v.power())
            .filter(|t| *t <= ValidatorSet::MAX_TOTAL_VOTING_POWER)
            .ok_or(ValidatorSetError::TooMuchPower)?;
    }
    let mut addresses: Vec<_> = infos.iter().map(|v| v.address).collect();
    addresses.sort_unstable();
    if addresses.windows(2).any(|w| w[0] == w[1]) {
        return Err(ValidatorSetError::DuplicateAddress);
    }
    // The total is within bounds, so construction cannot fail.
    Ok(ValidatorSet::without_proposer(infos))
}

pub(super) fn hash_bytes(h: &tendermint::Hash) -> [u8; 32] {
    let mut out = [0u8; 32];
    if let tendermint::Hash::Sha256(b) = h {
        out = *b;
    }
    out
}

// ----- known chains ---------------------------------------------------------------------------

/// What a known chain is recorded by.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum KnownRoot {
    /// Its genesis fingerprint.
    Genesis,
    /// A header at a height.
    Header,
}

/// One known chain.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KnownChain {
    /// What it is recorded by.
    pub root: KnownRoot,
    /// The genesis fingerprint or the header hash (hex).
    pub fingerprint: String,
    /// The header's height (header roots only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub height: Option<u64>,
    /// Where the root was taken from when it was recorded (a node URL or a file).
    #[serde(default)]
    pub source: String,
    /// When it was recorded (RFC 3339).
    #[serde(default)]
    pub added: String,
}

/// The user's known chains: chain id → trusted root. Stored as TOML.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KnownChains {
    #[serde(default)]
    chains: BTreeMap<String, KnownChain>,
}

impl KnownChains {
    /// The default file: `$XDG_CONFIG_HOME/lemal/known-chains.toml`, else
    /// `$HOME/.config/lemal/known-chains.toml`.
    pub fn default_path() -> Option<PathBuf> {
        let base = std::env::var_os("XDG_CONFIG_HOME")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .or_else(|| {
                std::env::var_os("HOME")
                    .filter(|v| !v.is_empty())
                    .map(|h| PathBuf::from(h).join(".config"))
            })?;
        Some(base.join("lemal").join("known-chains.toml"))
    }

    /// Load the file at `path`; a missing file is an empty record.
    pub fn load(path: &Path) -> Result<Self, LightError> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(error) => {
                return Err(
                    TrustError::UnreadableKnownChains { path: path.to_owned(), error }.into()
                )
            }
        };
        let known: KnownChains = toml::from_str(&text)
            .map_err(|error| TrustError::NotKnownChains { path: path.to_owned(), error })?;
        for (chain, entry) in &known.chains {
            entry.to_root(chain, path)?;
        }
        Ok(known)
    }

    /// Write the record to `path` (through a temporary file and a rename).
    pub fn save(&self, path: &Path) -> Result<(), LightError> {
        let fail = |error| TrustError::UnwritableKnownChains { path: path.to_owned(), error };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(fail)?;
        }
        let body = toml::to_string_pretty(self)
            .map_err(|error| TrustError::KnownChainsEncoding { path: path.to_owned(), error })?;
        let text = format!(
            "# Chains this client trusts, by chain id: written by `lemal trust add`.\n{body}"
        );
        let tmp = path.with_extension("toml.tmp");
        std::fs::write(&tmp, text).map_err(fail)?;
        Ok(std::fs::rename(&tmp, path).map_err(fail)?)
    }

    /// The known chains, by chain id.
    pub fn chains(&self) -> &BTreeMap<String, KnownChain> {
        &self.chains
    }

    /// The record of `chain_id`.
    pub fn get(&self, chain_id: &str) -> Option<&KnownChain> {
        self.chains.get(chain_id)
    }

    /// Record `entry` for `chain_id`. A chain already known by another root is refused unless
    /// `replace`; returns whether anything changed.
    pub fn add(
        &mut self,
        chain_id: &str,
        entry: KnownChain,
        replace: bool,
    ) -> Result<bool, LightError> {
        if let Some(old) = self.chains.get(chain_id) {
            if old.root == entry.root
                && old.fingerprint == entry.fingerprint
                && old.height == entry.height
            {
                return Ok(false);
            }
            if !replace {
                return Err(LightError::DifferentChain {
                    chain_id: chain_id.to_owned(),
                    detail: format!(
                        "it is known by {} {}, now offered {}; `lemal trust remove {chain_id}` \
                         (or --replace) if the chain was really replaced",
                        old.describe(),
                        old.fingerprint,
                        entry.fingerprint
                    ),
                });
            }
        }
        self.chains.insert(chain_id.to_owned(), entry);
        Ok(true)
    }

    /// Forget `chain_id`; returns whether it was known.
    pub fn remove(&mut self, chain_id: &str) -> bool {
        self.chains.remove(chain_id).is_some()
    }

    /// The trust root recorded for `chain_id` in the file at `path`.
    pub fn root(&self, chain_id: &str, path: &Path) -> Result<Option<TrustRoot>, LightError> {
        self.chains.get(chain_id).map(|e| e.to_root(chain_id, path)).transpose()
    }
}

impl KnownChain {
    fn describe(&self) -> String {
        match (self.root, self.height) {
            (KnownRoot::Genesis, _) => "genesis fingerprint".into(),
            (KnownRoot::Header, Some(h)) => format!("header at height {h}"),
            (KnownRoot::Header, None) => "header".into(),
        }
    }

    fn to_root(&self, chain_id: &str, path: &Path) -> Result<TrustRoot, LightError> {
        let source = format!("known chain {chain_id} in {}", path.display());
        match self.root {
            KnownRoot::Genesis => Ok(TrustRoot::KnownGenesis {
                chain_id: chain_id.to_owned(),
                fingerprint: parse_hash(&self.fingerprint, TrustKind::KnownGenesis)?,
                source,
            }),
            KnownRoot::Header => {
                let height = self.height.filter(|h| *h > 0).ok_or_else(|| {
                    TrustError::KnownHeaderWithoutHeight {
                        path: path.to_owned(),
                        chain_id: chain_id.to_owned(),
                    }
                })?;
                TrustRoot::header_pin(&format!("{height}:{}", self.fingerprint), &source)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::light::check_header;
    use crate::light::testkit::{header, sign, validators, Validators, CHAIN};

    fn key(seed: u8) -> tendermint::PublicKey {
        let sk = ed25519_consensus::SigningKey::from([seed; 32]);
        tendermint::PublicKey::from_raw_ed25519(&sk.verification_key().to_bytes()).expect("key")
    }

    fn genesis(chain: &str, seeds: &[u8], app_state: serde_json::Value) -> serde_json::Value {
        let validators: Vec<_> = seeds
            .iter()
            .map(|s| serde_json::json!({"pub_key": key(*s), "power": "10", "name": ""}))
            .collect();
        serde_json::json!({
            "genesis_time": "2026-12-01T08:00:00.120000Z",
            "chain_id": chain,
            "initial_height": "1",
            "consensus_params": {"block": {"max_bytes": "22020096"}},
            "validators": validators,
            "app_hash": "",
            "app_state": app_state,
        })
    }

    fn info(doc: &serde_json::Value) -> GenesisInfo {
        GenesisInfo::from_json(doc.to_string().as_bytes(), "test").expect("valid genesis")
    }

    #[test]
    fn fingerprint_ignores_encoding_but_not_content() {
        let doc = genesis("c", &[1, 2], serde_json::json!({"roster": {"b": 1, "a": [2, 3]}}));
        let fp = info(&doc).fingerprint();
        // Pretty-printed, keys reordered, time with trailing zeros trimmed, consensus
        // parameters filled in: the same chain.
        let mut served = doc.clone();
        served["genesis_time"] = "2026-12-01T08:00:00.12Z".into();
        served["initial_height"] = "0".into();
        served["consensus_params"]["evidence"] = serde_json::json!({"max_age_num_blocks": "1"});
        let pretty = serde_json::to_string_pretty(&served).expect("json");
        let again = GenesisInfo::from_json(pretty.as_bytes(), "served").expect("valid");
        assert_eq!(again.fingerprint(), fp);
        // Another validator, another power, another app state, another time: another chain.
        for changed in [
            genesis("c", &[1, 3], doc["app_state"].clone()),
            genesis("c", &[1, 2], serde_json::json!({"roster": {"b": 2, "a": [2, 3]}})),
            {
                let mut d = doc.clone();
                d["validators"][0]["power"] = "11".into();
                d
            },
            {
                let mut d = doc.clone();
                d["genesis_time"] = "2026-12-01T08:00:01Z".into();
                d
            },
            genesis("d", &[1, 2], doc["app_state"].clone()),
        ] {
            assert_ne!(info(&changed).fingerprint(), fp, "{changed}");
        }
    }

    #[test]
    fn a_second_chain_under_a_known_chain_id_is_refused() {
        let first = info(&genesis("lemal-localnet", &[1, 2, 3, 4], serde_json::json!({})));
        let second = info(&genesis("lemal-localnet", &[5, 6, 7, 8], serde_json::json!({})));
        check_known_genesis("lemal-localnet", &first.fingerprint(), &first).expect("same chain");
        let refused = check_known_genesis("lemal-localnet", &first.fingerprint(), &second);
        assert!(
            matches!(&refused, Err(LightError::DifferentChain { chain_id, .. }) if chain_id == "lemal-localnet"),
            "{refused:?}"
        );
        let e = refused.expect_err("refused").to_string();
        assert!(e.starts_with("a different chain answers as lemal-localnet"), "{e}");
        // The same genesis under another chain id is not the known chain either.
        let renamed = info(&genesis("other", &[1, 2, 3, 4], serde_json::json!({})));
        assert!(check_known_genesis("lemal-localnet", &first.fingerprint(), &renamed).is_err());
    }

    #[test]
    fn genesis_without_chain_id_or_time_is_refused() {
        let mut doc = genesis("c", &[1], serde_json::json!({}));
        doc.as_object_mut().expect("object").remove("genesis_time");
        assert!(GenesisInfo::from_json(doc.to_string().as_bytes(), "t").is_err());
        let mut doc = genesis("c", &[1], serde_json::json!({}));
        doc["chain_id"] = "".into();
        assert!(GenesisInfo::from_json(doc.to_string().as_bytes(), "t").is_err());
    }

    fn entry(fingerprint: [u8; 32]) -> KnownChain {
        KnownChain {
            root: KnownRoot::Genesis,
            fingerprint: hex::encode(fingerprint),
            height: None,
            source: "http://127.0.0.1:26657".into(),
            added: "2026-12-01T08:00:00Z".into(),
        }
    }

    #[test]
    fn known_chains_survive_a_round_trip_and_refuse_a_second_root() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("nested").join("known-chains.toml");
        let mut known = KnownChains::load(&path).expect("a missing file is empty");
        assert!(known.chains().is_empty());
        assert!(known.add("chain-a", entry([1; 32]), false).expect("added"));
        assert!(!known.add("chain-a", entry([1; 32]), false).expect("already known"));
        let header = KnownChain { root: KnownRoot::Header, height: Some(12), ..entry([2; 32]) };
        assert!(known.add("chain.b", header, false).expect("added"));
        known.save(&path).expect("saved");
        let loaded = KnownChains::load(&path).expect("loads");
        assert_eq!(loaded, known);
        assert!(matches!(
            loaded.root("chain-a", &path),
            Ok(Some(TrustRoot::KnownGenesis { fingerprint, .. })) if fingerprint == [1; 32]
        ));
        assert!(matches!(
            loaded.root("chain.b", &path),
            Ok(Some(TrustRoot::Header { height: 12, hash, .. })) if hash == [2; 32]
        ));
        assert!(loaded.root("chain-c", &path).expect("no error").is_none());

        let mut known = loaded;
        assert!(matches!(
            known.add("chain-a", entry([3; 32]), false),
            Err(LightError::DifferentChain { .. })
        ));
        assert!(known.add("chain-a", entry([3; 32]), true).expect("replaced"));
        assert!(known.remove("chain-a"));
        assert!(!known.remove("chain-a"));
    }

    #[test]
    fn a_damaged_known_chains_file_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("known-chains.toml");
        std::fs::write(&path, "[chains.x]\nroot = \"genesis\"\nfingerprint = \"zz\"\n")
            .expect("write");
        assert!(matches!(
            KnownChains::load(&path),
            Err(LightError::Trust(TrustError::NotAHash { kind: TrustKind::KnownGenesis, .. }))
        ));
        std::fs::write(&path, "[chains.x]\nroot = \"header\"\nfingerprint = \"00\"\n")
            .expect("write");
        assert!(matches!(
            KnownChains::load(&path),
            Err(LightError::Trust(TrustError::KnownHeaderWithoutHeight { chain_id, .. })) if chain_id == "x"
        ));
        std::fs::write(&path, "not toml [").expect("write");
        assert!(matches!(
            KnownChains::load(&path),
            Err(LightError::Trust(TrustError::NotKnownChains { .. }))
        ));
    }

    #[test]
    fn header_pins_are_height_colon_hash() {
        let pin = format!("42:{}", "ab".repeat(32));
        assert!(matches!(
            TrustRoot::header_pin(&pin, "flag"),
            Ok(TrustRoot::Header { height: 42, .. })
        ));
        let refused = |pin: &str| match TrustRoot::header_pin(pin, "flag") {
            Err(LightError::Trust(e)) => e,
            other => panic!("{pin}: {other:?}"),
        };
        assert!(matches!(refused("42"), TrustError::HeaderPin { .. }));
        assert!(matches!(refused("0:00"), TrustError::HeaderPinHeight { .. }));
        let letters = format!("x:{}", "ab".repeat(32));
        assert!(matches!(refused(&letters), TrustError::HeaderPinHeight { .. }));
        assert!(matches!(refused("42:abc"), TrustError::NotAHash { kind: TrustKind::Header, .. }));
    }

    fn genesis_json(vals: &Validators, chain: &str, address: Option<String>) -> Vec<u8> {
        let validators: Vec<serde_json::Value> = vals
            .trusted
            .set()
            .validators()
            .iter()
            .map(|v| {
                serde_json::json!({
                    "address": address.clone().unwrap_or_else(|| hex::encode_upper(v.address.as_bytes())),
                    "pub_key": v.pub_key,
                    "power": v.power().to_string(),
                    "name": "",
                })
            })
            .collect();
        serde_json::to_vec(&serde_json::json!({
            "genesis_time": "2024-01-01T00:00:00Z",
            "chain_id": chain,
            "initial_height": "1",
            "consensus_params": {},
            "validators": validators,
            "app_hash": "",
            "app_state": {"params": {}},
        }))
        .expect("json")
    }

    fn genesis_root(json: &[u8]) -> Result<TrustedValidators, LightError> {
        let genesis = GenesisInfo::from_json(json, "test")?;
        Ok(TrustedValidators {
            set: genesis.validators().clone(),
            chain_id: Some(genesis.chain_id().to_owned()),
            from: None,
            root: TrustRoot::Genesis { genesis, source: "test".into() }.report(),
        })
    }

    #[test]
    fn genesis_document_yields_its_validators_and_chain_id() {
        let vals = validators(1, &[10, 20, 30]);
        let trusted = genesis_root(&genesis_json(&vals, CHAIN, None)).expect("valid genesis");
        assert_eq!(trusted.hash(), vals.trusted.hash());
        assert_eq!(trusted.chain_id(), Some(CHAIN));
        assert_eq!(trusted.root().kind, TrustKind::Genesis);
        assert_eq!(trusted.root().fingerprint.len(), 64);
        let signed = sign(&vals, header(&vals, CHAIN, 2, [1; 32]), &[0, 1, 2]);
        assert_eq!(check_header(&signed, &trusted, 2).expect("verifies").total, 60);
    }

    #[test]
    fn genesis_validator_whose_address_is_not_its_key_is_refused() {
        let vals = validators(1, &[10, 10]);
        let json = genesis_json(&vals, CHAIN, Some("AB".repeat(20)));
        assert!(matches!(
            genesis_root(&json),
            Err(LightError::Trust(TrustError::Genesis {
                error: GenesisError::ValidatorAddress { .. },
                ..
            }))
        ));
    }

    #[test]
    fn genesis_without_validators_or_not_json_is_refused() {
        let empty =
            br#"{"chain_id": "c", "genesis_time": "2024-01-01T00:00:00Z", "validators": []}"#;
        assert!(genesis_root(empty).is_err());
        assert!(genesis_root(b"{").is_err());
        assert!(genesis_root(b"").is_err());
    }

    #[test]
    fn validator_sets_with_zero_duplicate_or_excessive_power_are_refused() {
        let vals = validators(1, &[10, 10]);
        let infos = vals.trusted.set().validators().clone();
        let mut zero = infos.clone();
        zero[0].power = 0u32.into();
        assert!(validator_set(zero).is_err());
        let duplicate = vec![infos[0].clone(), infos[0].clone()];
        assert!(validator_set(duplicate).is_err());
        let mut huge = infos.clone();
        for v in &mut huge {
            v.power = tendermint::vote::Power::try_from(ValidatorSet::MAX_TOTAL_VOTING_POWER)
                .expect("power");
        }
        assert!(validator_set(huge).is_err());
        assert!(validator_set(Vec::new()).is_err());
        assert!(validator_set(infos).is_ok());
    }

    #[test]
    fn pinned_hash_accepts_only_the_set_it_names() {
        let vals = validators(1, &[10, 10, 10]);
        let infos = vals.trusted.set().validators().clone();
        let pinned = vals.trusted.hash();
        check_pinned_set(vals.trusted.set(), &pinned).expect("the pinned set");
        let mut other = pinned;
        other[0] ^= 1;
        assert!(matches!(
            check_pinned_set(vals.trusted.set(), &other),
            Err(LightError::Trust(TrustError::ValidatorsHashMismatch { pinned, served }))
                if pinned == other && served == vals.trusted.hash()
        ));
        let fewer = validator_set(infos[..2].to_vec()).expect("set");
        assert!(check_pinned_set(&fewer, &pinned).is_err());
        assert!(TrustRoot::validators_hash_hex(&hex::encode(pinned), None).is_ok());
        assert!(TrustRoot::validators_hash_hex("abc", None).is_err());
    }

    #[test]
    fn pinned_header_accepts_only_that_header_and_the_sets_it_names() {
        let vals = validators(1, &[10, 10, 10]);
        let set = vals.trusted.set();
        let signed = sign(&vals, header(&vals, CHAIN, 7, [4; 32]), &[0, 1, 2]);
        let pin = hash_bytes(&signed.header.hash());
        let chain = check_pinned_header(&signed, set, set, 7, &pin).expect("pinned");
        assert_eq!(chain, CHAIN);
        // Another chain's header at that height (another app hash): a different chain.
        let other = sign(&vals, header(&vals, CHAIN, 7, [5; 32]), &[0, 1, 2]);
        assert!(matches!(
            check_pinned_header(&other, set, set, 7, &pin),
            Err(LightError::DifferentChain { .. })
        ));
        // The right header with another validator set, or next set, served beside it.
        let others = validators(50, &[10, 10, 10]);
        for (v, n) in [(others.trusted.set(), set), (set, others.trusted.set())] {
            assert!(matches!(
                check_pinned_header(&signed, v, n, 7, &pin),
                Err(LightError::Header { .. })
            ));
        }
        // The right header served for another height.
        assert!(check_pinned_header(&signed, set, set, 8, &pin).is_err());
    }
}
