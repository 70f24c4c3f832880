//! Completeness, soundness, encoding and golden-vector tests of the shuffle proof.

use super::*;
use crate::elgamal::{DecryptionTable, SecretKey};
use crate::group::{decode_point, decode_scalar};
use crate::ids::{EntityId, QueryId};
use curve25519_dalek::traits::Identity;
use proptest::prelude::*;
use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};

const GOLDEN: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/vectors/shuffle.hex");
const GOLDEN_SEED: u64 = 0x5348_5546_464c_4501;

fn context() -> ProofContext {
    ProofContext {
        chain_id: "lemal-test".into(),
        query_id: QueryId([7; 16]),
        prover: EntityId::cn(1),
        index: 0,
    }
}

/// A noise list of `rows × width` distinct public values.
fn noise_values(rows: usize, width: usize) -> Vec<i64> {
    (0..rows * width).map(|i| i as i64 * 3 - 7).collect()
}

/// An honest shuffle by cn-1 of a list that cn-0 already shuffled (so that inputs are proper
/// encryptions, not trivial ones), with its witness and proof.
struct Fixture {
    st: Statement,
    witness: Witness,
    proof: Proof,
}

fn fixture(rows: usize, width: usize, seed: u64) -> Fixture {
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    let secret = SecretKey::random(&mut rng);
    let key = *secret.public().point();
    let public = encrypt_public_list(&noise_values(rows, width));
    let (inputs, _) = shuffle(&key, width, &public, &mut rng).expect("valid shape");
    let (outputs, witness) = shuffle(&key, width, &inputs, &mut rng).expect("valid shape");
    let st = Statement { context: context(), key, width, inputs, outputs };
    let proof = Proof::prove(&st, &witness, &mut rng).expect("honest witness");
    Fixture { st, witness, proof }
}

/// Ciphertexts of a row-major list, row by row.
fn row(list: &[Ciphertext], width: usize, i: usize) -> &[Ciphertext] {
    &list[i * width..(i + 1) * width]
}

fn compress_row(list: &[Ciphertext], width: usize, i: usize, e: &[Scalar]) -> Ciphertext {
    row(list, width, i)
        .iter()
        .zip(e)
        .fold(Ciphertext::zero(), |acc, (ct, e)| acc + Ciphertext { c1: ct.c1 * e, c2: ct.c2 * e })
}

/// A plain, unbatched reading of the verification equations of the notes, for the model
/// verifiers of the forgery tests. It never checks that the A_i are distinct.
///
/// With `supplied = None` it derives the simple-shuffle inputs itself, as our verifier does;
/// with `Some((r, s))` it takes them from the prover, as a verifier lacking that link would.
fn model_accepts(
    proof: &Proof,
    st: &Statement,
    e: Option<&[Scalar]>,
    supplied: Option<(&[RistrettoPoint], &[RistrettoPoint])>,
) -> bool {
    let k = st.rows();
    let mut t = statement_transcript(st);
    let e = match e {
        Some(e) => e.to_vec(),
        None => compression_coefficients(&mut t, st.width),
    };
    let ch = proof.replay(&mut t);
    let gamma = proof.gamma;

    let e1 = (0..k).all(|i| gamma * proof.sigma[i] == proof.w[i] + proof.d[i]);

    let out: Vec<Ciphertext> = (0..k).map(|i| compress_row(&st.outputs, st.width, i, &e)).collect();
    let inp: Vec<Ciphertext> = (0..k).map(|i| compress_row(&st.inputs, st.width, i, &e)).collect();
    let lhs1: RistrettoPoint = out.iter().zip(&proof.sigma).map(|(ct, s)| ct.c1 * s).sum();
    let lhs2: RistrettoPoint = out.iter().zip(&proof.sigma).map(|(ct, s)| ct.c2 * s).sum();
    let rhs1: RistrettoPoint = inp.iter().zip(&ch.rho).map(|(ct, r)| ct.c1 * r).sum();
    let rhs2: RistrettoPoint = inp.iter().zip(&ch.rho).map(|(ct, r)| ct.c2 * r).sum();
    let e2 = lhs1 == rhs1 + proof.lambda1 + B * proof.tau;
    let e3 = lhs2 == rhs2 + proof.lambda2 + st.key * proof.tau;

    let (r, s): (Vec<RistrettoPoint>, Vec<RistrettoPoint>) = match supplied {
        Some((r, s)) => (r.to_vec(), s.to_vec()),
        None => (
            (0..k).map(|i| proof.a[i] + (B * ch.rho[i] - proof.u[i]) * ch.lambda).collect(),
            (0..k).map(|i| proof.c[i] + proof.d[i] * ch.lambda).collect(),
        ),
    };
    let x: Vec<RistrettoPoint> =
        r.iter().map(|r| r - B * ch.t).chain(std::iter::repeat_n(gamma, k)).collect();
    let y: Vec<RistrettoPoint> =
        s.iter().map(|s| s - gamma * ch.t).chain(std::iter::repeat_n(B, k)).collect();
    let n = 2 * k;
    let r_at = |q: usize| if q == 0 || q == n { ch.c } else { proof.resp[q - 1] };
    let product = (0..n).all(|q| x[q] * r_at(q) + y[q] * r_at(q + 1) == proof.theta[q]);

    !gamma.is_identity() && e1 && e2 && e3 && product
}

