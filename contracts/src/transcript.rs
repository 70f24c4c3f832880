//! The Fiat–Shamir vocabulary of Lemal on top of merlin.
//!
//! Every proof starts its transcript with [`TranscriptProtocol::lemal_domain`] (a versioned label
//! of the proof type) and then [`ProofContext::absorb`] (chain id, query id, prover, proof
//! index), then the whole statement, and only then the prover's messages. Verifiers rebuild the
//! same transcript from the statement they resolved from the ledger.

use curve25519_dalek::ristretto::{CompressedRistretto, RistrettoPoint};
use curve25519_dalek::scalar::Scalar;
use merlin::Transcript;

use crate::elgamal::Ciphertext;
use crate::ids::{EntityId, QueryId};

/// Transcript operations used by the proofs of this crate.
pub trait TranscriptProtocol {
    /// Separate domains: the proof type and its version.
    fn lemal_domain(&mut self, proof_label: &'static [u8], version: u64);
    /// Absorb a length-prefixed list size or any small integer.
    fn append_len(&mut self, label: &'static [u8], n: usize);
    /// Absorb a point (compressing it).
    fn append_point(&mut self, label: &'static [u8], point: &RistrettoPoint);
    /// Absorb an already compressed point.
    fn append_compressed(&mut self, label: &'static [u8], point: &CompressedRistretto);
    /// Absorb a scalar.
    fn append_scalar(&mut self, label: &'static [u8], scalar: &Scalar);
    /// Absorb a ciphertext (both components).
    fn append_ciphertext(&mut self, label: &'static [u8], ct: &Ciphertext);
    /// Absorb a signed integer (public bounds, public noise values).
    fn append_i64(&mut self, label: &'static [u8], v: i64);
    /// Draw a uniformly random challenge scalar (64 bytes reduced modulo the group order).
    fn challenge_scalar(&mut self, label: &'static [u8]) -> Scalar;
}

impl TranscriptProtocol for Transcript {
    fn lemal_domain(&mut self, proof_label: &'static [u8], version: u64) {
        self.append_message(b"dom-sep", b"lemal");
        self.append_message(b"proof", proof_label);
        self.append_u64(b"version", version);
    }

    fn append_len(&mut self, label: &'static [u8], n: usize) {
        self.append_u64(label, n as u64);
    }

    fn append_point(&mut self, label: &'static [u8], point: &RistrettoPoint) {
        self.append_message(label, point.compress().as_bytes());
    }

    fn append_compressed(&mut self, label: &'static [u8], point: &CompressedRistretto) {
        self.append_message(label, point.as_bytes());
    }

    fn append_scalar(&mut self, label: &'static [u8], scalar: &Scalar) {
        self.append_message(label, scalar.as_bytes());
    }

    fn append_ciphertext(&mut self, label: &'static [u8], ct: &Ciphertext) {
        self.append_message(label, ct.c1.compress().as_bytes());
        self.append_message(label, ct.c2.compress().as_bytes());
    }

    fn append_i64(&mut self, label: &'static [u8], v: i64) {
        self.append_message(label, &v.to_le_bytes());
    }

    fn challenge_scalar(&mut self, label: &'static [u8]) -> Scalar {
        let mut buf = [0u8; 64];
        self.challenge_bytes(label, &mut buf);
        Scalar::from_bytes_mod_order_wide(&buf)
    }
}

/// Who proves what, for which query, on which chain: absorbed by every proof first.
///
/// Binding the chain id, the query id, the prover and the proof index into every challenge makes
/// a proof useless anywhere but in the one ledger slot it was made for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProofContext {
    /// The CometBFT chain id of the ledger.
    pub chain_id: String,
    /// The query the proof belongs to.
    pub query_id: QueryId,
    /// The entity that produced the proof.
    pub prover: EntityId,
    /// The proof's index within (query, kind, prover).
    pub index: u32,
}

impl ProofContext {
    /// Absorb the context into a transcript.
    pub fn absorb(&self, t: &mut Transcript) {
        t.append_message(b"chain-id", self.chain_id.as_bytes());
        t.append_message(b"query-id", &self.query_id.0);
        t.append_message(b"prover", &self.prover.to_bytes());
        t.append_u64(b"proof-index", u64::from(self.index));
    }

    /// A fresh transcript for a proof type: domain label, version, then this context.
    pub fn transcript(&self, proof_label: &'static [u8], version: u64) -> Transcript {
        let mut t = Transcript::new(b"lemal-proof");
        t.lemal_domain(proof_label, version);
        self.absorb(&mut t);
        t
    }
}
