//! The four proof contracts, and how a ledger entry becomes the statement its proof is checked
//! against.
//!
//! Each contract module has a `Statement` (what the ledger knows), a `Proof` with strict
//! `from_bytes`/`to_bytes`, a `prove` that takes its RNG, and a `verify` that takes the statement.
//! [`resolve`] builds that statement from ledger state only — the query's registration, the
//! roster, and the outputs of the proof and of its inputs as accepted on the ledger — so a
//! verifier never trusts a value carried inside a proof. [`Statement::verify`] dispatches with
//! one `match` over the closed set of kinds.

pub mod aggregation;
pub mod keyswitch;
pub mod range;
pub mod shuffle;

use curve25519_dalek::ristretto::RistrettoPoint;

use crate::elgamal::{collective_key, Ciphertext};
use crate::error::ProofError;
use crate::ids::{EntityId, ProofKey, ProofKind};
use crate::state::{ProofRecord, Roster};
use crate::transcript::ProofContext;
use crate::tx::RegisterQuery;

/// A statement of any of the four contracts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Statement {
    /// A data provider's range proof.
    Range(range::Statement),
    /// A computing node's aggregation.
    Aggregation(aggregation::Statement),
    /// A computing node's shuffle.
    Shuffle(shuffle::Statement),
    /// A computing node's key switch.
    KeySwitch(keyswitch::Statement),
}

impl Statement {
    /// Parse `proof` strictly as a proof of this statement's kind and verify it.
    pub fn verify(&self, proof: &[u8]) -> Result<(), ProofError> {
        match self {
            Statement::Range(st) => range::Proof::from_bytes(proof)?.verify(st),
            Statement::Aggregation(st) => aggregation::Proof::from_bytes(proof)?.verify(st),
            Statement::Shuffle(st) => shuffle::Proof::from_bytes(proof)?.verify(st),
            Statement::KeySwitch(st) => keyswitch::Proof::from_bytes(proof)?.verify(st),
        }
    }

    /// The kind of the statement.
    pub fn kind(&self) -> ProofKind {
        match self {
            Statement::Range(_) => ProofKind::Range,
            Statement::Aggregation(_) => ProofKind::Aggregation,
            Statement::Shuffle(_) => ProofKind::Shuffle,
            Statement::KeySwitch(_) => ProofKind::KeySwitch,
        }
    }
}

/// A bound on what verifying one proof of `kind` for the query `spec` costs, in points of the
/// multiscalar multiplications its verification runs (each point also decompressed once):
/// range, `2·bits·width` generators plus the proof's own points; shuffle, `7·rows` plus
/// `4·rows·width` (Neff's equations over the compressed rows); key switch, a few per value;
/// aggregation, point additions only (about a sixteenth of a point each). What challenges may
/// spend per block ([`crate::state::Params::challenge_budget`]) is counted in these units.
pub fn verify_cost(spec: &crate::tx::QuerySpec, kind: ProofKind) -> u64 {
    let width = spec.width() as u64;
    let rows = spec.noise_rows() as u64;
    match kind {
        ProofKind::Range => 2 * u64::from(spec.range_bits) * width + width + 32,
        ProofKind::Aggregation => {
            let inputs = spec.dps.len().div_ceil(spec.cns.len().max(1)) as u64 + 2;
            1 + inputs * width / 16
        }
        ProofKind::Shuffle => 8 * rows + 6 * rows * width + 16,
        ProofKind::KeySwitch => 8 * width + 8,
    }
}

/// Read access to accepted proofs, as statements need it.
pub trait Ledger {
    /// The accepted proof with this key, if any.
    fn proof(&self, key: &ProofKey) -> Option<ProofRecord>;
}

impl<F: Fn(&ProofKey) -> Option<ProofRecord>> Ledger for F {
    fn proof(&self, key: &ProofKey) -> Option<ProofRecord> {
        self(key)
    }
}

/// Why a statement could not be built from the ledger.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    /// An input the proof refers to is not on the ledger.
    #[error("input {0} is not on the ledger")]
    MissingInput(ProofKey),
    /// The proof's creator is not in the roster.
    #[error("{0} is not in the roster")]
    UnknownEntity(EntityId),
    /// A ledger value has a shape the query does not allow.
    #[error("ledger value of the wrong shape: {0}")]
    Shape(&'static str),
}