fn rng(seed: u64) -> ChaCha20Rng {
    ChaCha20Rng::seed_from_u64(seed)
}

// ---------------------------------------------------------------------------------------------
// Completeness

#[test]
fn honest_shuffles_verify_at_several_sizes() {
    for rows in [2, 3, 10, 100] {
        for width in [1, 2, 3] {
            let f = fixture(rows, width, 100 + rows as u64 * 10 + width as u64);
            assert_eq!(f.proof.verify(&f.st), Ok(()), "{rows} rows × {width}");
            assert!(model_accepts(&f.proof, &f.st, None, None), "{rows} rows × {width}");
        }
    }
}

#[test]
fn three_nodes_in_turn_hide_which_public_value_becomes_the_noise() {
    let mut rng = rng(3);
    let secret = SecretKey::random(&mut rng);
    let key = *secret.public().point();
    let (rows, width) = (6, 2);
    let values = noise_values(rows, width);
    let mut list = encrypt_public_list(&values);
    for node in 0..3 {
        let (outputs, witness) = shuffle(&key, width, &list, &mut rng).expect("valid shape");
        let context = ProofContext { prover: EntityId::cn(node), ..context() };
        let st = Statement { context, key, width, inputs: list, outputs };
        let bytes = Proof::prove(&st, &witness, &mut rng).expect("honest").to_bytes();
        assert_eq!(Proof::from_bytes(&bytes).expect("canonical").verify(&st), Ok(()));
        list = st.outputs;
    }
    // The last list holds the public rows, each intact, in some order.
    let table = DecryptionTable::with_bounds(8, 4);
    let mut decrypted: Vec<Vec<i64>> = list
        .chunks(width)
        .map(|r| r.iter().map(|ct| table.decrypt(&secret, ct).expect("small")).collect())
        .collect();
    decrypted.sort();
    let mut expected: Vec<Vec<i64>> = values.chunks(width).map(<[i64]>::to_vec).collect();
    expected.sort();
    assert_eq!(decrypted, expected);
}

#[test]
fn shuffle_draws_every_permutation_of_three_rows_about_equally_often() {
    let mut rng = rng(4);
    let mut counts = [0u32; 6];
    let draws = 6000;
    for _ in 0..draws {
        let p = random_permutation(3, &mut rng);
        let index = match p.as_slice() {
            [0, 1, 2] => 0,
            [0, 2, 1] => 1,
            [1, 0, 2] => 2,
            [1, 2, 0] => 3,
            [2, 0, 1] => 4,
            [2, 1, 0] => 5,
            other => panic!("not a permutation: {other:?}"),
        };
        counts[index] += 1;
    }
    // Expected 1000 each; the standard deviation is about 29.
    assert!(counts.iter().all(|&c| (850..=1150).contains(&c)), "{counts:?}");
}

/// An RNG that replays fixed values, to see which draws the sampler rejects.
struct Replay(Vec<u64>);

impl RngCore for Replay {
    fn next_u32(&mut self) -> u32 {
        self.next_u64() as u32
    }
    fn next_u64(&mut self) -> u64 {
        self.0.remove(0)
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        dest.iter_mut().for_each(|b| *b = self.next_u64() as u8);
    }
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
        self.fill_bytes(dest);
        Ok(())
    }
}

#[test]
fn uniform_below_rejects_draws_from_the_incomplete_last_block() {
    // 2^64 = 3·q + 1: the single value u64::MAX would make residue 0 more likely.
    let mut rng = Replay(vec![u64::MAX, 5]);
    assert_eq!(uniform_below(3, &mut rng), 2);
    // For a power of two nothing is rejected.
    let mut rng = Replay(vec![u64::MAX]);
    assert_eq!(uniform_below(4, &mut rng), 3);
    let mut rng = Replay(vec![u64::MAX]);
    assert_eq!(uniform_below(1, &mut rng), 0);
}

