//! The Lemal pipeline roles with real cryptography: the querier's plan, data providers' range
//! proofs, computing nodes' aggregation, noise shuffle and key switch, and the querier's
//! decryption. Every role returns a signed transaction ready to broadcast.
//!
//! Roles read what they build on through [`Ledger`] — the accepted outputs of earlier proofs —
//! exactly as the verifiers will, so an honest role's proof verifies against the ledger's
//! statement. A role asked to cheat ([`Cheat`]) submits a proof that does not.

use curve25519_dalek::scalar::Scalar;
use lemal_contracts::elgamal::PossessionProof;
use lemal_contracts::elgamal::{Ciphertext, DecryptionTable, SecretKey};
use lemal_contracts::group::B;
use lemal_contracts::ids::{EntityId, ProofKey, ProofKind, QueryId, Role};
use lemal_contracts::proofs::{self, aggregation, keyswitch, range, shuffle, Ledger};
use lemal_contracts::sig::{KeyFile, SigningKey};
use lemal_contracts::state::Roster;
use lemal_contracts::transcript::ProofContext;
use lemal_contracts::tx::{NoiseParams, QuerySpec, RegisterQuery, SubmitProof, Tx, TxBody};
use rand_core::{CryptoRng, RngCore};

use crate::data::DataBounds;
use crate::keyring::Keyring;
use crate::sql::Query;

/// What a pipeline step can fail on.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// A proof could not be produced.
    #[error("{0}")]
    Proof(#[from] lemal_contracts::ProofError),
    /// An input is not on the ledger (yet).
    #[error("{0}")]
    Resolve(#[from] proofs::ResolveError),
    /// The entity has no keys in the keyring, or takes no part.
    #[error("{0}")]
    Entity(String),
    /// The result does not decrypt to a bounded value.
    #[error("result component {0} does not decrypt to a value in range")]
    Decrypt(usize),
}

/// Which party cheats, and how (the `--cheat ID[:KIND]` option).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cheat {
    /// The cheating entity.
    pub entity: EntityId,
    /// The proof it falsifies (a data provider: its range proof).
    pub kind: ProofKind,
}

impl Cheat {
    /// Whether this cheat falsifies the proof `key` (any query's).
    pub fn covers(&self, key: &ProofKey) -> bool {
        self.entity == key.creator && self.kind == key.kind
    }
}

impl std::str::FromStr for Cheat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (who, kind) = s.split_once(':').map_or((s, None), |(a, b)| (a, Some(b)));
        let entity: EntityId = who.parse().map_err(|e| format!("{e}"))?;
        let kind = match (entity.role, kind) {
            (Role::Dp, None | Some("range")) => ProofKind::Range,
            (Role::Cn, None) => ProofKind::Aggregation,
            (Role::Cn, Some(k)) => {
                let k: ProofKind = k.parse().map_err(|e| format!("{e}"))?;
                if k == ProofKind::Range {
                    return Err("a computing node makes no range proof".into());
                }
                k
            }
            _ => {
                return Err(format!(
                    "{s}: only dp-N[:range] or cn-N[:aggregation|shuffle|keyswitch] can cheat"
                ))
            }
        };
        Ok(Cheat { entity, kind })
    }
}

/// The querier's plan of a query: the registration it asks a computing node to send, and the
/// querier's secret key.
#[derive(Clone, Debug)]
pub struct QueryPlan {
    /// The parsed query.
    pub query: Query,
    /// The registration.
    pub registration: RegisterQuery,
    /// The public data bounds behind the spec's bounds.
    pub bounds: DataBounds,
    /// The querier's ElGamal secret `u`.
    pub querier: SecretKey,
}

/// Options of a plan.
#[derive(Clone, Debug)]
pub struct PlanOptions {
    /// Participating data providers (indices, increasing).
    pub dps: Vec<u32>,
    /// Computing nodes in order.
    pub cns: Vec<u32>,
    /// Public data bounds.
    pub bounds: DataBounds,
    /// Noise scale: 0 for none; else the chain derives a public noise list of `noise_rows` rows
    /// whose first values are evenly spaced quantiles of a Laplace distribution of this scale,
    /// rounded ([`lemal_contracts::noise`]); the shuffle chain picks the row that is added.
    pub noise: u32,
    /// Rows of the noise list when noise is on (ignored without noise).
    pub noise_rows: usize,
    /// Sampling threshold in ppm.
    pub threshold_ppm: u32,
    /// Data-provider deadline in blocks (below the proof deadline): an aggregation may leave
    /// out a missing input only after it.
    pub dp_deadline: u32,
    /// Proof deadline in blocks.
    pub proof_deadline: u32,
    /// Commit window in blocks.
    pub commit_window: u32,
}

