//! Event time as text: milliseconds since the Unix epoch to RFC 3339 and back. Every
//! time the product prints, writes or reads (alerts, silences, config, templates) goes
//! through these two functions, so all of them agree on the format.

/// `ms` as RFC 3339 in UTC with milliseconds (`2026-01-02T03:04:05.678Z`); a time
/// chrono cannot represent (beyond ±262,000 years) is written as its number.
pub fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string())
        .unwrap_or_else(|| ms.to_string())
}

/// Milliseconds since the epoch of an RFC 3339 time; `what` names the setting in the
/// error.
pub fn parse_rfc3339(what: &str, t: &str) -> Result<i64, String> {
    chrono::DateTime::parse_from_rfc3339(t)
        .map(|d| d.timestamp_millis())
        .map_err(|e| format!("{what}: {t:?} is not an RFC 3339 time ({e})"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_round_trip_and_the_unrepresentable_are_numbers() {
        // 2021-01-01T00:00:00Z is 1,609,459,200 s after the epoch (date -d … +%s).
        assert_eq!(rfc3339(1_609_459_200_123), "2021-01-01T00:00:00.123Z");
        assert_eq!(
            parse_rfc3339("t", "2021-01-01T01:00:00.123+01:00"),
            Ok(1_609_459_200_123)
        );
        assert_eq!(rfc3339(i64::MAX), i64::MAX.to_string());
        let e = parse_rfc3339("time.min_event_time", "yesterday").unwrap_err();
        assert!(
            e.starts_with("time.min_event_time: \"yesterday\" is not an RFC 3339 time"),
            "{e}"
        );
    }
}