#[test]
fn public_list_is_encrypted_trivially() {
    let list = encrypt_public_list(&[-3, 0, 9]);
    assert_eq!(list.len(), 3);
    for (ct, v) in list.iter().zip([-3i64, 0, 9]) {
        assert_eq!(ct.c1, RistrettoPoint::identity());
        assert_eq!(ct.c2, B * scalar_from_i64(v));
    }
}

#[test]
fn transcript_encodings_are_those_of_the_doubled_points_even_for_the_identity() {
    let mut rng = rng(5);
    let p = RistrettoPoint::random(&mut rng);
    let points =
        [RistrettoPoint::identity(), p - p, decode_point(&[0; 32]).expect("identity"), p, -p, B];
    let mut t = Transcript::new(b"test");
    let encodings = append_points(&mut t, b"points", &points);
    for (point, encoding) in points.iter().zip(&encodings) {
        assert_eq!(*encoding, (point + point).compress());
    }
}

// ---------------------------------------------------------------------------------------------
// Soundness: the proof

/// Human-readable names of the proof's 10k + 3 elements, in encoding order.
fn element_names(k: usize) -> Vec<String> {
    let mut names = vec!["Γ".to_string()];
    for list in ["A", "C", "U", "W"] {
        names.extend((0..k).map(|i| format!("{list}[{i}]")));
    }
    names.extend(["Λ1".to_string(), "Λ2".to_string()]);
    names.extend((0..k).map(|i| format!("D[{i}]")));
    names.extend((0..2 * k).map(|q| format!("Θ[{q}]")));
    names.extend((1..2 * k).map(|q| format!("r[{q}]")));
    names.extend((0..k).map(|i| format!("σ[{i}]")));
    names.push("τ".to_string());
    names
}

/// The encoding with element `index` changed to another valid value (point + B, scalar + 1).
fn with_element_changed(bytes: &[u8], k: usize, index: usize) -> Vec<u8> {
    let mut out = bytes.to_vec();
    let chunk = &mut out[4 + 32 * index..4 + 32 * (index + 1)];
    let old: [u8; 32] = chunk.try_into().expect("32 bytes");
    let new = if index < 7 * k + 3 {
        (decode_point(&old).expect("valid point") + B).compress().to_bytes()
    } else {
        (decode_scalar(&old).expect("valid scalar") + Scalar::ONE).to_bytes()
    };
    chunk.copy_from_slice(&new);
    out
}

#[test]
fn verifier_rejects_every_tampered_point_and_scalar_of_the_proof() {
    let f = fixture(3, 2, 10);
    let bytes = f.proof.to_bytes();
    let names = element_names(3);
    assert_eq!(32 * names.len() + 4, bytes.len());
    for (index, name) in names.iter().enumerate() {
        let tampered = Proof::from_bytes(&with_element_changed(&bytes, 3, index))
            .expect("tampering keeps the encoding canonical");
        assert_ne!(tampered, f.proof, "{name}");
        assert!(tampered.verify(&f.st).is_err(), "tampered {name} accepted");
    }
}

#[test]
fn verifier_rejects_proof_with_another_row_count() {
    let f = fixture(3, 1, 11);
    let g = fixture(4, 1, 12);
    assert!(matches!(f.proof.verify(&g.st), Err(ProofError::Shape(_))));
    assert!(matches!(g.proof.verify(&f.st), Err(ProofError::Shape(_))));
}

#[test]
fn verifier_rejects_identity_gamma() {
    let f = fixture(2, 1, 13);
    let proof = Proof { gamma: RistrettoPoint::identity(), ..f.proof };
    assert_eq!(proof.verify(&f.st), Err(ProofError::Equation("Γ is the identity")));
}

#[test]
fn verifier_rejects_colliding_a_commitments_even_when_every_equation_holds() {
    // Equal A_i would let a prover choose the permutation after seeing ρ (see the notes).
    let f = fixture(4, 2, 14);
    let mut nonces = Nonces::random(4, &mut rng(15));
    nonces.a[1] = nonces.a[0];
    let mut t = statement_transcript(&f.st);
    let e = compression_coefficients(&mut t, 2);
    let beta: Vec<Scalar> = f
        .witness
        .randomizers
        .iter()
        .map(|row| row.iter().zip(&e).map(|(r, e)| r * e).sum())
        .collect();
    let proof = prove_rows(&f.st, t, &e, &f.witness.permutation, &beta, &nonces).expect("proves");
    assert!(model_accepts(&proof, &f.st, None, None), "the equations alone hold");
    assert_eq!(
        proof.verify(&f.st),
        Err(ProofError::Equation("the commitments A_i are not pairwise distinct"))
    );
}