/// Plan `query` with fresh querier keys and a random query id.
pub fn plan<R: RngCore + CryptoRng>(
    chain_id: &str,
    query: Query,
    opts: &PlanOptions,
    rng: &mut R,
) -> QueryPlan {
    let mut id = [0u8; 16];
    rng.fill_bytes(&mut id);
    let query_id = QueryId(id);
    let op = query.operation;
    let spec = QuerySpec {
        sql: query.to_string(),
        operation: op,
        range_bits: opts.bounds.range_bits(op),
        bounds: opts.bounds.value_bounds(op),
        dps: opts.dps.clone(),
        cns: opts.cns.clone(),
        noise: NoiseParams {
            scale: opts.noise,
            // Beyond u16, the spec's own check refuses it (at most 4096 rows).
            rows: if opts.noise == 0 {
                0
            } else {
                u16::try_from(opts.noise_rows).unwrap_or(u16::MAX)
            },
        },
    };
    let querier = SecretKey::random(rng);
    let registration = RegisterQuery {
        query_id,
        querier_key: querier.public(),
        querier_sig: PossessionProof::default(),
        spec,
        threshold_ppm: opts.threshold_ppm,
        dp_deadline: opts.dp_deadline,
        proof_deadline: opts.proof_deadline,
        commit_window: opts.commit_window,
    }
    .sign_as_querier(chain_id, &querier, rng);
    QueryPlan { query, registration, bounds: opts.bounds, querier }
}

impl QueryPlan {
    /// Sign the registration's terms again as the querier, after changing them.
    pub fn resign<R: RngCore + CryptoRng>(&mut self, chain_id: &str, rng: &mut R) {
        self.registration = self.registration.clone().sign_as_querier(chain_id, &self.querier, rng);
    }
}

/// The keys a process signs with: every entity's ([`Keyring`], the one-process demo), or one
/// party's own ([`PartyKeys`], a daemon).
pub trait Keys: std::fmt::Debug + Sync {
    /// The signing key of `id`, if this process holds it.
    fn signing_key(&self, id: EntityId) -> Option<&SigningKey>;
    /// The ElGamal key share of computing node `cn`, if this process holds it.
    fn share(&self, cn: EntityId) -> Option<&SecretKey>;
}

impl Keys for Keyring {
    fn signing_key(&self, id: EntityId) -> Option<&SigningKey> {
        Keyring::signing_key(self, id)
    }
    fn share(&self, cn: EntityId) -> Option<&SecretKey> {
        (cn.role == Role::Cn).then(|| self.cns.get(cn.index as usize).map(|c| &c.share)).flatten()
    }
}

/// One party's own keys, read from its key file.
#[derive(Clone, Debug)]
pub struct PartyKeys {
    /// The party.
    pub entity: EntityId,
    /// Its signing key.
    pub signing: SigningKey,
    /// Its ElGamal key share (a computing node).
    pub share: Option<SecretKey>,
}

impl PartyKeys {
    /// The keys in `file`; a computing node's file must hold its share.
    pub fn from_key_file(file: &KeyFile) -> Result<Self, PipelineError> {
        let bad = |e: String| PipelineError::Entity(format!("key file of {}: {e}", file.entity));
        let signing = file.signing_key().map_err(|e| bad(e.to_string()))?;
        let share = file.elgamal_secret().map_err(|e| bad(e.to_string()))?;
        if file.entity.role == Role::Cn && share.is_none() {
            return Err(bad("a computing node's key file needs its ElGamal share".into()));
        }
        Ok(PartyKeys { entity: file.entity, signing, share })
    }
}

