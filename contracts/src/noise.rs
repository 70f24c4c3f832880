//! The public noise list of a query, derived from public parameters with integer arithmetic.
//!
//! A query that adds noise names only a scale `b` and a number of rows `n` ([`NoiseParams`]);
//! every node derives the same list from them ([`NoiseParams::list`]): row `i` (of `width`
//! values) holds, as its first value, the `(i + ½)/n` quantile of the Laplace distribution of
//! scale `b` rounded to the nearest integer, and zeros after it (only the first component of the
//! result is noised). Nobody can hand the chain an arbitrary list (all zeros, say): the list is
//! a function of the registration that the querier signed.
//!
//! The quantile of `p` is `b·ln(2p)` below ½ and `−b·ln(2 − 2p)` above. With
//! `p = (2i + 1)/(2n)` and `d = |2i + 1 − n|` both cases are `±b·(ln n − ln(n − d))` (minus when
//! `2i + 1 < n`, zero when equal), so only logarithms of integers in `1..=n` are needed.
//!
//! **Method and error.** No floats: [`ln_q64`] computes `ln m` as a 64.64 fixed-point number,
//! `ln m = k·ln 2 + 2·atanh(z)` with `k = ⌊log₂ m⌋`, `x = m/2^k ∈ [1, 2)`, `z = (x − 1)/(x + 1)
//! ∈ [0, ⅓)` and the series `atanh z = Σ z^(2j+1)/(2j+1)`, summed until its term is zero. Every
//! step truncates by at most 2⁻⁶⁴ and the series needs fewer than 25 terms, so the logarithm is
//! within 2⁻⁵⁶ of the truth, the difference of two within 2⁻⁵⁵, and `b·(…)` (with `b < 2³²`)
//! within 2⁻²³. The rounded value is therefore the correctly rounded quantile except when the
//! true value lies within 2⁻²³ of a half-integer; either way it is the same on every platform
//! (pure `u128` arithmetic), which is what consensus needs.

use borsh::{BorshDeserialize, BorshSerialize};

/// `ln 2` in 64.64 fixed point, rounded down: ⌊ln 2 · 2⁶⁴⌋.
const LN2_Q64: u128 = 0xB172_17F7_D1CF_79AB;
/// One in 64.64 fixed point.
const ONE: u128 = 1 << 64;

/// Public noise parameters of a query: a Laplace scale and the number of rows of the list the
/// computing nodes shuffle. `scale == 0` means no noise, and then `rows` must be 0.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    BorshSerialize,
    BorshDeserialize,
    serde::Serialize,
    serde::Deserialize,
)]
pub struct NoiseParams {
    /// Laplace scale `b` (0: no noise).
    pub scale: u32,
    /// Rows `n` of the noise list (2 or more when noise is on).
    pub rows: u16,
}

impl NoiseParams {
    /// No noise.
    pub const NONE: NoiseParams = NoiseParams { scale: 0, rows: 0 };

    /// Whether the query adds noise.
    pub fn is_on(&self) -> bool {
        self.scale > 0
    }

    /// Rows of the list (0 without noise).
    pub fn rows(&self) -> usize {
        if self.is_on() {
            usize::from(self.rows)
        } else {
            0
        }
    }

    /// The first value of row `i`: the `(i + ½)/n` Laplace quantile of scale `b`, rounded.
    pub fn quantile(&self, i: usize) -> i64 {
        let n = self.rows();
        if n == 0 || i >= n {
            return 0;
        }
        let (n, t) = (n as u64, 2 * i as u64 + 1);
        let d = n.abs_diff(t);
        // n − d ≥ 1 because d ≤ n − 1.
        let diff = ln_q64(n) - ln_q64(n - d);
        let magnitude = (u128::from(self.scale) * diff + ONE / 2) >> 64;
        let magnitude = i64::try_from(magnitude).expect("b·ln(4096) < 2^36");
        if t < n {
            -magnitude
        } else {
            magnitude
        }
    }

