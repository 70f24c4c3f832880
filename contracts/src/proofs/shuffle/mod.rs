//! The shuffle proof contract: a computing node permutes the rows of the encrypted noise list,
//! re-randomises every ciphertext under the collective key, and proves that it did so without
//! revealing the permutation.
//!
//! The query fixes a public noise list, encrypted trivially ([`encrypt_public_list`]). Computing
//! nodes take turns: each reads the previous list from the ledger, calls [`shuffle`], and
//! publishes the new list with a [`Proof`]. The first row of the last list is the noise.
//!
//! The construction is C. Andrew Neff's verifiable shuffle of ElGamal pairs ("Verifiable mixing
//! (shuffling) of ElGamal pairs", 2004): commitments to a secret permutation, a reduction to
//! Neff's simple k-shuffle of known exponents, and a final check that ties the permutation to
//! the ciphertexts. Rows of several ciphertexts are first compressed into one ElGamal pair per
//! row with coefficients drawn after the whole statement is absorbed. Every challenge comes from
//! one merlin transcript, the verifier derives the simple-shuffle inputs itself, and the whole
//! verification is one multiscalar multiplication. `contracts/docs/notes-shuffle.md` gives the
//! equations, the transcript order, the soundness argument and the byte format.
//!
//! ```
//! use lemal_contracts::elgamal::SecretKey;
//! use lemal_contracts::ids::{EntityId, QueryId};
//! use lemal_contracts::proofs::shuffle::{encrypt_public_list, shuffle, Proof, Statement};
//! use lemal_contracts::transcript::ProofContext;
//! use rand_core::OsRng;
//!
//! let key = *SecretKey::random(&mut OsRng).public().point();
//! // Four rows of one value each, as fixed by the query.
//! let inputs = encrypt_public_list(&[-2, 0, 1, 5]);
//! let (outputs, witness) = shuffle(&key, 1, &inputs, &mut OsRng)?;
//! let context = ProofContext {
//!     chain_id: "lemal-localnet".into(),
//!     query_id: QueryId([1; 16]),
//!     prover: EntityId::cn(0),
//!     index: 0,
//! };
//! let st = Statement { context, key, width: 1, inputs, outputs };
//! let bytes = Proof::prove(&st, &witness, &mut OsRng)?.to_bytes();
//!
//! // A verifying node rebuilds the statement from the ledger and checks the bytes.
//! Proof::from_bytes(&bytes)?.verify(&st)?;
//! # Ok::<(), lemal_contracts::ProofError>(())
//! ```

use curve25519_dalek::ristretto::{CompressedRistretto, RistrettoBasepointTable, RistrettoPoint};
use curve25519_dalek::scalar::Scalar;
use curve25519_dalek::traits::{IsIdentity, MultiscalarMul, VartimeMultiscalarMul};
use merlin::Transcript;
use rand_core::{CryptoRng, RngCore};

use crate::elgamal::Ciphertext;
use crate::error::{DecodeError, ProofError};
use crate::group::{scalar_from_i64, Reader, Writer, B};
use crate::transcript::{ProofContext, TranscriptProtocol};

#[cfg(test)]
mod tests;

/// Transcript label of the shuffle proof.
pub const LABEL: &[u8] = b"shuffle";
/// Version of the proof format and transcript.
pub const VERSION: u64 = 1;
/// Most rows a shuffle may have.
pub const MAX_ROWS: usize = 4096;
/// Most ciphertexts in one row.
pub const MAX_WIDTH: usize = 8;

/// What the ledger knows about one shuffle: the list a computing node took, the list it
/// published, and where the proof belongs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Statement {
    /// Chain, query, prover and proof index the proof is bound to.
    pub context: ProofContext,
    /// The collective ElGamal key `K`; the ciphertexts are over the generators `B` and `K`.
    pub key: RistrettoPoint,
    /// Ciphertexts per row, from 1 to [`MAX_WIDTH`].
    pub width: usize,
    /// The list taken from the ledger: rows × width ciphertexts, row-major.
    pub inputs: Vec<Ciphertext>,
    /// The published list: rows × width ciphertexts, row-major.
    pub outputs: Vec<Ciphertext>,
}

