//! Exact conversion of packet amounts between assets.
//!
//! # Contract
//!
//! A [`Rate`] is an exact, reduced fraction `num / den` (both `u128`, both non-zero). Converting
//! an amount is
//!
//! ```text
//! out = floor(amount × num / den)
//! ```
//!
//! computed exactly for every `u64` amount and every representable rate. The fraction is built
//! once, off the packet path, by [`Rate::new`] from the config's prices, the two asset scales and
//! the connector's spread (interledger-rs's formula, here exact; RFC 27 leaves the rate to us):
//!
//! ```text
//! out = amount × (price_in / price_out) × (1 − spread) × 10^(scale_out − scale_in)
//! ```
//!
//! Every factor is a [`Decimal`] (a `u128` mantissa over a power of ten) or a power of ten, so
//! the whole product is a fraction of integers. [`Rate::new`] cancels common factors between the
//! numerator's and the denominator's factors pairwise *before* multiplying, so the result is
//! the fully reduced fraction; it is refused ([`RateError::Unrepresentable`]) only when that
//! reduced fraction really does not fit in `u128 / u128`.
//!
//! # Rounding and outcomes of [`Rate::convert`]
//!
//! - Rounding is **floor** (round down, in the connector's favour), as the JS connector does;
//!   the RS connector truncates an `f64`, which is the same for positive values but loses
//!   precision above 2^53. No floating point is used anywhere here.
//! - Amount 0 converts to 0: a zero-amount Prepare is forwarded as 0.
//! - A non-zero amount that floors to 0 is [`ConvertError::TooSmall`]; the engine answers R01
//!   (RFC 27: "too little to forward").
//! - A result above `u64::MAX` is [`ConvertError::Overflow`]; the engine answers F08.
//! - No rate at all (a zero price, an asset missing from `[rates]`) is a [`RateError`] at config
//!   time; the engine answers T00 for such a pair.
//!
//! # Cost
//!
//! [`Rate::convert`] never allocates. The identity rate returns the amount unchanged. When
//! `amount × num` fits in `u128` (always the case when `num < 2^64`, i.e. for any rate built
//! from prices and spreads with a handful of digits) it is one `u128` multiply and one `u128`
//! divide. Otherwise a cold wide path splits `num = q × den + r` and computes
//! `amount × q + floor(amount × r / den)`, the last term by a 64-step binary long
//! multiplication modulo `den` that never leaves `u128` (see `mul_div_below`).
//!
//! # Limits
//!
//! - [`Decimal`]: at most [`Decimal::DIGITS_MAX`] (38) significant digits as written and at most
//!   [`Decimal::FRACTION_DIGITS_MAX`] (38) fraction digits, so the mantissa and `10^fraction`
//!   both fit in `u128`.
//! - Asset scales: `0..=`[`Rate::SCALE_MAX`] (18).
//! - Spread: `0 <= spread < 1`.
//!
//! # Non-goals
//!
//! - No live rate feeds, backends or polling: rates come from the config and are rebuilt by the
//!   control plane, which hands the engine a new immutable snapshot.
//! - No per-asset-code lookup here: mapping peers to assets and assets to prices is the config's
//!   and the engine's job; this module only turns two prices, two scales and a spread into a
//!   fraction, and applies it.
//! - No rounding modes other than floor.
//!
//! Over 800 lines because its unit and property tests live beside the code (the code is under 700).

use core::fmt;
use core::str::FromStr;

/// `10^k` for `k <= 38` (the largest power of ten in `u128`).
const fn pow10(k: u8) -> u128 {
    debug_assert!(k <= Decimal::FRACTION_DIGITS_MAX);
    10u128.pow(k as u32)
}