    /// The public list, row-major with `width` values per row: the quantile first, zeros after.
    /// Empty without noise.
    pub fn list(&self, width: usize) -> Vec<i64> {
        let mut out = vec![0i64; self.rows() * width];
        for i in 0..self.rows() {
            out[i * width] = self.quantile(i);
        }
        out
    }

    /// The largest absolute value of the list (for sizing a decryption table).
    pub fn max_abs(&self) -> u64 {
        // The extreme rows are the first and last; they are opposite.
        if self.rows() == 0 {
            0
        } else {
            self.quantile(0).unsigned_abs()
        }
    }
}

/// `ln m` in 64.64 fixed point, for `1 ≤ m < 2⁶³` (see the module doc for the method and its
/// error bound).
pub fn ln_q64(m: u64) -> u128 {
    debug_assert!(m >= 1);
    let m = m.max(1);
    let k = 63 - m.leading_zeros();
    // x = m / 2^k in [1, 2), in 64.64.
    let x = (u128::from(m) << 64) >> k;
    // z = (x − 1)/(x + 1) in [0, 1/3); (x − 1) < 2^64, so the shift fits.
    let z = ((x - ONE) << 64) / (x + ONE);
    let z2 = (z * z) >> 64;
    let mut term = z;
    let mut sum = 0u128;
    let mut j = 1u128;
    while term > 0 {
        sum += term / j;
        term = (term * z2) >> 64;
        j += 2;
    }
    u128::from(k) * LN2_Q64 + 2 * sum
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logarithms_match_known_values() {
        assert_eq!(ln_q64(1), 0);
        assert_eq!(ln_q64(2), LN2_Q64);
        // ln 3 = 1.0986122886681098..., ln 10, ln 4095 = 8.3175219962871..., to 1e-15.
        let close = |got: u128, want: f64| {
            let got = got as f64 / ONE as f64;
            assert!((got - want).abs() < 1e-15, "{got} vs {want}");
        };
        close(ln_q64(3), 1.098_612_288_668_109_8);
        close(ln_q64(10), std::f64::consts::LN_10);
        close(ln_q64(4095), 8.317_521_996_287_17);
    }

    #[test]
    fn quantiles_match_known_values() {
        let p = |scale, rows| NoiseParams { scale, rows };
        // b·ln(1/4) = −1386.29, b·ln(3/4) = −287.68.
        assert_eq!(p(1000, 4).list(1), vec![-1386, -288, 288, 1386]);
        // ±b·ln 2 = ±693.15.
        assert_eq!(p(1000, 2).list(2), vec![-693, 0, 693, 0]);
        // Odd rows: the middle one is 0; b·ln(1/5) = −16.09, b·ln(3/5) = −5.11.
        assert_eq!(p(10, 5).list(1), vec![-16, -5, 0, 5, 16]);
        assert_eq!(p(0, 4).list(1), Vec::<i64>::new());
        assert_eq!(p(1000, 4).max_abs(), 1386);
    }

    #[test]
    fn quantiles_agree_with_floating_point_everywhere_it_is_not_a_tie() {
        for (scale, rows) in [(1u32, 4096u16), (7, 1000), (1000, 64), (4_000_000_000, 4096)] {
            let params = NoiseParams { scale, rows };
            for i in 0..usize::from(rows) {
                let p = (i as f64 + 0.5) / f64::from(rows);
                let q = if p < 0.5 {
                    f64::from(scale) * (2.0 * p).ln()
                } else {
                    -f64::from(scale) * (2.0 - 2.0 * p).ln()
                };
                let got = params.quantile(i);
                // Away from a half-integer, f64 (relative error ~1e-15) rounds the same way.
                if (q.fract().abs() - 0.5).abs() > 1e-4 {
                    assert_eq!(got, q.round() as i64, "b {scale}, n {rows}, row {i}: {q}");
                }
            }
        }
    }
}
