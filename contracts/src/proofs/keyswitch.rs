//! The key-switch proof contract: a computing node moves the query result to the querier's key.
//!
//! The final result ciphertexts `(C1_j, C2_j)` are encrypted under the collective key
//! `K = Σ_i K_i`. Computing node `i`, holding `k_i` with registered share `K_i = k_i·B`,
//! publishes for every `j`
//!
//! ```text
//! (D1_ij, D2_ij) = (v_ij·B, −k_i·C1_j + v_ij·U)
//! ```
//!
//! with fresh `v_ij`, and one batched Σ-proof of knowledge of `k_i` and all `v_ij` such that
//! `K_i = k_i·B`, `D1_ij = v_ij·B` and `D2_ij = −k_i·C1_j + v_ij·U`. Once every node has
//! published, [`combine`] gives the querier `(Σ_i D1_ij, C2_j + Σ_i D2_ij)`, an ElGamal
//! encryption of the result under `U` that it opens with `u`.
//!
//! Verification is one multiscalar multiplication; its weights come from the transcript after
//! the whole statement and the whole proof are absorbed. The construction, the transcript and
//! the byte format are described in `contracts/docs/notes-keyswitch.md`.
//!
//! ```
//! use lemal_contracts::elgamal::{collective_key, Ciphertext, DecryptionTable, SecretKey};
//! use lemal_contracts::ids::{EntityId, QueryId};
//! use lemal_contracts::proofs::keyswitch::{combine, switch, Proof};
//! use lemal_contracts::transcript::ProofContext;
//! use rand_core::OsRng;
//!
//! let nodes = [SecretKey::random(&mut OsRng), SecretKey::random(&mut OsRng)];
//! let key = collective_key(&nodes.iter().map(SecretKey::public).collect::<Vec<_>>());
//! let querier = SecretKey::random(&mut OsRng);
//! let (result, _) = Ciphertext::encrypt_i64(&key, 42, &mut OsRng);
//!
//! let mut shares = Vec::new();
//! for (i, node) in (0u32..).zip(&nodes) {
//!     let context = ProofContext {
//!         chain_id: "lemal-test".into(),
//!         query_id: QueryId([7; 16]),
//!         prover: EntityId::cn(i),
//!         index: 0,
//!     };
//!     let (st, proof) = switch(context, node, querier.public().point(), &[result], &mut OsRng)?;
//!     // A verifier rebuilds `st` from the ledger and checks the proof's bytes against it.
//!     Proof::from_bytes(&proof.to_bytes())?.verify(&st)?;
//!     shares.push(st.outputs);
//! }
//! let switched = combine(&[result], &shares)?;
//! let table = DecryptionTable::with_bounds(8, 4);
//! assert_eq!(table.decrypt(&querier, &switched[0]), Some(42));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use curve25519_dalek::ristretto::{CompressedRistretto, RistrettoPoint};
use curve25519_dalek::scalar::Scalar;
use curve25519_dalek::traits::{Identity, MultiscalarMul, VartimeMultiscalarMul};
use merlin::Transcript;
use rand_core::{CryptoRng, RngCore};

use crate::elgamal::{Ciphertext, SecretKey};
use crate::error::{DecodeError, ProofError};
use crate::group::{Point, Reader, Writer, B};
use crate::transcript::{ProofContext, TranscriptProtocol};

/// The proof type's transcript label.
pub const LABEL: &[u8] = b"keyswitch";

/// The version of the construction and of its byte format, absorbed into the transcript.
pub const VERSION: u64 = 1;

/// The largest number of ciphertexts one key-switch proof may cover.
pub const MAX_CIPHERTEXTS: usize = 1024;

/// What the ledger knows about one node's key switch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Statement {
    /// Chain, query, prover and proof index.
    pub context: ProofContext,
    /// The prover's share `K_i = k_i·B` of the collective key, registered in genesis.
    pub share: RistrettoPoint,
    /// The querier's key `U`.
    pub querier: RistrettoPoint,
    /// The result ciphertexts `(C1_j, C2_j)` under the collective key.
    pub inputs: Vec<Ciphertext>,
    /// The node's contributions `(D1_ij, D2_ij)`, stored as `Ciphertext { c1: D1, c2: D2 }`.
    pub outputs: Vec<Ciphertext>,
}

impl Statement {
    /// Check the shape: `1..=MAX_CIPHERTEXTS` inputs, one output per input, and neither the
    /// share nor the querier key the identity.
    pub fn check(&self) -> Result<(), ProofError> {
        check_count(self.inputs.len())?;
        if self.outputs.len() != self.inputs.len() {
            return Err(ProofError::Statement("the number of outputs differs from the inputs"));
        }
        if self.share == RistrettoPoint::identity() {
            return Err(ProofError::Statement("the share is the identity"));
        }
        if self.querier == RistrettoPoint::identity() {
            return Err(ProofError::Statement("the querier key is the identity"));
        }
        Ok(())
    }

    /// A transcript that has absorbed the context and the whole statement, in the order of the
    /// notes: the count, `K_i`, `U`, every `C_j`, every `(D1_j, D2_j)`.
    fn transcript(&self) -> Transcript {
        let mut t = self.context.transcript(LABEL, VERSION);
        t.append_len(b"n", self.inputs.len());
        t.append_point(b"K", &self.share);
        t.append_point(b"U", &self.querier);
        for ct in &self.inputs {
            t.append_ciphertext(b"C", ct);
        }
        for ct in &self.outputs {
            t.append_ciphertext(b"D", ct);
        }
        t
    }
}

