//! `lemal keys`: the key files of a localnet's parties — list them, show an entity's public
//! keys, and make the keys of a new party to admit through a roster change.

use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::Subcommand;
use lemal_contracts::elgamal::SecretKey;
use lemal_contracts::ids::{EntityId, Role};
use lemal_contracts::sig::{KeyFile, SigningKey};
use lemal_contracts::state::cn_pop_context;
use serde::Serialize;

use super::{emit, Global};
use crate::keyring::write_key_file;
use crate::localnet::Layout;

/// `lemal keys` actions.
#[derive(Debug, Subcommand)]
pub enum Action {
    /// Every key file under `--home`: entity and public key.
    List,
    /// An entity's public keys: its sr25519 key, and a computing node's ElGamal share with a
    /// proof of possession bound to its index.
    Show {
        /// The entity (`dp-3`, `cn-0`, `vn-1`).
        entity: EntityId,
    },
    /// Make the keys of a new party, written with mode 0600 under `--home` with the next index
    /// of its role, and print the `lemal roster propose` command that admits it.
    New {
        /// `dp`, `cn` or `vn`.
        role: RoleArg,
    },
}

/// A role on the command line.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum RoleArg {
    /// A data provider.
    Dp,
    /// A computing node.
    Cn,
    /// A verifying node.
    Vn,
}

impl From<RoleArg> for Role {
    fn from(r: RoleArg) -> Role {
        match r {
            RoleArg::Dp => Role::Dp,
            RoleArg::Cn => Role::Cn,
            RoleArg::Vn => Role::Vn,
        }
    }
}

/// An entity's public keys, as `keys show` and `keys new` print them.
#[derive(Debug, Serialize)]
pub struct PublicKeys {
    /// The entity.
    pub entity: String,
    /// Its sr25519 verifying key, hex.
    pub key: String,
    /// A computing node's ElGamal share, hex.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub share: Option<String>,
    /// A computing node's proof of possession of the share, bound to its index, hex.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub share_pop: Option<String>,
    /// The command that proposes to admit it (for `keys new`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub propose: Option<String>,
}

/// The public parts of a key file.
pub fn public_keys(file: &KeyFile) -> Result<PublicKeys> {
    let signing = file.signing_key().with_context(|| format!("{}'s key file", file.entity))?;
    let share = file.elgamal_secret().with_context(|| format!("{}'s key file", file.entity))?;
    let pop = share.as_ref().map(|s| {
        s.prove_possession(&cn_pop_context(file.entity), &mut rand_core::OsRng).to_bytes()
    });
    Ok(PublicKeys {
        entity: file.entity.to_string(),
        key: hex::encode(signing.verifying_key().to_bytes()),
        share: share.as_ref().map(|s| hex::encode(s.public().as_bytes())),
        share_pop: pop.map(hex::encode),
        propose: None,
    })
}

fn key_files(layout: &Layout) -> Result<Vec<KeyFile>> {
    let dir = layout.keys_dir();
    let mut files = Vec::new();
    let entries = std::fs::read_dir(&dir)
        .with_context(|| format!("listing the keys in {}", dir.display()))?;
    for entry in entries {
        let path = entry.with_context(|| format!("listing {}", dir.display()))?.path();
        if path.extension().and_then(|e| e.to_str()) != Some("json") {
            continue;
        }
        let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        let file: KeyFile = serde_json::from_slice(&bytes)
            .with_context(|| format!("{} is not a key file", path.display()))?;
        files.push(file);
    }
    files.sort_by_key(|f| f.entity);
    Ok(files)
}

fn render(keys: &PublicKeys) -> String {
    let mut s = format!("{}\n  key        {}\n", keys.entity, keys.key);
    if let (Some(share), Some(pop)) = (&keys.share, &keys.share_pop) {
        s += &format!("  share      {share}\n  share pop  {pop}\n");
    }
    if let Some(cmd) = &keys.propose {
        s += &format!("  admit with {cmd}\n");
    }
    s
}

/// The `roster propose` command that admits `keys`.
fn propose_command(role: Role, keys: &PublicKeys) -> String {
    match role {
        Role::Dp => format!("lemal roster propose add-dp --key {}", keys.key),
        Role::Cn => format!(
            "lemal roster propose add-cn --key {} --share {} --share-pop {}",
            keys.key,
            keys.share.as_deref().unwrap_or_default(),
            keys.share_pop.as_deref().unwrap_or_default()
        ),
        Role::Vn => format!(
            "lemal roster propose add-vn --key {} --validator-key <its CometBFT node's \
             priv_validator_key.json pub_key> --power 1",
            keys.key
        ),
    }
}

