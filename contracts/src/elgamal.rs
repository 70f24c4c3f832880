//! EC-ElGamal on Ristretto255 under the computing nodes' collective key.
//!
//! `Enc(x; r) = (r·B, x·B + r·K)`. Ciphertexts add homomorphically; re-randomisation adds an
//! encryption of zero; a trivial encryption `(0, x·B)` carries a public value. Decryption
//! recovers `x·B` and then the bounded signed integer `x` by baby-step giant-step
//! ([`DecryptionTable`]).
//!
//! Every public key that enters the collective key comes with a Schnorr proof of possession
//! ([`PossessionProof`]), which stops rogue-key attacks on `K = Σ K_i`.

use std::ops::{Add, Neg, Sub};

use borsh::{BorshDeserialize, BorshSerialize};
use curve25519_dalek::ristretto::RistrettoPoint;
use curve25519_dalek::scalar::Scalar;
use curve25519_dalek::traits::Identity;
use merlin::Transcript;
use rand_core::{CryptoRng, RngCore};

use crate::error::DecodeError;
use crate::group::{scalar_from_i64, Point, Reader, Writer, B};
use crate::transcript::TranscriptProtocol;

/// An ElGamal ciphertext `(C1, C2)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ciphertext {
    /// `r·B`.
    pub c1: RistrettoPoint,
    /// `x·B + r·K`.
    pub c2: RistrettoPoint,
}

impl Ciphertext {
    /// Encoded size in bytes.
    pub const SIZE: usize = 64;

    /// The encryption of zero with randomness zero; the neutral element of addition.
    pub fn zero() -> Self {
        Self { c1: RistrettoPoint::identity(), c2: RistrettoPoint::identity() }
    }

    /// `Enc(x; r)` under `key`.
    pub fn encrypt(key: &RistrettoPoint, x: &Scalar, r: &Scalar) -> Self {
        Self { c1: B * r, c2: B * x + key * r }
    }

    /// Encrypt a signed integer with fresh randomness; returns the ciphertext and `r`.
    pub fn encrypt_i64<R: RngCore + CryptoRng>(
        key: &RistrettoPoint,
        x: i64,
        rng: &mut R,
    ) -> (Self, Scalar) {
        let r = Scalar::random(rng);
        (Self::encrypt(key, &scalar_from_i64(x), &r), r)
    }

    /// The trivial encryption `(0, x·B)` of a public value.
    pub fn trivial(x: &Scalar) -> Self {
        Self { c1: RistrettoPoint::identity(), c2: B * x }
    }

    /// Add an encryption of zero with randomness `r`: `(C1 + r·B, C2 + r·K)`.
    pub fn rerandomize(&self, key: &RistrettoPoint, r: &Scalar) -> Self {
        Self { c1: self.c1 + B * r, c2: self.c2 + key * r }
    }

    /// The sum of ciphertexts (the encryption of the sum of plaintexts).
    pub fn sum<'a>(cts: impl IntoIterator<Item = &'a Ciphertext>) -> Self {
        cts.into_iter().fold(Self::zero(), |acc, ct| acc + *ct)
    }

    /// Canonical 64-byte encoding.
    pub fn to_bytes(&self) -> [u8; 64] {
        let mut out = [0u8; 64];
        out[..32].copy_from_slice(self.c1.compress().as_bytes());
        out[32..].copy_from_slice(self.c2.compress().as_bytes());
        out
    }

    /// Strict decoding of the 64-byte encoding.
    pub fn from_bytes(bytes: &[u8; 64]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes);
        let ct = Self { c1: r.point()?, c2: r.point()? };
        r.finish()?;
        Ok(ct)
    }
}

impl Add for Ciphertext {
    type Output = Ciphertext;
    fn add(self, o: Ciphertext) -> Ciphertext {
        Ciphertext { c1: self.c1 + o.c1, c2: self.c2 + o.c2 }
    }
}

impl Sub for Ciphertext {
    type Output = Ciphertext;
    fn sub(self, o: Ciphertext) -> Ciphertext {
        Ciphertext { c1: self.c1 - o.c1, c2: self.c2 - o.c2 }
    }
}

impl Neg for Ciphertext {
    type Output = Ciphertext;
    fn neg(self) -> Ciphertext {
        Ciphertext { c1: -self.c1, c2: -self.c2 }
    }
}

