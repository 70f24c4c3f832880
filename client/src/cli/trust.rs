//! `lemal trust add | list | remove`, and the choice of the trust root that every verifying
//! command (`verify`, `audit`, `block ... --verify`, `run`) checks the node against.
//!
//! The root is the first of:
//!
//! | source | root |
//! |---|---|
//! | `--genesis FILE` (`LEMAL_GENESIS`) | the validators and chain id of that CometBFT genesis file |
//! | `--trusted-validators HASH` (`LEMAL_TRUSTED_VALIDATORS`) | the validator set with that hash, signing for `LEMAL_CHAIN_ID` if set |
//! | `--trusted-header HEIGHT:HASH` (`LEMAL_TRUSTED_HEADER`) | that header and the validator set it names |
//! | the known-chains file (`--known-chains`, `LEMAL_KNOWN_CHAINS`) | the root recorded for the chain id the node answers as |
//! | the localnet under `--home` | its genesis file, when the node serves that same genesis (compared by fingerprint) |
//!
//! Nothing else: with none of these the command refuses to verify (exit 3) and names the command
//! that pins a root. The node is asked only for its chain id (to find a record) and, for the
//! localnet default, for its genesis to compare; trust never comes from what it serves.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::Subcommand;
use serde::Serialize;

use super::{emit, Global};
use crate::light::{GenesisInfo, KnownChain, KnownChains, KnownRoot, TrustRoot, TrustedValidators};
use crate::localnet::{Layout, Manifest};
use crate::rpc::Node;

/// What to do with the known chains.
#[derive(Debug, Subcommand)]
pub enum Action {
    /// Record the trust root of a chain: the genesis file given with --genesis, the header
    /// given with --trusted-header (checked against the node), or else the genesis the node
    /// serves: trust on first use, shown first and recorded only with --yes.
    #[command(after_help = "Examples:\n  \
        lemal --node http://10.0.0.5:26657 trust add          # show the fingerprint\n  \
        lemal --node http://10.0.0.5:26657 trust add --yes    # record it\n  \
        lemal --genesis genesis.json trust add                # record a genesis you hold")]
    Add {
        /// Record the genesis the node serves (trust on first use).
        #[arg(long)]
        yes: bool,
        /// Replace the root already recorded for the chain.
        #[arg(long)]
        replace: bool,
    },
    /// List the known chains.
    List,
    /// Forget a chain.
    Remove {
        /// Its chain id.
        chain_id: String,
    },
}

/// No trust root was chosen for the node: verification refuses to run (exit 3).
#[derive(Debug, thiserror::Error)]
#[error(
    "no trust root for chain {chain_id} at {node}: {reason}. Pin one: `lemal --node {node} trust \
     add` shows the genesis fingerprint to compare with the chain's operators and `... trust add \
     --yes` records it; or pass --genesis FILE, --trusted-validators HASH or --trusted-header \
     HEIGHT:HASH"
)]
pub struct NoTrustRoot {
    /// The chain id the node answers as.
    pub chain_id: String,
    /// The node.
    pub node: String,
    /// Why no default applied.
    pub reason: String,
}

/// The known-chains file: `--known-chains`, else the user's config directory.
fn known_chains_path(global: &Global) -> Option<PathBuf> {
    global.known_chains.clone().or_else(KnownChains::default_path)
}

/// The trust root a verifying command checks `node` against (see the module documentation).
/// Says which on stderr.
pub fn trust_root(global: &Global, node: &Node) -> Result<TrustRoot> {
    let root = choose(global, node)?;
    eprintln!("trust root: {}", root.report());
    Ok(root)
}