/// Greatest common divisor (binary / Stein). `gcd(0, b) = b`.
///
/// Bounded: each turn of the loop removes at least one bit from `b`, so it runs at most
/// 128 times.
const fn gcd(mut a: u128, mut b: u128) -> u128 {
    if a == 0 {
        return b;
    }
    if b == 0 {
        return a;
    }
    let shift = (a | b).trailing_zeros();
    a >>= a.trailing_zeros();
    loop {
        b >>= b.trailing_zeros();
        if a > b {
            let t = a;
            a = b;
            b = t;
        }
        b -= a;
        if b == 0 {
            return a << shift;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Decimal
// ---------------------------------------------------------------------------------------------

/// An exact non-negative decimal number from the config: `mantissa / 10^fraction_digits`.
///
/// Parsed from strings such as `"1"`, `"1.08"`, `"0.002"`, `"1500000"` or `"0.000000001"` (no
/// sign, no exponent, no empty integer or fraction part, no whitespace). The value is kept in
/// canonical form (no trailing zeros in the fraction), so `==` compares values: `"1.50"` equals
/// `"1.5"`.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Decimal {
    mantissa: u128,
    fraction_digits: u8,
}

impl Decimal {
    /// Most significant digits accepted, counted as written from the first non-zero digit
    /// (trailing zeros count): `10^38 − 1` is the largest such mantissa and fits in `u128`.
    pub const DIGITS_MAX: u8 = 38;
    /// Most digits accepted after the decimal point, so that `10^fraction_digits` fits in `u128`.
    pub const FRACTION_DIGITS_MAX: u8 = 38;

    /// Zero.
    pub const ZERO: Decimal = Decimal {
        mantissa: 0,
        fraction_digits: 0,
    };
    /// One.
    pub const ONE: Decimal = Decimal {
        mantissa: 1,
        fraction_digits: 0,
    };

    /// `mantissa / 10^fraction_digits`, checked against the limits and put in canonical form.
    pub const fn from_parts(mantissa: u128, fraction_digits: u8) -> Result<Decimal, DecimalError> {
        if fraction_digits > Self::FRACTION_DIGITS_MAX {
            return Err(DecimalError::TooManyFractionDigits {
                digits: fraction_digits as usize,
            });
        }
        // pow10(38) is 10^DIGITS_MAX: the mantissa must have at most 38 digits.
        if mantissa >= pow10(Self::DIGITS_MAX) {
            return Err(DecimalError::TooManySignificantDigits {
                digits: Self::DIGITS_MAX as usize + 1,
            });
        }
        Ok(Self::canonical(mantissa, fraction_digits))
    }

    /// A whole number.
    pub const fn from_u64(value: u64) -> Decimal {
        Self::canonical(value as u128, 0)
    }

    /// Strips trailing fraction zeros (bounded by `fraction_digits`).
    const fn canonical(mut mantissa: u128, mut fraction_digits: u8) -> Decimal {
        if mantissa == 0 {
            return Decimal::ZERO;
        }
        while fraction_digits > 0 && mantissa % 10 == 0 {
            mantissa /= 10;
            fraction_digits -= 1;
        }
        Decimal {
            mantissa,
            fraction_digits,
        }
    }

    /// The integer `m` in `m / 10^fraction_digits` (canonical form).
    pub const fn mantissa(self) -> u128 {
        self.mantissa
    }

    /// The number of digits after the decimal point (canonical form).
    pub const fn fraction_digits(self) -> u8 {
        self.fraction_digits
    }

    /// Whether the value is zero.
    pub const fn is_zero(self) -> bool {
        self.mantissa == 0
    }

    /// Parses a config string; see the type's docs for the accepted form.
    pub fn parse(text: &str) -> Result<Decimal, DecimalError> {
        let bytes = text.as_bytes();
        let Some(&first) = bytes.first() else {
            return Err(DecimalError::Empty);
        };
        if first == b'+' || first == b'-' {
            return Err(DecimalError::Sign);
        }
        let mut mantissa: u128 = 0;
        let mut digits_significant: usize = 0;
        let mut digits_integer: usize = 0;
        let mut digits_fraction: usize = 0;
        let mut point_seen = false;
        for (index, ch) in text.char_indices() {
            match ch {
                '0'..='9' => {
                    if point_seen {
                        digits_fraction += 1;
                    } else {
                        digits_integer += 1;
                    }
                    let digit = u128::from(ch as u8 - b'0');
                    if digits_significant > 0 || digit != 0 {
                        digits_significant += 1;
                    }
                    if digits_significant > usize::from(Self::DIGITS_MAX) {
                        return Err(DecimalError::TooManySignificantDigits {
                            digits: digits_significant,
                        });
                    }
                    if digits_fraction > usize::from(Self::FRACTION_DIGITS_MAX) {
                        return Err(DecimalError::TooManyFractionDigits {
                            digits: digits_fraction,
                        });
                    }
                    // Cannot overflow: at most DIGITS_MAX significant digits, so < 10^38.
                    mantissa = mantissa * 10 + digit;
                }
                '.' => {
                    if point_seen {
                        return Err(DecimalError::SecondPoint { index });
                    }
                    if digits_integer == 0 {
                        return Err(DecimalError::EmptyIntegerPart);
                    }
                    point_seen = true;
                }
                'e' | 'E' => return Err(DecimalError::Exponent { index }),
                '+' | '-' => return Err(DecimalError::Sign),
                _ => return Err(DecimalError::InvalidCharacter { ch, index }),
            }
        }
        if point_seen && digits_fraction == 0 {
            return Err(DecimalError::EmptyFractionPart);
        }
        debug_assert!(digits_integer > 0);
        // Both bounds were checked digit by digit above.
        let fraction_digits = digits_fraction as u8;
        Ok(Self::canonical(mantissa, fraction_digits))
    }
}

impl FromStr for Decimal {
    type Err = DecimalError;

    fn from_str(text: &str) -> Result<Decimal, DecimalError> {
        Decimal::parse(text)
    }
}

impl fmt::Display for Decimal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // At most 38 mantissa digits, and a leading "0" when all 38 are fraction digits.
        const LEN_MAX: usize = Decimal::DIGITS_MAX as usize + 1;
        let mut buf = [b'0'; LEN_MAX];
        let mut start = LEN_MAX;
        let mut m = self.mantissa;
        while m > 0 {
            start -= 1;
            buf[start] = b'0' + (m % 10) as u8;
            m /= 10;
        }
        let fraction = usize::from(self.fraction_digits);
        // Pad with leading zeros so there is at least one integer digit.
        start = start.min(LEN_MAX - fraction - 1);
        let digits = core::str::from_utf8(&buf[start..]).map_err(|_| fmt::Error)?;
        let (integer, fraction) = digits.split_at(digits.len() - fraction);
        f.write_str(integer)?;
        if !fraction.is_empty() {
            f.write_str(".")?;
            f.write_str(fraction)?;
        }
        Ok(())
    }
}

impl fmt::Debug for Decimal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Decimal({self})")
    }
}

/// Why a config string is not a [`Decimal`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecimalError {
    /// The string is empty.
    Empty,
    /// A `+` or `-` sign: prices and spreads are non-negative and written without a sign.
    Sign,
    /// An exponent (`e`/`E`) at byte `index`: write the number out in full.
    Exponent {
        /// Byte offset of the `e`.
        index: usize,
    },
    /// No digit before the decimal point (`".5"`): write `"0.5"`.
    EmptyIntegerPart,
    /// No digit after the decimal point (`"1."`): write `"1"` or `"1.0"`.
    EmptyFractionPart,
    /// A second decimal point at byte `index`.
    SecondPoint {
        /// Byte offset of the second `.`.
        index: usize,
    },
    /// A character that is not a digit or `.` (whitespace and `,` included).
    InvalidCharacter {
        /// The character.
        ch: char,
        /// Byte offset of the character.
        index: usize,
    },
    /// More than [`Decimal::DIGITS_MAX`] significant digits.
    TooManySignificantDigits {
        /// Significant digits counted so far when the limit was passed.
        digits: usize,
    },
    /// More than [`Decimal::FRACTION_DIGITS_MAX`] digits after the decimal point.
    TooManyFractionDigits {
        /// Fraction digits counted so far when the limit was passed.
        digits: usize,
    },
}

