//! The shuffle proof contract.
