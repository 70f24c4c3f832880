//! The Lemal protocol, pure and synchronous.
//!
//! This crate holds everything the verifying nodes, the clients and the tests must agree on
//! byte for byte:
//!
//! - [`group`]: Ristretto255 points and scalars with strict decoding, and the byte reader and
//!   writer every proof format is built from;
//! - [`transcript`]: the Fiat–Shamir vocabulary on top of merlin;
//! - [`elgamal`]: EC-ElGamal under the computing nodes' collective key, proofs of possession,
//!   key switching and bounded decryption;
//! - [`proofs`]: the four proof contracts — [`proofs::range`], [`proofs::aggregation`],
//!   [`proofs::shuffle`] and [`proofs::keyswitch`] — each a statement, a proof with strict
//!   parsing, `prove` and `verify`;
//! - [`sig`] and [`sampling`]: sr25519 signatures with one context per message kind, and the
//!   VRF that decides which proofs a verifying node checks;
//! - [`ids`], [`tx`] and [`state`]: identifiers, transactions and ledger values, borsh-encoded;
//! - [`commitment`]: checking ICS23 proofs of ledger state against an app hash;
//! - [`codes`]: the rejection codes of transactions, by number and name;
//! - [`query_path`]: the typed grammar of the ABCI query paths and the state key of each;
//! - [`keys`] and [`page`]: the state layout and the paging of list answers, shared by the
//!   application and its clients.
//!
//! Boundaries: no I/O, no clock, and no randomness inside verification. Provers take their RNG
//! as an argument. Verifiers take their statement from the caller (the ledger), never from the
//! proof.

pub mod codes;
pub mod commitment;
pub mod elgamal;
pub mod error;
pub mod group;
pub mod ids;
pub mod keys;
pub mod noise;
pub mod page;
pub mod proofs;
pub mod query_path;
pub mod sampling;
pub mod sig;
pub mod state;
pub mod transcript;
pub mod tx;

pub use error::{DecodeError, ProofError};
