//! The range proof contract: a data provider shows that each of its encrypted values lies within
//! the public bounds of its column, without revealing the values.
//!
//! For each value `x` with ciphertext `(C1, C2) = (r·B, x·B + r·K)` under the collective key
//! `K` and public bounds `[a, b]`, the proof carries
//!
//! - a Pedersen commitment `V = x·B + s·H` ([`h_generator`](crate::group::h_generator) is `H`);
//! - a Σ-proof of knowledge of `(x, r, s)` with `C1 = r·B`, `C2 = x·B + r·K` and `V = x·B + s·H`,
//!   which ties the committed value to the encrypted one;
//!
//! and, for all values together, one aggregated Bulletproof that `x − a` and `b − x` lie in
//! `[0, 2^n)`, on the commitments `V − a·B` and `b·B − V` that the verifier derives itself. The
//! statement requires `b − a < 2^n`, so both facts together mean `a ≤ x ≤ b` with no
//! wrap-around modulo the group order.
//!
//! One merlin transcript binds the context, `n`, `K`, every bound and every ciphertext before
//! the commitments `V`, the Σ-proof's commitments and challenge, its responses, and then the
//! Bulletproof. The verifier's batching weights (for the Σ-proof and inside the Bulletproof) are
//! drawn from that transcript once the whole proof is absorbed, so verification uses no RNG.
//!
//! The reasoning, the transcript order and the byte format are written down in
//! `contracts/docs/notes-range.md`.
//!
//! ```
//! use lemal_contracts::elgamal::SecretKey;
//! use lemal_contracts::ids::{EntityId, QueryId};
//! use lemal_contracts::proofs::range::{encrypt_and_prove, Bounds, Proof};
//! use lemal_contracts::transcript::ProofContext;
//! use rand_chacha::ChaCha20Rng;
//! use rand_core::SeedableRng;
//!
//! let mut rng = ChaCha20Rng::seed_from_u64(1);
//! let key = *SecretKey::random(&mut rng).public().point();
//! let context = ProofContext {
//!     chain_id: "lemal-local".into(),
//!     query_id: QueryId([1; 16]),
//!     prover: EntityId::dp(0),
//!     index: 0,
//! };
//! let bounds = [Bounds { lo: 0, hi: 120 }, Bounds { lo: -40, hi: 50 }];
//! let (statement, proof) = encrypt_and_prove(context, &key, 8, &bounds, &[37, -3], &mut rng)?;
//!
//! // The proof travels as bytes; the verifier takes the statement from the ledger.
//! let proof = Proof::from_bytes(&proof.to_bytes())?;
//! proof.verify(&statement)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::sync::OnceLock;

use bulletproofs::{BulletproofGens, PedersenGens, RangeProof};
use curve25519_dalek::ristretto::{CompressedRistretto, RistrettoPoint};
use curve25519_dalek::scalar::Scalar;
use curve25519_dalek::traits::{Identity, IsIdentity, MultiscalarMul, VartimeMultiscalarMul};
use merlin::Transcript;
use rand_core::{CryptoRng, RngCore};

use crate::elgamal::Ciphertext;
use crate::error::{DecodeError, ProofError};
use crate::group::{scalar_from_i64, Point, Reader, Writer, B};
use crate::transcript::{ProofContext, TranscriptProtocol};

/// Transcript label of the range proof.
pub const LABEL: &[u8] = b"range";
/// Version of the construction and of its byte format.
pub const VERSION: u64 = 1;
/// Most values one data provider proves in one proof.
pub const MAX_VALUES: usize = 16;

/// The bit sizes `n` a statement may ask for (those the Bulletproofs implementation supports).
const BIT_SIZES: [u32; 4] = [8, 16, 32, 64];
/// Bulletproof parties: two per value, padded to a power of two.
const MAX_PARTIES: usize = 2 * MAX_VALUES;
/// Inner-product rounds `lg(n·m)` of the smallest aggregated Bulletproof (8 bits, 2 parties).
const MIN_ROUNDS: usize = 4;
/// Inner-product rounds of the largest aggregated Bulletproof (64 bits, 32 parties).
const MAX_ROUNDS: usize = 11;
/// Encoded size of a Bulletproof with `k` inner-product rounds: points `A, S, T1, T2`,
/// scalars `t_x, t̃_x, ẽ`, `k` pairs `(L, R)`, scalars `a, b`.
const fn bulletproof_len(rounds: usize) -> usize {
    32 * (9 + 2 * rounds)
}

/// Exact encoded length of a proof for `values` values of `bits` bits: the value count, 224
/// bytes per value (commitment, Σ commitments and responses), the Bulletproof's length prefix
/// and its `lg(bits · parties)` rounds.
pub const fn proof_len(bits: u32, values: usize) -> usize {
    let parties = (2 * values).next_power_of_two();
    let rounds = (bits as usize * parties).trailing_zeros() as usize;
    4 + 224 * values + 4 + bulletproof_len(rounds)
}

/// The generators shared by every range proof, built once per process.
struct Generators {
    /// `B` and `H`: the value and blinding generators of every commitment.
    pedersen: PedersenGens,
    /// The vector generators of the Bulletproof, for up to 64 bits and 32 parties.
    bulletproof: BulletproofGens,
}

fn generators() -> &'static Generators {
    static GENERATORS: OnceLock<Generators> = OnceLock::new();
    GENERATORS.get_or_init(|| Generators {
        pedersen: PedersenGens::default(),
        bulletproof: BulletproofGens::new(64, MAX_PARTIES),
    })
}

/// Public bounds of one value, inclusive.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    borsh::BorshSerialize,
    borsh::BorshDeserialize,
    serde::Serialize,
    serde::Deserialize,
)]
pub struct Bounds {
    /// The smallest admissible value.
    pub lo: i64,
    /// The largest admissible value.
    pub hi: i64,
}

impl Bounds {
    /// `value − lo` and `hi − value`, when both are non-negative.
    fn distances(&self, value: i64) -> Option<(u64, u64)> {
        let above_lo = u64::try_from(i128::from(value) - i128::from(self.lo)).ok()?;
        let below_hi = u64::try_from(i128::from(self.hi) - i128::from(value)).ok()?;
        Some((above_lo, below_hi))
    }
}

/// What a range proof proves: each ciphertext encrypts, under `key`, a value within its bounds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Statement {
    /// Chain, query, prover and proof index the proof is bound to.
    pub context: ProofContext,
    /// The collective ElGamal key `K` of the computing nodes.
    pub key: RistrettoPoint,
    /// The Bulletproof bit size `n`: 8, 16, 32 or 64.
    pub bits: u32,
    /// The bounds of each value.
    pub bounds: Vec<Bounds>,
    /// The ciphertext of each value, in the order of `bounds`.
    pub ciphertexts: Vec<Ciphertext>,
}

impl Statement {
    /// Check the statement on its own: a supported bit size, between 1 and [`MAX_VALUES`]
    /// values with one ciphertext each, `lo ≤ hi` and `hi − lo < 2^bits` for every value, and a
    /// key that is not the identity.
    pub fn check(&self) -> Result<(), ProofError> {
        if !BIT_SIZES.contains(&self.bits) {
            return Err(ProofError::Statement("bit size must be 8, 16, 32 or 64"));
        }
        if self.bounds.is_empty() || self.bounds.len() > MAX_VALUES {
            return Err(ProofError::Statement("number of values must be between 1 and 16"));
        }
        if self.ciphertexts.len() != self.bounds.len() {
            return Err(ProofError::Statement("one ciphertext per value bounds"));
        }
        let span = 1i128 << self.bits;
        for bounds in &self.bounds {
            if bounds.lo > bounds.hi {
                return Err(ProofError::Statement("lower bound above upper bound"));
            }
            if i128::from(bounds.hi) - i128::from(bounds.lo) >= span {
                return Err(ProofError::Statement("bounds wider than the bit size allows"));
            }
        }
        if self.key.is_identity() {
            return Err(ProofError::Statement("identity encryption key"));
        }
        Ok(())
    }

