//! sr25519 signatures (schnorrkel) with one signing context per message kind.
//!
//! A transaction signature covers the borsh bytes of (chain id, signer, body) under the context
//! of the body's kind, so a signature can neither move to another chain, another signer, nor be
//! reinterpreted as another kind of message.

use borsh::{BorshDeserialize, BorshSerialize};
use rand_core::{CryptoRng, RngCore};
use schnorrkel::context::attach_rng;
use schnorrkel::{ExpansionMode, Keypair, MiniSecretKey};

use crate::error::DecodeError;

/// The kinds of signed messages, each with its own signing context.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MessageKind {
    /// A `RegisterQuery` transaction.
    RegisterQuery,
    /// A `SubmitProof` transaction.
    SubmitProof,
    /// A `CommitBitmap` transaction.
    CommitBitmap,
    /// A `Challenge` transaction.
    Challenge,
    /// A `ProposeRosterChange` transaction.
    ProposeRosterChange,
    /// An `ApproveRosterChange` transaction.
    ApproveRosterChange,
}

impl MessageKind {
    /// The signing context label.
    pub fn context(self) -> &'static [u8] {
        match self {
            MessageKind::RegisterQuery => b"lemal/v1/tx/register-query",
            MessageKind::SubmitProof => b"lemal/v1/tx/submit-proof",
            MessageKind::CommitBitmap => b"lemal/v1/tx/commit-bitmap",
            MessageKind::Challenge => b"lemal/v1/tx/challenge",
            MessageKind::ProposeRosterChange => b"lemal/v1/tx/propose-roster-change",
            MessageKind::ApproveRosterChange => b"lemal/v1/tx/approve-roster-change",
        }
    }
}

/// An sr25519 signing key (with its public key), derived from a 32-byte seed.
#[derive(Clone)]
pub struct SigningKey {
    seed: [u8; 32],
    keypair: Keypair,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SigningKey({:?})", self.verifying_key())
    }
}

impl SigningKey {
    /// The key of a 32-byte seed (schnorrkel mini secret key, uniform expansion).
    pub fn from_seed(seed: [u8; 32]) -> Self {
        let mini = MiniSecretKey::from_bytes(&seed).expect("32 bytes are a valid mini secret key");
        Self { seed, keypair: mini.expand_to_keypair(ExpansionMode::Uniform) }
    }

    /// A fresh random key.
    pub fn random<R: RngCore + CryptoRng>(rng: &mut R) -> Self {
        let mut seed = [0u8; 32];
        rng.fill_bytes(&mut seed);
        Self::from_seed(seed)
    }

    /// The seed, for key files.
    pub fn seed(&self) -> &[u8; 32] {
        &self.seed
    }

    /// The public verifying key.
    pub fn verifying_key(&self) -> VerifyingKey {
        VerifyingKey(self.keypair.public)
    }

    /// The schnorrkel key pair (for the VRF).
    pub(crate) fn keypair(&self) -> &Keypair {
        &self.keypair
    }

    /// Sign `msg` under the context of `kind`, with nonce randomness mixed from `rng`.
    pub fn sign_with_rng<R: RngCore + CryptoRng>(
        &self,
        kind: MessageKind,
        msg: &[u8],
        rng: R,
    ) -> Signature {
        let t = schnorrkel::signing_context(kind.context()).bytes(msg);
        Signature(self.keypair.sign(attach_rng(t, rng)).to_bytes())
    }

    /// Sign `msg` under the context of `kind` with the operating system's randomness.
    pub fn sign(&self, kind: MessageKind, msg: &[u8]) -> Signature {
        self.sign_with_rng(kind, msg, rand_core::OsRng)
    }
}

/// An sr25519 public key; decoding checks it is a valid Ristretto point.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct VerifyingKey(schnorrkel::PublicKey);

impl VerifyingKey {
    /// Strict decoding of 32 bytes.
    pub fn from_bytes(bytes: &[u8; 32]) -> Result<Self, DecodeError> {
        let key =
            schnorrkel::PublicKey::from_bytes(bytes).map_err(|_| DecodeError::InvalidPoint)?;
        if key.as_compressed().as_bytes() != bytes {
            return Err(DecodeError::InvalidPoint);
        }
        Ok(Self(key))
    }

    /// The 32-byte encoding.
    pub fn to_bytes(&self) -> [u8; 32] {
        self.0.to_bytes()
    }