impl Statement {
    /// Check the shape: a key other than the identity, a width in `1..=MAX_WIDTH`, inputs and
    /// outputs of the same length, a whole number of rows, and from 2 to [`MAX_ROWS`] rows.
    pub fn check(&self) -> Result<(), ProofError> {
        check_list(&self.key, self.width, self.inputs.len())?;
        if self.outputs.len() != self.inputs.len() {
            return Err(ProofError::Statement("outputs and inputs differ in length"));
        }
        Ok(())
    }

    /// The number of rows (`inputs.len() / width`; zero when the width is zero).
    pub fn rows(&self) -> usize {
        self.inputs.len().checked_div(self.width).unwrap_or(0)
    }
}

/// The shape rules shared by [`Statement::check`] and [`shuffle`]; returns the row count.
fn check_list(key: &RistrettoPoint, width: usize, len: usize) -> Result<usize, ProofError> {
    if key.is_identity() {
        return Err(ProofError::Statement("the collective key is the identity"));
    }
    if width == 0 || width > MAX_WIDTH {
        return Err(ProofError::Statement("row width outside 1..=MAX_WIDTH"));
    }
    if !len.is_multiple_of(width) {
        return Err(ProofError::Statement("the list is not a whole number of rows"));
    }
    let rows = len / width;
    if rows < 2 {
        return Err(ProofError::Statement("a shuffle needs at least two rows"));
    }
    if rows > MAX_ROWS {
        return Err(ProofError::Statement("more rows than MAX_ROWS"));
    }
    Ok(rows)
}

/// The prover's secret: output row `i` is input row `permutation[i]`, re-randomised with
/// `randomizers[i][j]`.
#[derive(Clone, Debug)]
pub struct Witness {
    /// For each output row, the input row it comes from.
    pub permutation: Vec<usize>,
    /// For each output row, the randomness added to each of its ciphertexts.
    pub randomizers: Vec<Vec<Scalar>>,
}

impl Witness {
    /// Check that the witness has the statement's shape and is a permutation.
    fn check(&self, rows: usize, width: usize) -> Result<(), ProofError> {
        if self.permutation.len() != rows {
            return Err(ProofError::Unprovable("the permutation does not have one entry per row"));
        }
        let mut seen = vec![false; rows];
        for &source in &self.permutation {
            match seen.get_mut(source) {
                Some(taken) if !*taken => *taken = true,
                _ => return Err(ProofError::Unprovable("the permutation is not a permutation")),
            }
        }
        if self.randomizers.len() != rows || self.randomizers.iter().any(|r| r.len() != width) {
            return Err(ProofError::Unprovable("the randomizers do not have the list's shape"));
        }
        Ok(())
    }

    /// The list this witness makes of `inputs`. The witness must have passed [`Witness::check`].
    fn apply(&self, key: &RistrettoPoint, width: usize, inputs: &[Ciphertext]) -> Vec<Ciphertext> {
        let key_table = RistrettoBasepointTable::create(key);
        let mut outputs = Vec::with_capacity(inputs.len());
        for (&source, randomizers) in self.permutation.iter().zip(&self.randomizers) {
            let row = &inputs[source * width..(source + 1) * width];
            for (ct, r) in row.iter().zip(randomizers) {
                outputs.push(Ciphertext {
                    c1: ct.c1 + RistrettoPoint::mul_base(r),
                    c2: ct.c2 + &key_table * r,
                });
            }
        }
        outputs
    }
}

