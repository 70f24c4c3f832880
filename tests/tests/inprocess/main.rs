//! In-process tests of the verifying-node application: several app instances, each with its
//! own durable store and verifier worker, driven through identical blocks exactly as CometBFT
//! would drive them (PrepareProposal/ProcessProposal, FinalizeBlock, Commit), with each worker's
//! broadcasts fed back as transactions of later blocks.

// Tests may unwrap, and measure nothing with the clock.
#![allow(clippy::unwrap_used)]

mod harness;
mod lifecycle;
mod rejections;
mod restart;