// ---------------------------------------------------------------------------------------------
// Soundness: the statement

fn assert_rejected(f: &Fixture, st: &Statement, what: &str) {
    assert_ne!(*st, f.st, "{what}: the statement did not change");
    assert!(f.proof.verify(st).is_err(), "proof accepted with another {what}");
}

#[test]
fn verifier_rejects_proof_moved_to_another_chain_query_prover_or_index() {
    let f = fixture(3, 2, 20);
    let moved = |change: fn(&mut ProofContext)| {
        let mut st = f.st.clone();
        change(&mut st.context);
        st
    };
    assert_rejected(&f, &moved(|c| c.chain_id.push('x')), "chain id");
    assert_rejected(&f, &moved(|c| c.query_id.0[15] ^= 1), "query id");
    assert_rejected(&f, &moved(|c| c.prover = EntityId::cn(2)), "prover");
    assert_rejected(&f, &moved(|c| c.prover = EntityId::dp(1)), "prover role");
    assert_rejected(&f, &moved(|c| c.index = 1), "index");
}

#[test]
fn verifier_rejects_another_key() {
    let f = fixture(3, 2, 21);
    let st = Statement { key: f.st.key + B, ..f.st.clone() };
    assert_rejected(&f, &st, "key");
}

#[test]
fn verifier_rejects_another_width() {
    // Six ciphertexts read as two rows of three instead of three rows of two.
    let f = fixture(3, 2, 22);
    let st = Statement { width: 3, ..f.st.clone() };
    assert_rejected(&f, &st, "width");
    assert!(matches!(f.proof.verify(&st), Err(ProofError::Shape(_))));
}

#[test]
fn verifier_rejects_any_changed_input_ciphertext() {
    let f = fixture(3, 2, 23);
    for i in 0..f.st.inputs.len() {
        for part in 0..2 {
            let mut st = f.st.clone();
            let ct = &mut st.inputs[i];
            if part == 0 {
                ct.c1 += B;
            } else {
                ct.c2 += B;
            }
            assert_rejected(&f, &st, &format!("input {i} component {}", part + 1));
        }
    }
}

#[test]
fn verifier_rejects_any_changed_output_ciphertext() {
    let f = fixture(3, 2, 24);
    for i in 0..f.st.outputs.len() {
        for part in 0..2 {
            let mut st = f.st.clone();
            let ct = &mut st.outputs[i];
            if part == 0 {
                ct.c1 += B;
            } else {
                ct.c2 += B;
            }
            assert_rejected(&f, &st, &format!("output {i} component {}", part + 1));
        }
    }
}

#[test]
fn verifier_rejects_output_rows_swapped_after_proving() {
    let f = fixture(3, 2, 25);
    let mut st = f.st.clone();
    let (first, rest) = st.outputs.split_at_mut(2);
    first.swap_with_slice(&mut rest[..2]);
    assert_rejected(&f, &st, "output order");
}

#[test]
fn verifier_rejects_inputs_and_outputs_exchanged() {
    let f = fixture(3, 2, 26);
    let st =
        Statement { inputs: f.st.outputs.clone(), outputs: f.st.inputs.clone(), ..f.st.clone() };
    assert_rejected(&f, &st, "direction");
}

/// A proof made by running the protocol on a witness that does not explain the outputs (the
/// prover's own check skipped), as a cheating node would.
fn prove_unchecked(st: &Statement, witness: &Witness, seed: u64) -> Proof {
    let mut t = statement_transcript(st);
    let e = compression_coefficients(&mut t, st.width);
    let beta: Vec<Scalar> = witness
        .randomizers
        .iter()
        .map(|row| row.iter().zip(&e).map(|(r, e)| r * e).sum())
        .collect();
    let nonces = Nonces::random(st.rows(), &mut rng(seed));
    prove_rows(st, t, &e, &witness.permutation, &beta, &nonces).expect("proves")
}