/// Shuffle `inputs` (rows × width) with a fresh random permutation and randomizers.
///
/// The permutation is uniform (Fisher–Yates with unbiased draws); every ciphertext gets fresh
/// randomness. Fails, like [`Statement::check`], on a bad shape.
pub fn shuffle<R: RngCore + CryptoRng>(
    key: &RistrettoPoint,
    width: usize,
    inputs: &[Ciphertext],
    rng: &mut R,
) -> Result<(Vec<Ciphertext>, Witness), ProofError> {
    let rows = check_list(key, width, inputs.len())?;
    let permutation = random_permutation(rows, rng);
    let randomizers =
        (0..rows).map(|_| (0..width).map(|_| Scalar::random(rng)).collect()).collect();
    let witness = Witness { permutation, randomizers };
    Ok((witness.apply(key, width, inputs), witness))
}

/// A uniformly random permutation of `0..n` (Fisher–Yates).
fn random_permutation<R: RngCore>(n: usize, rng: &mut R) -> Vec<usize> {
    let mut permutation: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        // i < n ≤ MAX_ROWS, so both conversions are exact.
        let j = uniform_below(i as u64 + 1, rng) as usize;
        permutation.swap(i, j);
    }
    permutation
}

/// A uniform integer in `0..bound` (`bound ≥ 1`).
///
/// `next_u64() % bound` alone favours small values whenever `bound` does not divide 2^64;
/// draws from the incomplete last block of `bound` values are rejected and drawn again.
fn uniform_below<R: RngCore>(bound: u64, rng: &mut R) -> u64 {
    // 2^64 mod bound, computed without leaving u64.
    let incomplete = (u64::MAX % bound + 1) % bound;
    let last_accepted = u64::MAX - incomplete;
    loop {
        let x = rng.next_u64();
        if x <= last_accepted {
            return x % bound;
        }
    }
}

/// The trivial encryption of a public noise list (rows of `width` values, row-major).
pub fn encrypt_public_list(values: &[i64]) -> Vec<Ciphertext> {
    values.iter().map(|&v| Ciphertext::trivial(&scalar_from_i64(v))).collect()
}

/// A shuffle proof: Neff's commitments, the simple k-shuffle and the final responses.
///
/// Fields follow the notes (`contracts/docs/notes-shuffle.md`); `k` is the row count.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Proof {
    /// Γ = γ·B, never the identity.
    gamma: RistrettoPoint,
    /// A_i = a_i·B (k).
    a: Vec<RistrettoPoint>,
    /// C_i = γ·a_π(i)·B (k).
    c: Vec<RistrettoPoint>,
    /// U_i = u_i·B (k).
    u: Vec<RistrettoPoint>,
    /// W_i = γ·w_i·B (k).
    w: Vec<RistrettoPoint>,
    /// Λ₁, the first component of the commitment to the ElGamal relation.
    lambda1: RistrettoPoint,
    /// Λ₂, the second component.
    lambda2: RistrettoPoint,
    /// D_i = γ·b_π(i)·B (k).
    d: Vec<RistrettoPoint>,
    /// Θ_q, the product argument's commitments (2k).
    theta: Vec<RistrettoPoint>,
    /// r_1 … r_(2k−1), the product argument's responses.
    resp: Vec<Scalar>,
    /// σ_i = w_i + b_π(i) (k).
    sigma: Vec<Scalar>,
    /// τ, the response for the re-randomisation.
    tau: Scalar,
}

/// Encoded size of a proof for `k` rows: a u32 row count, then 7k + 3 points and 3k scalars.
/// Exact encoded length of a proof over `k` rows.
pub const fn proof_len(k: usize) -> usize {
    encoded_len(k)
}

const fn encoded_len(k: usize) -> usize {
    4 + 32 * (10 * k + 3)
}

impl Proof {
    /// Prove that `st.outputs` is a shuffle of `st.inputs` as described by `witness`.
    ///
    /// Fails with [`ProofError::Unprovable`] if the witness does not explain the outputs, and
    /// with [`ProofError::Statement`] if the statement is malformed.
    pub fn prove<R: RngCore + CryptoRng>(
        st: &Statement,
        witness: &Witness,
        rng: &mut R,
    ) -> Result<Proof, ProofError> {
        st.check()?;
        let rows = st.rows();
        witness.check(rows, st.width)?;
        if witness.apply(&st.key, st.width, &st.inputs) != st.outputs {
            return Err(ProofError::Unprovable("the witness does not explain the outputs"));
        }
        let mut t = statement_transcript(st);
        let e = compression_coefficients(&mut t, st.width);
        // The compressed output i re-randomises the compressed input π(i) with Σ_j e_j r_ij.
        let beta: Vec<Scalar> = witness
            .randomizers
            .iter()
            .map(|row| row.iter().zip(&e).map(|(r, e)| r * e).sum())
            .collect();
        prove_rows(st, t, &e, &witness.permutation, &beta, &Nonces::random(rows, rng))
    }