    /// Bulletproof parties: two per value, padded to the next power of two.
    fn parties(&self) -> usize {
        (2 * self.bounds.len()).next_power_of_two()
    }

    /// Inner-product rounds of the statement's Bulletproof: `lg(n · parties)`.
    fn rounds(&self) -> usize {
        (self.bits as usize * self.parties()).trailing_zeros() as usize
    }

    /// A transcript that has absorbed the whole statement.
    fn transcript(&self) -> Transcript {
        let mut t = self.context.transcript(LABEL, VERSION);
        t.append_u64(b"bits", u64::from(self.bits));
        t.append_len(b"values", self.bounds.len());
        t.append_point(b"K", &self.key);
        for bounds in &self.bounds {
            t.append_i64(b"lo", bounds.lo);
            t.append_i64(b"hi", bounds.hi);
        }
        for ct in &self.ciphertexts {
            t.append_ciphertext(b"ct", ct);
        }
        t
    }

    /// The Bulletproof's value commitments: `V − a·B` and `b·B − V` for each value, then the
    /// identity (value 0, blinding 0) up to the padded party count.
    fn bulletproof_commitments(&self, commitments: &[Point]) -> Vec<CompressedRistretto> {
        let mut out = Vec::with_capacity(self.parties());
        for (bounds, v) in self.bounds.iter().zip(commitments) {
            let lo = RistrettoPoint::mul_base(&scalar_from_i64(bounds.lo));
            let hi = RistrettoPoint::mul_base(&scalar_from_i64(bounds.hi));
            out.push((v.point() - lo).compress());
            out.push((hi - v.point()).compress());
        }
        out.resize(self.parties(), CompressedRistretto::identity());
        out
    }
}

/// The Σ-proof's commitments for one value, made with nonces `(ξ, ρ, σ)` for `(x, r, s)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct SigmaCommitment {
    /// `ρ·B`, matching `C1 = r·B`.
    c1: Point,
    /// `ξ·B + ρ·K`, matching `C2 = x·B + r·K`.
    c2: Point,
    /// `ξ·B + σ·H`, matching `V = x·B + s·H`.
    v: Point,
}

/// The Σ-proof's responses for one value under challenge `c`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct SigmaResponse {
    /// `ξ + c·x`.
    x: Scalar,
    /// `ρ + c·r`.
    r: Scalar,
    /// `σ + c·s`.
    s: Scalar,
}

/// The secrets behind one value: plaintext `x`, encryption randomness `r`, commitment
/// blinding `s`.
#[derive(Clone, Copy)]
struct Witness {
    x: Scalar,
    r: Scalar,
    s: Scalar,
}

/// Absorb the commitments `V` and the Σ-proof's commitments, and draw its challenge.
fn sigma_challenge(t: &mut Transcript, commitments: &[Point], sigma: &[SigmaCommitment]) -> Scalar {
    for v in commitments {
        t.append_message(b"V", v.as_bytes());
    }
    for a in sigma {
        t.append_message(b"sigma-c1", a.c1.as_bytes());
        t.append_message(b"sigma-c2", a.c2.as_bytes());
        t.append_message(b"sigma-v", a.v.as_bytes());
    }
    t.challenge_scalar(b"sigma-challenge")
}

/// Absorb the Σ-proof's responses.
fn absorb_responses(t: &mut Transcript, responses: &[SigmaResponse]) {
    for z in responses {
        t.append_scalar(b"sigma-zx", &z.x);
        t.append_scalar(b"sigma-zr", &z.r);
        t.append_scalar(b"sigma-zs", &z.s);
    }
}

/// Deterministic randomness for the Bulletproof verifier's internal batching weight, drawn from
/// a transcript that has absorbed the statement and the whole proof.
///
/// The weights it yields are fixed by the proof but unpredictable to the prover before the proof
/// is fixed, which is all a batching weight needs; it is not a general-purpose RNG.
struct ChallengeRng(Transcript);

impl RngCore for ChallengeRng {
    fn next_u32(&mut self) -> u32 {
        rand_core::impls::next_u32_via_fill(self)
    }

    fn next_u64(&mut self) -> u64 {
        rand_core::impls::next_u64_via_fill(self)
    }

    fn fill_bytes(&mut self, dest: &mut [u8]) {
        self.0.challenge_bytes(b"bulletproof-batching", dest);
    }

    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
        self.fill_bytes(dest);
        Ok(())
    }
}

impl CryptoRng for ChallengeRng {}

/// A range proof for all values of one [`Statement`].
#[derive(Clone, Debug)]
pub struct Proof {
    /// `V_i = x_i·B + s_i·H`, one per value.
    commitments: Vec<Point>,
    /// The Σ-proof's commitments, one triple per value.
    sigma_commitments: Vec<SigmaCommitment>,
    /// The Σ-proof's responses, one triple per value.
    sigma_responses: Vec<SigmaResponse>,
    /// The aggregated Bulletproof over `V_i − a_i·B`, `b_i·B − V_i` and the padding.
    bulletproof: RangeProof,
}

impl PartialEq for Proof {
    fn eq(&self, other: &Self) -> bool {
        self.commitments == other.commitments
            && self.sigma_commitments == other.sigma_commitments
            && self.sigma_responses == other.sigma_responses
            && self.bulletproof.to_bytes() == other.bulletproof.to_bytes()
    }
}

impl Eq for Proof {}

impl Proof {
    /// Prove that `values`, encrypted with `randomness` into `st.ciphertexts`, lie within
    /// `st.bounds`.
    ///
    /// Fails with [`ProofError::Unprovable`] when a value lies outside its bounds, does not
    /// match its ciphertext, or when the number of values or of randomness scalars differs from
    /// the statement's; with [`ProofError::Statement`] when the statement is malformed.
    pub fn prove<R: RngCore + CryptoRng>(
        st: &Statement,
        values: &[i64],
        randomness: &[Scalar],
        rng: &mut R,
    ) -> Result<Proof, ProofError> {
        st.check()?;
        let m = st.bounds.len();
        if values.len() != m || randomness.len() != m {
            return Err(ProofError::Unprovable("one value and one randomness per ciphertext"));
        }
        let mut openings = Vec::with_capacity(st.parties());
        for (((&x, bounds), r), ct) in
            values.iter().zip(&st.bounds).zip(randomness).zip(&st.ciphertexts)
        {
            let (above_lo, below_hi) = bounds
                .distances(x)
                .ok_or(ProofError::Unprovable("a value lies outside its bounds"))?;
            if Ciphertext::encrypt(&st.key, &scalar_from_i64(x), r) != *ct {
                return Err(ProofError::Unprovable("a value does not match its ciphertext"));
            }
            openings.push(above_lo);
            openings.push(below_hi);
        }

        // Nonces and blindings come from the caller's RNG hedged with the statement and the
        // witness, so a weak RNG alone cannot repeat a nonce across different statements.
        let t = st.transcript();
        let mut builder = t.build_rng();
        for (x, r) in values.iter().zip(randomness) {
            builder = builder
                .rekey_with_witness_bytes(b"x", &x.to_le_bytes())
                .rekey_with_witness_bytes(b"r", r.as_bytes());
        }
        let mut rng = builder.finalize(rng);

        let witness: Vec<Witness> = values
            .iter()
            .zip(randomness)
            .map(|(&x, &r)| Witness { x: scalar_from_i64(x), r, s: Scalar::random(&mut rng) })
            .collect();
        let blindings: Vec<Scalar> = witness.iter().flat_map(|w| [w.s, -w.s]).collect();
        prove_unchecked(st, t, &witness, &openings, &blindings, &mut rng)
    }