#[test]
fn verifier_rejects_an_output_row_not_re_randomised_from_any_input() {
    let f = fixture(4, 2, 27);
    let mut rng = rng(28);
    let mut st = f.st.clone();
    // Row 2 now encrypts values that are not in the list.
    for ct in &mut st.outputs[4..6] {
        *ct = Ciphertext::encrypt_i64(&st.key, 1_000, &mut rng).0;
    }
    assert!(matches!(Proof::prove(&st, &f.witness, &mut rng), Err(ProofError::Unprovable(_))));
    let forged = prove_unchecked(&st, &f.witness, 29);
    assert!(forged.verify(&st).is_err());
    assert!(f.proof.verify(&st).is_err());
}

#[test]
fn verifier_rejects_a_duplicated_row() {
    let f = fixture(4, 2, 30);
    let mut rng = rng(31);
    let mut st = f.st.clone();
    // Output row 3 re-randomises the same input row as output row 0; one input row is dropped.
    let source = f.witness.permutation[0];
    let mut witness = f.witness.clone();
    witness.permutation[3] = source;
    for j in 0..2 {
        st.outputs[6 + j] =
            st.inputs[source * 2 + j].rerandomize(&st.key, &witness.randomizers[3][j]);
    }
    assert!(matches!(Proof::prove(&st, &witness, &mut rng), Err(ProofError::Unprovable(_))));
    let forged = prove_unchecked(&st, &witness, 32);
    assert!(forged.verify(&st).is_err());
    assert!(f.proof.verify(&st).is_err());
}

// ---------------------------------------------------------------------------------------------
// The two forgeries against weaker verifiers

#[test]
fn forgery_with_simple_shuffle_inputs_of_its_choosing_fools_a_verifier_without_the_r_s_link_only() {
    // The forger publishes outputs that all encrypt 1000, a value absent from the public list.
    let mut rng = rng(40);
    let secret = SecretKey::random(&mut rng);
    let key = *secret.public().point();
    let (k, width) = (4usize, 2usize);
    let values = noise_values(k, width);
    let inputs = encrypt_public_list(&values);
    let target = 1_000i64;
    let out_randomness: Vec<Scalar> = (0..k * width).map(|_| Scalar::random(&mut rng)).collect();
    let outputs: Vec<Ciphertext> = out_randomness
        .iter()
        .map(|s| Ciphertext::encrypt(&key, &scalar_from_i64(target), s))
        .collect();
    let st = Statement { context: context(), key, width, inputs, outputs };
    assert_eq!(st.check(), Ok(()));

    let mut t = statement_transcript(&st);
    let e = compression_coefficients(&mut t, width);
    // Compressed plaintexts and randomness of both lists (the inputs are trivial: randomness 0).
    let dot = |xs: &[Scalar]| -> Scalar { xs.iter().zip(&e).map(|(x, e)| x * e).sum() };
    let m_in: Vec<Scalar> = values
        .chunks(width)
        .map(|r| dot(&r.iter().map(|&v| scalar_from_i64(v)).collect::<Vec<_>>()))
        .collect();
    let m_out: Vec<Scalar> = (0..k).map(|_| dot(&[scalar_from_i64(target); 2])).collect();
    let s_out: Vec<Scalar> = out_randomness.chunks(width).map(&dot).collect();

    // First message: honest-looking commitments, Λ an encryption of zero with randomness ℓ.
    let n = Nonces::random(k, &mut rng);
    let ell = Scalar::random(&mut rng);
    let gamma = RistrettoPoint::mul_base(&n.gamma);
    let a: Vec<RistrettoPoint> = n.a.iter().map(RistrettoPoint::mul_base).collect();
    let c: Vec<RistrettoPoint> =
        n.a.iter().map(|a| RistrettoPoint::mul_base(&(n.gamma * a))).collect();
    let u: Vec<RistrettoPoint> = n.u.iter().map(RistrettoPoint::mul_base).collect();
    let w: Vec<RistrettoPoint> =
        n.w.iter().map(|w| RistrettoPoint::mul_base(&(n.gamma * w))).collect();
    let (lambda1, lambda2) = (B * ell, key * ell);
    let (rho, _) = round_commitments(&mut t, &gamma, &a, &c, &u, &w, [&lambda1, &lambda2]);

    // σ solves Σ σ_i·m̄_i = Σ ρ_j·m_j, which is all (E2, E3) ask once D is free; τ follows.
    let mut sigma: Vec<Scalar> = (0..k).map(|_| Scalar::random(&mut rng)).collect();
    let rest: Scalar = (1..k).map(|i| sigma[i] * m_out[i]).sum();
    let wanted: Scalar = rho.iter().zip(&m_in).map(|(r, m)| r * m).sum();
    sigma[0] = (wanted - rest) * m_out[0].invert();
    let tau = sigma.iter().zip(&s_out).map(|(s, r)| s * r).sum::<Scalar>() - ell;
    // (E1) holds by choosing D from σ, which no longer has to match B.
    let d: Vec<RistrettoPoint> = sigma
        .iter()
        .zip(&n.w)
        .map(|(s, w)| RistrettoPoint::mul_base(&(n.gamma * (s - w))))
        .collect();
    let (_, shift) = round_d(&mut t, &d);

    // A valid simple shuffle, but of R', S' of the forger's choosing.
    let xi: Vec<Scalar> = (0..k).map(|_| Scalar::random(&mut rng)).collect();
    let identity: Vec<usize> = (0..k).collect();
    let r_forged: Vec<RistrettoPoint> = xi.iter().map(RistrettoPoint::mul_base).collect();
    let s_forged: Vec<RistrettoPoint> = r_forged.iter().map(|r| r * n.gamma).collect();
    let (theta, resp) =
        prove_simple(&mut t, &xi, &identity, &n.gamma, &shift, &n.theta).expect("proves");
    let forged = Proof { gamma, a, c, u, w, lambda1, lambda2, d, theta, resp, sigma, tau };

    assert!(
        model_accepts(&forged, &st, None, Some((&r_forged, &s_forged))),
        "a verifier that takes R and S from the prover accepts the forged outputs"
    );
    assert!(!model_accepts(&forged, &st, None, None));
    assert!(forged.verify(&st).is_err());
    let reparsed = Proof::from_bytes(&forged.to_bytes()).expect("canonical");
    assert!(reparsed.verify(&st).is_err());
}