/// Run a `keys` action.
pub fn run(action: Action, global: &Global) -> Result<ExitCode> {
    let layout = Layout::new(&global.home)?;
    match action {
        Action::List => {
            let files = key_files(&layout)?;
            let keys: Vec<PublicKeys> = files.iter().map(public_keys).collect::<Result<_>>()?;
            emit(global, &keys, || {
                keys.iter().map(|k| format!("{:<8} {}\n", k.entity, k.key)).collect()
            })?;
        }
        Action::Show { entity } => {
            let path = layout.key_file(entity);
            let bytes = std::fs::read(&path)
                .with_context(|| format!("no key file of {entity} at {}", path.display()))?;
            let file: KeyFile = serde_json::from_slice(&bytes)
                .with_context(|| format!("{} is not a key file", path.display()))?;
            if file.entity != entity {
                bail!("{} holds the keys of {}, not of {entity}", path.display(), file.entity);
            }
            let keys = public_keys(&file)?;
            emit(global, &keys, || render(&keys))?;
        }
        Action::New { role } => {
            let role = Role::from(role);
            // The next index of the role: the one the chain gives the next admitted entity of
            // that role, as long as nobody else is admitted first.
            let taken = key_files(&layout)?.iter().filter(|f| f.entity.role == role).count();
            let entity = EntityId { role, index: u32::try_from(taken).context("too many keys")? };
            let path = layout.key_file(entity);
            if path.exists() {
                bail!("{} exists: the keys of {entity} are already made", path.display());
            }
            let mut rng = rand_core::OsRng;
            let signing = SigningKey::random(&mut rng);
            let share = (role == Role::Cn).then(|| SecretKey::random(&mut rng));
            let file = KeyFile {
                entity,
                sr25519_seed: hex::encode(signing.seed()),
                elgamal_secret: share.map(|s| hex::encode(s.scalar().as_bytes())),
            };
            write_key_file(&path, &file).with_context(|| format!("writing {}", path.display()))?;
            eprintln!("wrote the keys of {entity} to {} (mode 0600)", path.display());
            let mut keys = public_keys(&file)?;
            keys.propose = Some(propose_command(role, &keys));
            emit(global, &keys, || render(&keys))?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use lemal_contracts::elgamal::{PossessionProof, PublicKey};

    #[test]
    fn a_computing_nodes_public_keys_prove_possession_for_its_index() {
        let mut rng = rand_core::OsRng;
        let share = SecretKey::random(&mut rng);
        let file = KeyFile {
            entity: EntityId::cn(7),
            sr25519_seed: hex::encode([4u8; 32]),
            elgamal_secret: Some(hex::encode(share.scalar().as_bytes())),
        };
        let keys = public_keys(&file).expect("keys");
        assert_eq!(
            keys.key,
            hex::encode(SigningKey::from_seed([4; 32]).verifying_key().to_bytes())
        );
        let mut share_bytes = [0u8; 32];
        hex::decode_to_slice(keys.share.as_deref().expect("a share"), &mut share_bytes)
            .expect("hex");
        let mut pop_bytes = [0u8; 64];
        hex::decode_to_slice(keys.share_pop.as_deref().expect("a proof"), &mut pop_bytes)
            .expect("hex");
        let public = PublicKey::from_bytes(&share_bytes).expect("share");
        let pop = PossessionProof::from_bytes(&pop_bytes).expect("pop");
        assert!(pop.verify(&cn_pop_context(EntityId::cn(7)), &public).is_ok());
        assert!(pop.verify(&cn_pop_context(EntityId::cn(8)), &public).is_err());
        let cmd = propose_command(Role::Cn, &keys);
        assert!(cmd.starts_with("lemal roster propose add-cn --key "), "{cmd}");
        assert!(cmd.contains(keys.share_pop.as_deref().expect("a proof")));
    }

    #[test]
    fn a_data_providers_keys_have_no_share() {
        let file = KeyFile {
            entity: EntityId::dp(2),
            sr25519_seed: hex::encode([9u8; 32]),
            elgamal_secret: None,
        };
        let keys = public_keys(&file).expect("keys");
        assert!(keys.share.is_none() && keys.share_pop.is_none());
        assert!(render(&keys).starts_with("dp-2\n  key        "));
    }
}
