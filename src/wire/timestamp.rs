//! Timestamps (RFC 30), by integer arithmetic with no calendar crate.
//!
//! - The ILP timestamp (`expiresAt`) is exactly 17 digits `YYYYMMDDHHmmSSfff`, UTC. Every field
//!   is range-checked, days against the Gregorian calendar; second 60 is refused (leap seconds
//!   are smeared). We convert it to Unix milliseconds, the only time unit the router uses.
//! - BTP's `triggeredAt` is a GeneralizedTime `YYYYMMDDHHMMSS[.f{1,3}]Z`; second 60 is allowed
//!   there (RFC 30). We emit the 19-byte `.fffZ` form, the one both reference libraries read.
//!
//! The conversions use Howard Hinnant's `days_from_civil` / `civil_from_days` algorithms.

use super::Error;
use std::cell::Cell;

/// Bytes in an ILP timestamp.
pub const ILP_TIMESTAMP_LEN: usize = 17;
/// Bytes in the GeneralizedTime form we emit (`YYYYMMDDHHMMSS.fffZ`).
pub const GENERALIZED_TIME_LEN: usize = 19;
/// Bytes in the ISO-8601 form `YYYY-MM-DDTHH:mm:SS.fffZ`.
pub const ISO8601_LEN: usize = 24;
/// Unix milliseconds of 0000-01-01T00:00:00.000Z, the earliest ILP timestamp.
pub const UNIX_MS_MIN: i64 = -62_167_219_200_000;
/// Unix milliseconds of 9999-12-31T23:59:59.999Z, the latest ILP timestamp.
pub const UNIX_MS_MAX: i64 = 253_402_300_799_999;

const MS_PER_DAY: i64 = 86_400_000;

/// Parses a 17-digit ILP timestamp into Unix milliseconds.
///
/// Every packet carries one and nearly all of them fall on the same day, so the date part is
/// checked and converted once per day and thread ([`DateCache`]); the time of day is read
/// two digits at a time.
#[inline]
pub fn parse_ilp(raw: &[u8]) -> Result<i64, Error> {
    let Ok(digits) = <&[u8; ILP_TIMESTAMP_LEN]>::try_from(raw) else {
        return Err(Error::InvalidTimestamp);
    };
    let mut all_digits = true;
    for &b in digits {
        all_digits &= b.wrapping_sub(b'0') <= 9;
    }
    if !all_digits {
        return Err(Error::InvalidTimestamp);
    }
    let pair = |at: usize| u32::from(digits[at] - b'0') * 10 + u32::from(digits[at + 1] - b'0');
    let (hour, minute, second) = (pair(8), pair(10), pair(12));
    if hour > 23 || minute > 59 || second > 59 {
        return Err(Error::InvalidTimestamp);
    }
    let milli = pair(14) * 10 + u32::from(digits[16] - b'0');
    let date = u64::from_le_bytes(digits[..8].try_into().expect("8 bytes"));
    let days = match DATE_CACHE.with(|c| c.parsed.get()) {
        (cached, days) if cached == date => days,
        _ => {
            let fields = Fields::from_digits(digits);
            fields.check()?;
            let days = days_from_civil(fields.year as i64, fields.month, fields.day);
            DATE_CACHE.with(|c| c.parsed.set((date, days)));
            days
        }
    };
    let seconds = i64::from(hour * 3600 + minute * 60 + second);
    Ok(days * MS_PER_DAY + seconds * 1000 + i64::from(milli))
}

