//! Ledger state values.