fn check_count(n: usize) -> Result<(), ProofError> {
    if n == 0 {
        return Err(ProofError::Statement("no ciphertext to switch"));
    }
    if n > MAX_CIPHERTEXTS {
        return Err(ProofError::Statement("more ciphertexts than MAX_CIPHERTEXTS"));
    }
    Ok(())
}

/// The prover's commitments for one ciphertext: `T1_j = a_j·B`, `T2_j = −a_k·C1_j + a_j·U`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct RowCommitment {
    t1: Point,
    t2: Point,
}

/// A batched Σ-proof for one node's key-switch contributions to `n` ciphertexts.
///
/// Encoded in `68 + 96·n` bytes: the count `n` (u32, little-endian), `T_K`, the `n` pairs
/// `(T1_j, T2_j)`, `z_k`, the `n` responses `z_j`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Proof {
    /// `T_K = a_k·B`.
    t_k: Point,
    /// One pair of commitments per ciphertext.
    rows: Vec<RowCommitment>,
    /// `z_k = a_k + c·k_i`.
    z_k: Scalar,
    /// `z_j = a_j + c·v_ij`.
    z: Vec<Scalar>,
}

impl Proof {
    /// Prove that `st.outputs` are the key-switch contributions of `secret` to `st.inputs`
    /// towards `st.querier`, made with the ElGamal randomness `nonces` (one per ciphertext).
    ///
    /// Fails with [`ProofError::Statement`] on a malformed statement and with
    /// [`ProofError::Unprovable`] if the secret does not match `st.share` or an output is not
    /// `(v_j·B, −k·C1_j + v_j·U)`.
    pub fn prove<R: RngCore + CryptoRng>(
        st: &Statement,
        secret: &SecretKey,
        nonces: &[Scalar],
        rng: &mut R,
    ) -> Result<Proof, ProofError> {
        st.check()?;
        if nonces.len() != st.inputs.len() {
            return Err(ProofError::Unprovable("one nonce per ciphertext is needed"));
        }
        if RistrettoPoint::mul_base(secret.scalar()) != st.share {
            return Err(ProofError::Unprovable("the secret key does not match the share"));
        }
        let consistent = st
            .inputs
            .iter()
            .zip(&st.outputs)
            .zip(nonces)
            .all(|((ct, out), v)| secret.key_switch_share(ct, &st.querier, v) == *out);
        if !consistent {
            return Err(ProofError::Unprovable("an output is not this key's share of its input"));
        }
        Ok(Self::prove_unchecked(st, secret, nonces, rng))
    }

    /// The Σ-proof for a well-formed statement whose witness is known to be right.
    fn prove_unchecked<R: RngCore + CryptoRng>(
        st: &Statement,
        secret: &SecretKey,
        nonces: &[Scalar],
        rng: &mut R,
    ) -> Proof {
        let mut t = st.transcript();

        // Commitment randomness from the caller's RNG, hedged with the witness and the
        // statement: a weak RNG alone does not make the nonces repeat across statements.
        let mut builder = t.build_rng().rekey_with_witness_bytes(b"k", secret.scalar().as_bytes());
        for v in nonces {
            builder = builder.rekey_with_witness_bytes(b"v", v.as_bytes());
        }
        let mut nonce_rng = builder.finalize(rng);
        let a_k = Scalar::random(&mut nonce_rng);
        let a: Vec<Scalar> = nonces.iter().map(|_| Scalar::random(&mut nonce_rng)).collect();

        let t_k = Point::new(RistrettoPoint::mul_base(&a_k));
        let rows: Vec<RowCommitment> = st
            .inputs
            .iter()
            .zip(&a)
            .map(|(ct, a_j)| RowCommitment {
                t1: Point::new(RistrettoPoint::mul_base(a_j)),
                t2: Point::new(RistrettoPoint::multiscalar_mul([*a_j, -a_k], [st.querier, ct.c1])),
            })
            .collect();
        let c = absorb_commitments(&mut t, &t_k, &rows);

        let z_k = a_k + c * secret.scalar();
        let z = a.iter().zip(nonces).map(|(a_j, v_j)| a_j + c * v_j).collect();
        Proof { t_k, rows, z_k, z }
    }

