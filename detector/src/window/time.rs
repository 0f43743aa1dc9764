//! Event time: CloudTrail's `eventTime` text to Unix seconds and back.
//!
//! Every record's time is read (it drives the de-duplication horizon, the watermark and the
//! gate's clock), so the form CloudTrail writes, `YYYY-MM-DDTHH:MM:SSZ`, is parsed by hand in a
//! few dozen instructions; chrono handles every other form, about ten times slower.

/// Milliseconds since the Unix epoch by the wall clock now (0 before it).
pub fn unix_ms() -> i64 {
    let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
    since.map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Parses a CloudTrail `eventTime` (RFC 3339, or `YYYY-MM-DD HH:MM:SS`) into Unix seconds.
pub fn event_time(text: &str) -> Option<i64> {
    canonical(text.as_bytes()).or_else(|| general(text))
}

/// `YYYY-MM-DDTHH:MM:SSZ` for Unix seconds. Years 0 to 9999 are written by hand (the gate
/// names a window by its start for every hit); chrono writes the others, signed.
pub fn format_time(t: i64) -> String {
    const FIRST: i64 = -62_167_219_200; // 0000-01-01T00:00:00Z
    const LAST: i64 = 253_402_300_799; // 9999-12-31T23:59:59Z
    if !(FIRST..=LAST).contains(&t) {
        return chrono::DateTime::from_timestamp(t, 0)
            .map(|d| d.format("%Y-%m-%dT%H:%M:%SZ").to_string())
            .unwrap_or_default();
    }
    let (year, month, day) = civil_from_days(t.div_euclid(86_400));
    let second = t.rem_euclid(86_400);
    let mut out = [0u8; 20];
    out.copy_from_slice(b"0000-00-00T00:00:00Z");
    let mut put = |at: usize, digits: usize, v: i64| {
        let mut v = v;
        for i in (at..at + digits).rev() {
            out[i] = b'0' + (v % 10) as u8;
            v /= 10;
        }
    };
    put(0, 4, year);
    put(5, 2, month);
    put(8, 2, day);
    put(11, 2, second / 3600);
    put(14, 2, second / 60 % 60);
    put(17, 2, second % 60);
    out.iter().map(|&b| char::from(b)).collect()
}

/// The proleptic Gregorian date of a day since 1970-01-01 (Howard Hinnant's
/// `civil_from_days`, the inverse of [`days_from_civil`]).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * shifted_month + 2) / 5 + 1;
    let month = if shifted_month < 10 {
        shifted_month + 3
    } else {
        shifted_month - 9
    };
    (year_of_era + era * 400 + i64::from(month <= 2), month, day)
}

/// Unix seconds of exactly `YYYY-MM-DDTHH:MM:SSZ` with every field in range; `None` for any
/// other text, which [`general`] then decides.
fn canonical(b: &[u8]) -> Option<i64> {
    let b: &[u8; 20] = b.try_into().ok()?;
    const SHAPE: &[u8; 20] = b"0000-00-00T00:00:00Z";
    let digit = |i: usize| b[i].wrapping_sub(b'0');
    let shaped = (0..20).all(|i| match SHAPE[i] {
        b'0' => digit(i) < 10,
        c => b[i] == c,
    });
    if !shaped {
        return None;
    }
    let two = |i: usize| i64::from(digit(i)) * 10 + i64::from(digit(i + 1));
    let year = two(0) * 100 + two(2);
    let (month, day) = (two(5), two(8));
    let (hour, minute, second) = (two(11), two(14), two(17));
    // A leap second (:60) is left to chrono, which knows what to make of it.
    let valid = (1..=12).contains(&month)
        && (1..=days_in_month(year, month)).contains(&day)
        && hour < 24
        && minute < 60
        && second < 60;
    valid.then(|| days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second)
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let year_of_era = y - era * 400;
    let day_of_year = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// Every other accepted form: offsets, fractions, a space for the `T`, no zone.
fn general(text: &str) -> Option<i64> {
    use chrono::{DateTime, NaiveDateTime};
    let t = text.trim();
    if let Ok(d) = DateTime::parse_from_rfc3339(t) {
        return Some(d.timestamp());
    }
    ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"]
        .iter()
        .find_map(|f| NaiveDateTime::parse_from_str(t.trim_end_matches('Z'), f).ok())
        .map(|d| d.and_utc().timestamp())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_canonical_form_is_parsed_without_chrono() {
        assert_eq!(canonical(b"1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(canonical(b"2024-02-29T23:59:59Z"), Some(1_709_251_199));
        assert_eq!(canonical(b"2023-02-29T00:00:00Z"), None, "not a leap year");
        assert_eq!(canonical(b"2000-02-29T00:00:00Z"), Some(951_782_400));
        assert_eq!(canonical(b"1900-02-29T00:00:00Z"), None);
        assert_eq!(
            canonical(b"2024-01-01T00:00:60Z"),
            None,
            "leap seconds go to chrono"
        );
        assert_eq!(canonical(b"2024-01-01t00:00:00Z"), None);
        assert_eq!(canonical(b"2024-01-01T00:00:00+00:00"), None);
        assert_eq!(canonical(b"+024-01-01T00:00:00Z"), None);
        assert_eq!(canonical("2024-01-01T00:00:0٠Z".as_bytes()), None);
        assert_eq!(event_time(" 2024-01-01T00:00:00Z "), Some(1_704_067_200));
    }

    /// Times with every field near or past its range, in the canonical form.
    fn fields() -> impl Strategy<Value = String> {
        (
            0..=9999u32,
            0..=13u32,
            0..=32u32,
            0..=24u32,
            0..=60u32,
            0..=61u32,
        )
            .prop_map(|(y, mo, d, h, mi, s)| {
                format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z")
            })
    }

    /// A canonical-looking time with one character replaced by anything.
    fn mutated() -> impl Strategy<Value = String> {
        (fields(), 0..20usize, any::<char>()).prop_map(|(t, i, c)| {
            t.chars()
                .enumerate()
                .map(|(k, x)| if k == i { c } else { x })
                .collect()
        })
    }

    proptest! {
        #[test]
        fn the_fast_path_agrees_with_chrono(text in prop_oneof![fields(), mutated()]) {
            if let Some(t) = canonical(text.as_bytes()) {
                prop_assert_eq!(Some(t), general(&text), "{}", text);
            }
            prop_assert_eq!(event_time(&text), general(&text), "{}", text);
        }

        #[test]
        fn times_are_written_as_chrono_writes_them(t in prop_oneof![
            -62_167_219_210i64..-62_167_219_190,
            253_402_300_790i64..253_402_300_810,
            -62_167_219_200i64..253_402_300_800,
            any::<i64>(),
        ]) {
            let chrono = chrono::DateTime::from_timestamp(t, 0)
                .map(|d| d.format("%Y-%m-%dT%H:%M:%SZ").to_string())
                .unwrap_or_default();
            prop_assert_eq!(format_time(t), chrono, "{}", t);
        }

        #[test]
        fn every_second_round_trips(t in -62_135_596_800i64..253_402_300_799) {
            let text = format_time(t);
            prop_assert_eq!(canonical(text.as_bytes()), Some(t), "{}", text);
        }
    }
}
