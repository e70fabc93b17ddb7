//! Wall-clock timestamps as the APIs show them: RFC 3339 in UTC with millisecond precision
//! (`2026-11-25T11:54:34.123Z`).
//!
//! Owns the conversion between Unix milliseconds and text; the calendar itself is the `time`
//! crate's. Must not read any clock other than `SystemTime` (callers pass `now` in, so the domain
//! stays testable).

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};
use time::format_description::well_known::Rfc3339;
use time::macros::format_description;
use time::OffsetDateTime;

/// How a timestamp is written: always 24 characters, milliseconds and `Z` included. Log lines
/// start with the same (`cli::init_logging`).
pub(crate) const FORMAT: &[time::format_description::BorrowedFormatItem<'static>] =
    format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");

/// HTTP's `Date` format (IMF-fixdate, RFC 9110 section 5.6.7): `Sun, 06 Nov 1994 08:49:37 GMT`.
const HTTP_DATE: &[time::format_description::BorrowedFormatItem<'static>] =
    format_description!("[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT");

/// Milliseconds since the Unix epoch, shown as RFC 3339 UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp(pub u64);

impl Timestamp {
    pub fn now() -> Timestamp {
        let ms = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0);
        Timestamp(ms)
    }

    pub fn millis(self) -> u64 {
        self.0
    }

    /// Milliseconds from `earlier` to `self`, zero if `earlier` is later.
    pub fn since(self, earlier: Timestamp) -> u64 {
        self.0.saturating_sub(earlier.0)
    }

    /// Parses RFC 3339 as Docker and our own APIs write it: `YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)`
    /// (`t` or a space may stand for `T`, `z` for `Z`). Fractions beyond milliseconds are truncated
    /// (Docker writes nanoseconds); times before 1970 are the epoch (Docker writes
    /// `0001-01-01T00:00:00Z` for "never"). Impossible dates (`02-30`) are refused.
    pub fn parse(s: &str) -> Option<Timestamp> {
        // RFC 3339 lets the separator be anything; we keep to the three that are seen
        if !matches!(s.as_bytes().get(10), Some(b'T' | b't' | b' ')) {
            return None;
        }
        let parsed = OffsetDateTime::parse(s, &Rfc3339).ok()?;
        let millis = parsed.unix_timestamp_nanos().div_euclid(1_000_000);
        Some(Timestamp(u64::try_from(millis).unwrap_or(0)))
    }
}

impl Timestamp {
    fn calendar(self) -> OffsetDateTime {
        // beyond the year 9999 (which no clock of ours reaches) the latest time we can write
        let nanos = i128::from(self.0) * 1_000_000;
        OffsetDateTime::from_unix_timestamp_nanos(nanos).unwrap_or_else(|_| time::PrimitiveDateTime::MAX.assume_utc())
    }

    /// The time as HTTP's `Date` header writes it (IMF-fixdate, always GMT).
    pub fn http_date(self) -> String {
        // formatting a UTC date within range with a fixed description cannot fail
        self.calendar().format(HTTP_DATE).unwrap_or_default()
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = self.calendar().format(FORMAT).map_err(|_| fmt::Error)?;
        f.write_str(&text)
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Timestamp::parse(&s).ok_or_else(|| serde::de::Error::custom(format!("not an RFC 3339 time: {s:?}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The hand-written parser this module had before it used the `time` crate, kept as the
    /// oracle the property tests compare against.
    mod old {
        use super::Timestamp;

        /// Parses RFC 3339 as Docker and our own APIs write it: `YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)`.
        /// Fractions beyond milliseconds are truncated (Docker writes nanoseconds).
        pub(super) fn parse(s: &str) -> Option<Timestamp> {
            let b = s.as_bytes();
            if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
                return None;
            }
            if b[13] != b':' || b[16] != b':' {
                return None;
            }
            let num = |from: usize, to: usize| -> Option<i64> {
                let part = s.get(from..to)?;
                if !part.bytes().all(|c| c.is_ascii_digit()) {
                    return None;
                }
                part.parse().ok()
            };
            let (year, month, day) = (num(0, 4)?, num(5, 7)?, num(8, 10)?);
            let (hour, minute, second) = (num(11, 13)?, num(14, 16)?, num(17, 19)?);
            if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 || second > 60 {
                return None;
            }
            let mut rest = &s[19..];
            let mut millis = 0i64;
            if let Some(frac) = rest.strip_prefix('.') {
                let digits = frac.bytes().take_while(u8::is_ascii_digit).count();
                if digits == 0 {
                    return None;
                }
                let mut scaled = 0i64;
                for (i, c) in frac[..digits].bytes().enumerate().take(3) {
                    scaled += i64::from(c - b'0') * [100, 10, 1][i];
                }
                millis = scaled;
                rest = &frac[digits..];
            }
            let offset_s = match rest {
                "Z" | "z" => 0,
                _ if rest.len() == 6
                    && (rest.starts_with('+') || rest.starts_with('-'))
                    && rest.get(3..4) == Some(":") =>
                {
                    // get(): a multi-byte character must not make us slice inside it
                    let h: i64 = rest.get(1..3)?.parse().ok()?;
                    let m: i64 = rest.get(4..6)?.parse().ok()?;
                    let sign = if rest.starts_with('-') { -1 } else { 1 };
                    sign * (h * 3600 + m * 60)
                }
                _ => return None,
            };
            let days = days_from_civil(year, month, day);
            let secs = days * 86_400 + hour * 3600 + minute * 60 + second - offset_s;
            if secs < 0 {
                // Docker writes 0001-01-01T00:00:00Z for "never"; we have no time before 1970.
                return Some(Timestamp(0));
            }
            Some(Timestamp(secs as u64 * 1000 + millis as u64))
        }

        // Days since 1970-01-01 from a proleptic Gregorian date and back, by counting 400-year eras
        // (each has exactly 146,097 days) with years starting in March so that the leap day comes last.
        pub(super) fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
            let y = if month <= 2 { year - 1 } else { year };
            let era = y.div_euclid(400);
            let year_of_era = y - era * 400;
            let month_from_march = (month + 9) % 12;
            let day_of_year = (153 * month_from_march + 2) / 5 + day - 1;
            let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
            era * 146_097 + day_of_era - 719_468
        }

        pub(super) fn civil_from_days(days: i64) -> (i64, i64, i64) {
            let z = days + 719_468;
            let era = z.div_euclid(146_097);
            let day_of_era = z - era * 146_097;
            let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
            let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
            let month_from_march = (5 * day_of_year + 2) / 153;
            let day = day_of_year - (153 * month_from_march + 2) / 5 + 1;
            let month = if month_from_march < 10 { month_from_march + 3 } else { month_from_march - 9 };
            let year = year_of_era + era * 400 + i64::from(month <= 2);
            (year, month, day)
        }
    }

    /// How the old code wrote a timestamp.
    fn old_display(t: Timestamp) -> String {
        let secs = (t.0 / 1000) as i64;
        let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
        let (y, m, d) = old::civil_from_days(days);
        format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z", rem / 3600, rem % 3600 / 60, rem % 60, t.0 % 1000)
    }

    #[test]
    fn formats_known_instants() {
        assert_eq!(Timestamp(0).to_string(), "1970-01-01T00:00:00.000Z");
        assert_eq!(Timestamp(951_782_400_000).to_string(), "2000-02-29T00:00:00.000Z");
        assert_eq!(Timestamp(1_795_607_674_123).to_string(), "2026-11-25T11:54:34.123Z");
        // past what the calendar holds: the latest time, not a panic
        assert_eq!(Timestamp(u64::MAX).to_string(), "9999-12-31T23:59:59.999Z");
    }

    #[test]
    fn http_dates() {
        assert_eq!(Timestamp(784_111_777_000).http_date(), "Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(Timestamp(1_795_607_674_123).http_date(), "Wed, 25 Nov 2026 11:54:34 GMT");
    }

    #[test]
    fn parses_docker_and_own_formats() {
        let ours = Timestamp(1_795_607_674_123);
        assert_eq!(Timestamp::parse(&ours.to_string()), Some(ours));
        assert_eq!(Timestamp::parse("2026-11-25T11:54:34.123456789Z"), Some(ours));
        assert_eq!(Timestamp::parse("2026-11-25T12:54:34.123+01:00"), Some(ours));
        assert_eq!(Timestamp::parse("2026-11-25T06:24:34.123-05:30"), Some(ours));
        assert_eq!(Timestamp::parse("2026-11-25t11:54:34.123z"), Some(ours));
        assert_eq!(Timestamp::parse("2026-11-25 11:54:34.123Z"), Some(ours));
        assert_eq!(Timestamp::parse("2026-11-25T11:54:34Z"), Some(Timestamp(1_795_607_674_000)));
        assert_eq!(Timestamp::parse("0001-01-01T00:00:00Z"), Some(Timestamp(0)));
        assert_eq!(Timestamp::parse("1969-12-31T23:59:59.999Z"), Some(Timestamp(0)));
    }

    #[test]
    fn rejects_malformed_times() {
        for bad in [
            "2026-11-25T11:54:34+0é00",
            "2026-11-25T11:54:34+é:00",
            "",
            "2026-11-25",
            "2026-13-01T00:00:00Z",
            "2026-11-25T11:54:34",
            "2026-11-25T11:54:34.Z",
            "2026-11-25T1x:54:34Z",
            "2026-11-25T11:54:34+0100",
            "2026-11-25X11:54:34Z",
            // the old parser took these; the calendar knows better
            "2026-02-30T00:00:00Z",
            "2026-11-25T11:54:34+24:00",
        ] {
            assert_eq!(Timestamp::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn the_old_calendar_round_trips() {
        for days in (-1000..146_097 + 1000).step_by(7) {
            let (y, m, d) = old::civil_from_days(days);
            assert_eq!(old::days_from_civil(y, m, d), days);
        }
    }

    fn days_in(year: u32, month: u32) -> u32 {
        match month {
            2 if year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400)) => 29,
            2 => 28,
            4 | 6 | 9 | 11 => 30,
            _ => 31,
        }
    }

    /// Valid RFC 3339 times as Docker and we write them: any date of years 1 to 9999, seconds
    /// without leap seconds, 0 to 12 fraction digits, `Z` or an offset within a day.
    fn valid_time() -> impl Strategy<Value = String> {
        (
            1u32..=9999,
            1u32..=12,
            0u32..31,
            0u32..24,
            0u32..60,
            0u32..60,
            "(\\.[0-9]{1,12})?",
            0u32..3,
            0u32..24,
            0u32..60,
        )
            .prop_map(|(y, mo, d, h, mi, s, frac, zone, oh, om)| {
                let d = d % days_in(y, mo) + 1;
                let offset = match zone {
                    0 => "Z".to_string(),
                    1 => format!("+{oh:02}:{om:02}"),
                    _ => format!("-{oh:02}:{om:02}"),
                };
                format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}{frac}{offset}")
            })
    }

    proptest! {
        #[test]
        fn new_parsing_agrees_with_the_old_on_valid_times(text in valid_time()) {
            prop_assert_eq!(Timestamp::parse(&text), old::parse(&text), "{}", text);
        }

        #[test]
        fn what_the_new_parser_takes_the_old_took_alike(text in "[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]{0,10})?([Zz]|[+-][0-9]{2}:[0-9]{2}|.{0,3})") {
            // the new parser refuses more (impossible dates, leap seconds not at the end of a
            // day, offsets of a day or more); what it takes, the old one read the same way
            if let Some(t) = Timestamp::parse(&text) {
                if text.get(17..19).is_none_or(|s| s != "60") {
                    prop_assert_eq!(Some(t), old::parse(&text), "{}", text);
                }
            }
        }

        #[test]
        fn display_is_the_old_display_and_parses_back(ms in 0u64..253_402_300_800_000) {
            let t = Timestamp(ms);
            let text = t.to_string();
            prop_assert_eq!(text.len(), 24);
            prop_assert_eq!(&text, &old_display(t));
            prop_assert_eq!(Timestamp::parse(&text), Some(t));
        }
    }
}