    /// Verify the proof against the statement the caller resolved from the ledger.
    pub fn verify(&self, st: &Statement) -> Result<(), ProofError> {
        st.check()?;
        let mut t = statement_transcript(st);
        let e = compression_coefficients(&mut t, st.width);
        self.verify_rows(st, t, &e)
    }

    /// Verify the single-pair shuffle of the rows compressed with `e`, continuing `t`.
    fn verify_rows(
        &self,
        st: &Statement,
        mut t: Transcript,
        e: &[Scalar],
    ) -> Result<(), ProofError> {
        let k = st.rows();
        self.check_shape(k)?;
        if self.gamma.is_identity() {
            return Err(ProofError::Equation("Γ is the identity"));
        }
        let ch = self.replay(&mut t);
        // The permutation must be fixed by A and C before ρ is drawn; see the notes.
        let mut a_encodings: Vec<[u8; 32]> = ch.a_encodings.iter().map(|p| p.to_bytes()).collect();
        a_encodings.sort_unstable();
        if a_encodings.windows(2).any(|pair| pair[0] == pair[1]) {
            return Err(ProofError::Equation("the commitments A_i are not pairwise distinct"));
        }

        // Every equation of the notes, weighted by successive powers 1, z, z², … of the batching
        // challenge, summed into one multiscalar multiplication that must give the identity.
        let n = 2 * k;
        let r_at = |q: usize| if q == 0 || q == n { ch.c } else { self.resp[q - 1] };
        let z = ch.z;
        let weight_e2 = Scalar::ONE;
        let weight_e3 = z;
        let mut next_weight = z * z;
        let mut weight = || {
            let current = next_weight;
            next_weight *= z;
            current
        };

        let capacity = 5 + 7 * k + 4 * st.inputs.len();
        let mut scalars: Vec<Scalar> = Vec::with_capacity(capacity);
        let mut points: Vec<&RistrettoPoint> = Vec::with_capacity(capacity);
        let base = B;
        let mut base_coeff = -(weight_e2 * self.tau);
        let mut gamma_coeff = Scalar::ZERO;

        // (E1) σ_i·Γ = W_i + D_i.
        let weights_e1: Vec<Scalar> = (0..k).map(|_| weight()).collect();
        for ((we, sigma), w) in weights_e1.iter().zip(&self.sigma).zip(&self.w) {
            gamma_coeff += we * sigma;
            scalars.push(-we);
            points.push(w);
        }
        // (P) rows q < k of the product argument, on the simple-shuffle inputs the verifier
        // derives itself: X'_q = A_q + λ·(ρ_q·B − U_q) − t·B and Y'_q = C_q + λ·D_q − t·Γ.
        for (q, weight_e1) in weights_e1.iter().enumerate() {
            let wq = weight();
            let left = wq * r_at(q);
            let right = wq * r_at(q + 1);
            base_coeff += left * (ch.lambda * ch.rho[q] - ch.t);
            gamma_coeff -= right * ch.t;
            scalars.extend([left, -(left * ch.lambda), right, right * ch.lambda - weight_e1, -wq]);
            points.extend([&self.a[q], &self.u[q], &self.c[q], &self.d[q], &self.theta[q]]);
        }
        // (P) rows q ≥ k: X'_q = Γ and Y'_q = B.
        for q in k..n {
            let wq = weight();
            gamma_coeff += wq * r_at(q);
            base_coeff += wq * r_at(q + 1);
            scalars.push(-wq);
            points.push(&self.theta[q]);
        }
        // (E2) Σ σ_i·X̄_i = Σ ρ_i·X_i + Λ₁ + τ·B and (E3) the same over the second components
        // with K, where X̄_i, X_i are the rows compressed with e.
        let rows = st.outputs.chunks_exact(st.width).zip(st.inputs.chunks_exact(st.width));
        for ((output, input), (sigma, rho)) in rows.zip(self.sigma.iter().zip(&ch.rho)) {
            for ((out, inp), e) in output.iter().zip(input).zip(e) {
                let s = sigma * e;
                let r = rho * e;
                scalars.extend([weight_e2 * s, weight_e3 * s, -(weight_e2 * r), -(weight_e3 * r)]);
                points.extend([&out.c1, &out.c2, &inp.c1, &inp.c2]);
            }
        }
        scalars.extend([-weight_e2, -weight_e3, base_coeff, gamma_coeff, -(weight_e3 * self.tau)]);
        points.extend([&self.lambda1, &self.lambda2, &base, &self.gamma, &st.key]);

        if RistrettoPoint::vartime_multiscalar_mul(scalars, points).is_identity() {
            Ok(())
        } else {
            Err(ProofError::Equation("the shuffle equations do not hold"))
        }
    }