impl fmt::Display for DecimalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            DecimalError::Empty => f.write_str("empty decimal number"),
            DecimalError::Sign => f.write_str(
                "sign not allowed: write a non-negative decimal number without '+' or '-'",
            ),
            DecimalError::Exponent { index } => write!(
                f,
                "exponent not allowed (at byte {index}): write the decimal number out in full"
            ),
            DecimalError::EmptyIntegerPart => {
                f.write_str("no digit before the decimal point: write e.g. \"0.5\", not \".5\"")
            }
            DecimalError::EmptyFractionPart => {
                f.write_str("no digit after the decimal point: write e.g. \"1\", not \"1.\"")
            }
            DecimalError::SecondPoint { index } => {
                write!(f, "second decimal point at byte {index}")
            }
            DecimalError::InvalidCharacter { ch, index } => write!(
                f,
                "invalid character {ch:?} at byte {index}: only digits and one '.' are allowed"
            ),
            DecimalError::TooManySignificantDigits { digits } => write!(
                f,
                "too many significant digits ({digits} or more, at most {})",
                Decimal::DIGITS_MAX
            ),
            DecimalError::TooManyFractionDigits { digits } => write!(
                f,
                "too many digits after the decimal point ({digits} or more, at most {})",
                Decimal::FRACTION_DIGITS_MAX
            ),
        }
    }
}

impl std::error::Error for DecimalError {}

// ---------------------------------------------------------------------------------------------
// Rate
// ---------------------------------------------------------------------------------------------

/// The exact factor from one asset's amounts to another's: `out = floor(amount × num / den)`.
///
/// Always reduced (`gcd(num, den) = 1`) and non-zero, so `==` compares values. Small and `Copy`
/// (32 bytes): the engine keeps one per (incoming asset, outgoing asset) pair.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Rate {
    num: u128,
    den: u128,
}

impl Rate {
    /// The largest asset scale accepted (amounts are in units of `10^-scale`).
    pub const SCALE_MAX: u8 = 18;

    /// The identity: same asset, same scale, no spread.
    pub const ONE: Rate = Rate { num: 1, den: 1 };

    /// The rate for forwarding from an asset worth `price_in` at `scale_in` to one worth
    /// `price_out` at `scale_out`, keeping `spread` (a fraction in `[0, 1)`):
    ///
    /// ```text
    /// num / den = (price_in / price_out) × (1 − spread) × 10^(scale_out − scale_in)
    /// ```
    ///
    /// Prices are the value of one whole unit of each asset in any common unit (the config's
    /// `[rates]` table). Exact: the result is the reduced fraction, or an error.
    pub fn new(
        price_in: Decimal,
        scale_in: u8,
        price_out: Decimal,
        scale_out: u8,
        spread: Decimal,
    ) -> Result<Rate, RateError> {
        if scale_in > Self::SCALE_MAX {
            return Err(RateError::ScaleTooLarge { scale: scale_in });
        }
        if scale_out > Self::SCALE_MAX {
            return Err(RateError::ScaleTooLarge { scale: scale_out });
        }
        if price_in.is_zero() {
            return Err(RateError::PriceInZero);
        }
        if price_out.is_zero() {
            return Err(RateError::PriceOutZero);
        }
        let spread_one = pow10(spread.fraction_digits);
        if spread.mantissa >= spread_one {
            return Err(RateError::SpreadNotBelowOne);
        }
        let (scale_up, scale_down) = if scale_out >= scale_in {
            (scale_out - scale_in, 0)
        } else {
            (0, scale_in - scale_out)
        };
        // price_in = m_in / 10^f_in, price_out = m_out / 10^f_out, 1 − spread = (10^f_s − m_s) / 10^f_s.
        // Every factor fits in u128 (mantissas < 10^38, exponents <= 38).
        let mut num = [
            price_in.mantissa,
            pow10(price_out.fraction_digits),
            spread_one - spread.mantissa,
            pow10(scale_up),
        ];
        let mut den = [
            price_out.mantissa,
            pow10(price_in.fraction_digits),
            spread_one,
            pow10(scale_down),
        ];
        // Pairwise cancellation: after dividing a and b by gcd(a, b) they are coprime, and
        // later steps only divide them further, so at the end every numerator factor is coprime
        // with every denominator factor, hence the products are coprime: the reduced fraction.
        for n in num.iter_mut() {
            for d in den.iter_mut() {
                let g = gcd(*n, *d);
                *n /= g;
                *d /= g;
            }
        }
        let num = product(&num).ok_or(RateError::Unrepresentable)?;
        let den = product(&den).ok_or(RateError::Unrepresentable)?;
        debug_assert!(num != 0 && den != 0);
        debug_assert!(gcd(num, den) == 1);
        Ok(Rate { num, den })
    }

    /// The rate `num / den`, reduced. Both must be non-zero.
    pub const fn from_ratio(num: u128, den: u128) -> Result<Rate, RateError> {
        if num == 0 || den == 0 {
            return Err(RateError::ZeroRatio);
        }
        let g = gcd(num, den);
        Ok(Rate {
            num: num / g,
            den: den / g,
        })
    }

