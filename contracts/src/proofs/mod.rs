//! The four proof contracts.
//!
//! Each module has a `Statement` (what the ledger knows), a `Proof` with strict
//! `from_bytes`/`to_bytes`, a `prove` that takes its RNG, and a `verify` that takes the statement
//! resolved from ledger state — never values carried inside the proof.

pub mod aggregation;
pub mod keyswitch;
pub mod range;
pub mod shuffle;