#[test]
fn offsets_that_cancel_under_a_fixed_row_compression_are_rejected() {
    let f = fixture(4, 2, 50);
    let mut rng = rng(51);
    // Shift the two columns of output row 1 by +Δ and −Δ: fixed before any challenge.
    let delta = B * Scalar::random(&mut rng);
    let mut st = f.st.clone();
    st.outputs[2].c2 += delta;
    st.outputs[3].c2 -= delta;
    assert!(matches!(Proof::prove(&st, &f.witness, &mut rng), Err(ProofError::Unprovable(_))));

    // Against coefficients fixed in advance (1, 1) the offsets cancel and the proof passes.
    let fixed = [Scalar::ONE; 2];
    let beta: Vec<Scalar> = f.witness.randomizers.iter().map(|r| r.iter().sum()).collect();
    let nonces = Nonces::random(4, &mut rng);
    let forged =
        prove_rows(&st, statement_transcript(&st), &fixed, &f.witness.permutation, &beta, &nonces)
            .expect("proves");
    assert_eq!(forged.verify_rows(&st, statement_transcript(&st), &fixed), Ok(()));
    assert!(model_accepts(&forged, &st, Some(&fixed), None));

    // Our verifier draws the coefficients after absorbing the rows.
    assert!(forged.verify(&st).is_err());
    assert!(prove_unchecked(&st, &f.witness, 52).verify(&st).is_err());
}

// ---------------------------------------------------------------------------------------------
// Statement and witness shape

#[test]
fn check_rejects_bad_shapes() {
    let f = fixture(3, 2, 60);
    let cases: Vec<(&str, Statement)> = vec![
        ("width 0", Statement { width: 0, ..f.st.clone() }),
        ("width above MAX_WIDTH", Statement { width: MAX_WIDTH + 1, ..f.st.clone() }),
        ("ragged rows", Statement { width: 4, ..f.st.clone() }),
        ("one row", Statement { width: 6, ..f.st.clone() }),
        (
            "outputs shorter than inputs",
            Statement { outputs: f.st.outputs[..4].to_vec(), ..f.st.clone() },
        ),
        ("no rows", Statement { inputs: vec![], outputs: vec![], ..f.st.clone() }),
        ("identity key", Statement { key: RistrettoPoint::identity(), ..f.st.clone() }),
        (
            "more than MAX_ROWS rows",
            Statement {
                width: 1,
                inputs: vec![Ciphertext::zero(); MAX_ROWS + 1],
                outputs: vec![Ciphertext::zero(); MAX_ROWS + 1],
                ..f.st.clone()
            },
        ),
    ];
    for (what, st) in cases {
        assert!(matches!(st.check(), Err(ProofError::Statement(_))), "{what}");
        assert!(matches!(f.proof.verify(&st), Err(ProofError::Statement(_))), "{what}");
        assert!(
            matches!(Proof::prove(&st, &f.witness, &mut rng(61)), Err(ProofError::Statement(_))),
            "{what}"
        );
    }
    assert_eq!(Statement { width: 0, ..f.st.clone() }.rows(), 0);
    let max = Statement {
        width: 1,
        inputs: vec![Ciphertext::zero(); MAX_ROWS],
        outputs: vec![Ciphertext::zero(); MAX_ROWS],
        ..f.st.clone()
    };
    assert_eq!(max.check(), Ok(()));
}

