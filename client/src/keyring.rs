//! The keys of every entity of a network, and the genesis roster built from them.
//!
//! A localnet generates one keyring and writes each entity's [`KeyFile`] ([`write_key_file`],
//! readable by its owner only); the client reads them back to act as data providers and
//! computing nodes.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use lemal_contracts::elgamal::SecretKey;
use lemal_contracts::ids::{EntityId, Role};
use lemal_contracts::sig::{KeyFile, SigningKey};
use lemal_contracts::state::{
    cn_pop_context, CnEntry, DpEntry, GenesisState, Params, Roster, VnEntry,
};
use rand_core::{CryptoRng, RngCore};

/// A computing node's keys.
#[derive(Clone, Debug)]
pub struct CnKeys {
    /// Signing key.
    pub signing: SigningKey,
    /// ElGamal key share.
    pub share: SecretKey,
}

/// Every entity's keys.
#[derive(Clone, Debug)]
pub struct Keyring {
    /// Verifying nodes' sr25519 keys.
    pub vns: Vec<SigningKey>,
    /// Computing nodes' keys.
    pub cns: Vec<CnKeys>,
    /// Data providers' sr25519 keys.
    pub dps: Vec<SigningKey>,
}

impl Keyring {
    /// Fresh keys for `vns` verifying nodes, `cns` computing nodes and `dps` data providers.
    pub fn generate<R: RngCore + CryptoRng>(
        vns: usize,
        cns: usize,
        dps: usize,
        rng: &mut R,
    ) -> Self {
        Keyring {
            vns: (0..vns).map(|_| SigningKey::random(rng)).collect(),
            cns: (0..cns)
                .map(|_| CnKeys { signing: SigningKey::random(rng), share: SecretKey::random(rng) })
                .collect(),
            dps: (0..dps).map(|_| SigningKey::random(rng)).collect(),
        }
    }

    /// The genesis `app_state` for these keys; `validator_addresses[i]` is the CometBFT address
    /// of verifying node `i`.
    pub fn genesis<R: RngCore + CryptoRng>(
        &self,
        params: Params,
        validator_addresses: &[[u8; 20]],
        rng: &mut R,
    ) -> GenesisState {
        let roster = Roster {
            vns: self
                .vns
                .iter()
                .zip(validator_addresses)
                .map(|(k, a)| VnEntry { validator_address: *a, key: k.verifying_key() })
                .collect(),
            cns: self
                .cns
                .iter()
                .enumerate()
                .map(|(i, k)| CnEntry {
                    key: k.signing.verifying_key(),
                    share: k.share.public(),
                    share_pop: k
                        .share
                        .prove_possession(&cn_pop_context(EntityId::cn(i as u32)), rng),
                })
                .collect(),
            dps: self.dps.iter().map(|k| DpEntry { key: k.verifying_key() }).collect(),
        };
        GenesisState::from_typed(&params, &roster)
    }

    /// The signing key of an entity.
    pub fn signing_key(&self, id: EntityId) -> Option<&SigningKey> {
        let i = id.index as usize;
        match id.role {
            Role::Vn => self.vns.get(i),
            Role::Cn => self.cns.get(i).map(|c| &c.signing),
            Role::Dp => self.dps.get(i),
        }
    }

    /// Every entity's key file.
    pub fn key_files(&self) -> Vec<KeyFile> {
        let file = |entity, key: &SigningKey, share: Option<&SecretKey>| KeyFile {
            entity,
            sr25519_seed: hex::encode(key.seed()),
            elgamal_secret: share.map(|s| hex::encode(s.scalar().as_bytes())),
        };
        let vns = self.vns.iter().enumerate().map(|(i, k)| file(EntityId::vn(i as u32), k, None));
        let cns = self
            .cns
            .iter()
            .enumerate()
            .map(|(i, k)| file(EntityId::cn(i as u32), &k.signing, Some(&k.share)));
        let dps = self.dps.iter().enumerate().map(|(i, k)| file(EntityId::dp(i as u32), k, None));
        vns.chain(cns).chain(dps).collect()
    }

    /// Rebuild a keyring from key files (any order; every index of each role must be present).
    pub fn from_key_files(files: &[KeyFile]) -> Result<Self, String> {
        let mut ring = Keyring { vns: Vec::new(), cns: Vec::new(), dps: Vec::new() };
        for role in [Role::Vn, Role::Cn, Role::Dp] {
            let mut of_role: Vec<&KeyFile> =
                files.iter().filter(|f| f.entity.role == role).collect();
            of_role.sort_by_key(|f| f.entity.index);
            for (i, f) in of_role.into_iter().enumerate() {
                if f.entity.index as usize != i {
                    return Err(format!("key file of {}-{i} is missing", role.as_str()));
                }
                let signing = f.signing_key().map_err(|e| format!("{}: {e}", f.entity))?;
                match role {
                    Role::Vn => ring.vns.push(signing),
                    Role::Dp => ring.dps.push(signing),
                    Role::Cn => {
                        let share = f
                            .elgamal_secret()
                            .map_err(|e| format!("{}: {e}", f.entity))?
                            .ok_or_else(|| format!("{} has no ElGamal share", f.entity))?;
                        ring.cns.push(CnKeys { signing, share });
                    }
                }
            }
        }
        Ok(ring)
    }
}

/// The mode of key files: read and write for their owner only.
pub const KEY_FILE_MODE: u32 = 0o600;

/// Write `file` as JSON to `path` with mode [`KEY_FILE_MODE`] from its creation on (an existing
/// file is truncated and its mode tightened first), so no other user can ever read the secret.
pub fn write_key_file(path: &Path, file: &KeyFile) -> std::io::Result<()> {
    let text = serde_json::to_string_pretty(file).map_err(std::io::Error::other)? + "\n";
    let mut out = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(KEY_FILE_MODE)
        .open(path)?;
    out.set_permissions(std::fs::Permissions::from_mode(KEY_FILE_MODE))?;
    out.set_len(0)?;
    out.write_all(text.as_bytes())?;
    out.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    /// A fresh folder under the system's temporary folder, removed on drop.
    struct TempDir(std::path::PathBuf);
    impl TempDir {
        fn new() -> Self {
            let dir = std::env::temp_dir().join(format!(
                "lemal-keyring-{}-{}",
                std::process::id(),
                rand_core::OsRng.next_u64()
            ));
            std::fs::create_dir_all(&dir).expect("temp dir");
            TempDir(dir)
        }
        fn path(&self) -> &Path {
            &self.0
        }
    }
    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).expect("metadata").permissions().mode() & 0o777
    }

    #[test]
    fn key_files_are_written_readable_by_their_owner_only() {
        let dir = TempDir::new();
        let ring = Keyring::generate(1, 1, 1, &mut ChaCha20Rng::seed_from_u64(1));
        let files = ring.key_files();
        let path = dir.path().join("cn-0.json");
        write_key_file(&path, &files[1]).expect("write");
        assert_eq!(mode(&path), KEY_FILE_MODE);
        let back: KeyFile =
            serde_json::from_slice(&std::fs::read(&path).expect("read")).expect("json");
        assert_eq!(back.entity, files[1].entity);
        // An existing, world-readable file is tightened before the secret goes in.
        let old = dir.path().join("old.json");
        std::fs::write(&old, "x".repeat(5000)).expect("write");
        std::fs::set_permissions(&old, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        write_key_file(&old, &files[0]).expect("write");
        assert_eq!(mode(&old), KEY_FILE_MODE);
        assert!(serde_json::from_slice::<KeyFile>(&std::fs::read(&old).expect("read")).is_ok());
    }
}