/// The collective ElGamal key of a query: the sum of its computing nodes' shares.
pub fn query_key(roster: &Roster, query: &RegisterQuery) -> Result<RistrettoPoint, ResolveError> {
    let shares = query
        .spec
        .cns
        .iter()
        .map(|&c| {
            roster
                .cns
                .get(c as usize)
                .map(|e| &e.share)
                .ok_or(ResolveError::UnknownEntity(EntityId::cn(c)))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(collective_key(shares))
}

fn outputs_of(ledger: &impl Ledger, key: &ProofKey) -> Result<Vec<Ciphertext>, ResolveError> {
    ledger.proof(key).map(|r| r.outputs).ok_or(ResolveError::MissingInput(*key))
}

/// The ciphertexts every key switch of a query works on: the root aggregate plus, when the
/// query adds noise, the first row of the last shuffled list.
pub fn keyswitch_inputs(
    query: &RegisterQuery,
    ledger: &impl Ledger,
) -> Result<Vec<Ciphertext>, ResolveError> {
    let spec = &query.spec;
    let w = spec.width();
    let (root, shuffle) = spec.keyswitch_inputs(query.query_id);
    let mut base = outputs_of(ledger, &root)?;
    if base.len() != w {
        return Err(ResolveError::Shape("root aggregate width"));
    }
    if let Some(s) = shuffle {
        let list = outputs_of(ledger, &s)?;
        let first = list.get(..w).ok_or(ResolveError::Shape("noise list shorter than a row"))?;
        for (b, n) in base.iter_mut().zip(first) {
            *b = *b + *n;
        }
    }
    Ok(base)
}

/// Build the statement of an accepted proof from ledger state only.
pub fn resolve(
    chain_id: &str,
    roster: &Roster,
    query: &RegisterQuery,
    record: &ProofRecord,
    ledger: &impl Ledger,
) -> Result<Statement, ResolveError> {
    let spec = &query.spec;
    let key = record.key;
    let context = ProofContext {
        chain_id: chain_id.to_owned(),
        query_id: key.query,
        prover: key.creator,
        index: key.index,
    };
    Ok(match key.kind {
        ProofKind::Range => Statement::Range(range::Statement {
            context,
            key: query_key(roster, query)?,
            bits: u32::from(spec.range_bits),
            bounds: spec.bounds.clone(),
            ciphertexts: record.outputs.clone(),
        }),
        ProofKind::Aggregation => Statement::Aggregation(aggregation::Statement {
            context,
            inputs: record
                .inputs
                .iter()
                .map(|k| outputs_of(ledger, k))
                .collect::<Result<_, _>>()?,
            output: record.outputs.clone(),
        }),
        ProofKind::Shuffle => Statement::Shuffle(shuffle::Statement {
            context,
            key: query_key(roster, query)?,
            width: spec.width(),
            inputs: match spec.shuffle_input(key.query, key.creator.index) {
                Some(prev) => outputs_of(ledger, &prev)?,
                None => shuffle::encrypt_public_list(&spec.noise_list()),
            },
            outputs: record.outputs.clone(),
        }),
        ProofKind::KeySwitch => Statement::KeySwitch(keyswitch::Statement {
            context,
            share: *roster
                .cns
                .get(key.creator.index as usize)
                .ok_or(ResolveError::UnknownEntity(key.creator))?
                .share
                .point(),
            querier: *query.querier_key.point(),
            inputs: keyswitch_inputs(query, ledger)?,
            outputs: record.outputs.clone(),
        }),
    })
}

/// The data providers the query's result covers, increasing: those whose range proofs the root
/// aggregation reaches through the inputs of the aggregations accepted on the ledger. Empty
/// while the root aggregation is missing. Every node (and every auditor) computes the same set
/// from the same ledger.
pub fn covered_dps(query: &RegisterQuery, ledger: &impl Ledger) -> Vec<EntityId> {
    let (root, _) = query.spec.keyswitch_inputs(query.query_id);
    let mut covered = Vec::new();
    let mut pending = vec![root];
    // The tree has one aggregation per computing node, so this visits each at most once.
    while let Some(key) = pending.pop() {
        let Some(record) = ledger.proof(&key) else { continue };
        for input in record.inputs {
            match input.kind {
                ProofKind::Range => covered.push(input.creator),
                ProofKind::Aggregation => pending.push(input),
                ProofKind::Shuffle | ProofKind::KeySwitch => {}
            }
        }
    }
    covered.sort_unstable();
    covered.dedup();
    covered
}

/// The querier's result ciphertexts once every key switch is on the ledger:
/// `(Σ_i D1_ij, C2_j + Σ_i D2_ij)`.
pub fn result_ciphertexts(
    query: &RegisterQuery,
    ledger: &impl Ledger,
) -> Result<Vec<Ciphertext>, ResolveError> {
    let inputs = keyswitch_inputs(query, ledger)?;
    let mut out: Vec<Ciphertext> =
        inputs.iter().map(|c| Ciphertext { c1: RistrettoPoint::default(), c2: c.c2 }).collect();
    for &cn in &query.spec.cns {
        let key = ProofKey {
            query: query.query_id,
            kind: ProofKind::KeySwitch,
            creator: EntityId::cn(cn),
            index: 0,
        };
        let shares = outputs_of(ledger, &key)?;
        if shares.len() != out.len() {
            return Err(ResolveError::Shape("key switch width"));
        }
        for (o, d) in out.iter_mut().zip(&shares) {
            *o = *o + *d;
        }
    }
    Ok(out)
}