/// Formats Unix milliseconds as a 17-digit ILP timestamp. Times outside the representable
/// years 0000–9999 are clamped to the nearest end. The date's digits come from
/// [`DateCache`] when the day is the one last formatted on this thread.
#[inline]
pub fn format_ilp(unix_ms: i64) -> [u8; ILP_TIMESTAMP_LEN] {
    let ms = unix_ms.clamp(UNIX_MS_MIN, UNIX_MS_MAX);
    let days = ms.div_euclid(MS_PER_DAY);
    // Below a day, so it fits.
    let in_day = ms.rem_euclid(MS_PER_DAY) as u32;
    let date = match DATE_CACHE.with(|c| c.formatted.get()) {
        (cached, date) if cached == days => date,
        _ => {
            let (year, month, day) = civil_from_days(days);
            let mut date = [0u8; 8];
            put_digits(&mut date[0..4], year as u32);
            put_digits(&mut date[4..6], month);
            put_digits(&mut date[6..8], day);
            DATE_CACHE.with(|c| c.formatted.set((days, date)));
            date
        }
    };
    let mut out = [0u8; ILP_TIMESTAMP_LEN];
    out[..8].copy_from_slice(&date);
    let seconds = in_day / 1000;
    out[8..10].copy_from_slice(&two_digits(seconds / 3600));
    out[10..12].copy_from_slice(&two_digits(seconds / 60 % 60));
    out[12..14].copy_from_slice(&two_digits(seconds % 60));
    let milli = in_day % 1000;
    out[14..16].copy_from_slice(&two_digits(milli / 10));
    out[16] = b'0' + (milli % 10) as u8;
    out
}

/// The last date each direction converted on this thread: the 8 date digits (as a
/// little-endian word) and their day number for [`parse_ilp`], the day number and its digits
/// for [`format_ilp`]. Only dates that passed every check are kept. Per thread, so the router's
/// cores share nothing; a day's first packet pays the calendar arithmetic once.
struct DateCache {
    parsed: Cell<(u64, i64)>,
    formatted: Cell<(i64, [u8; 8])>,
}

thread_local! {
    // u64::MAX is eight 0xFF bytes, never eight digits; i64::MIN is below every clamped day.
    static DATE_CACHE: DateCache = const {
        DateCache {
            parsed: Cell::new((u64::MAX, 0)),
            formatted: Cell::new((i64::MIN, [0; 8])),
        }
    };
}

/// `value` (below 100) as two ASCII digits.
#[inline]
fn two_digits(value: u32) -> [u8; 2] {
    [b'0' + (value / 10) as u8, b'0' + (value % 10) as u8]
}

/// Parses a BTP GeneralizedTime (15, 17, 18 or 19 bytes) and returns it as 17 ILP-style
/// digits, the fraction padded to milliseconds (`…32.2Z` → `…32200`). Second 60 is kept.
pub fn parse_generalized(raw: &[u8]) -> Result<[u8; ILP_TIMESTAMP_LEN], Error> {
    let fraction_len = match raw.len() {
        15 => 0,
        17..=19 => raw.len() - 16,
        _ => return Err(Error::InvalidTimestamp),
    };
    if raw[raw.len() - 1] != b'Z' {
        return Err(Error::InvalidTimestamp);
    }
    if fraction_len > 0 && raw[14] != b'.' {
        return Err(Error::InvalidTimestamp);
    }
    let mut digits = [b'0'; ILP_TIMESTAMP_LEN];
    digits[..14].copy_from_slice(&raw[..14]);
    digits[14..14 + fraction_len].copy_from_slice(&raw[15..15 + fraction_len]);
    if digits.iter().any(|b| !b.is_ascii_digit()) {
        return Err(Error::InvalidTimestamp);
    }
    let fields = Fields::from_digits(&digits);
    if fields.second > 60 {
        return Err(Error::InvalidTimestamp);
    }
    fields.check()?;
    Ok(digits)
}

/// Formats Unix milliseconds as the 19-byte GeneralizedTime `YYYYMMDDHHMMSS.fffZ`.
pub fn format_generalized(unix_ms: i64) -> [u8; GENERALIZED_TIME_LEN] {
    let digits = format_ilp(unix_ms);
    let mut out = [0u8; GENERALIZED_TIME_LEN];
    out[..14].copy_from_slice(&digits[..14]);
    out[14] = b'.';
    out[15..18].copy_from_slice(&digits[14..]);
    out[18] = b'Z';
    out
}

