//! The aggregation proof contract: a computing node's homomorphic sum of ciphertext vectors.
//!
//! A computing node adds, component by component, the ciphertext vectors it received (the data
//! providers' range-proof ciphertexts, or its child computing nodes' outputs) and publishes the
//! sum. Nothing secret enters the sum, so the proof carries no group element: the verifier takes
//! the inputs and the claimed output from the ledger, recomputes the sum with [`aggregate`] and
//! compares. The proof is a one-byte version tag ([`VERSION`]) so that the format can grow later
//! without ambiguity.
//!
//! ```
//! use lemal_contracts::elgamal::Ciphertext;
//! use lemal_contracts::ids::{EntityId, QueryId};
//! use lemal_contracts::proofs::aggregation::{aggregate, Proof, Statement};
//! use lemal_contracts::transcript::ProofContext;
//! use curve25519_dalek::scalar::Scalar;
//!
//! let inputs = vec![
//!     vec![Ciphertext::trivial(&Scalar::from(2u64))],
//!     vec![Ciphertext::trivial(&Scalar::from(3u64))],
//! ];
//! let output = aggregate(&inputs)?;
//! let context = ProofContext {
//!     chain_id: "lemal-test".into(),
//!     query_id: QueryId([7; 16]),
//!     prover: EntityId::cn(0),
//!     index: 0,
//! };
//! let st = Statement { context, inputs, output };
//! let proof = Proof::prove(&st)?;
//! let proof = Proof::from_bytes(&proof.to_bytes())?;
//! proof.verify(&st)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use crate::elgamal::Ciphertext;
use crate::error::{DecodeError, ProofError};
use crate::group::Reader;
use crate::transcript::ProofContext;

/// The version of the proof format, and its only byte.
pub const VERSION: u8 = 1;

/// Exact encoded length of a proof: the version byte.
pub const PROOF_LEN: usize = 1;

/// The largest number of input vectors one aggregation may add.
pub const MAX_INPUTS: usize = 4096;

/// What the ledger knows about one aggregation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Statement {
    /// Chain, query, prover and proof index.
    pub context: ProofContext,
    /// The input vectors, each of `w` ciphertexts, resolved by the caller from ledger state.
    pub inputs: Vec<Vec<Ciphertext>>,
    /// The claimed component-wise sum, `w` ciphertexts.
    pub output: Vec<Ciphertext>,
}

impl Statement {
    /// Check the shape: `1..=MAX_INPUTS` inputs, all of one width `w ≥ 1`, and an output of
    /// width `w`.
    pub fn check(&self) -> Result<(), ProofError> {
        let width = check_inputs(&self.inputs)?;
        if self.output.len() != width {
            return Err(ProofError::Statement("output width differs from the input width"));
        }
        Ok(())
    }
}

/// Check the input vectors and return their common width.
fn check_inputs(inputs: &[Vec<Ciphertext>]) -> Result<usize, ProofError> {
    let first = inputs.first().ok_or(ProofError::Statement("no input to aggregate"))?;
    if inputs.len() > MAX_INPUTS {
        return Err(ProofError::Statement("more inputs than MAX_INPUTS"));
    }
    let width = first.len();
    if width == 0 {
        return Err(ProofError::Statement("input vectors are empty"));
    }
    if inputs.iter().any(|input| input.len() != width) {
        return Err(ProofError::Statement("input vectors differ in width"));
    }
    Ok(width)
}

/// Component-wise sum of input vectors.
///
/// Fails with [`ProofError::Statement`] if there is no input, more than [`MAX_INPUTS`], an
/// empty vector, or vectors of different widths.
pub fn aggregate(inputs: &[Vec<Ciphertext>]) -> Result<Vec<Ciphertext>, ProofError> {
    let width = check_inputs(inputs)?;
    let mut sum = vec![Ciphertext::zero(); width];
    for input in inputs {
        for (acc, ct) in sum.iter_mut().zip(input) {
            *acc = *acc + *ct;
        }
    }
    Ok(sum)
}

/// An aggregation proof: no group element, only the format version.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Proof;