    /// Check every list of the proof against the statement's row count.
    fn check_shape(&self, k: usize) -> Result<(), ProofError> {
        let rows_ok = [&self.a, &self.c, &self.u, &self.w, &self.d].iter().all(|v| v.len() == k)
            && self.sigma.len() == k;
        if !rows_ok || self.theta.len() != 2 * k || self.resp.len() + 1 != 2 * k {
            return Err(ProofError::Shape("the proof's row count differs from the statement's"));
        }
        Ok(())
    }

    /// Absorb the proof into `t` in protocol order and return the challenges it yields.
    fn replay(&self, t: &mut Transcript) -> Challenges {
        let (rho, a_encodings) = round_commitments(
            t,
            &self.gamma,
            &self.a,
            &self.c,
            &self.u,
            &self.w,
            [&self.lambda1, &self.lambda2],
        );
        let (lambda, shift) = round_d(t, &self.d);
        let c = round_theta(t, &self.theta);
        t.append_message(b"r", &scalar_bytes(&self.resp));
        t.append_message(b"sigma", &scalar_bytes(&self.sigma));
        t.append_scalar(b"tau", &self.tau);
        let z = t.challenge_scalar(b"batch");
        Challenges { rho, lambda, t: shift, c, z, a_encodings }
    }

    /// The canonical encoding: a u32 row count `k`, then Γ, A, C, U, W, Λ₁, Λ₂, D, Θ (points)
    /// and r, σ, τ (scalars), each list in index order.
    pub fn to_bytes(&self) -> Vec<u8> {
        let k = self.a.len();
        let mut out = Writer::with_capacity(encoded_len(k));
        out.u32(u32::try_from(k).expect("a proof has at most MAX_ROWS rows"));
        out.point(&self.gamma);
        for p in self.a.iter().chain(&self.c).chain(&self.u).chain(&self.w) {
            out.point(p);
        }
        out.point(&self.lambda1).point(&self.lambda2);
        for p in self.d.iter().chain(&self.theta) {
            out.point(p);
        }
        for s in self.resp.iter().chain(&self.sigma) {
            out.scalar(s);
        }
        out.scalar(&self.tau);
        out.finish()
    }

