//! Ristretto255 points and scalars, strictly decoded, and the byte reader and writer that every
//! proof format of the crate is written with.
//!
//! Points are decoded with [`CompressedRistretto::decompress`], which accepts only canonical
//! encodings; scalars with [`Scalar::from_canonical_bytes`], which accepts only values reduced
//! modulo the group order. Where a protocol needs it, [`Reader::point_nonidentity`] refuses the
//! identity as well.

use std::fmt;

use borsh::{BorshDeserialize, BorshSerialize};
use curve25519_dalek::ristretto::{CompressedRistretto, RistrettoPoint};
use curve25519_dalek::scalar::Scalar;
use curve25519_dalek::traits::Identity;

use crate::error::DecodeError;

pub use curve25519_dalek::constants::RISTRETTO_BASEPOINT_POINT as B;

/// The second generator H, with no known discrete logarithm relative to [`B`].
///
/// It is the Pedersen blinding generator of the `bulletproofs` crate (the Ristretto point
/// obtained by hashing the encoding of `B` with SHA3-512), so the range proof's Pedersen
/// commitments and its Bulletproof share one pair of generators.
pub fn h_generator() -> RistrettoPoint {
    bulletproofs::PedersenGens::default().B_blinding
}

/// Decode 32 bytes as a canonical Ristretto point (the identity is allowed).
pub fn decode_point(bytes: &[u8; 32]) -> Result<RistrettoPoint, DecodeError> {
    CompressedRistretto(*bytes).decompress().ok_or(DecodeError::InvalidPoint)
}

/// Decode 32 bytes as a canonical scalar.
pub fn decode_scalar(bytes: &[u8; 32]) -> Result<Scalar, DecodeError> {
    Option::from(Scalar::from_canonical_bytes(*bytes)).ok_or(DecodeError::InvalidScalar)
}

/// The scalar of a signed 64-bit integer (negative values map to `l - |x|`).
pub fn scalar_from_i64(x: i64) -> Scalar {
    if x >= 0 {
        Scalar::from(x.unsigned_abs())
    } else {
        -Scalar::from(x.unsigned_abs())
    }
}

/// A validated Ristretto point that remembers its canonical encoding.
///
/// Decoding checks the encoding once; encoding again costs nothing. Used for every point that
/// travels in transactions and ledger state.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Point {
    point: RistrettoPoint,
    bytes: [u8; 32],
}

impl Point {
    /// Wrap a point, computing its encoding.
    pub fn new(point: RistrettoPoint) -> Self {
        Self { point, bytes: point.compress().to_bytes() }
    }

    /// Decode a canonical encoding (the identity is allowed).
    pub fn from_bytes(bytes: &[u8; 32]) -> Result<Self, DecodeError> {
        Ok(Self { point: decode_point(bytes)?, bytes: *bytes })
    }

    /// The group element.
    pub fn point(&self) -> &RistrettoPoint {
        &self.point
    }

    /// The canonical 32-byte encoding.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.bytes
    }

    /// Whether this is the identity element.
    pub fn is_identity(&self) -> bool {
        self.point == RistrettoPoint::identity()
    }
}

impl From<RistrettoPoint> for Point {
    fn from(point: RistrettoPoint) -> Self {
        Self::new(point)
    }
}

impl fmt::Debug for Point {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Point({})", hex::encode(self.bytes))
    }
}

impl BorshSerialize for Point {
    fn serialize<W: std::io::Write>(&self, writer: &mut W) -> std::io::Result<()> {
        writer.write_all(&self.bytes)
    }
}

impl BorshDeserialize for Point {
    fn deserialize_reader<R: std::io::Read>(reader: &mut R) -> std::io::Result<Self> {
        let mut bytes = [0u8; 32];
        reader.read_exact(&mut bytes)?;
        Ok(Self::from_bytes(&bytes)?)
    }
}

/// Appends the fixed-size encodings of proof elements to a byte vector.
#[derive(Debug, Default)]
pub struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    /// An empty writer with room for `capacity` bytes.
    pub fn with_capacity(capacity: usize) -> Self {
        Self { buf: Vec::with_capacity(capacity) }
    }

    /// Append a point's 32-byte encoding.
    pub fn point(&mut self, p: &RistrettoPoint) -> &mut Self {
        self.buf.extend_from_slice(p.compress().as_bytes());
        self
    }

    /// Append an already compressed point.
    pub fn compressed(&mut self, p: &CompressedRistretto) -> &mut Self {
        self.buf.extend_from_slice(p.as_bytes());
        self
    }

    /// Append a scalar's 32-byte canonical encoding.
    pub fn scalar(&mut self, s: &Scalar) -> &mut Self {
        self.buf.extend_from_slice(s.as_bytes());
        self
    }

    /// Append a little-endian u32 (used for counts and lengths).
    pub fn u32(&mut self, v: u32) -> &mut Self {
        self.buf.extend_from_slice(&v.to_le_bytes());
        self
    }

    /// Append a u32 length prefix and the bytes.
    pub fn bytes(&mut self, b: &[u8]) -> &mut Self {
        let len = u32::try_from(b.len()).expect("byte strings in proofs are far below 4 GiB");
        self.u32(len);
        self.buf.extend_from_slice(b);
        self
    }

    /// The bytes written.
    pub fn finish(self) -> Vec<u8> {
        self.buf
    }
}