    /// Check `sig` on `msg` under the context of `kind`.
    pub fn verify(&self, kind: MessageKind, msg: &[u8], sig: &Signature) -> Result<(), SigError> {
        let sig = schnorrkel::Signature::from_bytes(&sig.0).map_err(|_| SigError::Malformed)?;
        self.0
            .verify(schnorrkel::signing_context(kind.context()).bytes(msg), &sig)
            .map_err(|_| SigError::Invalid)
    }

    pub(crate) fn inner(&self) -> &schnorrkel::PublicKey {
        &self.0
    }
}

impl std::fmt::Debug for VerifyingKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "VerifyingKey({})", hex::encode(self.to_bytes()))
    }
}

impl BorshSerialize for VerifyingKey {
    fn serialize<W: std::io::Write>(&self, w: &mut W) -> std::io::Result<()> {
        w.write_all(&self.to_bytes())
    }
}

impl BorshDeserialize for VerifyingKey {
    fn deserialize_reader<R: std::io::Read>(reader: &mut R) -> std::io::Result<Self> {
        let mut bytes = [0u8; 32];
        reader.read_exact(&mut bytes)?;
        Ok(Self::from_bytes(&bytes)?)
    }
}

/// Verify many signatures at once: `Ok` only if every signature verifies; on `Err`, check them
/// one by one to find the bad ones.
///
/// One multiscalar multiplication checks `Σ z_i·(s_i·B − R_i − c_i·A_i) = 0` with 128-bit
/// weights `z_i`. The weights are deterministic (every node gets the same answer) and derived
/// from a transcript of **every** item in full — key, signing context, message and the whole
/// 64-byte signature, `R` and `s` — so a signer cannot pick `s` values after learning the
/// weights. (schnorrkel's own deterministic batch derives them from keys, `R` and messages only:
/// a signer could then shift `s_1` by `z_2·δ` and `s_2` by `−z_1·δ` so that each signature
/// fails alone while the pair passes.)
pub fn verify_batch(
    items: &[(&VerifyingKey, MessageKind, &[u8], &Signature)],
) -> Result<(), SigError> {
    let mut sigs = Vec::with_capacity(items.len());
    for (_, _, _, sig) in items {
        sigs.push(schnorrkel::Signature::from_bytes(&sig.0).map_err(|_| SigError::Malformed)?);
    }
    let mut weights = merlin::Transcript::new(b"lemal/v1/sig-batch-weights");
    weights.append_u64(b"n", items.len() as u64);
    for (key, kind, msg, sig) in items {
        weights.append_message(b"key", &key.to_bytes());
        weights.append_message(b"context", kind.context());
        weights.append_message(b"msg", msg);
        weights.append_message(b"sig", &sig.0);
    }
    let keys: Vec<schnorrkel::PublicKey> = items.iter().map(|(k, ..)| k.0).collect();
    let transcripts = items
        .iter()
        .map(|(_, kind, msg, _)| schnorrkel::signing_context(kind.context()).bytes(msg));
    schnorrkel::verify_batch_rng(transcripts, &sigs, &keys, false, TranscriptRng(weights))
        .map_err(|_| SigError::Invalid)
}

/// A deterministic "RNG" that reads challenge bytes from a transcript of the whole batch; it
/// keys schnorrkel's weight generator, which then depends on every byte of every item.
struct TranscriptRng(merlin::Transcript);

impl rand_core::RngCore for TranscriptRng {
    fn next_u32(&mut self) -> u32 {
        rand_core::impls::next_u32_via_fill(self)
    }

    fn next_u64(&mut self) -> u64 {
        rand_core::impls::next_u64_via_fill(self)
    }

    fn fill_bytes(&mut self, dest: &mut [u8]) {
        self.0.challenge_bytes(b"weights", dest);
    }

    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
        self.fill_bytes(dest);
        Ok(())
    }
}

impl rand_core::CryptoRng for TranscriptRng {}

/// A 64-byte sr25519 signature (its internal canonicity is checked at verification).
#[derive(Clone, Copy, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct Signature(pub [u8; 64]);

impl std::fmt::Debug for Signature {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Signature({})", hex::encode(self.0))
    }
}