impl Proof {
    /// The proof for `st`; [`ProofError::Unprovable`] if the output is not the sum of the inputs.
    pub fn prove(st: &Statement) -> Result<Proof, ProofError> {
        Proof.verify(st).map_err(|e| match e {
            ProofError::Equation(_) => {
                ProofError::Unprovable("output is not the sum of the inputs")
            }
            other => other,
        })?;
        Ok(Proof)
    }

    /// Check `st`'s shape, recompute the sum of its inputs and compare it with its output.
    pub fn verify(&self, st: &Statement) -> Result<(), ProofError> {
        st.check()?;
        if aggregate(&st.inputs)? != st.output {
            return Err(ProofError::Equation("output is not the sum of the inputs"));
        }
        Ok(())
    }

    /// The encoding: the single byte [`VERSION`].
    pub fn to_bytes(&self) -> Vec<u8> {
        vec![VERSION]
    }

    /// Strict decoding: exactly the single byte [`VERSION`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Proof, DecodeError> {
        let (&version, rest) = bytes.split_first().ok_or(DecodeError::Truncated { needed: 1 })?;
        if version != VERSION {
            return Err(DecodeError::Invalid {
                what: "aggregation proof version",
                why: "unknown version",
            });
        }
        Reader::new(rest).finish()?;
        Ok(Proof)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::elgamal::{DecryptionTable, SecretKey};
    use crate::group::B;
    use crate::ids::{EntityId, QueryId};
    use curve25519_dalek::scalar::Scalar;
    use proptest::prelude::*;
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    const GOLDEN_SEED: u64 = 0x4167_6772;
    const GOLDEN_PATH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/vectors/aggregation.hex");

    fn context() -> ProofContext {
        ProofContext {
            chain_id: "lemal-test".into(),
            query_id: QueryId([0x42; 16]),
            prover: EntityId::cn(1),
            index: 0,
        }
    }

    /// `count` vectors of `width` encryptions of small values under a fresh key, and that key.
    fn encrypted_inputs(
        count: usize,
        width: usize,
        rng: &mut ChaCha20Rng,
    ) -> (SecretKey, Vec<Vec<Ciphertext>>, Vec<i64>) {
        let sk = SecretKey::random(rng);
        let pk = *sk.public().point();
        let mut totals = vec![0i64; width];
        let inputs = (0..count)
            .map(|i| {
                (0..width)
                    .map(|j| {
                        let x = (i as i64 * 7 + j as i64 * 3) % 23 - 11;
                        totals[j] += x;
                        Ciphertext::encrypt_i64(&pk, x, rng).0
                    })
                    .collect()
            })
            .collect();
        (sk, inputs, totals)
    }

    fn statement(count: usize, width: usize, rng: &mut ChaCha20Rng) -> Statement {
        let (_, inputs, _) = encrypted_inputs(count, width, rng);
        let output = aggregate(&inputs).expect("well-formed inputs");
        Statement { context: context(), inputs, output }
    }

    fn assert_rejected_by_equation(st: &Statement) {
        assert!(matches!(Proof.verify(st), Err(ProofError::Equation(_))), "{st:?}");
    }

    #[test]
    fn honest_aggregation_verifies_at_several_sizes() {
        let mut rng = ChaCha20Rng::seed_from_u64(1);
        for (count, width) in [(1, 1), (2, 2), (12, 2), (100, 3)] {
            let st = statement(count, width, &mut rng);
            let proof = Proof::prove(&st).expect("honest statement");
            assert_eq!(proof.verify(&st), Ok(()), "{count} inputs of width {width}");
        }
    }

    #[test]
    fn aggregate_decrypts_to_the_sum_of_the_plaintexts() {
        let mut rng = ChaCha20Rng::seed_from_u64(2);
        let (sk, inputs, totals) = encrypted_inputs(12, 2, &mut rng);
        let table = DecryptionTable::with_bounds(20, 10);
        let sum = aggregate(&inputs).expect("well-formed inputs");
        let decrypted: Vec<Option<i64>> = sum.iter().map(|ct| table.decrypt(&sk, ct)).collect();
        let expected: Vec<Option<i64>> = totals.into_iter().map(Some).collect();
        assert_eq!(decrypted, expected);
    }