    /// The reduced numerator.
    pub const fn num(self) -> u128 {
        self.num
    }

    /// The reduced denominator.
    pub const fn den(self) -> u128 {
        self.den
    }

    /// Whether this rate leaves every amount unchanged.
    #[inline]
    pub const fn is_identity(self) -> bool {
        // Reduced, so num == den only for 1/1.
        self.num == self.den
    }

    /// Converts an incoming amount: `floor(amount × num / den)`, exactly.
    ///
    /// 0 converts to `Ok(0)`; a non-zero amount that floors to 0 is
    /// [`ConvertError::TooSmall`] (R01); a result above `u64::MAX` is
    /// [`ConvertError::Overflow`] (F08). No allocation, no floating point.
    #[inline]
    pub fn convert(&self, amount: u64) -> Result<u64, ConvertError> {
        if amount == 0 {
            return Ok(0);
        }
        if self.is_identity() {
            return Ok(amount);
        }
        let out = match u128::from(amount).checked_mul(self.num) {
            Some(product) => product / self.den,
            None => return convert_wide(amount, self.num, self.den),
        };
        if out == 0 {
            return Err(ConvertError::TooSmall);
        }
        u64::try_from(out).map_err(|_| ConvertError::Overflow)
    }
}

/// The product of the factors, or `None` if it does not fit in `u128`.
fn product(factors: &[u128]) -> Option<u128> {
    factors.iter().try_fold(1u128, |acc, &f| acc.checked_mul(f))
}

/// `floor(amount × num / den)` when `amount × num` does not fit in `u128`.
///
/// With `num = q × den + r` (`r < den`): `amount × num / den = amount × q + amount × r / den`,
/// and since `amount × q` is an integer, the floor of the sum is `amount × q` plus the floor of
/// the last term, which is below `amount` and so fits in `u64`.
///
/// The product here is at least 2^128 and `den < 2^128`, so the result is at least 1: this path
/// is never [`ConvertError::TooSmall`].
#[cold]
#[inline(never)]
fn convert_wide(amount: u64, num: u128, den: u128) -> Result<u64, ConvertError> {
    debug_assert!(amount != 0);
    let whole = num / den;
    let rest = num % den;
    // amount >= 1, so a whole part of 2^64 or more already overflows.
    let Ok(whole) = u64::try_from(whole) else {
        return Err(ConvertError::Overflow);
    };
    // (2^64 − 1)^2 < 2^128: cannot overflow.
    let whole = u128::from(amount) * u128::from(whole);
    let (fraction, _) = mul_div_below(amount, rest, den);
    // whole <= 2^128 − 2^65 + 1 and fraction < 2^64: cannot overflow.
    let out = whole + u128::from(fraction);
    debug_assert!(out != 0);
    u64::try_from(out).map_err(|_| ConvertError::Overflow)
}

/// `(floor(a × r / d), (a × r) mod d)` for `r < d`, without leaving `u128`.
///
/// Binary long multiplication modulo `d` over the bits of `a`, high to low, keeping the
/// invariant `(a >> k) × r = q × d + rem` with `rem < d`. Doubling `rem` and adding `r` each
/// stay below `2d`, so each needs at most one subtraction of `d`, done as `rem − (d − x)` so no
/// intermediate exceeds `u128`. The quotient is below `a`, so it fits in `u64`. At most 64 steps.
fn mul_div_below(a: u64, r: u128, d: u128) -> (u64, u128) {
    debug_assert!(r < d);
    let mut q: u64 = 0;
    let mut rem: u128 = 0;
    let bits = u64::BITS - a.leading_zeros();
    for k in (0..bits).rev() {
        // 2 × (a >> (k + 1)) × r = 2q × d + 2 rem.
        q <<= 1;
        let gap = d - rem;
        if rem >= gap {
            rem -= gap;
            q += 1;
        } else {
            rem += rem;
        }
        if (a >> k) & 1 == 1 {
            let gap = d - rem;
            if r >= gap {
                rem = r - gap;
                q += 1;
            } else {
                rem += r;
            }
        }
    }
    (q, rem)
}

impl fmt::Display for Rate {
    /// `num/den (value)`, e.g. `27/25 (1.08)` or `2/3 (~0.666666666666)`: the value is cut (not
    /// rounded) after 12 fraction digits, and marked `~` when inexact.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const FRACTION_DIGITS_SHOWN: usize = 12;
        let mut digits = [b'0'; FRACTION_DIGITS_SHOWN];
        let mut rem = self.num % self.den;
        let mut shown = 0;
        while rem != 0 && shown < FRACTION_DIGITS_SHOWN {
            let (digit, next) = mul_div_below(10, rem, self.den);
            digits[shown] = b'0' + digit as u8;
            rem = next;
            shown += 1;
        }
        write!(f, "{}/{} (", self.num, self.den)?;
        if rem != 0 {
            f.write_str("~")?;
        }
        write!(f, "{}", self.num / self.den)?;
        if shown > 0 {
            let digits = core::str::from_utf8(&digits[..shown]).map_err(|_| fmt::Error)?;
            write!(f, ".{digits}")?;
        }
        f.write_str(")")
    }
}

/// Why [`Rate::new`] or [`Rate::from_ratio`] gave no rate. The engine answers T00 for a pair
/// of assets without a rate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RateError {
    /// The incoming asset's price is zero.
    PriceInZero,
    /// The outgoing asset's price is zero.
    PriceOutZero,
    /// The spread is 1 or more (it would forward nothing).
    SpreadNotBelowOne,
    /// An asset scale above [`Rate::SCALE_MAX`].
    ScaleTooLarge {
        /// The scale given.
        scale: u8,
    },
    /// The reduced fraction's numerator or denominator does not fit in `u128`.
    Unrepresentable,
    /// [`Rate::from_ratio`] with a zero numerator or denominator.
    ZeroRatio,
}