fn choose(global: &Global, node: &Node) -> Result<TrustRoot> {
    if let Some(path) = &global.genesis {
        return Ok(TrustRoot::genesis_file(path)?);
    }
    if let Some(hash) = &global.trusted_validators {
        return Ok(TrustRoot::validators_hash_hex(hash, std::env::var("LEMAL_CHAIN_ID").ok())?);
    }
    if let Some(pin) = &global.trusted_header {
        return Ok(TrustRoot::header_pin(pin, "--trusted-header")?);
    }
    // The chain id the node claims only picks the record to check it against.
    let chain_id = node.status()?.chain_id;
    if let Some(path) = known_chains_path(global) {
        if let Some(root) = KnownChains::load(&path)?.root(&chain_id, &path)? {
            return Ok(root);
        }
    }
    let no_root = |reason: String| NoTrustRoot {
        chain_id: chain_id.clone(),
        node: node.url().to_owned(),
        reason,
    };
    let Some(local) = localnet_genesis(&global.home) else {
        return Err(no_root(format!(
            "it is not a known chain, and {} holds no localnet",
            global.home.display()
        ))
        .into());
    };
    let local_genesis = GenesisInfo::from_file(&local)?;
    if local_genesis.chain_id() != chain_id {
        return Err(no_root(format!(
            "it is not a known chain, and the localnet under {} is chain {}",
            global.home.display(),
            local_genesis.chain_id()
        ))
        .into());
    }
    let served =
        GenesisInfo::from_json(&node.genesis()?, &format!("the genesis served by {}", node.url()))?;
    if served.fingerprint() != local_genesis.fingerprint() {
        return Err(no_root(format!(
            "it is not a known chain, and its genesis (fingerprint {}) is not the one of the \
             localnet under {} (fingerprint {}): another chain with the same chain id",
            hex::encode(served.fingerprint()),
            global.home.display(),
            hex::encode(local_genesis.fingerprint())
        ))
        .into());
    }
    Ok(TrustRoot::Genesis {
        genesis: local_genesis,
        source: format!("the localnet's genesis file {}", local.display()),
    })
}

/// The genesis file of the localnet under `home`, if it holds one.
fn localnet_genesis(home: &Path) -> Option<PathBuf> {
    let layout = Layout::new(home).ok()?;
    Manifest::load(&layout).ok()?;
    let path = layout.node_dir(0).join("config").join("genesis.json");
    path.is_file().then_some(path)
}