    #[test]
    fn aggregation_of_child_outputs_equals_aggregation_of_all_leaves() {
        let mut rng = ChaCha20Rng::seed_from_u64(3);
        let (_, leaves, _) = encrypted_inputs(9, 2, &mut rng);
        let children: Vec<Vec<Ciphertext>> =
            leaves.chunks(3).map(|chunk| aggregate(chunk).expect("well-formed inputs")).collect();
        let root = Statement {
            context: context(),
            output: aggregate(&leaves).expect("well-formed inputs"),
            inputs: children,
        };
        assert_eq!(Proof.verify(&root), Ok(()));
    }

    #[test]
    fn prover_refuses_an_output_that_is_not_the_sum() {
        let mut rng = ChaCha20Rng::seed_from_u64(4);
        let mut st = statement(3, 2, &mut rng);
        st.output[1].c2 += B;
        assert!(matches!(Proof::prove(&st), Err(ProofError::Unprovable(_))));
    }

    #[test]
    fn verifier_rejects_each_tampered_output_component() {
        let mut rng = ChaCha20Rng::seed_from_u64(5);
        let st = statement(4, 3, &mut rng);
        for j in 0..3 {
            let mut bad = st.clone();
            bad.output[j].c1 += B;
            assert_rejected_by_equation(&bad);
            let mut bad = st.clone();
            bad.output[j].c2 += B;
            assert_rejected_by_equation(&bad);
        }
    }

    #[test]
    fn verifier_rejects_each_tampered_input_component() {
        let mut rng = ChaCha20Rng::seed_from_u64(6);
        let st = statement(4, 3, &mut rng);
        for i in 0..4 {
            for j in 0..3 {
                let mut bad = st.clone();
                bad.inputs[i][j].c1 += B;
                assert_rejected_by_equation(&bad);
                let mut bad = st.clone();
                bad.inputs[i][j].c2 -= B;
                assert_rejected_by_equation(&bad);
            }
        }
    }

    #[test]
    fn verifier_rejects_output_swapped_between_components() {
        let mut rng = ChaCha20Rng::seed_from_u64(7);
        let mut st = statement(5, 2, &mut rng);
        st.output.swap(0, 1);
        assert_rejected_by_equation(&st);
    }

    #[test]
    fn verifier_rejects_a_missing_or_extra_input() {
        let mut rng = ChaCha20Rng::seed_from_u64(8);
        let st = statement(5, 2, &mut rng);
        let mut missing = st.clone();
        missing.inputs.pop();
        assert_rejected_by_equation(&missing);
        let mut duplicated = st.clone();
        duplicated.inputs.push(st.inputs[0].clone());
        assert_rejected_by_equation(&duplicated);
    }

    #[test]
    fn verifier_rejects_input_replaced_by_the_same_value_under_fresh_randomness() {
        let mut rng = ChaCha20Rng::seed_from_u64(9);
        let mut st = statement(3, 1, &mut rng);
        let key = *SecretKey::random(&mut rng).public().point();
        st.inputs[2][0] = st.inputs[2][0].rerandomize(&key, &Scalar::from(5u64));
        assert_rejected_by_equation(&st);
    }

    #[test]
    fn statement_with_bad_shape_is_rejected_before_any_arithmetic() {
        let mut rng = ChaCha20Rng::seed_from_u64(10);
        let st = statement(3, 2, &mut rng);
        let shape_errors = [
            Statement { inputs: vec![], output: vec![], ..st.clone() },
            Statement { inputs: vec![vec![]; 3], output: vec![], ..st.clone() },
            Statement { output: st.output[..1].to_vec(), ..st.clone() },
            Statement { output: [st.output.clone(), st.output.clone()].concat(), ..st.clone() },
            {
                let mut ragged = st.clone();
                ragged.inputs[1].push(Ciphertext::zero());
                ragged
            },
            Statement { inputs: vec![st.inputs[0].clone(); MAX_INPUTS + 1], ..st.clone() },
        ];
        for bad in &shape_errors {
            assert!(matches!(bad.check(), Err(ProofError::Statement(_))));
            assert!(matches!(Proof.verify(bad), Err(ProofError::Statement(_))));
            assert!(matches!(Proof::prove(bad), Err(ProofError::Statement(_))));
        }
    }