    /// Verify the proof against `st`, which the caller resolved from the ledger.
    pub fn verify(&self, st: &Statement) -> Result<(), ProofError> {
        st.check()?;
        let m = st.bounds.len();
        if self.commitments.len() != m
            || self.sigma_commitments.len() != m
            || self.sigma_responses.len() != m
        {
            return Err(ProofError::Shape("one commitment and one Σ-proof row per value"));
        }
        let bulletproof = self.bulletproof.to_bytes();
        if bulletproof.len() != bulletproof_len(st.rounds()) {
            return Err(ProofError::Shape("Bulletproof size does not match bit size and values"));
        }

        let mut t = st.transcript();
        let c = sigma_challenge(&mut t, &self.commitments, &self.sigma_commitments);
        absorb_responses(&mut t, &self.sigma_responses);

        // Batching weights: from a fork of the transcript that has also absorbed the
        // Bulletproof, so they are fixed only once the whole proof is.
        let mut weights = t.clone();
        weights.append_message(b"bulletproof", &bulletproof);
        self.verify_sigma(st, &c, &mut weights)?;

        let gens = generators();
        let commitments = st.bulletproof_commitments(&self.commitments);
        self.bulletproof
            .verify_multiple_with_rng(
                &gens.bulletproof,
                &gens.pedersen,
                &mut t,
                &commitments,
                st.bits as usize,
                &mut ChallengeRng(weights),
            )
            .map_err(|_| ProofError::Equation("Bulletproof range check"))
    }

    /// Check the Σ-proof equations of every value in one multiscalar multiplication:
    ///
    /// `Σ_i w1_i·(z_r·B − A1 − c·C1) + w2_i·(z_x·B + z_r·K − A2 − c·C2)
    ///    + w3_i·(z_x·B + z_s·H − A3 − c·V) = 0`.
    fn verify_sigma(
        &self,
        st: &Statement,
        c: &Scalar,
        weights: &mut Transcript,
    ) -> Result<(), ProofError> {
        let size = 3 + 6 * st.bounds.len();
        let mut scalars = Vec::with_capacity(size);
        let mut points = Vec::with_capacity(size);
        let (mut at_b, mut at_k, mut at_h) = (Scalar::ZERO, Scalar::ZERO, Scalar::ZERO);
        let rows = st
            .ciphertexts
            .iter()
            .zip(&self.commitments)
            .zip(&self.sigma_commitments)
            .zip(&self.sigma_responses);
        for (((ct, v), a), z) in rows {
            let w1 = weights.challenge_scalar(b"sigma-weight");
            let w2 = weights.challenge_scalar(b"sigma-weight");
            let w3 = weights.challenge_scalar(b"sigma-weight");
            at_b += w1 * z.r + (w2 + w3) * z.x;
            at_k += w2 * z.r;
            at_h += w3 * z.s;
            scalars.extend([-(w1 * c), -(w2 * c), -(w3 * c), -w1, -w2, -w3]);
            points.extend([ct.c1, ct.c2, *v.point(), *a.c1.point(), *a.c2.point(), *a.v.point()]);
        }
        scalars.extend([at_b, at_k, at_h]);
        points.extend([B, st.key, generators().pedersen.B_blinding]);
        if RistrettoPoint::vartime_multiscalar_mul(scalars, points).is_identity() {
            Ok(())
        } else {
            Err(ProofError::Equation("Σ-proof linking ciphertexts and commitments"))
        }
    }

    /// The canonical encoding (see `contracts/docs/notes-range.md`).
    pub fn to_bytes(&self) -> Vec<u8> {
        let m = self.commitments.len();
        let bulletproof = self.bulletproof.to_bytes();
        let mut w = Writer::with_capacity(4 + 224 * m + 4 + bulletproof.len());
        w.u32(u32::try_from(m).expect("a proof holds at most MAX_VALUES values"));
        for v in &self.commitments {
            w.compressed(&CompressedRistretto(*v.as_bytes()));
        }
        for a in &self.sigma_commitments {
            for p in [&a.c1, &a.c2, &a.v] {
                w.compressed(&CompressedRistretto(*p.as_bytes()));
            }
        }
        for z in &self.sigma_responses {
            w.scalar(&z.x).scalar(&z.r).scalar(&z.s);
        }
        w.bytes(&bulletproof);
        w.finish()
    }

    /// Strict decoding: canonical points and scalars, a value count between 1 and
    /// [`MAX_VALUES`], a Bulletproof of a size some statement can ask for, no trailing bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Proof, DecodeError> {
        let mut r = Reader::new(bytes);
        let m = r.u32()? as usize;
        if m == 0 || m > MAX_VALUES {
            return Err(DecodeError::Length {
                what: "range proof values",
                got: m as u64,
                max: MAX_VALUES as u64,
            });
        }
        let point = Reader::point_with_encoding;
        let commitments = (0..m).map(|_| point(&mut r)).collect::<Result<Vec<_>, _>>()?;
        let sigma_commitments = (0..m)
            .map(|_| {
                Ok(SigmaCommitment { c1: point(&mut r)?, c2: point(&mut r)?, v: point(&mut r)? })
            })
            .collect::<Result<Vec<_>, DecodeError>>()?;
        let sigma_responses = (0..m)
            .map(|_| Ok(SigmaResponse { x: r.scalar()?, r: r.scalar()?, s: r.scalar()? }))
            .collect::<Result<Vec<_>, DecodeError>>()?;
        let bulletproof = read_bulletproof(r.bytes("bulletproof", bulletproof_len(MAX_ROUNDS))?)?;
        r.finish()?;
        Ok(Proof { commitments, sigma_commitments, sigma_responses, bulletproof })
    }
}

/// Strictly decode a Bulletproof: a size with 4 to 11 inner-product rounds, canonical
/// non-identity points, canonical scalars.
fn read_bulletproof(bytes: &[u8]) -> Result<RangeProof, DecodeError> {
    let rounds = (MIN_ROUNDS..=MAX_ROUNDS).find(|&k| bulletproof_len(k) == bytes.len()).ok_or(
        DecodeError::Invalid { what: "bulletproof", why: "size is not that of 4 to 11 rounds" },
    )?;
    let mut r = Reader::new(bytes);
    for _ in 0..4 {
        r.point_nonidentity()?; // A, S, T1, T2
    }
    for _ in 0..3 {
        r.scalar()?; // t_x, t_x blinding, e blinding
    }
    for _ in 0..2 * rounds {
        r.point_nonidentity()?; // L_j, R_j
    }
    r.scalar()?; // a
    r.scalar()?; // b
    r.finish()?;
    RangeProof::from_bytes(bytes).map_err(|_| DecodeError::Invalid {
        what: "bulletproof",
        why: "refused by the Bulletproofs decoder",
    })
}

