//! Structured log lines on stderr: one JSON object per line with a UTC timestamp, a level and
//! an event name, for startup and shutdown (what log collectors and rolling restarts read).
//!
//! `{"ts":"2026-11-30T14:02:03.123Z","level":"info","event":"listening","url":"http://0.0.0.0:8080"}`

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value};

/// Writes one line for `event` with `fields`.
pub fn event(level: &str, event: &str, fields: &[(&str, Value)]) {
    eprintln!("{}", line(SystemTime::now(), level, event, fields));
}

/// Seconds since `started`, to the millisecond, as a log field.
pub fn seconds_since(started: std::time::Instant) -> Value {
    ((started.elapsed().as_secs_f64() * 1000.0).round() / 1000.0).into()
}

/// The line [`event`] writes at `now`.
pub fn line(now: SystemTime, level: &str, event: &str, fields: &[(&str, Value)]) -> String {
    let mut m = Map::new();
    m.insert("ts".into(), Value::String(rfc3339(now)));
    m.insert("level".into(), level.into());
    m.insert("event".into(), event.into());
    for (k, v) in fields {
        m.insert((*k).into(), v.clone());
    }
    Value::Object(m).to_string()
}

/// `now` as `YYYY-MM-DDTHH:MM:SS.mmmZ`.
fn rfc3339(now: SystemTime) -> String {
    let d = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, mo, da) = civil_from_days(days as i64);
    format!("{y:04}-{mo:02}-{da:02}T{:02}:{:02}:{:02}.{:03}Z", rem / 3600, rem % 3600 / 60, rem % 60, d.subsec_millis())
}

/// Year, month, day of the day `z` days after 1970-01-01 (proleptic Gregorian).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(month <= 2), month, day)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::time::Duration;

    use super::*;

    #[test]
    fn lines_are_json_with_utc_timestamps() {
        let at = UNIX_EPOCH + Duration::from_millis(1_796_220_123_456);
        let l = line(at, "info", "listening", &[("url", "http://127.0.0.1:1".into()), ("pid", 7.into())]);
        let v: Value = serde_json::from_str(&l).unwrap();
        assert_eq!(v["ts"], "2026-12-02T14:02:03.456Z");
        assert_eq!(
            (v["level"].as_str(), v["event"].as_str(), v["pid"].as_u64()),
            (Some("info"), Some("listening"), Some(7))
        );
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(UNIX_EPOCH + Duration::from_secs(951_782_400)), "2000-02-29T00:00:00.000Z");
    }
}
