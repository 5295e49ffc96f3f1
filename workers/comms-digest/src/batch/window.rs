//! When a bucket closes, computed once when its first event arrives (from the project's clock),
//! so flush timing never depends on when a worker happens to look.

use chrono::{DateTime, Duration as ChronoDuration, TimeZone, Utc};
use chrono_tz::Tz;

use crate::job::Window;

/// The end of the window a bucket opened at `opened` belongs to. `zone` is the recipient's time
/// zone (used by `daily_at` only).
pub fn closes_at(window: Window, opened: DateTime<Utc>, zone: Tz) -> DateTime<Utc> {
    match window {
        Window::Every(every) => {
            // Fixed windows aligned to the epoch: every bucket of a key ends on the same grid.
            let step = i64::try_from(every.as_millis()).unwrap_or(i64::MAX).max(1);
            let at = opened.timestamp_millis();
            let end = (at.div_euclid(step) + 1).saturating_mul(step);
            DateTime::from_timestamp_millis(end).unwrap_or(opened)
        }
        Window::LookBack(back) => {
            opened + ChronoDuration::from_std(back).unwrap_or(ChronoDuration::days(31))
        }
        Window::DailyAt(time) => {
            let local = opened.with_timezone(&zone);
            let mut day = local.date_naive();
            // The next occurrence strictly after `opened`; a time a DST change skips is taken at
            // the first instant that exists after it.
            for _ in 0..3 {
                let candidate = zone
                    .from_local_datetime(&day.and_time(time))
                    .earliest()
                    .or_else(|| {
                        zone.from_local_datetime(&(day.and_time(time) + ChronoDuration::hours(1)))
                            .earliest()
                    })
                    .map(|t| t.with_timezone(&Utc));
                if let Some(candidate) = candidate.filter(|c| *c > opened) {
                    return candidate;
                }
                day = day.succ_opt().unwrap_or(day);
            }
            opened + ChronoDuration::days(1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::NaiveTime;
    use std::time::Duration;

    fn utc(s: &str) -> DateTime<Utc> {
        s.parse().expect("time")
    }

    #[test]
    fn fixed_windows_end_on_the_grid() {
        let w = Window::Every(Duration::from_secs(1800));
        let at = closes_at(w, utc("2025-03-01T10:07:00Z"), Tz::UTC);
        assert_eq!(at, utc("2025-03-01T10:30:00Z"));
        let at = closes_at(w, utc("2025-03-01T10:30:00Z"), Tz::UTC);
        assert_eq!(at, utc("2025-03-01T11:00:00Z"));
    }

    #[test]
    fn a_look_back_starts_at_the_first_event() {
        let w = Window::LookBack(Duration::from_secs(600));
        let at = closes_at(w, utc("2025-03-01T10:07:13Z"), Tz::UTC);
        assert_eq!(at, utc("2025-03-01T10:17:13Z"));
    }

    #[test]
    fn a_daily_time_is_in_the_recipients_zone() {
        let eight = NaiveTime::from_hms_opt(8, 0, 0).expect("time");
        let ny: Tz = "America/New_York".parse().expect("zone");
        // 11:00 UTC is 07:00 in New York (EDT in June): today's 08:00 local is 12:00 UTC.
        let at = closes_at(Window::DailyAt(eight), utc("2025-06-02T11:00:00Z"), ny);
        assert_eq!(at, utc("2025-06-02T12:00:00Z"));
        // After 08:00 local it is tomorrow's.
        let at = closes_at(Window::DailyAt(eight), utc("2025-06-02T12:30:00Z"), ny);
        assert_eq!(at, utc("2025-06-03T12:00:00Z"));
        // In winter (EST) the same local time is 13:00 UTC.
        let at = closes_at(Window::DailyAt(eight), utc("2025-01-06T09:00:00Z"), ny);
        assert_eq!(at, utc("2025-01-06T13:00:00Z"));
    }

    #[test]
    fn a_daily_time_skipped_by_dst_still_closes_that_day() {
        let half_two = NaiveTime::from_hms_opt(2, 30, 0).expect("time");
        let ny: Tz = "America/New_York".parse().expect("zone");
        // 2025-03-09 02:30 does not exist in New York; 03:30 EDT is 07:30 UTC.
        let at = closes_at(Window::DailyAt(half_two), utc("2025-03-09T05:00:00Z"), ny);
        assert_eq!(at, utc("2025-03-09T07:30:00Z"));
    }
}