impl Keys for PartyKeys {
    fn signing_key(&self, id: EntityId) -> Option<&SigningKey> {
        (id == self.entity).then_some(&self.signing)
    }
    fn share(&self, cn: EntityId) -> Option<&SecretKey> {
        (cn == self.entity).then_some(self.share.as_ref()).flatten()
    }
}

/// One party's view of a running query: the chain, every key it may sign with, the roster
/// and the query's registration. The role functions are its methods.
#[derive(Clone, Copy, Debug)]
pub struct Session<'a> {
    /// The chain id.
    pub chain_id: &'a str,
    /// Keys of the entities this process acts for.
    pub keys: &'a dyn Keys,
    /// The ledger's roster.
    pub roster: &'a Roster,
    /// The query's registration.
    pub registration: &'a RegisterQuery,
}

impl Session<'_> {
    fn sign<R: RngCore + CryptoRng>(
        &self,
        who: EntityId,
        body: TxBody,
        rng: &mut R,
    ) -> Result<Tx, PipelineError> {
        let key = self
            .keys
            .signing_key(who)
            .ok_or_else(|| PipelineError::Entity(format!("no keys for {who}")))?;
        Ok(Tx::sign(self.chain_id, who, body, key, rng))
    }

    fn context(&self, prover: EntityId) -> ProofContext {
        ProofContext {
            chain_id: self.chain_id.into(),
            query_id: self.registration.query_id,
            prover,
            index: 0,
        }
    }

    fn submission(
        &self,
        kind: ProofKind,
        inputs: Vec<ProofKey>,
        outputs: Vec<Ciphertext>,
        proof: Vec<u8>,
    ) -> TxBody {
        TxBody::SubmitProof(SubmitProof {
            query_id: self.registration.query_id,
            kind,
            index: 0,
            inputs,
            outputs,
            proof,
        })
    }

    /// The registration, signed by the first computing node of the query.
    pub fn register<R: RngCore + CryptoRng>(&self, rng: &mut R) -> Result<Tx, PipelineError> {
        let cn = EntityId::cn(self.registration.spec.cns[0]);
        self.sign(cn, TxBody::RegisterQuery(Box::new(self.registration.clone())), rng)
    }

    /// A data provider's submission: its values encrypted under the query key with a range
    /// proof. Cheating, it encrypts a value one above its upper bound and forges the proof (a
    /// valid proof of its in-range values, attached to different ciphertexts).
    pub fn range<R: RngCore + CryptoRng>(
        &self,
        dp: EntityId,
        values: &[i64],
        cheat: bool,
        rng: &mut R,
    ) -> Result<Tx, PipelineError> {
        let key = proofs::query_key(self.roster, self.registration)?;
        let spec = &self.registration.spec;
        let (mut statement, proof) = range::encrypt_and_prove(
            self.context(dp),
            &key,
            u32::from(spec.range_bits),
            &spec.bounds,
            values,
            rng,
        )?;
        if cheat {
            let (forged, _) = Ciphertext::encrypt_i64(&key, spec.bounds[0].hi + 1, rng);
            statement.ciphertexts[0] = forged;
        }
        let body =
            self.submission(ProofKind::Range, Vec::new(), statement.ciphertexts, proof.to_bytes());
        self.sign(dp, body, rng)
    }

    /// A computing node's aggregation of its inputs that are on the ledger. Cheating, it adds an
    /// encryption of 1 to the first component of the sum.
    pub fn aggregation<R: RngCore + CryptoRng>(
        &self,
        cn: EntityId,
        ledger: &impl Ledger,
        cheat: bool,
        rng: &mut R,
    ) -> Result<Tx, PipelineError> {
        let q = self.registration.query_id;
        let spec = &self.registration.spec;
        let mut inputs = Vec::new();
        let mut values = Vec::new();
        for k in spec.aggregation_inputs(q, cn.index) {
            if let Some(r) = ledger.proof(&k) {
                inputs.push(k);
                values.push(r.outputs);
            }
        }
        if inputs.is_empty() {
            return Err(PipelineError::Entity(format!(
                "{cn} has no input on the ledger to aggregate"
            )));
        }
        let mut output = aggregation::aggregate(&values)?;
        let statement = aggregation::Statement {
            context: self.context(cn),
            inputs: values,
            output: output.clone(),
        };
        let proof = aggregation::Proof::prove(&statement)?;
        if cheat {
            let key = proofs::query_key(self.roster, self.registration)?;
            output[0] = output[0] + Ciphertext::encrypt(&key, &Scalar::ONE, &Scalar::random(rng));
        }
        self.sign(
            cn,
            self.submission(ProofKind::Aggregation, inputs, output, proof.to_bytes()),
            rng,
        )
    }

    /// A computing node's shuffle of the previous noise list. Cheating, it replaces the first
    /// row of its output by fresh encryptions of 0 and keeps the honest proof.
    pub fn shuffle<R: RngCore + CryptoRng>(
        &self,
        cn: EntityId,
        ledger: &impl Ledger,
        cheat: bool,
        rng: &mut R,
    ) -> Result<Tx, PipelineError> {
        let q = self.registration.query_id;
        let spec = &self.registration.spec;
        let key = proofs::query_key(self.roster, self.registration)?;
        let inputs = match spec.shuffle_input(q, cn.index) {
            Some(prev) => ledger
                .proof(&prev)
                .map(|r| r.outputs)
                .ok_or(proofs::ResolveError::MissingInput(prev))?,
            None => shuffle::encrypt_public_list(&spec.noise_list()),
        };
        let width = spec.width();
        let (mut outputs, witness) = shuffle::shuffle(&key, width, &inputs, rng)?;
        let statement = shuffle::Statement {
            context: self.context(cn),
            key,
            width,
            inputs,
            outputs: outputs.clone(),
        };
        let proof = shuffle::Proof::prove(&statement, &witness, rng)?;
        if cheat {
            for out in outputs.iter_mut().take(width) {
                *out = Ciphertext::encrypt(&key, &Scalar::ZERO, &Scalar::random(rng));
            }
        }
        self.sign(
            cn,
            self.submission(ProofKind::Shuffle, Vec::new(), outputs, proof.to_bytes()),
            rng,
        )
    }

    /// A computing node's key switch of the result towards the querier. Cheating, it shifts
    /// its first share by `B` (the querier would decrypt the result plus one).
    pub fn keyswitch<R: RngCore + CryptoRng>(
        &self,
        cn: EntityId,
        ledger: &impl Ledger,
        cheat: bool,
        rng: &mut R,
    ) -> Result<Tx, PipelineError> {
        let inputs = proofs::keyswitch_inputs(self.registration, ledger)?;
        let secret = self
            .keys
            .share(cn)
            .ok_or_else(|| PipelineError::Entity(format!("no key share for {cn}")))?;
        let querier = *self.registration.querier_key.point();
        let (mut statement, proof) =
            keyswitch::switch(self.context(cn), secret, &querier, &inputs, rng)?;
        if cheat {
            statement.outputs[0].c2 += B;
        }
        self.sign(
            cn,
            self.submission(ProofKind::KeySwitch, Vec::new(), statement.outputs, proof.to_bytes()),
            rng,
        )
    }
}