/// `lemal trust ...`.
pub fn run(action: Action, global: &Global) -> Result<ExitCode> {
    let path = known_chains_path(global).context(
        "no config directory to keep known chains in (HOME unset): pass --known-chains FILE",
    )?;
    match action {
        Action::Add { yes, replace } => add(global, &path, yes, replace),
        Action::List => list(global, &path),
        Action::Remove { chain_id } => {
            let mut known = KnownChains::load(&path)?;
            if !known.remove(&chain_id) {
                bail!("{chain_id} is not a known chain in {}", path.display());
            }
            known.save(&path)?;
            #[derive(Serialize)]
            struct Removed<'a> {
                removed: &'a str,
                file: String,
            }
            let doc = Removed { removed: &chain_id, file: path.display().to_string() };
            emit(global, &doc, || format!("forgot {chain_id} ({})\n", path.display()))?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// What `trust add` records, or would record.
#[derive(Serialize)]
struct Offer {
    chain_id: String,
    root: KnownRoot,
    fingerprint: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    height: Option<u64>,
    validators: usize,
    validators_hash: String,
    total_power: u64,
    source: String,
    recorded: bool,
    file: String,
    note: String,
}

fn add(global: &Global, path: &Path, yes: bool, replace: bool) -> Result<ExitCode> {
    let file = path.display().to_string();
    let offer = |trusted: &TrustedValidators, root: KnownRoot, height, source: String| Offer {
        chain_id: trusted.chain_id().unwrap_or_default().to_owned(),
        root,
        fingerprint: trusted.root().fingerprint.clone(),
        height,
        validators: trusted.set().validators().len(),
        validators_hash: hex::encode(trusted.hash()),
        total_power: trusted.set().total_voting_power().value(),
        source,
        recorded: false,
        file: file.clone(),
        note: String::new(),
    };
    if let Some(path_of_genesis) = &global.genesis {
        // A genesis the user holds: recorded as it is.
        let root = TrustRoot::genesis_file(path_of_genesis)?;
        let trusted = root.held().context("a genesis file is held whole")?;
        let source = format!("genesis file {}", path_of_genesis.display());
        return record(global, path, offer(&trusted, KnownRoot::Genesis, None, source), replace);
    }
    if global.trusted_validators.is_some() {
        bail!(
            "a validator-set hash names no height or genesis to follow later sets from, so it \
             is not recorded as a known chain: record a genesis (--genesis FILE, or the node's \
             with --yes) or a header (--trusted-header HEIGHT:HASH)"
        );
    }
    let node = super::connect(global)?;
    if let Some(pin) = &global.trusted_header {
        // A header the user pinned: checked against the node (its chain id and validators
        // come from it), then recorded.
        let root = TrustRoot::header_pin(pin, "--trusted-header")?;
        let TrustRoot::Header { height, .. } = root else {
            bail!("--trusted-header {pin} is not a header pin")
        };
        let trusted = root.resolve(&node, height)?;
        let source = node.url().to_owned();
        return record(
            global,
            path,
            offer(&trusted, KnownRoot::Header, Some(height), source),
            replace,
        );
    }
    // Trust on first use: the genesis the node serves, recorded only with --yes.
    let served =
        GenesisInfo::from_json(&node.genesis()?, &format!("the genesis served by {}", node.url()))?;
    let claimed = node.status()?.chain_id;
    if claimed != served.chain_id() {
        bail!(
            "{} answers as chain {claimed} but serves the genesis of chain {}",
            node.url(),
            served.chain_id()
        );
    }
    let root = TrustRoot::Genesis { genesis: served, source: node.url().to_owned() };
    let trusted = root.resolve(&node, 1)?;
    let offer = offer(&trusted, KnownRoot::Genesis, None, node.url().to_owned());
    if !yes {
        let note = format!(
            "not recorded: compare this fingerprint with the one the chain's operators publish \
             (`lemal --genesis GENESIS_FILE trust add` prints it from their genesis file), then run \
             `lemal --node {} trust add --yes`",
            node.url()
        );
        let offer = Offer { note, ..offer };
        emit(global, &offer, || render_offer(&offer))?;
        return Ok(ExitCode::SUCCESS);
    }
    record(global, path, offer, replace)
}

fn record(global: &Global, path: &Path, offer: Offer, replace: bool) -> Result<ExitCode> {
    let mut known = KnownChains::load(path)?;
    let entry = KnownChain {
        root: offer.root,
        fingerprint: offer.fingerprint.clone(),
        height: offer.height,
        source: offer.source.clone(),
        added: crate::light::now().to_rfc3339(),
    };
    let changed = known.add(&offer.chain_id, entry, replace)?;
    if changed {
        known.save(path)?;
    }
    let note = if changed {
        format!("recorded in {}", path.display())
    } else {
        format!("already known with this root in {}", path.display())
    };
    let offer = Offer { recorded: true, note, ..offer };
    emit(global, &offer, || render_offer(&offer))?;
    Ok(ExitCode::SUCCESS)
}

fn render_offer(o: &Offer) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "chain        {}", o.chain_id);
    match o.height {
        Some(h) => {
            let _ = writeln!(s, "root         header at height {h}");
        }
        None => {
            let _ = writeln!(s, "root         genesis");
        }
    }
    let _ = writeln!(s, "fingerprint  {}", o.fingerprint);
    let _ = writeln!(
        s,
        "validators   {} (set {}, total power {})",
        o.validators, o.validators_hash, o.total_power
    );
    let _ = writeln!(s, "from         {}", o.source);
    let _ = writeln!(s, "{}", o.note);
    s
}

fn list(global: &Global, path: &Path) -> Result<ExitCode> {
    let known = KnownChains::load(path)?;
    #[derive(Serialize)]
    struct Listing<'a> {
        file: String,
        chains: &'a std::collections::BTreeMap<String, KnownChain>,
    }
    let doc = Listing { file: path.display().to_string(), chains: known.chains() };
    emit(global, &doc, || {
        let mut s = format!("known chains in {}\n", path.display());
        if known.chains().is_empty() {
            s.push_str("  (none)\n");
        }
        for (chain, e) in known.chains() {
            let root = match (e.root, e.height) {
                (KnownRoot::Header, Some(h)) => format!("header@{h}"),
                _ => "genesis".to_owned(),
            };
            let _ = writeln!(s, "  {chain:<24} {root:<14} {}  {}", e.fingerprint, e.source);
        }
        s
    })?;
    Ok(ExitCode::SUCCESS)
}
