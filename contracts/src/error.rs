//! Typed errors shared by every decoder and verifier in the crate.

use thiserror::Error;

/// Why a byte string was refused by a decoder.
///
/// Every decoder of the crate returns this type, so callers can map a refusal to one stable
/// code without knowing which structure failed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DecodeError {
    /// The input ended before the structure was complete.
    #[error("input truncated: needed {needed} more bytes")]
    Truncated {
        /// Bytes still missing.
        needed: usize,
    },
    /// Bytes remained after the structure was complete.
    #[error("{0} trailing bytes after the encoded value")]
    TrailingBytes(usize),
    /// 32 bytes that are not the canonical encoding of a Ristretto point.
    #[error("non-canonical or invalid Ristretto point encoding")]
    InvalidPoint,
    /// The identity point where a non-identity point is required.
    #[error("identity point not allowed here")]
    IdentityPoint,
    /// 32 bytes that are not a canonical scalar (not reduced modulo the group order).
    #[error("non-canonical scalar encoding")]
    InvalidScalar,
    /// A length prefix or a count outside the allowed bounds.
    #[error("length {got} of {what} outside the allowed bound {max}")]
    Length {
        /// Which field carried the length.
        what: &'static str,
        /// The length read.
        got: u64,
        /// The largest length accepted.
        max: u64,
    },
    /// A value that decoded but violates a structural rule (an unknown tag, an unsorted list...).
    #[error("invalid {what}: {why}")]
    Invalid {
        /// Which field is invalid.
        what: &'static str,
        /// Why.
        why: &'static str,
    },
    /// A borsh-level failure (unknown enum tag, invalid UTF-8 ...).
    #[error("malformed encoding: {0}")]
    Malformed(String),
}

impl From<DecodeError> for std::io::Error {
    fn from(e: DecodeError) -> Self {
        std::io::Error::new(std::io::ErrorKind::InvalidData, e)
    }
}

impl From<std::io::Error> for DecodeError {
    fn from(e: std::io::Error) -> Self {
        // borsh reports our own errors wrapped in io::Error: unwrap them to keep their type.
        match e.get_ref().and_then(|inner| inner.downcast_ref::<DecodeError>()) {
            Some(inner) => inner.clone(),
            // borsh reports a short input either as an EOF or with this fixed message.
            None if e.kind() == std::io::ErrorKind::UnexpectedEof
                || e.to_string() == "Unexpected length of input" =>
            {
                DecodeError::Truncated { needed: 1 }
            }
            None => DecodeError::Malformed(e.to_string()),
        }
    }
}

/// Why a proof was rejected by its verifier (or could not be produced by its prover).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ProofError {
    /// The proof bytes do not parse.
    #[error("proof encoding: {0}")]
    Decode(#[from] DecodeError),
    /// The statement is malformed (bad lengths, bounds, identity keys ...), independent of the proof.
    #[error("invalid statement: {0}")]
    Statement(&'static str),
    /// The proof's shape does not match the statement (wrong number of elements ...).
    #[error("proof shape does not match the statement: {0}")]
    Shape(&'static str),
    /// A verification equation does not hold.
    #[error("verification equation failed: {0}")]
    Equation(&'static str),
    /// The prover was asked to prove something false (a value out of range ...).
    #[error("cannot prove: {0}")]
    Unprovable(&'static str),
}