    #[test]
    fn maximum_number_of_inputs_is_accepted() {
        let inputs = vec![vec![Ciphertext::trivial(&Scalar::ONE)]; MAX_INPUTS];
        let output = vec![Ciphertext::trivial(&Scalar::from(MAX_INPUTS as u64))];
        let st = Statement { context: context(), inputs, output };
        assert_eq!(Proof.verify(&st), Ok(()));
    }

    #[test]
    fn aggregate_refuses_empty_and_ragged_inputs() {
        assert!(matches!(aggregate(&[]), Err(ProofError::Statement(_))));
        assert!(matches!(aggregate(&[vec![]]), Err(ProofError::Statement(_))));
        let ragged = [vec![Ciphertext::zero()], vec![Ciphertext::zero(); 2]];
        assert!(matches!(aggregate(&ragged), Err(ProofError::Statement(_))));
    }

    /// The verdict is a recomputation from the ledger, so it cannot depend on the context: a
    /// proof moved to another slot is as valid there as the sum it claims. What binds a
    /// submission to its slot is the signed transaction that carries it.
    #[test]
    fn verdict_depends_only_on_inputs_and_output_not_on_context() {
        let mut rng = ChaCha20Rng::seed_from_u64(11);
        let st = statement(3, 2, &mut rng);
        let mut moved = st.clone();
        moved.context.chain_id.push('x');
        moved.context.query_id.0[0] ^= 1;
        moved.context.prover = EntityId::cn(9);
        moved.context.index += 1;
        assert_eq!(Proof.verify(&moved), Ok(()));
        let mut wrong = moved;
        wrong.output[0].c2 += B;
        assert_rejected_by_equation(&wrong);
    }

    #[test]
    fn encoding_is_the_version_byte_and_nothing_else() {
        assert_eq!(Proof.to_bytes(), vec![VERSION]);
        assert_eq!(Proof::from_bytes(&[VERSION]), Ok(Proof));
        assert_eq!(Proof::from_bytes(&[]), Err(DecodeError::Truncated { needed: 1 }));
        assert_eq!(Proof::from_bytes(&[VERSION, 0]), Err(DecodeError::TrailingBytes(1)));
        for other in [0u8, 2, 0x7f, 0xff] {
            assert!(matches!(Proof::from_bytes(&[other]), Err(DecodeError::Invalid { .. })));
        }
    }

    fn golden_proof() -> (Statement, Vec<u8>) {
        let mut rng = ChaCha20Rng::seed_from_u64(GOLDEN_SEED);
        let st = statement(12, 2, &mut rng);
        let proof = Proof::prove(&st).expect("honest statement");
        (st, proof.to_bytes())
    }

    #[test]
    fn golden_vector_is_reproduced_and_verifies() {
        let (st, bytes) = golden_proof();
        let stored = std::fs::read_to_string(GOLDEN_PATH).expect("golden vector file");
        assert_eq!(hex::encode(&bytes), stored.trim());
        let stored = hex::decode(stored.trim()).expect("golden vector is hex");
        let proof = Proof::from_bytes(&stored).expect("golden vector decodes");
        assert_eq!(proof.verify(&st), Ok(()));
    }

    #[test]
    #[ignore = "rewrites the golden vector; run explicitly when the format changes"]
    fn regenerate_aggregation_golden_vector() {
        let (_, bytes) = golden_proof();
        std::fs::write(GOLDEN_PATH, format!("{}\n", hex::encode(bytes))).expect("write vector");
    }

    proptest! {
        #[test]
        fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..4)) {
            let decoded = Proof::from_bytes(&bytes);
            prop_assert_eq!(decoded.is_ok(), bytes == [VERSION]);
        }
    }
}