/// Why a signature was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SigError {
    /// The bytes are not a well-formed sr25519 signature.
    #[error("malformed signature")]
    Malformed,
    /// The signature does not verify under the claimed key.
    #[error("signature does not verify")]
    Invalid,
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    #[test]
    fn signature_binds_key_message_and_kind() {
        let mut rng = ChaCha20Rng::seed_from_u64(1);
        let key = SigningKey::random(&mut rng);
        let vk = key.verifying_key();
        let sig = key.sign_with_rng(MessageKind::SubmitProof, b"hello", &mut rng);
        assert_eq!(vk.verify(MessageKind::SubmitProof, b"hello", &sig), Ok(()));
        assert_eq!(vk.verify(MessageKind::CommitBitmap, b"hello", &sig), Err(SigError::Invalid));
        assert_eq!(vk.verify(MessageKind::SubmitProof, b"hellO", &sig), Err(SigError::Invalid));
        let other = SigningKey::random(&mut rng).verifying_key();
        assert_eq!(other.verify(MessageKind::SubmitProof, b"hello", &sig), Err(SigError::Invalid));
        let mut bad = sig;
        bad.0[63] &= 0x7f; // clears schnorrkel's marker bit
        assert_eq!(vk.verify(MessageKind::SubmitProof, b"hello", &bad), Err(SigError::Malformed));
    }

    #[test]
    fn batch_verification_accepts_only_all_valid() {
        let mut rng = ChaCha20Rng::seed_from_u64(3);
        let keys: Vec<SigningKey> = (0..5).map(|_| SigningKey::random(&mut rng)).collect();
        let vks: Vec<VerifyingKey> = keys.iter().map(SigningKey::verifying_key).collect();
        let msgs: Vec<Vec<u8>> = (0..5u8).map(|i| vec![i; 10]).collect();
        let sigs: Vec<Signature> = keys
            .iter()
            .zip(&msgs)
            .map(|(k, m)| k.sign_with_rng(MessageKind::SubmitProof, m, &mut rng))
            .collect();
        fn items<'a>(
            vks: &'a [VerifyingKey],
            msgs: &'a [Vec<u8>],
            sigs: &'a [Signature],
        ) -> Vec<(&'a VerifyingKey, MessageKind, &'a [u8], &'a Signature)> {
            (0..5)
                .map(|i| (&vks[i], MessageKind::SubmitProof, msgs[i].as_slice(), &sigs[i]))
                .collect()
        }
        assert_eq!(verify_batch(&items(&vks, &msgs, &sigs)), Ok(()));
        assert_eq!(verify_batch(&[]), Ok(()));
        let mut swapped = sigs.clone();
        swapped.swap(0, 1);
        assert_eq!(verify_batch(&items(&vks, &msgs, &swapped)), Err(SigError::Invalid));
        let mut other_kind = items(&vks, &msgs, &sigs);
        other_kind[4].1 = MessageKind::CommitBitmap;
        assert_eq!(verify_batch(&other_kind), Err(SigError::Invalid));
        let mut malformed = sigs.clone();
        malformed[2].0[63] &= 0x7f;
        assert_eq!(verify_batch(&items(&vks, &msgs, &malformed)), Err(SigError::Malformed));
    }

    /// The weights schnorrkel's `verify_batch_deterministic` uses: a function of keys, `R`
    /// values and messages only (a copy of its `prepare_batch` with its all-zero "RNG").
    fn weights_without_s(
        items: &[(&VerifyingKey, MessageKind, &[u8], &Signature)],
    ) -> Vec<curve25519_dalek::scalar::Scalar> {
        use schnorrkel::context::SigningTranscript;
        struct Zeros;
        impl rand_core::RngCore for Zeros {
            fn next_u32(&mut self) -> u32 {
                0
            }
            fn next_u64(&mut self) -> u64 {
                0
            }
            fn fill_bytes(&mut self, dest: &mut [u8]) {
                dest.fill(0);
            }
            fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
                dest.fill(0);
                Ok(())
            }
        }
        impl rand_core::CryptoRng for Zeros {}
        let mut t = merlin::Transcript::new(b"V-RNG");
        for (key, ..) in items {
            t.append_message(b"", &key.to_bytes());
        }
        for (.., sig) in items {
            t.append_message(b"", &sig.0[..32]);
        }
        for (_, kind, msg, _) in items {
            let mut d = [0u8; 16];
            schnorrkel::signing_context(kind.context()).bytes(msg).witness_bytes_rng(
                b"",
                &mut d,
                &[&[]],
                Zeros,
            );
            t.append_message(b"", &d);
        }
        let mut rng = t.build_rng().finalize(&mut Zeros);
        items
            .iter()
            .map(|_| {
                let mut r = [0u8; 16];
                rand_core::RngCore::fill_bytes(&mut rng, &mut r);
                curve25519_dalek::scalar::Scalar::from(u128::from_le_bytes(r))
            })
            .collect()
    }

    fn shift_s(sig: &Signature, by: curve25519_dalek::scalar::Scalar) -> Signature {
        let mut s = [0u8; 32];
        s.copy_from_slice(&sig.0[32..]);
        s[31] &= 0x7f;
        let s =
            curve25519_dalek::scalar::Scalar::from_canonical_bytes(s).expect("canonical s") + by;
        let mut out = sig.0;
        out[32..].copy_from_slice(&s.to_bytes());
        out[63] |= 0x80;
        Signature(out)
    }

    #[test]
    fn batch_rejects_a_pair_that_fails_one_by_one_but_cancels_under_weights_without_s() {
        let mut rng = ChaCha20Rng::seed_from_u64(8);
        let key = SigningKey::random(&mut rng);
        let vk = key.verifying_key();
        let kind = MessageKind::SubmitProof;
        let (m1, m2): (&[u8], &[u8]) = (b"first proof", b"second proof");
        let good1 = key.sign_with_rng(kind, m1, &mut rng);
        let good2 = key.sign_with_rng(kind, m2, &mut rng);
        // Weights that ignore `s` are known before `s` is chosen: shift s1 by z2 and s2 by −z1.
        let z = weights_without_s(&[(&vk, kind, m1, &good1), (&vk, kind, m2, &good2)]);
        let bad1 = shift_s(&good1, z[1]);
        let bad2 = shift_s(&good2, -z[0]);
        assert_eq!(vk.verify(kind, m1, &bad1), Err(SigError::Invalid));
        assert_eq!(vk.verify(kind, m2, &bad2), Err(SigError::Invalid));
        let pair = [(&vk, kind, m1, &bad1), (&vk, kind, m2, &bad2)];
        // The attack works against weights without `s` (schnorrkel's deterministic batch) ...
        let sigs: Vec<schnorrkel::Signature> = [bad1, bad2]
            .iter()
            .map(|s| schnorrkel::Signature::from_bytes(&s.0).expect("well-formed"))
            .collect();
        let transcripts = [m1, m2].map(|m| schnorrkel::signing_context(kind.context()).bytes(m));
        assert!(
            schnorrkel::verify_batch_deterministic(transcripts, &sigs, &[vk.0, vk.0], false)
                .is_ok(),
            "the forged pair cancels under weights that ignore s"
        );
        // ... and not against ours, which hash every byte of every signature.
        assert_eq!(verify_batch(&pair), Err(SigError::Invalid));
        assert_eq!(verify_batch(&[(&vk, kind, m1, &good1), (&vk, kind, m2, &good2)]), Ok(()));
    }

    #[test]
    fn seed_determines_key() {
        let a = SigningKey::from_seed([3; 32]);
        let b = SigningKey::from_seed([3; 32]);
        assert_eq!(a.verifying_key(), b.verifying_key());
        assert_eq!(VerifyingKey::from_bytes(&a.verifying_key().to_bytes()), Ok(a.verifying_key()));
        assert_eq!(VerifyingKey::from_bytes(&[0xff; 32]), Err(DecodeError::InvalidPoint));
    }
}