impl fmt::Display for RateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            RateError::PriceInZero => f.write_str("no rate: the incoming asset's price is zero"),
            RateError::PriceOutZero => f.write_str("no rate: the outgoing asset's price is zero"),
            RateError::SpreadNotBelowOne => {
                f.write_str("spread must be below 1 (it is a fraction, e.g. 0.002)")
            }
            RateError::ScaleTooLarge { scale } => write!(
                f,
                "asset scale {scale} is too large (at most {})",
                Rate::SCALE_MAX
            ),
            RateError::Unrepresentable => f.write_str(
                "rate not representable: its reduced numerator or denominator exceeds 128 bits \
                 (use fewer digits in the prices or spread)",
            ),
            RateError::ZeroRatio => f.write_str("rate numerator and denominator must be non-zero"),
        }
    }
}

impl std::error::Error for RateError {}

/// Why an amount could not be converted. The engine maps these to rejects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConvertError {
    /// A non-zero amount converts to less than one unit of the outgoing asset (R01).
    TooSmall,
    /// The converted amount exceeds `u64::MAX` (F08).
    Overflow,
}

impl fmt::Display for ConvertError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            ConvertError::TooSmall => {
                f.write_str("amount too small: converts to less than one unit of the next asset")
            }
            ConvertError::Overflow => {
                f.write_str("converted amount exceeds the largest packet amount (2^64 - 1)")
            }
        }
    }
}

impl std::error::Error for ConvertError {}

#[cfg(test)]
mod test {
    use super::*;
    use num_bigint::BigUint;
    use proptest::prelude::*;

    fn dec(text: &str) -> Decimal {
        Decimal::parse(text).unwrap()
    }

    fn rate(price_in: &str, scale_in: u8, price_out: &str, scale_out: u8, spread: &str) -> Rate {
        Rate::new(
            dec(price_in),
            scale_in,
            dec(price_out),
            scale_out,
            dec(spread),
        )
        .unwrap()
    }

    // --- the conversion rules (module docs, "Rounding and outcomes") ---------------------------

    /// Worked example (RS test `exchange_rate_ok`): 1 000 000 units at scale 1, price 3.0,
    /// to price 2.0 at scale 1, spread 0 → 1 500 000.
    #[test]
    fn spec_rs_worked_example_exchange_rate_ok() {
        let r = rate("3.0", 1, "2.0", 1, "0");
        assert_eq!((r.num(), r.den()), (3, 2));
        assert_eq!(r.convert(1_000_000), Ok(1_500_000));
    }

    /// Scale example: 1 unit at scale 1 to scale 2 ⇒ 10.
    #[test]
    fn spec_scale_up_one_unit_scale_1_to_2_is_10() {
        let r = rate("1", 1, "1", 2, "0");
        assert_eq!((r.num(), r.den()), (10, 1));
        assert_eq!(r.convert(1), Ok(10));
    }

    /// 1 unit at scale 2 to scale 1 ⇒ 0.1, floors to 0 ⇒ R01 (TooSmall).
    #[test]
    fn spec_scale_down_below_one_unit_is_too_small_r01() {
        let r = rate("1", 2, "1", 1, "0");
        assert_eq!((r.num(), r.den()), (1, 10));
        assert_eq!(r.convert(1), Err(ConvertError::TooSmall));
        assert_eq!(r.convert(9), Err(ConvertError::TooSmall));
        assert_eq!(r.convert(10), Ok(1));
        assert_eq!(r.convert(19), Ok(1), "floor, not round");
    }

    /// The rate formula with the JS default spread 0.002: 1000 × 0.998 = 998.
    #[test]
    fn spec_spread_0_002_on_1000_is_998() {
        let r = rate("1", 9, "1", 9, "0.002");
        assert_eq!((r.num(), r.den()), (499, 500));
        assert_eq!(r.convert(1000), Ok(998));
        // Floor in the connector's favour: 999 × 0.998 = 997.002 → 997.
        assert_eq!(r.convert(999), Ok(997));
        // 1 × 0.998 floors to 0 → R01.
        assert_eq!(r.convert(1), Err(ConvertError::TooSmall));
    }

    /// A result > 2^64 − 1 ⇒ F08 (Overflow), on both the u128 path and the wide path.
    #[test]
    fn spec_result_above_u64_max_is_overflow_f08() {
        let up = rate("1", 0, "1", 1, "0");
        assert_eq!(up.convert(u64::MAX / 10), Ok(u64::MAX / 10 * 10));
        assert_eq!(up.convert(u64::MAX / 10 + 1), Err(ConvertError::Overflow));
        assert_eq!(up.convert(u64::MAX), Err(ConvertError::Overflow));
        // Wide path (amount × num ≥ 2^128) with a whole part ≥ 2^64.
        let huge = Rate::from_ratio(u128::MAX, 3).unwrap();
        assert_eq!(huge.convert(2), Err(ConvertError::Overflow));
        // Wide path with a whole part of 1: u64::MAX × (1 + small) overflows only past the edge.
        let just_over = Rate::from_ratio(u128::MAX, u128::MAX - 1).unwrap();
        assert_eq!(just_over.convert(u64::MAX), Ok(u64::MAX));
        // Ratio 1 + ~2^-63: u64::MAX grows by about 2, past the edge, on the wide path
        // (checked with exact integers: floor(a × num / den) − (2^64 − 1) is −1, 0, 1 for
        // a = 2^64 − 3, 2^64 − 2, 2^64 − 1).
        let over = Rate::from_ratio((1 << 127) + (1 << 64) + 1, (1 << 127) + 1).unwrap();
        assert!(u128::from(u64::MAX).checked_mul(over.num()).is_none());
        assert_eq!(over.convert(u64::MAX), Err(ConvertError::Overflow));
        assert_eq!(over.convert(u64::MAX - 1), Ok(u64::MAX));
        assert_eq!(over.convert(u64::MAX - 2), Ok(u64::MAX - 1));
    }