/// The prover without any check of the witness: Σ-proof for `witness`, Bulletproof on the
/// openings `bulletproof_values`/`bulletproof_blindings` (two per value, before padding).
///
/// Only [`Proof::prove`] calls it with openings it has checked; tests call it to build
/// forgeries. `t` has absorbed the statement.
fn prove_unchecked<R: RngCore + CryptoRng>(
    st: &Statement,
    mut t: Transcript,
    witness: &[Witness],
    bulletproof_values: &[u64],
    bulletproof_blindings: &[Scalar],
    rng: &mut R,
) -> Result<Proof, ProofError> {
    let gens = generators();
    let h = gens.pedersen.B_blinding;
    let commitments: Vec<Point> =
        witness.iter().map(|w| Point::new(gens.pedersen.commit(w.x, w.s))).collect();
    let nonces: Vec<Witness> = witness
        .iter()
        .map(|_| Witness { x: Scalar::random(rng), r: Scalar::random(rng), s: Scalar::random(rng) })
        .collect();
    let sigma_commitments: Vec<SigmaCommitment> = nonces
        .iter()
        .map(|k| SigmaCommitment {
            c1: Point::new(RistrettoPoint::mul_base(&k.r)),
            c2: Point::new(RistrettoPoint::multiscalar_mul([k.x, k.r], [B, st.key])),
            v: Point::new(RistrettoPoint::multiscalar_mul([k.x, k.s], [B, h])),
        })
        .collect();
    let c = sigma_challenge(&mut t, &commitments, &sigma_commitments);
    let sigma_responses: Vec<SigmaResponse> = witness
        .iter()
        .zip(&nonces)
        .map(|(w, k)| SigmaResponse { x: k.x + c * w.x, r: k.r + c * w.r, s: k.s + c * w.s })
        .collect();
    absorb_responses(&mut t, &sigma_responses);

    let mut values = bulletproof_values.to_vec();
    let mut blindings = bulletproof_blindings.to_vec();
    values.resize(st.parties(), 0);
    blindings.resize(st.parties(), Scalar::ZERO);
    let (bulletproof, _) = RangeProof::prove_multiple_with_rng(
        &gens.bulletproof,
        &gens.pedersen,
        &mut t,
        &values,
        &blindings,
        st.bits as usize,
        rng,
    )
    .map_err(|_| ProofError::Unprovable("Bulletproof parameters"))?;
    Ok(Proof { commitments, sigma_commitments, sigma_responses, bulletproof })
}

/// Encrypt `values` under `key` and prove them in range; returns the statement (with the new
/// ciphertexts) and the proof.
pub fn encrypt_and_prove<R: RngCore + CryptoRng>(
    context: ProofContext,
    key: &RistrettoPoint,
    bits: u32,
    bounds: &[Bounds],
    values: &[i64],
    rng: &mut R,
) -> Result<(Statement, Proof), ProofError> {
    if values.len() != bounds.len() {
        return Err(ProofError::Unprovable("one value per bounds"));
    }
    let (ciphertexts, randomness): (Vec<Ciphertext>, Vec<Scalar>) =
        values.iter().map(|&x| Ciphertext::encrypt_i64(key, x, rng)).unzip();
    let st = Statement { context, key: *key, bits, bounds: bounds.to_vec(), ciphertexts };
    let proof = Proof::prove(&st, values, &randomness, rng)?;
    Ok((st, proof))
}

#[cfg(test)]
mod tests {
    use std::sync::OnceLock;

    use proptest::prelude::*;
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    use super::*;
    use crate::elgamal::SecretKey;
    use crate::ids::{EntityId, QueryId};

    const GOLDEN_PATH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/vectors/range.hex");

    fn context() -> ProofContext {
        ProofContext {
            chain_id: "lemal-test".into(),
            query_id: QueryId([7; 16]),
            prover: EntityId::dp(3),
            index: 0,
        }
    }

    fn bounds(lo: i64, hi: i64) -> Bounds {
        Bounds { lo, hi }
    }

    /// A fresh key, then `values` encrypted and proven, all from a seed.
    fn proven(seed: u64, bits: u32, bounds: &[Bounds], values: &[i64]) -> (Statement, Proof) {
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        let key = *SecretKey::random(&mut rng).public().point();
        encrypt_and_prove(context(), &key, bits, bounds, values, &mut rng)
            .expect("the values lie within their bounds")
    }