/// Rewrites 17 checked digits as ISO-8601 `YYYY-MM-DDTHH:mm:SS.fffZ`.
pub fn iso8601(digits: &[u8; ILP_TIMESTAMP_LEN]) -> [u8; ISO8601_LEN] {
    let d = digits;
    [
        d[0], d[1], d[2], d[3], b'-', d[4], d[5], b'-', d[6], d[7], b'T', d[8], d[9], b':', d[10],
        d[11], b':', d[12], d[13], b'.', d[14], d[15], d[16], b'Z',
    ]
}

struct Fields {
    year: u32,
    month: u32,
    day: u32,
    hour: u32,
    minute: u32,
    second: u32,
}

impl Fields {
    /// Splits the date and time of 17 ASCII digits (already checked to be digits) into
    /// fields; the milliseconds need no check.
    #[inline]
    fn from_digits(d: &[u8; ILP_TIMESTAMP_LEN]) -> Fields {
        let n = |range: core::ops::Range<usize>| {
            d[range]
                .iter()
                .fold(0u32, |acc, &b| acc * 10 + u32::from(b - b'0'))
        };
        Fields {
            year: n(0..4),
            month: n(4..6),
            day: n(6..8),
            hour: n(8..10),
            minute: n(10..12),
            second: n(12..14),
        }
    }

    /// Range checks for everything but the second, whose bound the caller sets.
    #[inline]
    fn check(&self) -> Result<(), Error> {
        let month_ok = (1..=12).contains(&self.month);
        if !month_ok || self.day == 0 || self.day > days_in_month(self.year, self.month) {
            return Err(Error::InvalidTimestamp);
        }
        if self.hour > 23 || self.minute > 59 {
            return Err(Error::InvalidTimestamp);
        }
        Ok(())
    }
}

#[inline]
fn is_leap(year: u32) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

#[inline]
fn days_in_month(year: u32, month: u32) -> u32 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
#[inline]
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year.rem_euclid(400);
    let month = i64::from(month);
    let day_of_year =
        (153 * (if month > 2 { month - 3 } else { month + 9 }) + 2) / 5 + i64::from(day) - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// The date of a day count since 1970-01-01.