impl BorshSerialize for Ciphertext {
    fn serialize<W: std::io::Write>(&self, w: &mut W) -> std::io::Result<()> {
        w.write_all(&self.to_bytes())
    }
}

impl BorshDeserialize for Ciphertext {
    fn deserialize_reader<R: std::io::Read>(reader: &mut R) -> std::io::Result<Self> {
        let mut bytes = [0u8; 64];
        reader.read_exact(&mut bytes)?;
        Ok(Self::from_bytes(&bytes)?)
    }
}

/// A secret ElGamal key.
#[derive(Clone)]
pub struct SecretKey(Scalar);

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretKey(..)")
    }
}

impl SecretKey {
    /// A fresh random key.
    pub fn random<R: RngCore + CryptoRng>(rng: &mut R) -> Self {
        Self(Scalar::random(rng))
    }

    /// Wrap a scalar.
    pub fn from_scalar(s: Scalar) -> Self {
        Self(s)
    }

    /// The scalar.
    pub fn scalar(&self) -> &Scalar {
        &self.0
    }

    /// The matching public key `k·B`.
    pub fn public(&self) -> PublicKey {
        PublicKey(Point::new(B * self.0))
    }

    /// Decrypt to the plaintext point `x·B = C2 − k·C1`.
    pub fn decrypt_point(&self, ct: &Ciphertext) -> RistrettoPoint {
        ct.c2 - ct.c1 * self.0
    }

    /// This key holder's key-switch contribution for `ct` towards the querier key `u`:
    /// `(D1, D2) = (v·B, −k·C1 + v·U)`.
    pub fn key_switch_share(&self, ct: &Ciphertext, u: &RistrettoPoint, v: &Scalar) -> Ciphertext {
        Ciphertext { c1: B * v, c2: u * v - ct.c1 * self.0 }
    }

    /// Prove possession of this key, bound to `context` (chain id and entity, or query id).
    pub fn prove_possession<R: RngCore + CryptoRng>(
        &self,
        context: &[u8],
        rng: &mut R,
    ) -> PossessionProof {
        let public = self.public();
        let nonce = Scalar::random(rng);
        let commitment = B * nonce;
        let c = PossessionProof::challenge(context, public.point(), &commitment);
        PossessionProof { c, s: nonce + c * self.0 }
    }
}

/// A public ElGamal key `K = k·B`, never the identity.
#[derive(Clone, Copy, Debug, PartialEq, Eq, BorshSerialize)]
pub struct PublicKey(Point);

impl PublicKey {
    /// Decode a public key, refusing the identity.
    pub fn from_bytes(bytes: &[u8; 32]) -> Result<Self, DecodeError> {
        let p = Point::from_bytes(bytes)?;
        if p.is_identity() {
            return Err(DecodeError::IdentityPoint);
        }
        Ok(Self(p))
    }

    /// The group element.
    pub fn point(&self) -> &RistrettoPoint {
        self.0.point()
    }

    /// The canonical encoding.
    pub fn as_bytes(&self) -> &[u8; 32] {
        self.0.as_bytes()
    }
}

impl BorshDeserialize for PublicKey {
    fn deserialize_reader<R: std::io::Read>(reader: &mut R) -> std::io::Result<Self> {
        let mut bytes = [0u8; 32];
        reader.read_exact(&mut bytes)?;
        Ok(Self::from_bytes(&bytes)?)
    }
}

/// The collective key `K = Σ K_i` of the computing nodes.
pub fn collective_key<'a>(keys: impl IntoIterator<Item = &'a PublicKey>) -> RistrettoPoint {
    keys.into_iter().map(|k| *k.point()).sum()
}

/// A Schnorr proof of knowledge of the secret key of a [`PublicKey`], bound to a context.
///
/// The default (all zero) is a placeholder for a field signed later; it verifies for no key.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PossessionProof {
    c: Scalar,
    s: Scalar,
}

impl PossessionProof {
    fn challenge(context: &[u8], public: &RistrettoPoint, commitment: &RistrettoPoint) -> Scalar {
        let mut t = Transcript::new(b"lemal-possession");
        t.lemal_domain(b"possession", 1);
        t.append_message(b"context", context);
        t.append_point(b"K", public);
        t.append_point(b"R", commitment);
        t.challenge_scalar(b"c")
    }

