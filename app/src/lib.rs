//! The Lemal verifying-node application.
//!
//! - [`machine`]: the deterministic state machine (genesis, transaction checks and execution,
//!   end of block, skipchain) — pure, no I/O;
//! - [`keys`] and [`ledger`]: the state layout and typed access to it;
//! - [`codes`]: the stable rejection codes.

pub mod codes;
pub mod keys;
pub mod ledger;
pub mod machine;