    /// Amount 0 is forwarded as 0, whatever the rate.
    #[test]
    fn spec_zero_amount_forwards_zero() {
        assert_eq!(Rate::ONE.convert(0), Ok(0));
        assert_eq!(rate("1", 18, "1", 0, "0").convert(0), Ok(0));
        assert_eq!(Rate::from_ratio(u128::MAX, 1).unwrap().convert(0), Ok(0));
    }

    /// A zero price (invalid or missing rate) is no rate (T00), never a 0-amount forward.
    #[test]
    fn spec_zero_price_is_no_rate_t00() {
        let one = Decimal::ONE;
        let zero = dec("0.000");
        assert_eq!(
            Rate::new(zero, 2, one, 2, Decimal::ZERO),
            Err(RateError::PriceInZero)
        );
        assert_eq!(
            Rate::new(one, 2, zero, 2, Decimal::ZERO),
            Err(RateError::PriceOutZero)
        );
    }

    // --- Rate construction --------------------------------------------------------------------

    #[test]
    fn rate_is_reduced_fraction() {
        // EUR (1.08) → USD (1), both scale 2: 108/100 = 27/25.
        let r = rate("1.08", 2, "1", 2, "0");
        assert_eq!((r.num(), r.den()), (27, 25));
        assert_eq!(r.convert(100), Ok(108));
        assert_eq!(r.convert(1), Ok(1));
        // USD → EUR: 25/27, 100 → 92.59… → 92.
        let r = rate("1", 2, "1.08", 2, "0");
        assert_eq!((r.num(), r.den()), (25, 27));
        assert_eq!(r.convert(100), Ok(92));
        // Everything at once: 1.5 / 0.002 × 0.75 × 10^(6 − 9) = 562.5 / 1000 = 9/16.
        let r = rate("1.5", 9, "0.002", 6, "0.25");
        assert_eq!((r.num(), r.den()), (9, 16));
        assert_eq!(Rate::from_ratio(6, 4), Ok(Rate::from_ratio(3, 2).unwrap()));
    }

    #[test]
    fn rate_identity() {
        assert!(Rate::ONE.is_identity());
        assert_eq!(Rate::ONE.convert(u64::MAX), Ok(u64::MAX));
        assert_eq!(Rate::ONE.convert(1), Ok(1));
        let same = rate("1.08", 9, "1.08", 9, "0");
        assert!(same.is_identity());
        assert_eq!(same, Rate::ONE);
        assert!(!rate("1", 9, "1", 9, "0.002").is_identity());
        assert!(Rate::from_ratio(7, 7).unwrap().is_identity());
    }

    #[test]
    fn rate_errors() {
        let one = Decimal::ONE;
        let zero = Decimal::ZERO;
        assert_eq!(
            Rate::new(one, 19, one, 0, zero),
            Err(RateError::ScaleTooLarge { scale: 19 })
        );
        assert_eq!(
            Rate::new(one, 0, one, 255, zero),
            Err(RateError::ScaleTooLarge { scale: 255 })
        );
        assert!(Rate::new(one, 18, one, 0, zero).is_ok());
        assert_eq!(
            Rate::new(one, 0, one, 0, one),
            Err(RateError::SpreadNotBelowOne)
        );
        assert_eq!(
            Rate::new(one, 0, one, 0, dec("1.000")),
            Err(RateError::SpreadNotBelowOne)
        );
        assert_eq!(
            Rate::new(one, 0, one, 0, dec("1.5")),
            Err(RateError::SpreadNotBelowOne)
        );
        let almost_one = dec("0.99999999999999999999999999999999999999");
        let r = Rate::new(one, 0, one, 0, almost_one).unwrap();
        assert_eq!((r.num(), r.den()), (1, pow10(38)));
        // (10^38 − 1) × 10^18 / 1 does not fit in u128 and cannot be reduced.
        let nines = dec("99999999999999999999999999999999999999");
        assert_eq!(
            Rate::new(nines, 0, one, 18, zero),
            Err(RateError::Unrepresentable)
        );
        // …but the same digits over themselves reduce to 1.
        assert_eq!(Rate::new(nines, 18, nines, 18, zero), Ok(Rate::ONE));
        assert_eq!(Rate::from_ratio(0, 1), Err(RateError::ZeroRatio));
        assert_eq!(Rate::from_ratio(1, 0), Err(RateError::ZeroRatio));
    }

    #[test]
    fn rate_display_shows_fraction_and_value() {
        assert_eq!(rate("1.08", 2, "1", 2, "0").to_string(), "27/25 (1.08)");
        assert_eq!(Rate::ONE.to_string(), "1/1 (1)");
        assert_eq!(
            Rate::from_ratio(2, 3).unwrap().to_string(),
            "2/3 (~0.666666666666)"
        );
        assert_eq!(Rate::from_ratio(10, 1).unwrap().to_string(), "10/1 (10)");
        let r = Rate::from_ratio(u128::MAX, u128::MAX - 1).unwrap();
        assert_eq!(
            r.to_string(),
            format!("{}/{} (~1.000000000000)", u128::MAX, u128::MAX - 1)
        );
        assert_eq!(format!("{:?}", Rate::ONE), "Rate { num: 1, den: 1 }");
        assert!(RateError::Unrepresentable.to_string().contains("128 bits"));
        assert!(ConvertError::TooSmall.to_string().contains("too small"));
        assert!(ConvertError::Overflow.to_string().contains("2^64"));
    }