    /// Check the proof for `public` under `context`.
    pub fn verify(&self, context: &[u8], public: &PublicKey) -> Result<(), crate::ProofError> {
        let commitment = B * self.s - public.point() * self.c;
        if Self::challenge(context, public.point(), &commitment) == self.c {
            Ok(())
        } else {
            Err(crate::ProofError::Equation("proof of possession"))
        }
    }

    /// Canonical 64-byte encoding `(c, s)`.
    pub fn to_bytes(&self) -> [u8; 64] {
        let mut w = Writer::with_capacity(64);
        w.scalar(&self.c).scalar(&self.s);
        let v = w.finish();
        let mut out = [0u8; 64];
        out.copy_from_slice(&v);
        out
    }

    /// Strict decoding.
    pub fn from_bytes(bytes: &[u8; 64]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes);
        let p = Self { c: r.scalar()?, s: r.scalar()? };
        r.finish()?;
        Ok(p)
    }
}

impl BorshSerialize for PossessionProof {
    fn serialize<W: std::io::Write>(&self, w: &mut W) -> std::io::Result<()> {
        w.write_all(&self.to_bytes())
    }
}

impl BorshDeserialize for PossessionProof {
    fn deserialize_reader<R: std::io::Read>(reader: &mut R) -> std::io::Result<Self> {
        let mut bytes = [0u8; 64];
        reader.read_exact(&mut bytes)?;
        Ok(Self::from_bytes(&bytes)?)
    }
}

/// Baby-step giant-step table to recover a bounded signed integer `x` from `x·B`.
///
/// Built once (about `2^baby_bits` point additions and compressions) and reused for every
/// decryption. Covers `|x| < 2^bound_bits`; a lookup takes at most `2^(bound_bits + 1 −
/// baby_bits)` giant steps.
pub struct DecryptionTable {
    /// Sorted (first 8 bytes of compress(j·B), j) for j in 0..2^baby_bits.
    baby: Vec<(u64, u32)>,
    baby_bits: u32,
    bound_bits: u32,
}

impl std::fmt::Debug for DecryptionTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DecryptionTable")
            .field("baby_bits", &self.baby_bits)
            .field("bound_bits", &self.bound_bits)
            .finish()
    }
}

fn prefix(p: &RistrettoPoint) -> u64 {
    let c = p.compress();
    let mut b = [0u8; 8];
    b.copy_from_slice(&c.as_bytes()[..8]);
    u64::from_le_bytes(b)
}

impl DecryptionTable {
    /// The default table: `|x| < 2^32` with `2^17` baby steps.
    pub fn new() -> Self {
        Self::with_bounds(32, 17)
    }

    /// A table for `|x| < 2^bound_bits` with `2^baby_bits` baby steps.
    ///
    /// # Panics
    /// If `bound_bits > 62` or `baby_bits` is not in `1..=bound_bits + 1`.
    pub fn with_bounds(bound_bits: u32, baby_bits: u32) -> Self {
        assert!(bound_bits <= 62 && baby_bits >= 1 && baby_bits <= bound_bits + 1);
        let n = 1u32 << baby_bits;
        let mut baby = Vec::with_capacity(n as usize);
        let mut acc = RistrettoPoint::identity();
        for j in 0..n {
            baby.push((prefix(&acc), j));
            acc += B;
        }
        baby.sort_unstable();
        Self { baby, baby_bits, bound_bits }
    }

    /// Recover `x` with `|x| < 2^bound_bits` from `x·B`, or `None` when out of bounds.
    pub fn solve(&self, target: &RistrettoPoint) -> Option<i64> {
        // Write x + 2^bound = i·m + j with 0 ≤ j < m and search i upwards.
        let m = 1i64 << self.baby_bits;
        let offset = 1i64 << self.bound_bits;
        let giant = -(B * Scalar::from(m as u64));
        let mut point = target + B * Scalar::from(offset as u64);
        let steps = (2 * offset) / m + 1;
        for i in 0..steps {
            let key = prefix(&point);
            let start = self.baby.partition_point(|(k, _)| *k < key);
            for &(k, j) in &self.baby[start..] {
                if k != key {
                    break;
                }
                let x = i * m + i64::from(j) - offset;
                if x.abs() < offset && B * scalar_from_i64(x) == *target {
                    return Some(x);
                }
            }
            point += giant;
        }
        None
    }

