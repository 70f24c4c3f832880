//! Verifiable random sampling of the proofs a verifying node checks.
//!
//! For each query a VN evaluates an sr25519 VRF over (label, chain id, query id, VN id). Only
//! the VN can compute the output before it publishes it, so provers cannot predict who will
//! check their proof; the VN can compute it from registration on and verify proofs as they
//! arrive. Proof key `k` is selected iff the first 8 bytes (little-endian) of
//! `SHA-256(label ‖ output ‖ borsh(k))` are below `p · 2^64`, with `p` the query's threshold in
//! parts per million. Integer arithmetic only.
//!
//! The VN publishes the VRF output and proof in its bitmap commit, so anyone can recompute its
//! selection and check that it verified what it was assigned.

use borsh::{BorshDeserialize, BorshSerialize};
use merlin::Transcript;
use rand_core::{CryptoRng, RngCore};
use schnorrkel::context::attach_rng;
use schnorrkel::vrf::{VRFPreOut, VRFProof};
use sha2::{Digest, Sha256};

use crate::error::DecodeError;
use crate::group::to_borsh;
use crate::ids::{EntityId, ProofKey, QueryId};
use crate::sig::{SigningKey, VerifyingKey};

/// Domain label of the VRF input and of the selection hash.
pub const SAMPLING_LABEL: &[u8] = b"lemal/v1/sampling";
const OUTPUT_CONTEXT: &[u8] = b"lemal/v1/sampling/output";

/// One million parts per million: verify everything.
pub const PPM_ALL: u32 = 1_000_000;

/// A VRF evaluation as carried in a bitmap commit: pre-output and proof.
#[derive(Clone, Copy, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct VrfProof {
    /// The VRF pre-output (a Ristretto point).
    pub preout: [u8; 32],
    /// The DLEQ proof (challenge and response scalars).
    pub proof: [u8; 64],
}

impl std::fmt::Debug for VrfProof {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "VrfProof({})", hex::encode(self.preout))
    }
}

/// The verified 32-byte VRF output that drives selection.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct VrfOutput(pub [u8; 32]);

/// Why a VRF proof was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum VrfError {
    /// The pre-output or proof bytes are malformed.
    #[error("malformed VRF proof")]
    Malformed,
    /// The proof does not verify for this key and input.
    #[error("VRF proof does not verify")]
    Invalid,
}

fn vrf_input(chain_id: &str, query: &QueryId, vn: EntityId) -> Transcript {
    let mut t = Transcript::new(SAMPLING_LABEL);
    t.append_message(b"chain-id", chain_id.as_bytes());
    t.append_message(b"query-id", &query.0);
    t.append_message(b"vn", &vn.to_bytes());
    t
}

/// Evaluate the VRF for (chain, query, VN) with the VN's key; nonce randomness from `rng`.
pub fn evaluate<R: RngCore + CryptoRng>(
    key: &SigningKey,
    chain_id: &str,
    query: &QueryId,
    vn: EntityId,
    rng: R,
) -> (VrfOutput, VrfProof) {
    let (inout, proof, _) = key
        .keypair()
        .vrf_sign_extra(vrf_input(chain_id, query, vn), attach_rng(Transcript::new(b"VRF"), rng));
    let output = VrfOutput(inout.make_bytes::<[u8; 32]>(OUTPUT_CONTEXT));
    (output, VrfProof { preout: inout.to_preout().to_bytes(), proof: proof.to_bytes() })
}

/// Verify a VN's VRF proof and return its output.
pub fn verify(
    key: &VerifyingKey,
    chain_id: &str,
    query: &QueryId,
    vn: EntityId,
    proof: &VrfProof,
) -> Result<VrfOutput, VrfError> {
    let preout = VRFPreOut::from_bytes(&proof.preout).map_err(|_| VrfError::Malformed)?;
    let dleq = VRFProof::from_bytes(&proof.proof).map_err(|_| VrfError::Malformed)?;
    let (inout, _) = key
        .inner()
        .vrf_verify(vrf_input(chain_id, query, vn), &preout, &dleq)
        .map_err(|_| VrfError::Invalid)?;
    Ok(VrfOutput(inout.make_bytes::<[u8; 32]>(OUTPUT_CONTEXT)))
}

/// Whether the proof with `key` is selected for a VN with VRF `output` at `threshold_ppm`.
pub fn is_selected(output: &VrfOutput, key: &ProofKey, threshold_ppm: u32) -> bool {
    let mut h = Sha256::new();
    h.update(SAMPLING_LABEL);
    h.update(output.0);
    h.update(to_borsh(key));
    let digest = h.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    let draw = u128::from(u64::from_le_bytes(first));
    // draw < p · 2^64 with p = ppm / 10^6, in integers: draw · 10^6 < ppm · 2^64.
    draw * u128::from(PPM_ALL) < u128::from(threshold_ppm) << 64
}

/// Check a threshold is a valid probability in parts per million (0 < p ≤ 10^6).
pub fn check_threshold(ppm: u32) -> Result<(), DecodeError> {
    if ppm == 0 || ppm > PPM_ALL {
        return Err(DecodeError::Invalid { what: "threshold", why: "must be in 1..=1000000 ppm" });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::ProofKind;
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    fn key(i: u32) -> ProofKey {
        ProofKey {
            query: QueryId([9; 16]),
            kind: ProofKind::Range,
            creator: EntityId::dp(i),
            index: 0,
        }
    }

    #[test]
    fn vrf_verifies_only_for_its_key_and_input() {
        let mut rng = ChaCha20Rng::seed_from_u64(5);
        let sk = SigningKey::random(&mut rng);
        let q = QueryId([1; 16]);
        let (out, proof) = evaluate(&sk, "chain", &q, EntityId::vn(0), &mut rng);
        let vk = sk.verifying_key();
        assert_eq!(verify(&vk, "chain", &q, EntityId::vn(0), &proof), Ok(out));
        assert_eq!(verify(&vk, "chain2", &q, EntityId::vn(0), &proof), Err(VrfError::Invalid));
        assert_eq!(
            verify(&vk, "chain", &QueryId([2; 16]), EntityId::vn(0), &proof),
            Err(VrfError::Invalid)
        );
        assert_eq!(verify(&vk, "chain", &q, EntityId::vn(1), &proof), Err(VrfError::Invalid));
        let other = SigningKey::random(&mut rng).verifying_key();
        assert_eq!(verify(&other, "chain", &q, EntityId::vn(0), &proof), Err(VrfError::Invalid));
        // The output does not depend on the nonce randomness.
        let (out2, _) = evaluate(&sk, "chain", &q, EntityId::vn(0), &mut rng);
        assert_eq!(out, out2);
    }

    #[test]
    fn selection_rate_follows_threshold() {
        let out = VrfOutput([42; 32]);
        assert!((0..500).all(|i| is_selected(&out, &key(i), PPM_ALL)));
        let picked = (0..4000).filter(|&i| is_selected(&out, &key(i), 400_000)).count();
        // Binomial(4000, 0.4): mean 1600, standard deviation about 31.
        assert!((1450..1750).contains(&picked), "{picked}");
        assert!(!(0..500).any(|i| is_selected(&out, &key(i), 0)));
    }

    #[test]
    fn thresholds_are_checked() {
        assert!(check_threshold(0).is_err());
        assert!(check_threshold(1_000_001).is_err());
        assert!(check_threshold(1).is_ok() && check_threshold(PPM_ALL).is_ok());
    }
}