    // --- wide path ----------------------------------------------------------------------------

    #[test]
    fn mul_div_below_small_cases() {
        assert_eq!(mul_div_below(0, 5, 7), (0, 0));
        assert_eq!(mul_div_below(10, 2, 3), (6, 2));
        assert_eq!(mul_div_below(u64::MAX, 0, 1), (0, 0));
        // (2^64 − 1)(2^128 − 2) / (2^128 − 1) = 2^64 − 2 remainder 2^128 − 1 − (2^64 − 1)… checked
        // against the identity a × r = q × d + rem.
        let (a, r, d) = (u64::MAX, u128::MAX - 1, u128::MAX);
        let (q, rem) = mul_div_below(a, r, d);
        let lhs = BigUint::from(a) * BigUint::from(r);
        let rhs = BigUint::from(q) * BigUint::from(d) + BigUint::from(rem);
        assert_eq!(lhs, rhs);
        assert!(rem < d);
    }

    #[test]
    fn wide_path_is_exact() {
        // amount × num ≥ 2^128 with a ratio near 1.
        let r = Rate::from_ratio((1 << 127) + 1, 1 << 127).unwrap();
        assert_eq!(r.convert(u64::MAX - 1), Ok(u64::MAX - 1));
        let r = Rate::from_ratio(3 << 125, 1 << 126).unwrap(); // 3/2, not reduced on input
        assert_eq!((r.num(), r.den()), (3, 2));
        let r = Rate::from_ratio((3 << 125) + 1, 1 << 126).unwrap(); // just above 3/2
        assert_eq!(r.convert(1 << 62), Ok(3 << 61));
        assert_eq!(
            r.convert(u64::MAX / 2),
            Ok(reference_ratio(u64::MAX / 2, r).unwrap())
        );
    }

    // --- Decimal ------------------------------------------------------------------------------

    #[test]
    fn decimal_parse_config_strings() {
        let cases: [(&str, u128, u8); 10] = [
            ("1", 1, 0),
            ("1.08", 108, 2),
            ("0.002", 2, 3),
            ("1500000", 1_500_000, 0),
            ("0.000000001", 1, 9),
            ("3.0", 3, 0),
            ("1.50", 15, 1),
            ("0", 0, 0),
            ("0.000", 0, 0),
            ("007.5", 75, 1),
        ];
        for (text, mantissa, fraction_digits) in cases {
            let d = dec(text);
            assert_eq!(
                (d.mantissa(), d.fraction_digits()),
                (mantissa, fraction_digits),
                "{text}"
            );
            assert_eq!(Decimal::from_parts(mantissa, fraction_digits), Ok(d));
        }
        assert_eq!("2.5".parse::<Decimal>(), Ok(dec("2.50")));
        assert_eq!(Decimal::from_u64(1_500_000), dec("1500000"));
        // Limits: 38 significant digits and 38 fraction digits are accepted.
        let nines = dec("99999999999999999999999999999999999999");
        assert_eq!(nines.mantissa(), pow10(38) - 1);
        let tiny = dec("0.00000000000000000000000000000000000001");
        assert_eq!((tiny.mantissa(), tiny.fraction_digits()), (1, 38));
        // Leading zeros are not significant.
        assert!(Decimal::parse("0000000000000000000000000000000000000000001").is_ok());
    }

    #[test]
    fn decimal_parse_errors() {
        use DecimalError as E;
        let cases: [(&str, DecimalError); 16] = [
            ("", E::Empty),
            ("-1", E::Sign),
            ("+1", E::Sign),
            ("1-", E::Sign),
            ("1e3", E::Exponent { index: 1 }),
            ("1.5E3", E::Exponent { index: 3 }),
            (".5", E::EmptyIntegerPart),
            ("1.", E::EmptyFractionPart),
            (".", E::EmptyIntegerPart),
            ("1.2.3", E::SecondPoint { index: 3 }),
            ("1,5", E::InvalidCharacter { ch: ',', index: 1 }),
            (" 1", E::InvalidCharacter { ch: ' ', index: 0 }),
            ("1 ", E::InvalidCharacter { ch: ' ', index: 1 }),
            (
                "1€",
                E::InvalidCharacter {
                    ch: '€', index: 1
                },
            ),
            (
                "100000000000000000000000000000000000000",
                E::TooManySignificantDigits { digits: 39 },
            ),
            (
                "0.000000000000000000000000000000000000001",
                E::TooManyFractionDigits { digits: 39 },
            ),
        ];
        for (text, error) in cases {
            assert_eq!(Decimal::parse(text), Err(error), "{text:?}");
            assert!(!error.to_string().is_empty());
        }
        assert_eq!(
            Decimal::from_parts(pow10(38), 0),
            Err(E::TooManySignificantDigits { digits: 39 })
        );
        assert_eq!(
            Decimal::from_parts(1, 39),
            Err(E::TooManyFractionDigits { digits: 39 })
        );
        assert!(E::Exponent { index: 1 }.to_string().contains("exponent"));
        assert!(E::Sign.to_string().contains("sign"));
    }

    #[test]
    fn decimal_display() {
        for text in ["0", "1", "1.08", "0.002", "1500000", "0.000000001", "10.5"] {
            assert_eq!(dec(text).to_string(), text);
        }
        assert_eq!(dec("1.50").to_string(), "1.5");
        assert_eq!(dec("00.10").to_string(), "0.1");
        let tiny = "0.00000000000000000000000000000000000001";
        assert_eq!(dec(tiny).to_string(), tiny);
        let big = "9999999999999999999999999999999999999.9";
        assert_eq!(dec(big).to_string(), big);
        assert_eq!(format!("{:?}", dec("1.08")), "Decimal(1.08)");
    }