    /// Strict decoding: a row count in `2..=MAX_ROWS`, exactly the bytes that count implies,
    /// canonical points and scalars, and Γ not the identity.
    pub fn from_bytes(bytes: &[u8]) -> Result<Proof, DecodeError> {
        let mut r = Reader::new(bytes);
        let k = r.u32()? as usize;
        if k < 2 {
            return Err(DecodeError::Invalid {
                what: "shuffle row count",
                why: "a shuffle has at least two rows",
            });
        }
        if k > MAX_ROWS {
            return Err(DecodeError::Length {
                what: "shuffle row count",
                got: k as u64,
                max: MAX_ROWS as u64,
            });
        }
        // Refuse a wrong length before decoding thousands of points.
        let body = encoded_len(k) - 4;
        match r.remaining() {
            n if n < body => return Err(DecodeError::Truncated { needed: body - n }),
            n if n > body => return Err(DecodeError::TrailingBytes(n - body)),
            _ => {}
        }
        let points = |r: &mut Reader<'_>, n: usize| -> Result<Vec<RistrettoPoint>, DecodeError> {
            (0..n).map(|_| r.point()).collect()
        };
        let scalars = |r: &mut Reader<'_>, n: usize| -> Result<Vec<Scalar>, DecodeError> {
            (0..n).map(|_| r.scalar()).collect()
        };
        let proof = Proof {
            gamma: r.point_nonidentity()?,
            a: points(&mut r, k)?,
            c: points(&mut r, k)?,
            u: points(&mut r, k)?,
            w: points(&mut r, k)?,
            lambda1: r.point()?,
            lambda2: r.point()?,
            d: points(&mut r, k)?,
            theta: points(&mut r, 2 * k)?,
            resp: scalars(&mut r, 2 * k - 1)?,
            sigma: scalars(&mut r, k)?,
            tau: r.scalar()?,
        };
        r.finish()?;
        Ok(proof)
    }
}

/// The verifier's challenges, in transcript order.
struct Challenges {
    /// ρ_i, one per row.
    rho: Vec<Scalar>,
    /// λ, which combines A with B and C with D into the simple-shuffle inputs.
    lambda: Scalar,
    /// t, the simple shuffle's shift.
    t: Scalar,
    /// c, the product argument's challenge.
    c: Scalar,
    /// z, the batching challenge.
    z: Scalar,
    /// The transcript encodings of the A_i (of 2·A_i, see [`append_points`]).
    a_encodings: Vec<CompressedRistretto>,
}

/// The prover's secret nonces for one proof.
#[derive(Clone)]
struct Nonces {
    /// γ, never zero.
    gamma: Scalar,
    /// a_i.
    a: Vec<Scalar>,
    /// u_i.
    u: Vec<Scalar>,
    /// w_i.
    w: Vec<Scalar>,
    /// τ₀.
    tau0: Scalar,
    /// θ_1 … θ_(2k−1).
    theta: Vec<Scalar>,
}

impl Nonces {
    fn random<R: RngCore + CryptoRng>(k: usize, rng: &mut R) -> Self {
        let mut gamma = Scalar::random(rng);
        while gamma == Scalar::ZERO {
            gamma = Scalar::random(rng);
        }
        Self {
            gamma,
            a: random_scalars(k, rng),
            u: random_scalars(k, rng),
            w: random_scalars(k, rng),
            tau0: Scalar::random(rng),
            theta: random_scalars(2 * k - 1, rng),
        }
    }
}

fn random_scalars<R: RngCore + CryptoRng>(n: usize, rng: &mut R) -> Vec<Scalar> {
    (0..n).map(|_| Scalar::random(rng)).collect()
}

