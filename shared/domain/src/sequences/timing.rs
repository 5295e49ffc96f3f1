//! When a step is due: a delay after the previous step (the enrolment, for the first), or the
//! first occurrence of a local time of day in the recipient's time zone after it.
//!
//! A contact without a (valid) time zone is scheduled in UTC; the sender's quiet hours still
//! apply to every outreach SMS on its own terms. A local time that does not exist on a day (a
//! daylight-saving gap) is taken an hour later; one that exists twice, at its first occurrence.

use chrono::{DateTime, Days, LocalResult, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Tz;

use super::definition::Timing;

/// The instant a step with `timing` is due, given the previous step's instant.
pub fn due_after(
    timing: Timing,
    previous: DateTime<Utc>,
    time_zone: Option<&str>,
) -> DateTime<Utc> {
    match timing {
        Timing::After(delay) => {
            previous + chrono::Duration::from_std(delay).unwrap_or(chrono::Duration::MAX)
        }
        Timing::At(local) => {
            let zone: Tz = time_zone.and_then(|z| z.parse().ok()).unwrap_or(Tz::UTC);
            let today = previous.with_timezone(&zone).date_naive();
            for offset in 0..3 {
                let Some(day) = today.checked_add_days(Days::new(offset)) else {
                    break;
                };
                let candidate = resolve(&zone, day.and_time(local));
                if candidate > previous {
                    return candidate;
                }
            }
            previous + chrono::Duration::days(1)
        }
    }
}

fn resolve(zone: &Tz, local: NaiveDateTime) -> DateTime<Utc> {
    match zone.from_local_datetime(&local) {
        LocalResult::Single(at) | LocalResult::Ambiguous(at, _) => at.with_timezone(&Utc),
        LocalResult::None => resolve(zone, local + chrono::Duration::hours(1)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::NaiveTime;

    fn utc(s: &str) -> DateTime<Utc> {
        s.parse().expect("time")
    }

    #[test]
    fn a_delay_counts_from_the_previous_step() {
        let at = due_after(
            Timing::After(std::time::Duration::from_secs(2 * 86_400)),
            utc("2026-03-01T10:00:00Z"),
            None,
        );
        assert_eq!(at, utc("2026-03-03T10:00:00Z"));
    }

    #[test]
    fn a_local_time_is_the_next_one_in_the_recipients_zone() {
        let nine = Timing::At(NaiveTime::from_hms_opt(9, 30, 0).expect("time"));
        // 08:00 in New York (EST, UTC-5): 09:30 the same day.
        assert_eq!(
            due_after(nine, utc("2026-01-15T13:00:00Z"), Some("America/New_York")),
            utc("2026-01-15T14:30:00Z")
        );
        // 10:00 in New York: 09:30 the next day.
        assert_eq!(
            due_after(nine, utc("2026-01-15T15:00:00Z"), Some("America/New_York")),
            utc("2026-01-16T14:30:00Z")
        );
        // No zone: UTC.
        assert_eq!(
            due_after(nine, utc("2026-01-15T15:00:00Z"), None),
            utc("2026-01-16T09:30:00Z")
        );
        // 02:30 does not exist in New York on 2026-03-08: 03:30 EDT.
        let gap = Timing::At(NaiveTime::from_hms_opt(2, 30, 0).expect("time"));
        assert_eq!(
            due_after(gap, utc("2026-03-08T05:00:00Z"), Some("America/New_York")),
            utc("2026-03-08T07:30:00Z")
        );
    }
}