    /// Decrypt `ct` with `key` to a bounded signed integer.
    pub fn decrypt(&self, key: &SecretKey, ct: &Ciphertext) -> Option<i64> {
        self.solve(&key.decrypt_point(ct))
    }
}

impl Default for DecryptionTable {
    fn default() -> Self {
        Self::new()
    }
}

/// Decode a list of ciphertexts from `n` consecutive 64-byte encodings (for proof formats).
pub fn read_ciphertexts(r: &mut Reader<'_>, n: usize) -> Result<Vec<Ciphertext>, DecodeError> {
    (0..n).map(|_| Ok(Ciphertext { c1: r.point()?, c2: r.point()? })).collect()
}

/// Encode ciphertexts as consecutive 64-byte encodings (for proof formats).
pub fn write_ciphertexts(w: &mut Writer, cts: &[Ciphertext]) {
    for ct in cts {
        w.point(&ct.c1).point(&ct.c2);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    fn rng() -> ChaCha20Rng {
        ChaCha20Rng::seed_from_u64(7)
    }

    #[test]
    fn encryption_is_additively_homomorphic_and_decrypts() {
        let mut rng = rng();
        let table = DecryptionTable::with_bounds(20, 10);
        let sk = SecretKey::random(&mut rng);
        let pk = sk.public();
        let (a, _) = Ciphertext::encrypt_i64(pk.point(), 1234, &mut rng);
        let (b, _) = Ciphertext::encrypt_i64(pk.point(), -2000, &mut rng);
        let sum = (a + b).rerandomize(pk.point(), &Scalar::random(&mut rng));
        assert_eq!(table.decrypt(&sk, &sum), Some(-766));
        assert_eq!(table.decrypt(&sk, &(a - b)), Some(3234));
        let t = Ciphertext::trivial(&scalar_from_i64(-5));
        assert_eq!(table.decrypt(&sk, &(a + t)), Some(1229));
    }

    #[test]
    fn table_covers_its_edges_and_refuses_beyond() {
        let table = DecryptionTable::with_bounds(12, 5);
        for x in [-4095i64, -4094, -1, 0, 1, 31, 32, 4095] {
            assert_eq!(table.solve(&(B * scalar_from_i64(x))), Some(x), "{x}");
        }
        assert_eq!(table.solve(&(B * scalar_from_i64(4096))), None);
        assert_eq!(table.solve(&(B * scalar_from_i64(-4096))), None);
    }

    #[test]
    fn key_switch_shares_move_the_plaintext_to_the_querier_key() {
        let mut rng = rng();
        let table = DecryptionTable::with_bounds(16, 8);
        let shares: Vec<SecretKey> = (0..3).map(|_| SecretKey::random(&mut rng)).collect();
        let publics: Vec<PublicKey> = shares.iter().map(SecretKey::public).collect();
        let k = collective_key(&publics);
        let querier = SecretKey::random(&mut rng);
        let (ct, _) = Ciphertext::encrypt_i64(&k, 777, &mut rng);
        let mut switched = Ciphertext { c1: RistrettoPoint::identity(), c2: ct.c2 };
        for share in &shares {
            let d =
                share.key_switch_share(&ct, querier.public().point(), &Scalar::random(&mut rng));
            switched = switched + d;
        }
        assert_eq!(table.decrypt(&querier, &switched), Some(777));
    }

    #[test]
    fn possession_proof_binds_key_and_context() {
        let mut rng = rng();
        let sk = SecretKey::random(&mut rng);
        let pop = sk.prove_possession(b"cn-0", &mut rng);
        assert!(pop.verify(b"cn-0", &sk.public()).is_ok());
        assert!(pop.verify(b"cn-1", &sk.public()).is_err());
        let other = SecretKey::random(&mut rng).public();
        assert!(pop.verify(b"cn-0", &other).is_err());
        assert_eq!(PossessionProof::from_bytes(&pop.to_bytes()), Ok(pop));
    }

    #[test]
    fn identity_public_key_is_rejected() {
        let id = RistrettoPoint::identity().compress().to_bytes();
        assert_eq!(PublicKey::from_bytes(&id), Err(DecodeError::IdentityPoint));
    }
}
