//! Quiet hours: outreach and review-request SMS reach people only in the daytime of their own
//! time zone. Outside the window a message waits for the next window; it is never dropped.

use chrono::{DateTime, Duration, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;

/// The allowed window, `[opens, closes)` in the recipient's local time.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    pub opens: NaiveTime,
    pub closes: NaiveTime,
}

impl Window {
    /// `None` when `now` is inside the window; otherwise the instant the next window opens.
    pub fn next_opening(&self, now: DateTime<Utc>, zone: Tz) -> Option<DateTime<Utc>> {
        let local = now.with_timezone(&zone);
        let time = local.time();
        let inside = if self.opens <= self.closes {
            time >= self.opens && time < self.closes
        } else {
            // A window over midnight (e.g. 22:00-06:00) is open on both sides of it.
            time >= self.opens || time < self.closes
        };
        if inside {
            return None;
        }
        let mut day = local.date_naive();
        if time >= self.opens {
            day = day.succ_opt().unwrap_or(day);
        }
        // Walk forward over a DST gap that swallows the opening time.
        for offset_minutes in (0..=120).step_by(30) {
            let candidate = day.and_time(self.opens) + Duration::minutes(offset_minutes);
            if let Some(at) = zone.from_local_datetime(&candidate).earliest() {
                return Some(at.with_timezone(&Utc));
            }
        }
        Some(now + Duration::hours(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window() -> Window {
        Window {
            opens: NaiveTime::from_hms_opt(8, 0, 0).expect("time"),
            closes: NaiveTime::from_hms_opt(21, 0, 0).expect("time"),
        }
    }

    fn utc(s: &str) -> DateTime<Utc> {
        s.parse().expect("timestamp")
    }

    #[test]
    fn inside_the_window_sends_now() {
        let zone: Tz = "Europe/Paris".parse().expect("tz");
        // 10:00 in Paris (UTC+1 in winter).
        assert_eq!(
            window().next_opening(utc("2026-11-26T09:00:00Z"), zone),
            None
        );
    }

    #[test]
    fn late_evening_waits_for_the_next_morning_in_the_recipients_zone() {
        let zone: Tz = "America/New_York".parse().expect("tz");
        // 23:30 in New York on the 26th -> 08:00 New York on the 27th = 13:00 UTC.
        let next = window().next_opening(utc("2026-11-27T04:30:00Z"), zone);
        assert_eq!(next, Some(utc("2026-11-27T13:00:00Z")));
    }

    #[test]
    fn early_morning_waits_for_the_same_morning() {
        let zone: Tz = "Asia/Tokyo".parse().expect("tz");
        // 06:00 in Tokyo -> 08:00 Tokyo = 23:00 UTC the day before.
        let next = window().next_opening(utc("2026-11-26T21:00:00Z"), zone);
        assert_eq!(next, Some(utc("2026-11-26T23:00:00Z")));
    }

    #[test]
    fn the_closing_minute_is_outside() {
        let zone: Tz = "UTC".parse().expect("tz");
        let next = window().next_opening(utc("2026-11-26T21:00:00Z"), zone);
        assert_eq!(next, Some(utc("2026-11-27T08:00:00Z")));
    }
}