#[inline]
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let mp = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[inline]
fn put_digits(out: &mut [u8], mut value: u32) {
    for slot in out.iter_mut().rev() {
        *slot = b'0' + (value % 10) as u8;
        value /= 10;
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn known_instants() {
        assert_eq!(parse_ilp(b"19700101000000000"), Ok(0));
        assert_eq!(parse_ilp(b"20171223012140549"), Ok(1_513_992_100_549));
        assert_eq!(parse_ilp(b"00000101000000000"), Ok(UNIX_MS_MIN));
        assert_eq!(parse_ilp(b"99991231235959999"), Ok(UNIX_MS_MAX));
        assert_eq!(format_ilp(1_513_992_100_549), *b"20171223012140549");
        assert_eq!(format_ilp(i64::MIN), *b"00000101000000000");
        assert_eq!(format_ilp(i64::MAX), *b"99991231235959999");
        assert_eq!(format_ilp(-1), *b"19691231235959999");
    }

    #[test]
    fn rfc30_examples() {
        for ok in [
            b"20171225000000000",
            b"99991224161432279",
            b"20200229120000001",
        ] {
            assert!(parse_ilp(ok).is_ok());
        }
        for bad in [
            b"20171324161432200",
            b"20171224240000000",
            b"20161231235960852",
            b"20190229120000000",
            b"2017122416143227a",
            b"00000000000000000",
            b"2017122416143227 ",
            b"20310506070809.10",
            b"21000229000000000",
        ] {
            assert_eq!(parse_ilp(bad), Err(Error::InvalidTimestamp));
        }
        assert_eq!(parse_ilp(b"2017"), Err(Error::InvalidTimestamp));
        assert!(parse_ilp(b"20000229000000000").is_ok());
    }

    #[test]
    fn every_day_of_four_centuries_round_trips() {
        // 1900-03-01 .. 2300-03-01 covers every leap rule.
        let start = days_from_civil(1900, 3, 1);
        let end = days_from_civil(2300, 3, 1);
        for days in start..end {
            let ms = days * MS_PER_DAY + 45_296_789;
            let text = format_ilp(ms);
            assert_eq!(parse_ilp(&text), Ok(ms));
        }
    }

    /// The calendar arithmetic the cached paths replace, field by field.
    fn format_reference(unix_ms: i64) -> [u8; ILP_TIMESTAMP_LEN] {
        let ms = unix_ms.clamp(UNIX_MS_MIN, UNIX_MS_MAX);
        let (year, month, day) = civil_from_days(ms.div_euclid(MS_PER_DAY));
        let in_day = ms.rem_euclid(MS_PER_DAY);
        let mut out = [0u8; ILP_TIMESTAMP_LEN];
        put_digits(&mut out[0..4], year as u32);
        put_digits(&mut out[4..6], month);
        put_digits(&mut out[6..8], day);
        put_digits(&mut out[8..10], (in_day / 3_600_000) as u32);
        put_digits(&mut out[10..12], (in_day / 60_000 % 60) as u32);
        put_digits(&mut out[12..14], (in_day / 1000 % 60) as u32);
        put_digits(&mut out[14..17], (in_day % 1000) as u32);
        out
    }

    #[test]
    fn the_date_cache_never_changes_an_answer() {
        // Days that alternate (every conversion misses the cache), days that repeat (every
        // one hits it), the ends of the range and either side of midnight.
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        let mut values = vec![UNIX_MS_MIN, UNIX_MS_MAX, -1, 0, MS_PER_DAY - 1, MS_PER_DAY];
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let wide = (x % (UNIX_MS_MAX - UNIX_MS_MIN) as u64) as i64 + UNIX_MS_MIN;
            let today = 1_764_633_600_000 + (x % (2 * MS_PER_DAY as u64)) as i64;
            values.extend([wide, today, today + 1, wide]);
        }
        for &ms in &values {
            let text = format_ilp(ms);
            assert_eq!(text, format_reference(ms), "{ms}");
            assert_eq!(parse_ilp(&text), Ok(ms), "{ms}");
        }
        // A date refused is never remembered: the same day with a valid time after it is
        // refused again, and a cached day does not let a bad time through.
        assert!(parse_ilp(b"20261202101010101").is_ok());
        assert_eq!(
            parse_ilp(b"20261202246010101"),
            Err(Error::InvalidTimestamp)
        );
        assert_eq!(
            parse_ilp(b"20261202106010101"),
            Err(Error::InvalidTimestamp)
        );
        assert_eq!(
            parse_ilp(b"20261202101060101"),
            Err(Error::InvalidTimestamp)
        );
        for _ in 0..2 {
            assert_eq!(
                parse_ilp(b"20190229120000000"),
                Err(Error::InvalidTimestamp)
            );
        }
    }

    #[test]
    fn generalized_time_forms() {
        assert_eq!(
            &parse_generalized(b"20171224161432Z").unwrap(),
            b"20171224161432000"
        );
        assert_eq!(
            &parse_generalized(b"20171224161432.2Z").unwrap(),
            b"20171224161432200"
        );
        assert_eq!(
            &parse_generalized(b"20171224161432.27Z").unwrap(),
            b"20171224161432270"
        );
        assert_eq!(
            &parse_generalized(b"20180831025324.899Z").unwrap(),
            b"20180831025324899"
        );
        assert_eq!(
            &parse_generalized(b"20161231235960.852Z").unwrap(),
            b"20161231235960852"
        );
        for bad in [
            &b"garbage"[..],
            b"20171324161432Z",
            b"201712241614320",
            b"20171224215319.1234Z",
            b"20171224161432,5Z",
            b"20171224235319+0200",
            b"20171224161461Z",
        ] {
            assert_eq!(
                parse_generalized(bad),
                Err(Error::InvalidTimestamp),
                "{bad:?}"
            );
        }
        assert_eq!(
            &format_generalized(1_535_684_004_899),
            b"20180831025324.899Z"
        );
        assert_eq!(&iso8601(b"20161231235960852"), b"2016-12-31T23:59:60.852Z");
    }
}
