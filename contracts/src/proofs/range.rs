//! The range proof contract.