/// Neff's shuffle of the `k` rows compressed with `e`, continuing `t`.
///
/// Output row `i` must be input row `perm[i]` re-randomised with `beta[i]` (after compression);
/// the caller has checked that, and that `perm` is a permutation of `0..k`.
fn prove_rows(
    st: &Statement,
    mut t: Transcript,
    e: &[Scalar],
    perm: &[usize],
    beta: &[Scalar],
    n: &Nonces,
) -> Result<Proof, ProofError> {
    let gamma = RistrettoPoint::mul_base(&n.gamma);
    let a: Vec<RistrettoPoint> = n.a.iter().map(RistrettoPoint::mul_base).collect();
    let c: Vec<RistrettoPoint> =
        perm.iter().map(|&p| RistrettoPoint::mul_base(&(n.gamma * n.a[p]))).collect();
    let u: Vec<RistrettoPoint> = n.u.iter().map(RistrettoPoint::mul_base).collect();
    let w: Vec<RistrettoPoint> =
        n.w.iter().map(|w| RistrettoPoint::mul_base(&(n.gamma * w))).collect();

    // (Λ₁, Λ₂) = τ₀·(B, K) + Σ_i w_i·(compressed output i) − Σ_j u_j·(compressed input j).
    let mut scalars = vec![n.tau0];
    for (weights, sign) in [(&n.w, Scalar::ONE), (&n.u, -Scalar::ONE)] {
        for weight in weights.iter() {
            scalars.extend(e.iter().map(|e| sign * weight * e));
        }
    }
    let lists = || st.outputs.iter().chain(&st.inputs);
    let lambda1 = RistrettoPoint::multiscalar_mul(
        &scalars,
        std::iter::once(&B).chain(lists().map(|ct| &ct.c1)),
    );
    let lambda2 = RistrettoPoint::multiscalar_mul(
        &scalars,
        std::iter::once(&st.key).chain(lists().map(|ct| &ct.c2)),
    );

    let (rho, _) = round_commitments(&mut t, &gamma, &a, &c, &u, &w, [&lambda1, &lambda2]);
    let b: Vec<Scalar> = rho.iter().zip(&n.u).map(|(rho, u)| rho - u).collect();
    let d: Vec<RistrettoPoint> =
        perm.iter().map(|&p| RistrettoPoint::mul_base(&(n.gamma * b[p]))).collect();
    let (lambda, shift) = round_d(&mut t, &d);

    // The simple-shuffle inputs R_i = (a_i + λ·b_i)·B and S_i = γ·R_π(i).
    let xi: Vec<Scalar> = n.a.iter().zip(&b).map(|(a, b)| a + lambda * b).collect();
    let (theta, resp) = prove_simple(&mut t, &xi, perm, &n.gamma, &shift, &n.theta)?;

    let sigma = perm.iter().zip(&n.w).map(|(&p, w)| w + b[p]).collect();
    let tau = perm.iter().zip(beta).map(|(&p, beta)| b[p] * beta).sum::<Scalar>() - n.tau0;
    Ok(Proof { gamma, a, c, u, w, lambda1, lambda2, d, theta, resp, sigma, tau })
}

/// Neff's simple k-shuffle for `R_i = xi_i·B` and `S_i = γ·xi_perm(i)·B`, with shift `t`:
/// the product argument that `Π (xi_i − t) · γ^k = Π (γ·xi_perm(i) − γ·t)`, over the 2k
/// pairs `(X'_q, Y'_q)` of the notes. Returns the commitments Θ and responses r_1 … r_(2k−1).
fn prove_simple(
    t: &mut Transcript,
    xi: &[Scalar],
    perm: &[usize],
    gamma: &Scalar,
    shift: &Scalar,
    theta: &[Scalar],
) -> Result<(Vec<RistrettoPoint>, Vec<Scalar>), ProofError> {
    let k = xi.len();
    let n = 2 * k;
    let x: Vec<Scalar> =
        xi.iter().map(|v| v - shift).chain(std::iter::repeat_n(*gamma, k)).collect();
    let y: Vec<Scalar> = perm
        .iter()
        .map(|&p| gamma * (xi[p] - shift))
        .chain(std::iter::repeat_n(Scalar::ONE, k))
        .collect();
    if y.contains(&Scalar::ZERO) {
        // Only when t hits one of the k values γ·xi_i / γ: negligible.
        return Err(ProofError::Unprovable("degenerate simple-shuffle challenge"));
    }
    // θ(0) = θ(n) = 0 and θ(q) = theta[q − 1] otherwise.
    let theta_at = |q: usize| if q == 0 || q == n { Scalar::ZERO } else { theta[q - 1] };
    let commitments: Vec<RistrettoPoint> = (0..n)
        .map(|q| RistrettoPoint::mul_base(&(theta_at(q) * x[q] + theta_at(q + 1) * y[q])))
        .collect();
    let c = round_theta(t, &commitments);

    // r(q) = θ(q) + c·δ(q) with δ(0) = 1 and δ(q + 1) = −δ(q)·x_q / y_q; since the products of
    // x and y agree, δ(n) = 1 and the last equation closes with r(n) = c.
    let mut y_inv = y;
    Scalar::batch_invert(&mut y_inv);
    let mut delta = Scalar::ONE;
    let mut resp = Vec::with_capacity(n - 1);
    for q in 0..n - 1 {
        delta = -(delta * x[q] * y_inv[q]);
        resp.push(theta[q] + c * delta);
    }
    Ok((commitments, resp))
}

