//! The integration tests of Lemal, one test binary:
//!
//! - in process (`harness`, `lifecycle`, `rejections`, `restart`, `robustness`, `fuzz`): several
//!   verifying-node application instances, each with its own durable store and verifier worker,
//!   driven through identical blocks exactly as CometBFT would drive them
//!   (PrepareProposal/ProcessProposal, FinalizeBlock, Commit), with each worker's broadcasts fed
//!   back as transactions of later blocks;
//! - `end_to_end`: the `lemal` and `lemal-vn` binaries against a real CometBFT localnet, with
//!   the trust-root checks of `trust_roots` through the lying RPC proxy of `lying_proxy`;
//! - `partition` and `multihost`: nodes and parties on hosts of their own, simulated by network
//!   namespaces the tests create (`netns`);
//! - `faults`: crashes (SIGKILL), two of four validators down, and a damaged store, against a
//!   real CometBFT localnet of its own.

// Tests may unwrap, and measure nothing with the clock.
#![allow(clippy::unwrap_used)]

mod accountability;
mod accountability_e2e;
mod cheaters;
mod end_to_end;
mod faults;
mod flood;
mod fuzz;
mod harness;
mod hostile;
mod lifecycle;
mod lying_proxy;
mod multihost;
mod netns;
mod parties;
mod partition;
mod rejections;
mod restart;
mod robustness;
mod trust_roots;
