//! The keys of every entity of a network, and the genesis roster built from them.
//!
//! A localnet generates one keyring and writes each entity's [`KeyFile`]; the client reads them
//! back to act as data providers and computing nodes.

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