#[test]
fn shuffle_refuses_the_shapes_check_refuses() {
    let mut rng = rng(62);
    let key = B * Scalar::random(&mut rng);
    let list = encrypt_public_list(&[1, 2, 3, 4]);
    assert!(shuffle(&key, 0, &list, &mut rng).is_err());
    assert!(shuffle(&key, 3, &list, &mut rng).is_err());
    assert!(shuffle(&key, 4, &list, &mut rng).is_err());
    assert!(shuffle(&key, 9, &list, &mut rng).is_err());
    assert!(shuffle(&RistrettoPoint::identity(), 1, &list, &mut rng).is_err());
    assert!(shuffle(&key, 2, &list, &mut rng).is_ok());
}

#[test]
fn prover_refuses_a_witness_that_does_not_explain_the_outputs() {
    let f = fixture(3, 2, 63);
    let mut rng = rng(64);
    let with = |change: fn(&mut Witness)| {
        let mut w = f.witness.clone();
        change(&mut w);
        w
    };
    let cases = [
        (
            "short permutation",
            with(|w| {
                w.permutation.pop();
            }),
        ),
        ("repeated row", with(|w| w.permutation[1] = w.permutation[0])),
        ("row out of range", with(|w| w.permutation[0] = 3)),
        ("other permutation", with(|w| w.permutation.swap(0, 1))),
        (
            "missing randomizer row",
            with(|w| {
                w.randomizers.pop();
            }),
        ),
        (
            "short randomizer row",
            with(|w| {
                w.randomizers[2].pop();
            }),
        ),
        ("other randomizer", with(|w| w.randomizers[1][1] += Scalar::ONE)),
    ];
    for (what, witness) in cases {
        assert!(
            matches!(Proof::prove(&f.st, &witness, &mut rng), Err(ProofError::Unprovable(_))),
            "{what}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Encoding

#[test]
fn proof_round_trips_through_bytes_at_the_documented_size() {
    for (rows, width) in [(2, 1), (5, 3)] {
        let f = fixture(rows, width, 70 + rows as u64);
        let bytes = f.proof.to_bytes();
        assert_eq!(bytes.len(), 4 + 32 * (10 * rows + 3));
        assert_eq!(bytes[..4], (rows as u32).to_le_bytes());
        assert_eq!(Proof::from_bytes(&bytes), Ok(f.proof.clone()));
    }
}

#[test]
fn from_bytes_rejects_truncation_and_trailing_bytes() {
    let bytes = fixture(3, 1, 72).proof.to_bytes();
    for cut in [0, 3, 4, 36, bytes.len() - 32, bytes.len() - 1] {
        assert!(
            matches!(Proof::from_bytes(&bytes[..cut]), Err(DecodeError::Truncated { .. })),
            "cut at {cut}"
        );
    }
    let mut longer = bytes.clone();
    longer.push(0);
    assert_eq!(Proof::from_bytes(&longer), Err(DecodeError::TrailingBytes(1)));
    longer.extend_from_slice(&[0; 32]);
    assert_eq!(Proof::from_bytes(&longer), Err(DecodeError::TrailingBytes(33)));
}

#[test]
fn from_bytes_rejects_row_counts_out_of_bounds() {
    for k in [0u32, 1, MAX_ROWS as u32 + 1, u32::MAX] {
        let mut bytes = k.to_le_bytes().to_vec();
        bytes.extend(std::iter::repeat_n(0, encoded_len(3)));
        assert!(
            matches!(
                Proof::from_bytes(&bytes),
                Err(DecodeError::Invalid { .. } | DecodeError::Length { .. })
            ),
            "row count {k}"
        );
    }
}

#[test]
fn from_bytes_rejects_non_canonical_points_and_scalars() {
    let k = 2;
    let bytes = fixture(k, 1, 73).proof.to_bytes();
    let points = 7 * k + 3;
    // The group order ℓ itself: the smallest non-reduced scalar.
    let order = (Scalar::ZERO - Scalar::ONE).to_bytes();
    let mut order_bytes = order;
    order_bytes[0] += 1;
    for index in 0..10 * k + 3 {
        let mut bad = bytes.clone();
        let chunk = &mut bad[4 + 32 * index..4 + 32 * (index + 1)];
        if index < points {
            // 2^255 − 1: not a canonical field element.
            chunk.copy_from_slice(&[0xff; 32]);
            assert_eq!(Proof::from_bytes(&bad), Err(DecodeError::InvalidPoint), "point {index}");
            // A canonical field element that is not a Ristretto encoding (negative).
            let mut negative = [0u8; 32];
            negative[0] = 1;
            let chunk = &mut bad[4 + 32 * index..4 + 32 * (index + 1)];
            chunk.copy_from_slice(&negative);
            assert_eq!(Proof::from_bytes(&bad), Err(DecodeError::InvalidPoint), "point {index}");
        } else {
            chunk.copy_from_slice(&order_bytes);
            assert_eq!(Proof::from_bytes(&bad), Err(DecodeError::InvalidScalar), "scalar {index}");
        }
    }
}

#[test]
fn from_bytes_rejects_identity_gamma() {
    let mut bytes = fixture(2, 1, 74).proof.to_bytes();
    bytes[4..36].copy_from_slice(&[0; 32]);
    assert_eq!(Proof::from_bytes(&bytes), Err(DecodeError::IdentityPoint));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn from_bytes_never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..800)) {
        let _ = Proof::from_bytes(&bytes);
    }

    #[test]
    fn from_bytes_never_panics_on_bytes_of_a_plausible_length(
        k in 2usize..5,
        tile in proptest::collection::vec(any::<u8>(), 32),
        extra in 0usize..3,
    ) {
        // A valid row count and (nearly) the length it implies, so decoding goes past the header.
        let mut bytes = (k as u32).to_le_bytes().to_vec();
        bytes.extend((0..encoded_len(k) - 4).map(|i| tile[i % 32]));
        bytes.extend(std::iter::repeat_n(0, extra));
        let _ = Proof::from_bytes(&bytes);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn proofs_round_trip_through_bytes(seed in any::<u64>(), rows in 2usize..5, width in 1usize..3) {
        let f = fixture(rows, width, seed);
        let bytes = f.proof.to_bytes();
        let decoded = Proof::from_bytes(&bytes).expect("canonical");
        prop_assert_eq!(&decoded, &f.proof);
        prop_assert_eq!(decoded.to_bytes(), bytes);
    }

    #[test]
    fn any_changed_byte_is_refused_by_from_bytes_or_verify(index in any::<prop::sample::Index>(), xor in 1u8..) {
        let f = fixture(2, 2, 75);
        let mut bytes = f.proof.to_bytes();
        let i = index.index(bytes.len());
        bytes[i] ^= xor;
        let accepted = Proof::from_bytes(&bytes).map(|p| p.verify(&f.st).is_ok()).unwrap_or(false);
        prop_assert!(!accepted, "byte {} changed by {:#x} still verifies", i, xor);
    }
}

// ---------------------------------------------------------------------------------------------
// Golden vector

/// The golden statement and proof: 4 rows × 2 of a public list, shuffled by cn-1.
fn golden_proof() -> (Statement, Proof) {
    let mut rng = ChaCha20Rng::seed_from_u64(GOLDEN_SEED);
    let key = *SecretKey::random(&mut rng).public().point();
    let inputs = encrypt_public_list(&[-3, 1, 0, 4, 7, -1, 2, 2]);
    let (outputs, witness) = shuffle(&key, 2, &inputs, &mut rng).expect("valid shape");
    let st = Statement { context: context(), key, width: 2, inputs, outputs };
    let proof = Proof::prove(&st, &witness, &mut rng).expect("honest");
    (st, proof)
}

#[test]
fn golden_vector_is_reproduced_and_verifies() {
    let stored = std::fs::read_to_string(GOLDEN).expect("golden vector file");
    let stored = hex::decode(stored.trim()).expect("hex");
    let (st, proof) = golden_proof();
    assert_eq!(hex::encode(proof.to_bytes()), hex::encode(&stored), "proof bytes changed");
    assert_eq!(Proof::from_bytes(&stored).expect("canonical").verify(&st), Ok(()));
}

#[test]
#[ignore = "rewrites the golden vector; run only when the format changes on purpose"]
fn regenerate_shuffle_golden_vector() {
    let (st, proof) = golden_proof();
    assert_eq!(proof.verify(&st), Ok(()));
    std::fs::write(GOLDEN, format!("{}\n", hex::encode(proof.to_bytes()))).expect("write");
}
