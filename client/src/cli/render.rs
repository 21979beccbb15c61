//! How results look on stdout: JSON for scripts, aligned text for people,
//! and times as RFC 3339.

use serde_json::Value;

/// Formats unix milliseconds as RFC 3339 in UTC with milliseconds, as in
/// `2024-05-01T12:34:56.789Z`.
pub(crate) fn format_rfc3339_ms(unix_ms: u64) -> String {
    let secs = unix_ms / 1000;
    let millis = unix_ms % 1000;
    let (year, month, day) = civil_from_days(secs / 86_400);
    let of_day = secs % 86_400;
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        of_day / 3600,
        of_day % 3600 / 60,
        of_day % 60
    )
}

/// Gregorian (year, month, day) of a count of days since 1970-01-01, after
/// Howard Hinnant's `civil_from_days`, for days on or after the epoch.
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    // Shift to an era count starting 0000-03-01, so leap days fall last.
    let z = days + 719_468;
    let era = z / 146_097;
    let day_of_era = z % 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_from_march + 2) / 5 + 1;
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    };
    let year = year_of_era + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

/// Prints a JSON value, pretty, on stdout.
pub(crate) fn print_json(value: &Value) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// Prints `name value` lines with the values aligned.
pub(crate) fn print_fields(fields: &[(&str, String)]) {
    let width = fields.iter().map(|(name, _)| name.len()).max().unwrap_or(0);
    for (name, value) in fields {
        println!("{name:<width$}  {value}");
    }
}

/// Prints a table with a header row; every column but the last is padded.
pub(crate) fn print_table(header: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let header: Vec<String> = header.iter().map(|h| h.to_string()).collect();
    for row in std::iter::once(&header).chain(rows) {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i + 1 == row.len() {
                line.push_str(cell);
            } else {
                let width = widths.get(i).copied().unwrap_or(0);
                line.push_str(&format!("{cell:<width$}  "));
            }
        }
        println!("{}", line.trim_end());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_of_known_instants() {
        let cases = [
            (0, "1970-01-01T00:00:00.000Z"),
            (999, "1970-01-01T00:00:00.999Z"),
            (951_782_400_000, "2000-02-29T00:00:00.000Z"),
            (1_700_000_000_123, "2023-11-14T22:13:20.123Z"),
            (1_709_251_199_000, "2024-02-29T23:59:59.000Z"),
            (1_709_251_200_000, "2024-03-01T00:00:00.000Z"),
            (4_102_444_800_000, "2100-01-01T00:00:00.000Z"),
            (253_402_300_799_999, "9999-12-31T23:59:59.999Z"),
        ];
        for (unix_ms, expected) in cases {
            assert_eq!(format_rfc3339_ms(unix_ms), expected, "{unix_ms}");
        }
    }

    #[test]
    fn rfc3339_agrees_with_day_arithmetic_over_centuries() {
        // Every 1st of March from 1970 to 2400 is one day after the last day
        // of February, whether that is the 28th or the 29th.
        for year in 1970..2400u64 {
            let feb_end = if is_leap(year) { 29 } else { 28 };
            let days = days_from_civil(year, 3, 1);
            assert_eq!(civil_from_days(days - 1), (year, 2, feb_end));
            assert_eq!(civil_from_days(days), (year, 3, 1));
        }
    }

    /// Gregorian leap years (written without `is_multiple_of`, newer than
    /// the workspace's minimum Rust).
    fn is_leap(year: u64) -> bool {
        match (year % 4, year % 100, year % 400) {
            (_, _, 0) => true,
            (_, 0, _) => false,
            (0, _, _) => true,
            _ => false,
        }
    }

    /// Slow inverse, by counting, for the test above.
    fn days_from_civil(year: u64, month: u64, day: u64) -> u64 {
        let leap = is_leap;
        let mut days: u64 = (1970..year).map(|y| if leap(y) { 366 } else { 365 }).sum();
        let lengths = [
            31,
            if leap(year) { 29 } else { 28 },
            31,
            30,
            31,
            30,
            31,
            31,
            30,
            31,
            30,
            31,
        ];
        days += lengths.iter().take((month - 1) as usize).sum::<u64>();
        days + day - 1
    }
}