    /// Check the proof against `st`, the statement the caller resolved from the ledger.
    ///
    /// The three families of equations
    ///
    /// ```text
    /// z_k·B = T_K + c·K        z_j·B = T1_j + c·D1_j        z_j·U − z_k·C1_j = T2_j + c·D2_j
    /// ```
    ///
    /// are checked together by one multiscalar multiplication, weighted by powers of a scalar
    /// drawn from the transcript after the responses.
    pub fn verify(&self, st: &Statement) -> Result<(), ProofError> {
        st.check()?;
        let n = st.inputs.len();
        if self.rows.len() != n || self.z.len() != n {
            return Err(ProofError::Shape("the proof covers a different number of ciphertexts"));
        }

        let mut t = st.transcript();
        let c = absorb_commitments(&mut t, &self.t_k, &self.rows);
        t.append_scalar(b"z_k", &self.z_k);
        for z_j in &self.z {
            t.append_scalar(b"z", z_j);
        }
        let rho = t.challenge_scalar(b"batch");

        // Σ (weight · (left side − right side)) must be the identity. The K equation has
        // weight 1; row j's equations (j from 0) have weights ρ^(2j+1) and ρ^(2j+2).
        let mut scalars = Vec::with_capacity(5 * n + 4);
        let mut points = Vec::with_capacity(5 * n + 4);
        let mut b_coeff = self.z_k;
        let mut u_coeff = Scalar::ZERO;
        let mut weight = Scalar::ONE;
        for (((ct, out), row), z_j) in
            st.inputs.iter().zip(&st.outputs).zip(&self.rows).zip(&self.z)
        {
            weight *= rho;
            let alpha = weight;
            weight *= rho;
            let beta = weight;
            b_coeff += alpha * z_j;
            u_coeff += beta * z_j;
            scalars.extend([-alpha, -(c * alpha), -(beta * self.z_k), -beta, -(c * beta)]);
            points.extend([*row.t1.point(), out.c1, ct.c1, *row.t2.point(), out.c2]);
        }
        scalars.extend([b_coeff, u_coeff, -c, -Scalar::ONE]);
        points.extend([B, st.querier, st.share, *self.t_k.point()]);

        if RistrettoPoint::vartime_multiscalar_mul(scalars, points) == RistrettoPoint::identity() {
            Ok(())
        } else {
            Err(ProofError::Equation("key-switch Σ-proof"))
        }
    }

    /// The canonical encoding (see the type's documentation).
    pub fn to_bytes(&self) -> Vec<u8> {
        let n = self.rows.len();
        let mut w = Writer::with_capacity(encoded_len(n));
        w.u32(u32::try_from(n).expect("a proof covers at most MAX_CIPHERTEXTS ciphertexts"));
        w.compressed(&compressed(&self.t_k));
        for row in &self.rows {
            w.compressed(&compressed(&row.t1)).compressed(&compressed(&row.t2));
        }
        w.scalar(&self.z_k);
        for z_j in &self.z {
            w.scalar(z_j);
        }
        w.finish()
    }

    /// Strict decoding: a count in `1..=MAX_CIPHERTEXTS`, canonical points and scalars, and
    /// exactly `68 + 96·n` bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Proof, DecodeError> {
        let mut r = Reader::new(bytes);
        let n = r.u32()? as usize;
        if n == 0 {
            return Err(DecodeError::Invalid { what: "key-switch proof", why: "no ciphertext" });
        }
        if n > MAX_CIPHERTEXTS {
            return Err(DecodeError::Length {
                what: "key-switch proof ciphertexts",
                got: n as u64,
                max: MAX_CIPHERTEXTS as u64,
            });
        }
        // The size is fixed by the count: refuse a wrong size before decoding any point.
        let body = encoded_len(n) - 4;
        if r.remaining() < body {
            return Err(DecodeError::Truncated { needed: body - r.remaining() });
        }
        if r.remaining() > body {
            return Err(DecodeError::TrailingBytes(r.remaining() - body));
        }
        let t_k = r.point_with_encoding()?;
        let rows = (0..n)
            .map(|_| {
                Ok(RowCommitment { t1: r.point_with_encoding()?, t2: r.point_with_encoding()? })
            })
            .collect::<Result<Vec<_>, DecodeError>>()?;
        let z_k = r.scalar()?;
        let z = (0..n).map(|_| r.scalar()).collect::<Result<Vec<_>, _>>()?;
        r.finish()?;
        Ok(Proof { t_k, rows, z_k, z })
    }
}

/// The size of the encoding of a proof for `n` ciphertexts.
/// Exact encoded length of a proof over `n` ciphertexts: `68 + 96·n`.
pub const fn proof_len(n: usize) -> usize {
    encoded_len(n)
}

const fn encoded_len(n: usize) -> usize {
    4 + 32 + 64 * n + 32 + 32 * n
}

fn compressed(p: &Point) -> CompressedRistretto {
    CompressedRistretto(*p.as_bytes())
}

/// Absorb the prover's commitments and draw the challenge `c`.
fn absorb_commitments(t: &mut Transcript, t_k: &Point, rows: &[RowCommitment]) -> Scalar {
    t.append_compressed(b"T_K", &compressed(t_k));
    for row in rows {
        t.append_compressed(b"T1", &compressed(&row.t1));
        t.append_compressed(b"T2", &compressed(&row.t2));
    }
    t.challenge_scalar(b"c")
}

/// Compute this node's shares for `inputs` towards `querier` and prove them.
///
/// Draws a fresh `v_j` per ciphertext and returns the statement (with the node's share
/// `secret·B` and its outputs) together with its proof.
pub fn switch<R: RngCore + CryptoRng>(
    context: ProofContext,
    secret: &SecretKey,
    querier: &RistrettoPoint,
    inputs: &[Ciphertext],
    rng: &mut R,
) -> Result<(Statement, Proof), ProofError> {
    check_count(inputs.len())?;
    let nonces: Vec<Scalar> = inputs.iter().map(|_| Scalar::random(rng)).collect();
    let outputs = inputs.iter().zip(&nonces).map(|(ct, v)| secret.key_switch_share(ct, querier, v));
    let st = Statement {
        context,
        share: *secret.public().point(),
        querier: *querier,
        inputs: inputs.to_vec(),
        outputs: outputs.collect(),
    };
    st.check()?;
    let proof = Proof::prove_unchecked(&st, secret, &nonces, rng);
    Ok((st, proof))
}