/// The transcript up to the row-compression challenge: domain, context, generators, width,
/// row count, then all inputs and all outputs.
fn statement_transcript(st: &Statement) -> Transcript {
    let mut t = st.context.transcript(LABEL, VERSION);
    t.append_point(b"B", &B);
    t.append_point(b"K", &st.key);
    t.append_len(b"width", st.width);
    t.append_len(b"rows", st.rows());
    append_points(&mut t, b"inputs", st.inputs.iter().flat_map(|ct| [&ct.c1, &ct.c2]));
    append_points(&mut t, b"outputs", st.outputs.iter().flat_map(|ct| [&ct.c1, &ct.c2]));
    t
}

/// The row-compression coefficients e_1 … e_w, drawn after the whole statement.
fn compression_coefficients(t: &mut Transcript, width: usize) -> Vec<Scalar> {
    (0..width).map(|_| t.challenge_scalar(b"row-compression")).collect()
}

/// Absorb Γ, A, C, U, W, Λ₁, Λ₂ and draw ρ. Returns ρ and the encodings absorbed for A.
fn round_commitments(
    t: &mut Transcript,
    gamma: &RistrettoPoint,
    a: &[RistrettoPoint],
    c: &[RistrettoPoint],
    u: &[RistrettoPoint],
    w: &[RistrettoPoint],
    lambda: [&RistrettoPoint; 2],
) -> (Vec<Scalar>, Vec<CompressedRistretto>) {
    append_points(t, b"Gamma", [gamma]);
    let a_encodings = append_points(t, b"A", a);
    append_points(t, b"C", c);
    append_points(t, b"U", u);
    append_points(t, b"W", w);
    append_points(t, b"Lambda", lambda);
    let rho = (0..a.len()).map(|_| t.challenge_scalar(b"rho")).collect();
    (rho, a_encodings)
}

/// Absorb D and draw λ and the simple shuffle's shift t.
fn round_d(t: &mut Transcript, d: &[RistrettoPoint]) -> (Scalar, Scalar) {
    append_points(t, b"D", d);
    let lambda = t.challenge_scalar(b"lambda");
    let shift = t.challenge_scalar(b"t");
    (lambda, shift)
}

/// Absorb the product argument's commitments and draw its challenge c.
fn round_theta(t: &mut Transcript, theta: &[RistrettoPoint]) -> Scalar {
    append_points(t, b"Theta", theta);
    t.challenge_scalar(b"c")
}

/// Absorb a list of points as one message: the concatenated encodings of their doubles.
///
/// Doubling is a bijection of the prime-order Ristretto group, so the encoding of `2·P` binds
/// `P` exactly as the encoding of `P` would; unlike single encodings, which each need an inverse
/// square root, the doubles of a whole list are encoded with one shared field inversion.
fn append_points<'a>(
    t: &mut Transcript,
    label: &'static [u8],
    points: impl IntoIterator<Item = &'a RistrettoPoint>,
) -> Vec<CompressedRistretto> {
    let encodings = RistrettoPoint::double_and_compress_batch(points);
    let mut message = Vec::with_capacity(32 * encodings.len());
    for encoding in &encodings {
        message.extend_from_slice(encoding.as_bytes());
    }
    t.append_message(label, &message);
    encodings
}

/// Concatenated encodings of a list of scalars.
fn scalar_bytes(scalars: &[Scalar]) -> Vec<u8> {
    scalars.iter().flat_map(|s| s.to_bytes()).collect()
}