    /// Three 16-bit values (so the Bulletproof pads six parties to eight), proven once.
    fn fixture() -> &'static (Statement, Proof) {
        static FIXTURE: OnceLock<(Statement, Proof)> = OnceLock::new();
        FIXTURE.get_or_init(|| {
            proven(1, 16, &[bounds(0, 1000), bounds(-500, -100), bounds(7, 7)], &[0, -137, 7])
        })
    }

    fn verifies(st: &Statement, proof: &Proof) -> bool {
        proof.verify(st).is_ok()
    }

    /// A statement that is well formed on its own but is not the one the proof was made for.
    fn assert_rejects_other_statement(st: &Statement, proof: &Proof, what: &str) {
        assert_eq!(st.check(), Ok(()), "{what}: the altered statement should stay well formed");
        assert!(!verifies(st, proof), "{what}: accepted");
    }

    // ---------------------------------------------------------------- completeness

    #[test]
    fn proofs_verify_at_every_bit_size_across_the_widest_bounds() {
        for bits in BIT_SIZES {
            let (lo, hi) = match bits {
                64 => (i64::MIN, i64::MAX),
                _ => (-(1i64 << (bits - 1)), (1i64 << (bits - 1)) - 1),
            };
            let (st, proof) = proven(u64::from(bits), bits, &[bounds(lo, hi); 2], &[lo, hi]);
            assert_eq!(proof.verify(&st), Ok(()), "{bits} bits");
        }
    }

    #[test]
    fn proofs_verify_for_one_two_three_eight_and_sixteen_values() {
        for m in [1usize, 2, 3, 8, 16] {
            let all: Vec<Bounds> = (0..m as i64).map(|i| bounds(-10 * i, 1000 + i)).collect();
            let values: Vec<i64> = (0..m as i64).map(|i| 17 * i - 5 * (i % 3)).collect();
            let (st, proof) = proven(m as u64, 32, &all, &values);
            assert_eq!(proof.verify(&st), Ok(()), "{m} values");
        }
    }

    #[test]
    fn values_on_the_edges_of_their_bounds_verify() {
        let all =
            [bounds(10, 20), bounds(10, 20), bounds(-50, -10), bounds(-50, -10), bounds(5, 5)];
        let (st, proof) = proven(9, 8, &all, &[10, 20, -50, -10, 5]);
        assert_eq!(proof.verify(&st), Ok(()));
        let (st, proof) =
            proven(10, 8, &[bounds(-1, 254), bounds(i64::MAX, i64::MAX)], &[254, i64::MAX]);
        assert_eq!(proof.verify(&st), Ok(()));
    }

    #[test]
    fn sixteen_values_of_sixty_four_bits_verify_with_the_largest_bulletproof() {
        let (st, proof) = proven(11, 64, &[bounds(i64::MIN, i64::MAX); MAX_VALUES], &[-3; 16]);
        assert_eq!(st.rounds(), MAX_ROUNDS);
        assert_eq!(proof.to_bytes().len(), 8 + 224 * 16 + bulletproof_len(MAX_ROUNDS));
        assert_eq!(proof.verify(&st), Ok(()));
    }

    // ---------------------------------------------------------------- prover refusals

    #[test]
    fn prover_refuses_values_outside_their_bounds() {
        let mut rng = ChaCha20Rng::seed_from_u64(12);
        let key = *SecretKey::random(&mut rng).public().point();
        for x in [9, 21, i64::MIN, i64::MAX] {
            let result = encrypt_and_prove(context(), &key, 8, &[bounds(10, 20)], &[x], &mut rng);
            assert_eq!(
                result.map(|_| ()),
                Err(ProofError::Unprovable("a value lies outside its bounds")),
                "{x}"
            );
        }
    }

    #[test]
    fn prover_refuses_a_value_or_randomness_that_is_not_the_encrypted_one() {
        let mut rng = ChaCha20Rng::seed_from_u64(13);
        let key = *SecretKey::random(&mut rng).public().point();
        let (ct, r) = Ciphertext::encrypt_i64(&key, 15, &mut rng);
        let st = Statement {
            context: context(),
            key,
            bits: 8,
            bounds: vec![bounds(10, 20)],
            ciphertexts: vec![ct],
        };
        let wrong = Err(ProofError::Unprovable("a value does not match its ciphertext"));
        assert_eq!(Proof::prove(&st, &[16], &[r], &mut rng).map(|_| ()), wrong);
        assert_eq!(Proof::prove(&st, &[15], &[r + Scalar::ONE], &mut rng).map(|_| ()), wrong);
        let proof = Proof::prove(&st, &[15], &[r], &mut rng).expect("the true opening");
        assert_eq!(proof.verify(&st), Ok(()));
    }

    #[test]
    fn prover_refuses_missing_or_surplus_values_and_randomness() {
        let mut rng = ChaCha20Rng::seed_from_u64(14);
        let (st, _) = fixture();
        let r = Scalar::ONE;
        let counts = Err(ProofError::Unprovable("one value and one randomness per ciphertext"));
        assert_eq!(Proof::prove(st, &[0, -137], &[r, r, r], &mut rng).map(|_| ()), counts);
        assert_eq!(Proof::prove(st, &[0, -137, 7, 7], &[r, r, r], &mut rng).map(|_| ()), counts);
        assert_eq!(Proof::prove(st, &[0, -137, 7], &[r, r], &mut rng).map(|_| ()), counts);
        let key = st.key;
        let per_bounds = Err(ProofError::Unprovable("one value per bounds"));
        let result = encrypt_and_prove(context(), &key, 8, &[bounds(0, 1)], &[0, 1], &mut rng);
        assert_eq!(result.map(|_| ()), per_bounds);
    }

    // ---------------------------------------------------------------- statement checks

    #[test]
    fn malformed_statements_are_refused_by_check_prove_and_verify() {
        let (st, proof) = fixture();
        let identity = RistrettoPoint::identity();
        let cases: Vec<(&str, Statement)> = vec![
            ("bits 0", Statement { bits: 0, ..st.clone() }),
            ("bits 7", Statement { bits: 7, ..st.clone() }),
            ("bits 12", Statement { bits: 12, ..st.clone() }),
            ("bits 128", Statement { bits: 128, ..st.clone() }),
            ("bits u32::MAX", Statement { bits: u32::MAX, ..st.clone() }),
            ("no values", Statement { bounds: vec![], ciphertexts: vec![], ..st.clone() }),
            (
                "17 values",
                Statement {
                    bounds: vec![bounds(0, 1); 17],
                    ciphertexts: vec![st.ciphertexts[0]; 17],
                    ..st.clone()
                },
            ),
            (
                "fewer ciphertexts",
                Statement { ciphertexts: st.ciphertexts[..2].to_vec(), ..st.clone() },
            ),
            ("fewer bounds", Statement { bounds: st.bounds[..2].to_vec(), ..st.clone() }),
            (
                "lo above hi",
                Statement { bounds: vec![bounds(1, 0), st.bounds[1], st.bounds[2]], ..st.clone() },
            ),
            (
                "width 2^bits",
                Statement {
                    bounds: vec![bounds(0, 1 << 16), st.bounds[1], st.bounds[2]],
                    ..st.clone()
                },
            ),
            (
                "width 2^64 - 1 at 16 bits",
                Statement {
                    bounds: vec![bounds(i64::MIN, i64::MAX), st.bounds[1], st.bounds[2]],
                    ..st.clone()
                },
            ),
            ("identity key", Statement { key: identity, ..st.clone() }),
        ];
        let mut rng = ChaCha20Rng::seed_from_u64(15);
        for (what, bad) in cases {
            assert!(matches!(bad.check(), Err(ProofError::Statement(_))), "{what}");
            assert!(matches!(proof.verify(&bad), Err(ProofError::Statement(_))), "{what}");
            let values = vec![0; bad.bounds.len()];
            let randomness = vec![Scalar::ONE; bad.bounds.len()];
            let proved = Proof::prove(&bad, &values, &randomness, &mut rng);
            assert!(matches!(proved, Err(ProofError::Statement(_))), "{what}");
        }
        let widest = Statement {
            bounds: vec![bounds(0, (1 << 16) - 1), st.bounds[1], st.bounds[2]],
            ..st.clone()
        };
        assert_eq!(widest.check(), Ok(()));
    }

    // ---------------------------------------------------------------- soundness: the statement

    #[test]
    fn verifier_rejects_proof_bound_to_another_context() {
        let (st, proof) = fixture();
        let contexts = [
            ("chain id", ProofContext { chain_id: "lemal-other".into(), ..context() }),
            ("query id", ProofContext { query_id: QueryId([8; 16]), ..context() }),
            ("prover index", ProofContext { prover: EntityId::dp(4), ..context() }),
            ("prover role", ProofContext { prover: EntityId::cn(3), ..context() }),
            ("proof index", ProofContext { index: 1, ..context() }),
        ];
        for (what, other) in contexts {
            assert_rejects_other_statement(
                &Statement { context: other, ..st.clone() },
                proof,
                what,
            );
        }
    }

    #[test]
    fn verifier_rejects_proof_under_another_key() {
        let (st, proof) = fixture();
        let other = st.key + B;
        assert_rejects_other_statement(&Statement { key: other, ..st.clone() }, proof, "key");
    }

    #[test]
    fn verifier_rejects_proof_for_another_bit_size() {
        let (st, proof) = fixture();
        for bits in [32, 64] {
            let other = Statement { bits, ..st.clone() };
            assert_eq!(other.check(), Ok(()));
            assert!(matches!(proof.verify(&other), Err(ProofError::Shape(_))), "{bits}");
        }
        // At 8 bits the fixture's bounds [0, 1000] are too wide: the statement itself fails.
        let narrow = Statement { bits: 8, ..st.clone() };
        assert!(matches!(proof.verify(&narrow), Err(ProofError::Statement(_))));
    }

    #[test]
    fn verifier_rejects_each_bound_moved_by_one() {
        let (st, proof) = fixture();
        for i in 0..st.bounds.len() {
            let b = st.bounds[i];
            let moves = [
                ("lo - 1", bounds(b.lo - 1, b.hi)),
                ("lo + 1", bounds(b.lo + 1, b.hi)),
                ("hi - 1", bounds(b.lo, b.hi - 1)),
                ("hi + 1", bounds(b.lo, b.hi + 1)),
            ];
            for (what, moved) in moves {
                let mut other = st.clone();
                other.bounds[i] = moved;
                if other.check().is_ok() {
                    assert_rejects_other_statement(&other, proof, &format!("value {i}: {what}"));
                } else {
                    assert!(!verifies(&other, proof));
                }
            }
        }
    }

    #[test]
    fn verifier_rejects_each_ciphertext_component_changed() {
        let (st, proof) = fixture();
        for i in 0..st.ciphertexts.len() {
            let mut other = st.clone();
            other.ciphertexts[i].c1 += B;
            assert_rejects_other_statement(&other, proof, &format!("c1 of value {i}"));
            let mut other = st.clone();
            other.ciphertexts[i].c2 += B;
            assert_rejects_other_statement(&other, proof, &format!("c2 of value {i}"));
            let mut other = st.clone();
            other.ciphertexts[i] = other.ciphertexts[i].rerandomize(&st.key, &Scalar::ONE);
            assert_rejects_other_statement(&other, proof, &format!("re-randomised value {i}"));
        }
    }

    #[test]
    fn verifier_rejects_ciphertexts_or_bounds_swapped_between_values() {
        let (st, proof) = fixture();
        let mut other = st.clone();
        other.ciphertexts.swap(0, 1);
        assert_rejects_other_statement(&other, proof, "ciphertexts swapped");
        let mut other = st.clone();
        other.bounds.swap(0, 2);
        assert_rejects_other_statement(&other, proof, "bounds swapped");
    }

    #[test]
    fn verifier_rejects_a_value_dropped_or_added() {
        let (st, proof) = fixture();
        let mut fewer = st.clone();
        fewer.bounds.pop();
        fewer.ciphertexts.pop();
        assert!(matches!(proof.verify(&fewer), Err(ProofError::Shape(_))));
        let mut more = st.clone();
        more.bounds.push(bounds(0, 9));
        more.ciphertexts.push(st.ciphertexts[0]);
        assert!(matches!(proof.verify(&more), Err(ProofError::Shape(_))));
    }

    #[test]
    fn transcript_challenge_depends_on_every_statement_field() {
        let (st, _) = fixture();
        let challenge = |st: &Statement| st.transcript().challenge_scalar(b"probe");
        let mut variants: Vec<(String, Statement)> = vec![
            (
                "chain id".into(),
                Statement {
                    context: ProofContext { chain_id: "lemal-other".into(), ..context() },
                    ..st.clone()
                },
            ),
            (
                "query id".into(),
                Statement {
                    context: ProofContext { query_id: QueryId([8; 16]), ..context() },
                    ..st.clone()
                },
            ),
            (
                "prover".into(),
                Statement {
                    context: ProofContext { prover: EntityId::dp(4), ..context() },
                    ..st.clone()
                },
            ),
            (
                "index".into(),
                Statement { context: ProofContext { index: 1, ..context() }, ..st.clone() },
            ),
            ("key".into(), Statement { key: st.key + B, ..st.clone() }),
            ("bits".into(), Statement { bits: 32, ..st.clone() }),
            (
                "value count".into(),
                Statement {
                    bounds: st.bounds[..2].to_vec(),
                    ciphertexts: st.ciphertexts[..2].to_vec(),
                    ..st.clone()
                },
            ),
        ];
        for i in 0..st.bounds.len() {
            let mut other = st.clone();
            other.bounds[i].lo -= 1;
            variants.push((format!("lo {i}"), other));
            let mut other = st.clone();
            other.bounds[i].hi += 1;
            variants.push((format!("hi {i}"), other));
            let mut other = st.clone();
            other.ciphertexts[i].c1 += B;
            variants.push((format!("c1 {i}"), other));
            let mut other = st.clone();
            other.ciphertexts[i].c2 += B;
            variants.push((format!("c2 {i}"), other));
        }
        let original = challenge(st);
        for (what, other) in &variants {
            assert_ne!(challenge(other), original, "{what} is not bound");
        }
    }

    // ---------------------------------------------------------------- soundness: the proof

    #[derive(Clone, Copy, Debug, PartialEq)]
    enum Slot {
        Point,
        Scalar,
    }

    /// Offsets and kinds of the 32-byte elements of an encoded proof, from the documented layout.
    fn slots(values: usize, rounds: usize) -> Vec<(usize, Slot)> {
        let mut kinds = vec![Slot::Point; 4 * values];
        kinds.extend(vec![Slot::Scalar; 3 * values]);
        let first_bulletproof = kinds.len();
        kinds.extend([Slot::Point; 4]);
        kinds.extend([Slot::Scalar; 3]);
        kinds.extend(vec![Slot::Point; 2 * rounds]);
        kinds.extend([Slot::Scalar; 2]);
        kinds
            .into_iter()
            .enumerate()
            .map(|(i, kind)| {
                // A 4-byte value count, and a 4-byte length before the Bulletproof.
                let header = if i < first_bulletproof { 4 } else { 8 };
                (header + 32 * i, kind)
            })
            .collect()
    }

    fn fixture_slots() -> (Vec<u8>, Vec<(usize, Slot)>) {
        let (st, proof) = fixture();
        let bytes = proof.to_bytes();
        let slots = slots(st.bounds.len(), st.rounds());
        let end = slots.last().map(|(at, _)| at + 32);
        assert_eq!(end, Some(bytes.len()), "the layout covers every byte");
        (bytes, slots)
    }

    fn replace(bytes: &[u8], at: usize, with: &[u8; 32]) -> Vec<u8> {
        let mut out = bytes.to_vec();
        out[at..at + 32].copy_from_slice(with);
        out
    }

    #[test]
    fn verifier_rejects_a_change_to_any_element_of_the_proof() {
        let (st, proof) = fixture();
        let (bytes, slots) = fixture_slots();
        for (at, kind) in slots {
            let mut element = [0u8; 32];
            element.copy_from_slice(&bytes[at..at + 32]);
            let changed = match kind {
                Slot::Point => {
                    let p = crate::group::decode_point(&element).expect("a canonical point");
                    (p + B).compress().to_bytes()
                }
                Slot::Scalar => {
                    let s = crate::group::decode_scalar(&element).expect("a canonical scalar");
                    (s + Scalar::ONE).to_bytes()
                }
            };
            let tampered = Proof::from_bytes(&replace(&bytes, at, &changed))
                .unwrap_or_else(|e| panic!("{kind:?} at {at} should still decode: {e}"));
            assert_ne!(&tampered, proof);
            assert!(
                matches!(tampered.verify(st), Err(ProofError::Equation(_))),
                "{kind:?} at byte {at} changed and accepted"
            );
        }
    }

    #[test]
    fn verifier_rejects_commitments_or_sigma_rows_swapped_between_values() {
        let (st, proof) = fixture();
        let mut swapped = proof.clone();
        swapped.commitments.swap(0, 1);
        assert!(!verifies(st, &swapped), "commitments");
        let mut swapped = proof.clone();
        swapped.sigma_commitments.swap(0, 1);
        swapped.sigma_responses.swap(0, 1);
        assert!(!verifies(st, &swapped), "Σ rows");
    }

    #[test]
    fn verifier_rejects_a_proof_made_for_the_same_values_under_another_seed() {
        let (st, proof) = fixture();
        let (_, other) = proven(2, 16, &st.bounds, &[0, -137, 7]);
        let mut mixed = proof.clone();
        mixed.bulletproof = other.bulletproof;
        assert!(!verifies(st, &mixed));
    }

    // ---------------------------------------------------------------- soundness: forgeries

    /// A statement with the single value `x` encrypted under a fresh key, bounds `[lo, hi]` at
    /// 8 bits, and the secrets of its ciphertext.
    fn forgery_setup(x: i64, lo: i64, hi: i64) -> (Statement, Witness, ChaCha20Rng) {
        let mut rng = ChaCha20Rng::seed_from_u64(16);
        let key = *SecretKey::random(&mut rng).public().point();
        let (ct, r) = Ciphertext::encrypt_i64(&key, x, &mut rng);
        let st = Statement {
            context: context(),
            key,
            bits: 8,
            bounds: vec![bounds(lo, hi)],
            ciphertexts: vec![ct],
        };
        let s = Scalar::random(&mut rng);
        (st, Witness { x: scalar_from_i64(x), r, s }, rng)
    }

    fn forge(
        st: &Statement,
        witness: Witness,
        values: &[u64],
        blindings: &[Scalar],
        rng: &mut ChaCha20Rng,
    ) -> Proof {
        prove_unchecked(st, st.transcript(), &[witness], values, blindings, rng)
            .expect("the Bulletproofs prover does not check its openings")
    }

    #[test]
    fn forgery_toolkit_makes_valid_proofs_for_values_in_range() {
        // The forgeries below differ from this honest run in one step only.
        let (st, w, mut rng) = forgery_setup(100, 0, 100);
        let proof = forge(&st, w, &[100, 0], &[w.s, -w.s], &mut rng);
        assert_eq!(proof.verify(&st), Ok(()));
    }

    #[test]
    fn verifier_rejects_bulletproof_on_wrapped_distance_of_value_above_its_bound() {
        // x = 101 > b = 100: b − x = −1 wraps to 2^64 − 1, or to 2^8 − 1 in 8 bits.
        let (st, w, mut rng) = forgery_setup(101, 0, 100);
        for below_hi in [u64::MAX, 255] {
            let proof = forge(&st, w, &[101, below_hi], &[w.s, -w.s], &mut rng);
            assert_eq!(proof.verify(&st), Err(ProofError::Equation("Bulletproof range check")));
        }
    }

    #[test]
    fn verifier_rejects_in_range_proof_attached_to_out_of_range_ciphertext() {
        // The ciphertext holds 101; the prover commits to 50 and proves 50 in range.
        let (st, w, mut rng) = forgery_setup(101, 0, 100);
        let claimed = Witness { x: scalar_from_i64(50), ..w };
        let proof = forge(&st, claimed, &[50, 50], &[w.s, -w.s], &mut rng);
        assert_eq!(
            proof.verify(&st),
            Err(ProofError::Equation("Σ-proof linking ciphertexts and commitments"))
        );
    }

    /// A one-value proof assembled step by step: the commitment and Σ commitments as given,
    /// the responses computed from the challenge by `respond`, then the Bulletproof on the given
    /// openings — the prover's steps with every choice left to the forger.
    fn assemble(
        st: &Statement,
        commitment: Point,
        sigma: SigmaCommitment,
        respond: impl FnOnce(Scalar) -> SigmaResponse,
        openings: &[u64],
        blindings: &[Scalar],
        rng: &mut ChaCha20Rng,
    ) -> Proof {
        let gens = generators();
        let mut t = st.transcript();
        let c = sigma_challenge(&mut t, &[commitment], &[sigma]);
        let response = respond(c);
        absorb_responses(&mut t, &[response]);
        let (bulletproof, _) = RangeProof::prove_multiple_with_rng(
            &gens.bulletproof,
            &gens.pedersen,
            &mut t,
            openings,
            blindings,
            st.bits as usize,
            rng,
        )
        .expect("two openings at 8 bits");
        Proof {
            commitments: vec![commitment],
            sigma_commitments: vec![sigma],
            sigma_responses: vec![response],
            bulletproof,
        }
    }

    #[test]
    fn verifier_rejects_commitment_to_another_value_than_the_ciphertext() {
        // The ciphertext holds 101; V commits to 50 and the Bulletproof on V is honest. The C1
        // and C2 equations are answered for 101, which fixes z_x; the V equation then cannot be
        // met, so its commitment and response are made up.
        let (st, w, mut rng) = forgery_setup(101, 0, 100);
        let commitment = Point::new(generators().pedersen.commit(scalar_from_i64(50), w.s));
        let (xi, rho) = (Scalar::random(&mut rng), Scalar::random(&mut rng));
        let sigma = SigmaCommitment {
            c1: Point::new(RistrettoPoint::mul_base(&rho)),
            c2: Point::new(RistrettoPoint::multiscalar_mul([xi, rho], [B, st.key])),
            v: Point::new(RistrettoPoint::random(&mut rng)),
        };
        let made_up_s = Scalar::random(&mut rng);
        let respond = |c| SigmaResponse { x: xi + c * w.x, r: rho + c * w.r, s: made_up_s };
        let proof = assemble(&st, commitment, sigma, respond, &[50, 50], &[w.s, -w.s], &mut rng);
        assert_eq!(
            proof.verify(&st),
            Err(ProofError::Equation("Σ-proof linking ciphertexts and commitments"))
        );
    }

    #[test]
    fn verifier_rejects_ciphertext_whose_halves_use_different_randomness() {
        // (r1·B, 50·B + r2·K) decrypts to 50 + (r2 − r1)·k, not to 50. The prover knows 50 and
        // r2 and answers the C2 and V equations; z_r is then fixed by C2, so the C1 equation's
        // commitment is made up.
        let (mut st, w, mut rng) = forgery_setup(50, 0, 100);
        let r1 = Scalar::random(&mut rng);
        st.ciphertexts[0].c1 = RistrettoPoint::mul_base(&r1);
        let commitment = Point::new(generators().pedersen.commit(w.x, w.s));
        let (xi, rho, sigma_s) =
            (Scalar::random(&mut rng), Scalar::random(&mut rng), Scalar::random(&mut rng));
        let h = generators().pedersen.B_blinding;
        let sigma = SigmaCommitment {
            c1: Point::new(RistrettoPoint::random(&mut rng)),
            c2: Point::new(RistrettoPoint::multiscalar_mul([xi, rho], [B, st.key])),
            v: Point::new(RistrettoPoint::multiscalar_mul([xi, sigma_s], [B, h])),
        };
        let respond = |c| SigmaResponse { x: xi + c * w.x, r: rho + c * w.r, s: sigma_s + c * w.s };
        let proof = assemble(&st, commitment, sigma, respond, &[50, 50], &[w.s, -w.s], &mut rng);
        assert_eq!(
            proof.verify(&st),
            Err(ProofError::Equation("Σ-proof linking ciphertexts and commitments"))
        );
    }

    #[test]
    fn assembled_proof_with_every_equation_answered_verifies() {
        // The control for the two forgeries above: the same assembly, answered honestly.
        let (st, w, mut rng) = forgery_setup(50, 0, 100);
        let commitment = Point::new(generators().pedersen.commit(w.x, w.s));
        let (xi, rho, sigma_s) =
            (Scalar::random(&mut rng), Scalar::random(&mut rng), Scalar::random(&mut rng));
        let h = generators().pedersen.B_blinding;
        let sigma = SigmaCommitment {
            c1: Point::new(RistrettoPoint::mul_base(&rho)),
            c2: Point::new(RistrettoPoint::multiscalar_mul([xi, rho], [B, st.key])),
            v: Point::new(RistrettoPoint::multiscalar_mul([xi, sigma_s], [B, h])),
        };
        let respond = |c| SigmaResponse { x: xi + c * w.x, r: rho + c * w.r, s: sigma_s + c * w.s };
        let proof = assemble(&st, commitment, sigma, respond, &[50, 50], &[w.s, -w.s], &mut rng);
        assert_eq!(proof.verify(&st), Ok(()));
    }

    #[test]
    fn verifier_rejects_bulletproof_run_on_shifted_commitments() {
        // The ciphertext and V hold 101; the Bulletproof opens V − 1·B − a·B and
        // (b + 1)·B − V instead, which would pass for the bounds [1, 101].
        let (st, w, mut rng) = forgery_setup(101, 0, 100);
        let proof = forge(&st, w, &[100, 0], &[w.s, -w.s], &mut rng);
        assert_eq!(proof.verify(&st), Err(ProofError::Equation("Bulletproof range check")));
    }

    #[test]
    fn verifier_rejects_bulletproof_with_other_padding() {
        let (st, w, mut rng) = forgery_setup(50, 0, 100);
        let mut two = st.clone();
        two.bounds.push(bounds(0, 100));
        two.ciphertexts.push(st.ciphertexts[0]);
        // Three parties of openings are padded to four; the padding must open the identity.
        let mut three = st.clone();
        three.bounds.extend([bounds(0, 100); 2]);
        three.ciphertexts.extend([st.ciphertexts[0]; 2]);
        let witnesses = [w; 3];
        let values = [50, 50, 50, 50, 50, 50, 1, 0];
        let blindings = [w.s, -w.s, w.s, -w.s, w.s, -w.s, Scalar::ZERO, Scalar::ZERO];
        let forged =
            prove_unchecked(&three, three.transcript(), &witnesses, &values, &blindings, &mut rng)
                .expect("openings of the right count");
        assert_eq!(forged.verify(&three), Err(ProofError::Equation("Bulletproof range check")));
        let honest_values = [50, 50, 50, 50, 50, 50, 0, 0];
        let honest = prove_unchecked(
            &three,
            three.transcript(),
            &witnesses,
            &honest_values,
            &blindings,
            &mut rng,
        )
        .expect("openings of the right count");
        assert_eq!(honest.verify(&three), Ok(()));
    }

    // ---------------------------------------------------------------- encoding

    #[test]
    fn encoding_round_trips_and_has_the_documented_size() {
        let (st, proof) = fixture();
        let bytes = proof.to_bytes();
        assert_eq!(bytes.len(), 4 + 224 * 3 + 4 + bulletproof_len(st.rounds()));
        assert_eq!(bytes.len(), proof_len(st.bits, st.bounds.len()));
        assert_eq!(Proof::from_bytes(&bytes).as_ref(), Ok(proof));
    }

    #[test]
    fn from_bytes_rejects_every_truncation_and_trailing_bytes() {
        let bytes = fixture().1.to_bytes();
        for len in 0..bytes.len() {
            assert!(Proof::from_bytes(&bytes[..len]).is_err(), "{len} bytes accepted");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(Proof::from_bytes(&longer), Err(DecodeError::TrailingBytes(1)));
    }

    #[test]
    fn from_bytes_rejects_a_non_canonical_encoding_of_any_element() {
        // p = 2^255 − 19 encodes the field element 0 non-canonically; ℓ is the group order.
        let mut p = [0xff; 32];
        p[0] = 0xed;
        p[31] = 0x7f;
        let l: [u8; 32] =
            hex::decode("edd3f55c1a631258d69cf7a2def9de1400000000000000000000000000000010")
                .expect("hex")
                .try_into()
                .expect("32 bytes");
        let (bytes, slots) = fixture_slots();
        for (at, kind) in slots {
            let (bad, expected) = match kind {
                Slot::Point => (p, DecodeError::InvalidPoint),
                Slot::Scalar => (l, DecodeError::InvalidScalar),
            };
            assert_eq!(Proof::from_bytes(&replace(&bytes, at, &bad)), Err(expected.clone()));
            assert_eq!(Proof::from_bytes(&replace(&bytes, at, &[0xff; 32])), Err(expected));
        }
    }

    #[test]
    fn from_bytes_rejects_identity_points_inside_the_bulletproof() {
        let (bytes, slots) = fixture_slots();
        let identity = [0u8; 32];
        let bulletproof_start = 4 + 224 * 3 + 4;
        for (at, kind) in slots {
            if kind == Slot::Point && at >= bulletproof_start {
                let result = Proof::from_bytes(&replace(&bytes, at, &identity));
                assert_eq!(result, Err(DecodeError::IdentityPoint), "{at}");
            }
        }
    }

    #[test]
    fn from_bytes_rejects_bad_value_counts_and_bulletproof_sizes() {
        let bytes = fixture().1.to_bytes();
        for count in [0u32, 2, 4, 17, u32::MAX] {
            let mut bad = bytes.clone();
            bad[..4].copy_from_slice(&count.to_le_bytes());
            assert!(Proof::from_bytes(&bad).is_err(), "count {count}");
        }
        let length_at = 4 + 224 * 3;
        let body = &bytes[length_at + 4..];
        for len in [0usize, 31, 32 * 16, 32 * 15, bulletproof_len(3), bulletproof_len(12)] {
            let mut bad = bytes[..length_at].to_vec();
            bad.extend_from_slice(&(len as u32).to_le_bytes());
            bad.extend_from_slice(&body[..len.min(body.len())]);
            bad.resize(length_at + 4 + len, 1);
            assert!(Proof::from_bytes(&bad).is_err(), "Bulletproof of {len} bytes");
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn from_bytes_never_panics_and_round_trips_what_it_accepts(
            count in 0u32..20,
            rest in proptest::collection::vec(any::<u8>(), 0..3000),
        ) {
            let mut bytes = count.to_le_bytes().to_vec();
            bytes.extend(rest);
            if let Ok(proof) = Proof::from_bytes(&bytes) {
                prop_assert_eq!(proof.to_bytes(), bytes);
            }
        }

        #[test]
        fn from_bytes_never_panics_on_damaged_proofs_and_round_trips_what_it_accepts(
            at in any::<proptest::sample::Index>(),
            byte in any::<u8>(),
            cut in any::<proptest::sample::Index>(),
            truncate in any::<bool>(),
        ) {
            let mut bytes = fixture().1.to_bytes();
            let i = at.index(bytes.len());
            bytes[i] = byte;
            if truncate {
                bytes.truncate(cut.index(bytes.len()));
            }
            if let Ok(proof) = Proof::from_bytes(&bytes) {
                prop_assert_eq!(proof.to_bytes(), bytes);
            }
        }
    }

    // ---------------------------------------------------------------- golden vector

    fn golden() -> (Statement, Proof) {
        proven(
            0x72_61_6e_67_65,
            32,
            &[bounds(0, 100), bounds(-50, 50), bounds(1_000, 1_000_000)],
            &[42, -7, 999_999],
        )
    }

    #[test]
    fn golden_vector_is_reproduced_and_verifies() {
        let stored = std::fs::read_to_string(GOLDEN_PATH).expect("the golden vector file");
        let (st, proof) = golden();
        assert_eq!(hex::encode(proof.to_bytes()), stored.trim());
        let decoded = Proof::from_bytes(&hex::decode(stored.trim()).expect("hex"))
            .expect("the golden vector decodes");
        assert_eq!(decoded.verify(&st), Ok(()));
    }

    #[test]
    #[ignore = "rewrites the golden vector; run only when the format changes on purpose"]
    fn regenerate_range_golden_vector() {
        let (st, proof) = golden();
        assert_eq!(proof.verify(&st), Ok(()));
        let dir = std::path::Path::new(GOLDEN_PATH).parent().expect("a parent directory");
        std::fs::create_dir_all(dir).expect("create the vectors directory");
        std::fs::write(GOLDEN_PATH, format!("{}\n", hex::encode(proof.to_bytes())))
            .expect("write the golden vector");
    }

    #[test]
    fn h_is_the_crate_wide_blinding_generator() {
        assert_eq!(generators().pedersen.B_blinding, crate::group::h_generator());
        assert_eq!(generators().pedersen.B, B);
    }
}