/// The querier's ciphertexts from the inputs and every node's outputs:
/// `(Σ_i D1_ij, C2_j + Σ_i D2_ij)`.
///
/// Fails with [`ProofError::Statement`] if there is no input, more than [`MAX_CIPHERTEXTS`], no
/// node, or a node with a number of outputs other than the number of inputs.
pub fn combine(
    inputs: &[Ciphertext],
    outputs_per_node: &[Vec<Ciphertext>],
) -> Result<Vec<Ciphertext>, ProofError> {
    check_count(inputs.len())?;
    if outputs_per_node.is_empty() {
        return Err(ProofError::Statement("no node's key-switch outputs"));
    }
    if outputs_per_node.iter().any(|outputs| outputs.len() != inputs.len()) {
        return Err(ProofError::Statement("a node's outputs differ in number from the inputs"));
    }
    let mut result: Vec<Ciphertext> =
        inputs.iter().map(|ct| Ciphertext { c1: RistrettoPoint::identity(), c2: ct.c2 }).collect();
    for outputs in outputs_per_node {
        for (acc, d) in result.iter_mut().zip(outputs) {
            *acc = *acc + *d;
        }
    }
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::elgamal::{collective_key, DecryptionTable, PublicKey};
    use crate::ids::{EntityId, QueryId};
    use crate::proofs::aggregation;
    use proptest::prelude::*;
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    const GOLDEN_SEED: u64 = 0x6b65_7973;
    const GOLDEN_PATH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/vectors/keyswitch.hex");

    fn context(node: u32) -> ProofContext {
        ProofContext {
            chain_id: "lemal-test".into(),
            query_id: QueryId([0x5a; 16]),
            prover: EntityId::cn(node),
            index: 0,
        }
    }

    /// `n` encryptions of small values under a random key, as a computing node would receive.
    fn results(n: usize, rng: &mut ChaCha20Rng) -> Vec<Ciphertext> {
        let key = *SecretKey::random(rng).public().point();
        (0..n).map(|j| Ciphertext::encrypt_i64(&key, j as i64 - 3, rng).0).collect()
    }

    /// A node's honest statement and proof for `n` ciphertexts.
    fn fixture(n: usize, seed: u64) -> (Statement, Proof) {
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        let secret = SecretKey::random(&mut rng);
        let querier = *SecretKey::random(&mut rng).public().point();
        let inputs = results(n, &mut rng);
        switch(context(1), &secret, &querier, &inputs, &mut rng).expect("honest switch")
    }

    fn assert_equation_fails(proof: &Proof, st: &Statement) {
        assert!(matches!(proof.verify(st), Err(ProofError::Equation(_))), "accepted {st:?}");
    }

    fn shifted(p: &Point) -> Point {
        Point::new(p.point() + B)
    }

    #[test]
    fn honest_switch_verifies_for_1_2_12_and_100_ciphertexts() {
        for (n, seed) in [(1, 1), (2, 2), (12, 3), (100, 4)] {
            let (st, proof) = fixture(n, seed);
            assert_eq!(proof.verify(&st), Ok(()), "{n} ciphertexts");
            assert_eq!(proof.to_bytes().len(), 68 + 96 * n);
        }
    }

    #[test]
    fn prover_accepts_outputs_built_by_the_caller_with_their_nonces() {
        let mut rng = ChaCha20Rng::seed_from_u64(5);
        let secret = SecretKey::random(&mut rng);
        let querier = *SecretKey::random(&mut rng).public().point();
        let inputs = results(3, &mut rng);
        let nonces: Vec<Scalar> = (0..3).map(|_| Scalar::random(&mut rng)).collect();
        let outputs = inputs
            .iter()
            .zip(&nonces)
            .map(|(ct, v)| secret.key_switch_share(ct, &querier, v))
            .collect();
        let st = Statement {
            context: context(0),
            share: *secret.public().point(),
            querier,
            inputs,
            outputs,
        };
        let proof = Proof::prove(&st, &secret, &nonces, &mut rng).expect("honest witness");
        assert_eq!(proof.verify(&st), Ok(()));
    }

    #[test]
    fn three_nodes_switch_an_aggregate_that_the_querier_decrypts() {
        let mut rng = ChaCha20Rng::seed_from_u64(6);
        let nodes: Vec<SecretKey> = (0..3).map(|_| SecretKey::random(&mut rng)).collect();
        let publics: Vec<PublicKey> = nodes.iter().map(SecretKey::public).collect();
        let key = collective_key(&publics);
        let querier = SecretKey::random(&mut rng);

        // Four data providers, each with a sum and a count; the root aggregates them.
        let rows = [[120i64, 3], [-45, 1], [310, 7], [-2000, 2]];
        let inputs: Vec<Vec<Ciphertext>> = rows
            .iter()
            .map(|row| row.iter().map(|&x| Ciphertext::encrypt_i64(&key, x, &mut rng).0).collect())
            .collect();
        let root = aggregation::aggregate(&inputs).expect("well-formed inputs");

        let mut shares = Vec::new();
        for (i, node) in (0u32..).zip(&nodes) {
            let (st, proof) = switch(context(i), node, querier.public().point(), &root, &mut rng)
                .expect("switch");
            // The verifier takes the share from the roster, not from the prover.
            let registered = Statement { share: *publics[i as usize].point(), ..st.clone() };
            assert_eq!(proof.verify(&registered), Ok(()));
            shares.push(st.outputs);
        }

        let switched = combine(&root, &shares).expect("one output per input and node");
        let table = DecryptionTable::with_bounds(20, 10);
        let plain: Vec<Option<i64>> =
            switched.iter().map(|ct| table.decrypt(&querier, ct)).collect();
        assert_eq!(plain, vec![Some(-1615), Some(13)]);

        // Without one node's contribution the querier's key alone opens nothing.
        let partial = combine(&root, &shares[..2]).expect("well-formed");
        assert_eq!(table.decrypt(&querier, &partial[0]), None);
    }

    #[test]
    fn trivial_input_with_identity_c1_is_switched() {
        let mut rng = ChaCha20Rng::seed_from_u64(7);
        let secret = SecretKey::random(&mut rng);
        let querier = SecretKey::random(&mut rng);
        let inputs = [Ciphertext::trivial(&Scalar::from(9u64))];
        let (st, proof) = switch(context(0), &secret, querier.public().point(), &inputs, &mut rng)
            .expect("switch");
        assert_eq!(proof.verify(&st), Ok(()));
        let switched = combine(&inputs, &[st.outputs]).expect("well-formed");
        assert_eq!(DecryptionTable::with_bounds(8, 4).decrypt(&querier, &switched[0]), Some(9));
    }

    #[test]
    fn verifier_rejects_each_tampered_proof_field() {
        let (st, proof) = fixture(3, 8);
        let mut bad = proof.clone();
        bad.t_k = shifted(&bad.t_k);
        assert_equation_fails(&bad, &st);
        bad = proof.clone();
        bad.z_k += Scalar::ONE;
        assert_equation_fails(&bad, &st);
        for j in 0..3 {
            let mut bad = proof.clone();
            bad.rows[j].t1 = shifted(&bad.rows[j].t1);
            assert_equation_fails(&bad, &st);
            let mut bad = proof.clone();
            bad.rows[j].t2 = shifted(&bad.rows[j].t2);
            assert_equation_fails(&bad, &st);
            let mut bad = proof.clone();
            bad.z[j] += Scalar::ONE;
            assert_equation_fails(&bad, &st);
        }
    }

    #[test]
    fn verifier_rejects_commitment_rows_swapped() {
        let (st, mut proof) = fixture(3, 9);
        proof.rows.swap(0, 2);
        assert_equation_fails(&proof, &st);
    }

    /// Each verification equation on its own, as `left − right`: a reference model of the
    /// batched check, all identity exactly when the proof is valid.
    fn residuals(proof: &Proof, st: &Statement) -> Vec<RistrettoPoint> {
        let mut t = st.transcript();
        let c = absorb_commitments(&mut t, &proof.t_k, &proof.rows);
        let mut out = vec![B * proof.z_k - proof.t_k.point() - st.share * c];
        for (((ct, d), row), z_j) in
            st.inputs.iter().zip(&st.outputs).zip(&proof.rows).zip(&proof.z)
        {
            out.push(B * z_j - row.t1.point() - d.c1 * c);
            out.push(st.querier * z_j - ct.c1 * proof.z_k - row.t2.point() - d.c2 * c);
        }
        out
    }

    /// A statement whose first output has `D2` shifted by `error`, with the Σ-proof an honest
    /// prover would compute for it, and the challenge of that proof.
    fn false_share(
        inputs: Vec<Ciphertext>,
        error: impl FnOnce(&RistrettoPoint) -> RistrettoPoint,
        seed: u64,
    ) -> (Statement, Proof, Scalar, SecretKey) {
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        let secret = SecretKey::random(&mut rng);
        let querier = SecretKey::random(&mut rng);
        let u = *querier.public().point();
        let nonces: Vec<Scalar> = inputs.iter().map(|_| Scalar::random(&mut rng)).collect();
        let mut outputs: Vec<Ciphertext> =
            inputs.iter().zip(&nonces).map(|(ct, v)| secret.key_switch_share(ct, &u, v)).collect();
        outputs[0].c2 += error(&u);
        let st = Statement {
            context: context(0),
            share: *secret.public().point(),
            querier: u,
            inputs,
            outputs,
        };
        let proof = Proof::prove_unchecked(&st, &secret, &nonces, &mut rng);
        let c = absorb_commitments(&mut st.transcript(), &proof.t_k, &proof.rows);
        (st, proof, c, querier)
    }

    #[test]
    fn verifier_rejects_failing_equations_that_cancel_under_unit_weights() {
        // D2_0 is off by e·(B + U); shifting z_0 by c·e makes the two equations of row 0 fail
        // by opposite amounts, so a check that added the equations unweighted would pass.
        let mut rng = ChaCha20Rng::seed_from_u64(10);
        let e = Scalar::from(5u64);
        let (st, mut proof, c, _) = false_share(results(2, &mut rng), |u| (B + u) * e, 10);
        proof.z[0] += c * e;
        let r = residuals(&proof, &st);
        assert_ne!(r[1], RistrettoPoint::identity());
        assert_eq!(r[1] + r[2], RistrettoPoint::identity());
        assert_equation_fails(&proof, &st);
    }

    #[test]
    fn verifier_rejects_a_response_fitted_to_weights_drawn_before_it() {
        // With trivial inputs (C1 = 0), z_k multiplies B alone in the batched check. A prover
        // who could see the batching weight before fixing z_k would absorb a false D2 = e·B
        // into it; the weight depends on z_k, so the fitted value no longer fits.
        let e = Scalar::from(3u64);
        let inputs = vec![Ciphertext::trivial(&Scalar::from(4u64)); 2];
        let (st, mut proof, c, _) = false_share(inputs, |_| B * e, 11);
        let mut t = st.transcript();
        absorb_commitments(&mut t, &proof.t_k, &proof.rows);
        for z_j in &proof.z {
            t.append_scalar(b"z", z_j);
        }
        let early_rho = t.challenge_scalar(b"batch");
        proof.z_k += early_rho * early_rho * c * e;
        assert_equation_fails(&proof, &st);

        // The same with z_0, for a prover who also knows the querier's key u.
        let (st, mut proof, c, querier) = false_share(st.inputs.clone(), |_| B * e, 12);
        let mut t = st.transcript();
        absorb_commitments(&mut t, &proof.t_k, &proof.rows);
        t.append_scalar(b"z_k", &proof.z_k);
        let early_rho = t.challenge_scalar(b"batch");
        let (alpha, beta) = (early_rho, early_rho * early_rho);
        proof.z[0] += beta * c * e * (alpha + beta * querier.scalar()).invert();
        assert_equation_fails(&proof, &st);
    }

    #[test]
    fn verifier_rejects_each_tampered_context_field() {
        let (st, proof) = fixture(2, 11);
        let mut bad = st.clone();
        bad.context.chain_id = "lemal-other".into();
        assert_equation_fails(&proof, &bad);
        let mut bad = st.clone();
        bad.context.query_id.0[15] ^= 1;
        assert_equation_fails(&proof, &bad);
        let mut bad = st.clone();
        bad.context.prover = EntityId::cn(2);
        assert_equation_fails(&proof, &bad);
        let mut bad = st.clone();
        bad.context.prover = EntityId::dp(1);
        assert_equation_fails(&proof, &bad);
        let mut bad = st;
        bad.context.index = 1;
        assert_equation_fails(&proof, &bad);
    }

    #[test]
    fn verifier_rejects_another_share_or_querier() {
        let (st, proof) = fixture(2, 12);
        assert_equation_fails(&proof, &Statement { share: st.share + B, ..st.clone() });
        assert_equation_fails(&proof, &Statement { querier: st.querier + B, ..st.clone() });
        assert_equation_fails(&proof, &Statement { querier: st.share, ..st });
    }

    #[test]
    fn verifier_rejects_each_tampered_input_component() {
        let (st, proof) = fixture(3, 13);
        for j in 0..3 {
            let mut bad = st.clone();
            bad.inputs[j].c1 += B;
            assert_equation_fails(&proof, &bad);
            // C2 enters no equation, yet the transcript binds it.
            let mut bad = st.clone();
            bad.inputs[j].c2 += B;
            assert_equation_fails(&proof, &bad);
        }
    }

    #[test]
    fn verifier_rejects_each_tampered_output_component() {
        let (st, proof) = fixture(3, 14);
        for j in 0..3 {
            let mut bad = st.clone();
            bad.outputs[j].c1 += B;
            assert_equation_fails(&proof, &bad);
            let mut bad = st.clone();
            bad.outputs[j].c2 += B;
            assert_equation_fails(&proof, &bad);
        }
    }

    #[test]
    fn verifier_rejects_outputs_swapped_between_rows() {
        let (mut st, proof) = fixture(2, 15);
        st.outputs.swap(0, 1);
        assert_equation_fails(&proof, &st);
        let (mut st, proof) = fixture(2, 15);
        st.inputs.swap(0, 1);
        assert_equation_fails(&proof, &st);
    }

    #[test]
    fn verifier_rejects_a_statement_with_another_number_of_ciphertexts() {
        let (st, proof) = fixture(3, 16);
        let mut fewer = st.clone();
        fewer.inputs.pop();
        fewer.outputs.pop();
        assert!(matches!(proof.verify(&fewer), Err(ProofError::Shape(_))));
        let mut more = st.clone();
        more.inputs.push(st.inputs[0]);
        more.outputs.push(st.outputs[0]);
        assert!(matches!(proof.verify(&more), Err(ProofError::Shape(_))));
        let mut unpaired = st.clone();
        unpaired.outputs.pop();
        assert!(matches!(proof.verify(&unpaired), Err(ProofError::Statement(_))));
        let mut short_responses = proof.clone();
        short_responses.z.pop();
        assert!(matches!(short_responses.verify(&st), Err(ProofError::Shape(_))));
    }

    #[test]
    fn node_with_a_wrong_key_is_rejected() {
        let mut rng = ChaCha20Rng::seed_from_u64(17);
        let registered = SecretKey::random(&mut rng);
        let wrong = SecretKey::random(&mut rng);
        let querier = *SecretKey::random(&mut rng).public().point();
        let inputs = results(2, &mut rng);

        // An honest proof for the wrong key, checked against the registered share.
        let (st, proof) = switch(context(0), &wrong, &querier, &inputs, &mut rng).expect("switch");
        assert_eq!(proof.verify(&st), Ok(()));
        let against_roster = Statement { share: *registered.public().point(), ..st.clone() };
        assert_equation_fails(&proof, &against_roster);

        // The prover refuses; a proof forged with the wrong key anyway does not verify.
        let nonces: Vec<Scalar> = (0..2).map(|_| Scalar::random(&mut rng)).collect();
        let outputs =
            inputs.iter().zip(&nonces).map(|(ct, v)| wrong.key_switch_share(ct, &querier, v));
        let st = Statement { outputs: outputs.collect(), ..against_roster };
        assert!(matches!(
            Proof::prove(&st, &wrong, &nonces, &mut rng),
            Err(ProofError::Unprovable(_))
        ));
        let forged = Proof::prove_unchecked(&st, &wrong, &nonces, &mut rng);
        assert_equation_fails(&forged, &st);
        let forged = Proof::prove_unchecked(&st, &registered, &nonces, &mut rng);
        assert_equation_fails(&forged, &st);
    }

    #[test]
    fn share_computed_for_another_c1_is_rejected() {
        let mut rng = ChaCha20Rng::seed_from_u64(18);
        let secret = SecretKey::random(&mut rng);
        let querier = *SecretKey::random(&mut rng).public().point();
        let inputs = results(2, &mut rng);
        let other = results(1, &mut rng)[0];
        let nonces: Vec<Scalar> = (0..2).map(|_| Scalar::random(&mut rng)).collect();
        let outputs = vec![
            secret.key_switch_share(&other, &querier, &nonces[0]),
            secret.key_switch_share(&inputs[1], &querier, &nonces[1]),
        ];
        let st = Statement {
            context: context(0),
            share: *secret.public().point(),
            querier,
            inputs: inputs.clone(),
            outputs,
        };
        assert!(matches!(
            Proof::prove(&st, &secret, &nonces, &mut rng),
            Err(ProofError::Unprovable(_))
        ));
        let forged = Proof::prove_unchecked(&st, &secret, &nonces, &mut rng);
        assert_equation_fails(&forged, &st);

        // An honest proof about `other` does not carry over to the ledger's input.
        let (honest, proof) =
            switch(context(0), &secret, &querier, &[other, inputs[1]], &mut rng).expect("switch");
        assert_equation_fails(&proof, &Statement { inputs, ..honest });
    }

    #[test]
    fn identity_querier_or_share_is_rejected() {
        let (st, proof) = fixture(2, 19);
        let identity = RistrettoPoint::identity();
        for bad in [
            Statement { querier: identity, ..st.clone() },
            Statement { share: identity, ..st.clone() },
        ] {
            assert!(matches!(bad.check(), Err(ProofError::Statement(_))));
            assert!(matches!(proof.verify(&bad), Err(ProofError::Statement(_))));
        }
        let mut rng = ChaCha20Rng::seed_from_u64(19);
        let secret = SecretKey::random(&mut rng);
        assert!(matches!(
            switch(context(0), &secret, &identity, &st.inputs, &mut rng),
            Err(ProofError::Statement(_))
        ));
    }

    #[test]
    fn statement_needs_between_one_and_max_ciphertexts() {
        let (st, _) = fixture(1, 20);
        let empty = Statement { inputs: vec![], outputs: vec![], ..st.clone() };
        assert!(matches!(empty.check(), Err(ProofError::Statement(_))));
        let too_many = Statement {
            inputs: vec![st.inputs[0]; MAX_CIPHERTEXTS + 1],
            outputs: vec![st.outputs[0]; MAX_CIPHERTEXTS + 1],
            ..st.clone()
        };
        assert!(matches!(too_many.check(), Err(ProofError::Statement(_))));
        let most = Statement {
            inputs: vec![st.inputs[0]; MAX_CIPHERTEXTS],
            outputs: vec![st.outputs[0]; MAX_CIPHERTEXTS],
            ..st
        };
        assert_eq!(most.check(), Ok(()));
        let mut rng = ChaCha20Rng::seed_from_u64(20);
        let secret = SecretKey::random(&mut rng);
        assert!(matches!(
            switch(context(0), &secret, &most.querier, &[], &mut rng),
            Err(ProofError::Statement(_))
        ));
    }

    #[test]
    fn prover_refuses_a_wrong_number_of_nonces() {
        let mut rng = ChaCha20Rng::seed_from_u64(21);
        let (st, _) = fixture(2, 21);
        let secret = SecretKey::random(&mut rng);
        let one = [Scalar::ONE];
        assert!(matches!(
            Proof::prove(&st, &secret, &one, &mut rng),
            Err(ProofError::Unprovable(_))
        ));
    }

    #[test]
    fn combine_refuses_missing_or_mismatched_outputs() {
        let (st, _) = fixture(2, 22);
        assert!(matches!(combine(&st.inputs, &[]), Err(ProofError::Statement(_))));
        assert!(matches!(combine(&[], &[vec![]]), Err(ProofError::Statement(_))));
        let short = vec![st.outputs.clone(), st.outputs[..1].to_vec()];
        assert!(matches!(combine(&st.inputs, &short), Err(ProofError::Statement(_))));
    }

    /// Byte offsets of every point and every scalar in the encoding of a proof for `n` rows.
    fn slots(n: usize) -> (Vec<usize>, Vec<usize>) {
        let points = (0..2 * n + 1).map(|i| 4 + 32 * i).collect();
        let scalars = (0..n + 1).map(|i| 4 + 32 * (2 * n + 1) + 32 * i).collect();
        (points, scalars)
    }

    fn with_bytes_at(bytes: &[u8], at: usize, patch: &[u8]) -> Vec<u8> {
        let mut out = bytes.to_vec();
        out[at..at + patch.len()].copy_from_slice(patch);
        out
    }

    #[test]
    fn encoding_round_trips_and_has_the_documented_layout() {
        let (_, proof) = fixture(2, 23);
        let bytes = proof.to_bytes();
        assert_eq!(Proof::from_bytes(&bytes), Ok(proof.clone()));
        assert_eq!(bytes[..4], 2u32.to_le_bytes());
        assert_eq!(bytes[4..36], *proof.t_k.as_bytes());
        assert_eq!(bytes[36..68], *proof.rows[0].t1.as_bytes());
        assert_eq!(bytes[68..100], *proof.rows[0].t2.as_bytes());
        assert_eq!(bytes[164..196], *proof.z_k.as_bytes());
        assert_eq!(bytes[228..260], *proof.z[1].as_bytes());
    }

    #[test]
    fn from_bytes_rejects_every_truncation_and_trailing_bytes() {
        let bytes = fixture(2, 24).1.to_bytes();
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
        let l = Scalar::ZERO - Scalar::ONE;
        let mut l = l.to_bytes();
        l[0] += 1;
        let n = 2;
        let bytes = fixture(n, 25).1.to_bytes();
        let (points, scalars) = slots(n);
        for at in points {
            let bad = with_bytes_at(&bytes, at, &p);
            assert_eq!(Proof::from_bytes(&bad), Err(DecodeError::InvalidPoint), "point at {at}");
        }
        for at in scalars {
            let bad = with_bytes_at(&bytes, at, &l);
            assert_eq!(Proof::from_bytes(&bad), Err(DecodeError::InvalidScalar), "scalar at {at}");
        }
    }

    #[test]
    fn from_bytes_rejects_counts_that_do_not_fit() {
        let bytes = fixture(2, 26).1.to_bytes();
        let zero = with_bytes_at(&bytes, 0, &0u32.to_le_bytes());
        assert!(matches!(Proof::from_bytes(&zero), Err(DecodeError::Invalid { .. })));
        let huge = with_bytes_at(&bytes, 0, &(MAX_CIPHERTEXTS as u32 + 1).to_le_bytes());
        assert!(matches!(Proof::from_bytes(&huge), Err(DecodeError::Length { .. })));
        let three = with_bytes_at(&bytes, 0, &3u32.to_le_bytes());
        assert_eq!(Proof::from_bytes(&three), Err(DecodeError::Truncated { needed: 96 }));
        let one = with_bytes_at(&bytes, 0, &1u32.to_le_bytes());
        assert_eq!(Proof::from_bytes(&one), Err(DecodeError::TrailingBytes(96)));
    }

    fn golden_fixture() -> (Statement, Proof) {
        fixture(2, GOLDEN_SEED)
    }

    #[test]
    fn golden_vector_is_reproduced_and_verifies() {
        let (st, proof) = golden_fixture();
        let stored = std::fs::read_to_string(GOLDEN_PATH).expect("golden vector file");
        assert_eq!(hex::encode(proof.to_bytes()), stored.trim());
        let stored = hex::decode(stored.trim()).expect("golden vector is hex");
        let decoded = Proof::from_bytes(&stored).expect("golden vector decodes");
        assert_eq!(decoded.verify(&st), Ok(()));
    }

    #[test]
    #[ignore = "rewrites the golden vector; run explicitly when the format changes"]
    fn regenerate_keyswitch_golden_vector() {
        let (_, proof) = golden_fixture();
        std::fs::write(GOLDEN_PATH, format!("{}\n", hex::encode(proof.to_bytes())))
            .expect("write vector");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = Proof::from_bytes(&bytes);
        }

        #[test]
        fn decoding_arbitrary_bodies_of_the_right_size_never_panics(
            n in 1usize..4,
            body in proptest::collection::vec(any::<u8>(), 64 + 96 * 3),
        ) {
            let mut bytes = (n as u32).to_le_bytes().to_vec();
            bytes.extend_from_slice(&body[..64 + 96 * n]);
            if let Ok(proof) = Proof::from_bytes(&bytes) {
                prop_assert_eq!(proof.to_bytes(), bytes);
            }
        }

        #[test]
        fn batched_check_agrees_with_each_equation_checked_alone(
            seed in any::<u64>(),
            field in 0usize..14,
            tamper in any::<bool>(),
        ) {
            let (mut st, mut proof) = fixture(2, seed);
            if tamper {
                match field {
                    0 => proof.t_k = shifted(&proof.t_k),
                    1 | 2 => proof.rows[field - 1].t1 = shifted(&proof.rows[field - 1].t1),
                    3 | 4 => proof.rows[field - 3].t2 = shifted(&proof.rows[field - 3].t2),
                    5 => proof.z_k += Scalar::ONE,
                    6 | 7 => proof.z[field - 6] += Scalar::ONE,
                    8 | 9 => st.inputs[field - 8].c1 += B,
                    10 | 11 => st.outputs[field - 10].c1 += B,
                    _ => st.outputs[field - 12].c2 += B,
                }
            }
            let each_holds = residuals(&proof, &st).iter().all(|r| *r == RistrettoPoint::identity());
            prop_assert_eq!(each_holds, !tamper);
            prop_assert_eq!(proof.verify(&st).is_ok(), each_holds);
        }

        #[test]
        fn honest_proofs_round_trip_through_bytes(n in 1usize..5, seed in any::<u64>()) {
            let (st, proof) = fixture(n, seed);
            let decoded = Proof::from_bytes(&proof.to_bytes());
            prop_assert_eq!(decoded.as_ref(), Ok(&proof));
            prop_assert_eq!(proof.verify(&st), Ok(()));
        }
    }
}