/// Bits of the decryption table: every result component must fit, with the noise.
pub fn decryption_bits(spec: &QuerySpec) -> u32 {
    let noise = spec.noise.max_abs();
    let widest = spec
        .bounds
        .iter()
        .map(|b| b.lo.unsigned_abs().max(b.hi.unsigned_abs()))
        .max()
        .unwrap_or(0)
        .saturating_mul(spec.dps.len() as u64)
        .saturating_add(noise);
    (64 - widest.leading_zeros() + 1).clamp(8, 62)
}

/// A decryption table just large enough for the query's result: baby-step giant-step over
/// `|x| < 2^bits` with `2^(bits/2 + 1)` baby steps.
pub fn decryption_table(spec: &QuerySpec) -> DecryptionTable {
    let bits = decryption_bits(spec);
    DecryptionTable::with_bounds(bits, bits / 2 + 1)
}

/// Decrypt the result ciphertexts with the querier's key.
pub fn decrypt(
    plan: &QueryPlan,
    result: &[Ciphertext],
    table: &DecryptionTable,
) -> Result<Vec<i64>, PipelineError> {
    result
        .iter()
        .enumerate()
        .map(|(i, c)| table.decrypt(&plan.querier, c).ok_or(PipelineError::Decrypt(i)))
        .collect()
}