/// An entity's key file as written by the localnet and read by `lemal-vn` and `lemal`:
/// `{"entity": "vn-0", "sr25519_seed": "<64 hex>", "elgamal_secret": "<64 hex>"}` (the ElGamal
/// secret only for computing nodes).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyFile {
    /// Who the keys belong to.
    pub entity: crate::ids::EntityId,
    /// The sr25519 seed, 64 hex digits.
    pub sr25519_seed: String,
    /// A computing node's ElGamal key share, 64 hex digits (a canonical scalar).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub elgamal_secret: Option<String>,
}

impl KeyFile {
    /// The signing key.
    pub fn signing_key(&self) -> Result<SigningKey, DecodeError> {
        let mut seed = [0u8; 32];
        hex::decode_to_slice(&self.sr25519_seed, &mut seed).map_err(|_| DecodeError::Invalid {
            what: "sr25519 seed",
            why: "expected 64 hex digits",
        })?;
        Ok(SigningKey::from_seed(seed))
    }

    /// The ElGamal secret, for computing nodes.
    pub fn elgamal_secret(&self) -> Result<Option<crate::elgamal::SecretKey>, DecodeError> {
        let Some(hexed) = &self.elgamal_secret else { return Ok(None) };
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(hexed, &mut bytes).map_err(|_| DecodeError::Invalid {
            what: "elgamal secret",
            why: "expected 64 hex digits",
        })?;
        let scalar = crate::group::decode_scalar(&bytes)?;
        Ok(Some(crate::elgamal::SecretKey::from_scalar(scalar)))
    }
}