/// Reads the fixed-size encodings of proof elements, strictly.
///
/// Every read checks canonicity; [`Reader::finish`] refuses trailing bytes. A proof's
/// `from_bytes` is a sequence of reads followed by `finish`.
#[derive(Debug)]
pub struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    /// Start reading `bytes`.
    pub fn new(bytes: &'a [u8]) -> Self {
        Self { rest: bytes }
    }

    /// Bytes not yet read.
    pub fn remaining(&self) -> usize {
        self.rest.len()
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.rest.len() < n {
            return Err(DecodeError::Truncated { needed: n - self.rest.len() });
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }

    fn array32(&mut self) -> Result<[u8; 32], DecodeError> {
        let mut out = [0u8; 32];
        out.copy_from_slice(self.take(32)?);
        Ok(out)
    }

    /// Read a canonical point (the identity is allowed).
    pub fn point(&mut self) -> Result<RistrettoPoint, DecodeError> {
        decode_point(&self.array32()?)
    }

    /// Read a canonical point and keep its encoding (the identity is allowed).
    ///
    /// Only canonical encodings decode, so the bytes kept are the point's one encoding. Costs
    /// the same as [`Reader::point`]; a proof that stores [`Point`]s reads them with this method
    /// instead of compressing each decoded point again.
    pub fn point_with_encoding(&mut self) -> Result<Point, DecodeError> {
        Point::from_bytes(&self.array32()?)
    }

    /// Read a canonical point that must not be the identity.
    pub fn point_nonidentity(&mut self) -> Result<RistrettoPoint, DecodeError> {
        let p = self.point()?;
        if p == RistrettoPoint::identity() {
            return Err(DecodeError::IdentityPoint);
        }
        Ok(p)
    }

    /// Read a canonical scalar.
    pub fn scalar(&mut self) -> Result<Scalar, DecodeError> {
        decode_scalar(&self.array32()?)
    }

    /// Read a little-endian u32.
    pub fn u32(&mut self) -> Result<u32, DecodeError> {
        let mut out = [0u8; 4];
        out.copy_from_slice(self.take(4)?);
        Ok(u32::from_le_bytes(out))
    }

    /// Read a u32 length prefix no greater than `max`, then that many bytes.
    pub fn bytes(&mut self, what: &'static str, max: usize) -> Result<&'a [u8], DecodeError> {
        let len = self.u32()? as usize;
        if len > max {
            return Err(DecodeError::Length { what, got: len as u64, max: max as u64 });
        }
        self.take(len)
    }

    /// Read a u32 count and check it equals `expected`.
    pub fn count(&mut self, what: &'static str, expected: usize) -> Result<(), DecodeError> {
        let got = self.u32()? as usize;
        if got != expected {
            return Err(DecodeError::Length { what, got: got as u64, max: expected as u64 });
        }
        Ok(())
    }

    /// Finish reading: refuses trailing bytes.
    pub fn finish(self) -> Result<(), DecodeError> {
        match self.rest.len() {
            0 => Ok(()),
            n => Err(DecodeError::TrailingBytes(n)),
        }
    }
}

/// Decode a borsh value from `bytes`, refusing trailing bytes and keeping our typed errors.
pub fn from_borsh<T: BorshDeserialize>(bytes: &[u8]) -> Result<T, DecodeError> {
    let mut rest = bytes;
    let value = T::deserialize(&mut rest)?;
    match rest.len() {
        0 => Ok(value),
        n => Err(DecodeError::TrailingBytes(n)),
    }
}

/// The borsh encoding of a value.
pub fn to_borsh<T: BorshSerialize>(value: &T) -> Vec<u8> {
    borsh::to_vec(value).expect("borsh encoding into a Vec cannot fail")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_canonical_point_is_rejected() {
        // 2^255 - 1 is not a canonical field element encoding.
        let bytes = [0xff; 32];
        assert_eq!(decode_point(&bytes), Err(DecodeError::InvalidPoint));
    }

    #[test]
    fn non_canonical_scalar_is_rejected() {
        let bytes = [0xff; 32];
        assert_eq!(decode_scalar(&bytes), Err(DecodeError::InvalidScalar));
    }

    #[test]
    fn reader_refuses_identity_where_asked_and_trailing_bytes() {
        let id = RistrettoPoint::identity().compress().to_bytes();
        let mut r = Reader::new(&id);
        assert_eq!(r.point_nonidentity(), Err(DecodeError::IdentityPoint));
        let mut two = id.to_vec();
        two.push(0);
        let mut r = Reader::new(&two);
        assert!(r.point().is_ok());
        assert_eq!(r.finish(), Err(DecodeError::TrailingBytes(1)));
    }

    #[test]
    fn reader_keeps_the_encoding_of_a_point_and_refuses_non_canonical_ones() {
        let p = B * Scalar::from(11u64);
        let mut bytes = p.compress().to_bytes().to_vec();
        bytes.extend_from_slice(&[0xff; 32]);
        bytes.extend_from_slice(&[0; 31]);
        let mut r = Reader::new(&bytes);
        let read = r.point_with_encoding().expect("a canonical encoding");
        assert_eq!(read.point(), &p);
        assert_eq!(read.as_bytes(), &p.compress().to_bytes());
        assert_eq!(r.point_with_encoding(), Err(DecodeError::InvalidPoint));
        assert_eq!(r.point_with_encoding(), Err(DecodeError::Truncated { needed: 1 }));
    }

    #[test]
    fn point_borsh_round_trip_keeps_encoding() {
        let p = Point::new(B * Scalar::from(7u64));
        let bytes = to_borsh(&p);
        assert_eq!(from_borsh::<Point>(&bytes), Ok(p));
        assert_eq!(from_borsh::<Point>(&[0xff; 32]), Err(DecodeError::InvalidPoint));
    }

    #[test]
    fn h_is_not_b() {
        assert_ne!(h_generator(), B);
    }
}