    // --- property tests against a big-integer reference ---------------------------------------

    fn big(value: u128) -> BigUint {
        BigUint::from(value)
    }

    fn big_gcd(mut a: BigUint, mut b: BigUint) -> BigUint {
        let zero = big(0);
        while b != zero {
            let r = &a % &b;
            a = b;
            b = r;
        }
        a
    }

    /// `floor(amount × num / den)` with the same outcome rules, in big integers.
    fn reference(amount: u64, num: &BigUint, den: &BigUint) -> Result<u64, ConvertError> {
        if amount == 0 {
            return Ok(0);
        }
        let out = BigUint::from(amount) * num / den;
        if out == big(0) {
            return Err(ConvertError::TooSmall);
        }
        u64::try_from(&out).map_err(|_| ConvertError::Overflow)
    }

    fn reference_ratio(amount: u64, r: Rate) -> Result<u64, ConvertError> {
        reference(amount, &big(r.num()), &big(r.den()))
    }

    /// Decimals with a few significant digits and decimals, sometimes up to the limits.
    fn decimal_strategy(nonzero: bool) -> impl Strategy<Value = Decimal> {
        let low = u128::from(nonzero);
        prop_oneof![
            4 => (low..=1_000_000u128, 0u8..=6),
            1 => (low..pow10(Decimal::DIGITS_MAX), 0u8..=Decimal::FRACTION_DIGITS_MAX),
        ]
        .prop_map(|(m, f)| Decimal::from_parts(m, f).unwrap())
    }

    fn spread_strategy() -> impl Strategy<Value = Decimal> {
        prop_oneof![
            1 => Just((0u128, 0u8)),
            4 => (1u8..=4).prop_flat_map(|f| (0..pow10(f), Just(f))),
            1 => (1u8..=Decimal::FRACTION_DIGITS_MAX).prop_flat_map(|f| (0..pow10(f), Just(f))),
        ]
        .prop_map(|(m, f)| Decimal::from_parts(m, f).unwrap())
    }

    fn amount_strategy() -> impl Strategy<Value = u64> {
        prop_oneof![
            any::<u64>(),
            0u64..1000,
            (0u32..64, any::<u64>()).prop_map(|(shift, a)| a >> shift),
            Just(u64::MAX),
        ]
    }

    /// A u128 of random bit length, so ratios spread over many orders of magnitude.
    fn wide_strategy() -> impl Strategy<Value = u128> {
        (0u32..128, any::<u128>()).prop_map(|(shift, v)| (v >> shift).max(1))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// Rate::new + convert equals floor(amount × price_in × (1 − spread) × 10^scale_out /
        /// (price_out × 10^scale_in)) in big integers: value, TooSmall and Overflow alike; and
        /// Unrepresentable exactly when the reduced fraction exceeds u128.
        #[test]
        fn prop_configured_rate_matches_bigint(
            price_in in decimal_strategy(true),
            price_out in decimal_strategy(true),
            scale_in in 0u8..=18,
            scale_out in 0u8..=18,
            spread in spread_strategy(),
            amounts in proptest::collection::vec(amount_strategy(), 8),
        ) {
            let ten = big(10);
            let spread_one = ten.pow(u32::from(spread.fraction_digits()));
            let num = big(price_in.mantissa())
                * ten.pow(u32::from(price_out.fraction_digits()))
                * (&spread_one - big(spread.mantissa()))
                * ten.pow(u32::from(scale_out));
            let den = big(price_out.mantissa())
                * ten.pow(u32::from(price_in.fraction_digits()))
                * &spread_one
                * ten.pow(u32::from(scale_in));
            let g = big_gcd(num.clone(), den.clone());
            let (num_reduced, den_reduced) = (&num / &g, &den / &g);
            match Rate::new(price_in, scale_in, price_out, scale_out, spread) {
                Ok(r) => {
                    prop_assert_eq!(big(r.num()), num_reduced);
                    prop_assert_eq!(big(r.den()), den_reduced);
                    for amount in amounts {
                        prop_assert_eq!(r.convert(amount), reference(amount, &num, &den));
                    }
                }
                Err(e) => {
                    prop_assert_eq!(e, RateError::Unrepresentable);
                    let limit = big(u128::MAX);
                    prop_assert!(num_reduced > limit || den_reduced > limit);
                }
            }
        }

        /// Arbitrary u128 fractions (so the wide path runs often) against big integers.
        #[test]
        fn prop_any_ratio_matches_bigint(
            num in wide_strategy(),
            den in wide_strategy(),
            amounts in proptest::collection::vec(amount_strategy(), 8),
        ) {
            let r = Rate::from_ratio(num, den).unwrap();
            prop_assert_eq!(big_gcd(big(r.num()), big(r.den())), big(1));
            for amount in amounts {
                prop_assert_eq!(r.convert(amount), reference(amount, &big(num), &big(den)));
            }
        }

        /// floor(a × r / d) and its remainder satisfy a × r = q × d + rem, rem < d.
        #[test]
        fn prop_mul_div_below_identity(a in any::<u64>(), d in wide_strategy(), r in any::<u128>()) {
            let r = r % d;
            let (q, rem) = mul_div_below(a, r, d);
            prop_assert!(rem < d);
            prop_assert_eq!(big(a.into()) * big(r), big(q.into()) * big(d) + big(rem));
        }

        /// Display then parse gives the same value.
        #[test]
        fn prop_decimal_display_parse_round_trip(d in decimal_strategy(false)) {
            prop_assert_eq!(Decimal::parse(&d.to_string()), Ok(d));
        }
    }
}
