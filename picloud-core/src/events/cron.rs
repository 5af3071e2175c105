//! Cron expressions in a time zone (croner 4 and chrono-tz): the pure part
//! of schedules.
//!
//! An expression has 5 fields, or 6 with seconds first (`*/5 * * * * *`).
//! Ticks are computed in the schedule's zone, so daylight saving time
//! behaves as a person expects: a 02:30 job on the spring-forward day runs
//! at 03:00, and a 01:30 job on the fall-back day runs once.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use croner::Cron;
use croner::parser::{CronParser, Seconds};

/// A parsed, checked cron expression and its zone.
#[derive(Debug, Clone)]
pub struct CronPlan {
    cron: Cron,
    zone: Tz,
}

/// Why an expression or a zone was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct CronError(pub String);

impl CronPlan {
    /// Parses `expr` in the IANA zone `timezone`, and checks that it fires
    /// at all (`0 0 30 2 *` never does). The check can take a while (up to
    /// a tenth of a second): call it off the async workers.
    pub fn parse(expr: &str, timezone: &str) -> Result<Self, CronError> {
        if expr.len() > 256 {
            return Err(CronError("cron expression is too long".into()));
        }
        let zone: Tz = timezone
            .parse()
            .map_err(|_| CronError(format!("unknown time zone {timezone:?}")))?;
        let cron = CronParser::builder()
            .seconds(Seconds::Optional)
            .build()
            .parse(expr)
            .map_err(|e| CronError(format!("bad cron expression {expr:?}: {e}")))?;
        let plan = Self { cron, zone };
        if plan.next_after(crate::clock::now()).is_none() {
            return Err(CronError(format!("cron expression {expr:?} never fires")));
        }
        Ok(plan)
    }

    /// The first tick strictly after `t`.
    pub fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.cron
            .find_next_occurrence(&t.with_timezone(&self.zone), false)
            .ok()
            .map(|d| d.with_timezone(&Utc))
    }

    /// The latest tick at or before `t`.
    pub fn latest_at_or_before(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.cron
            .find_previous_occurrence(&t.with_timezone(&self.zone), true)
            .ok()
            .map(|d| d.with_timezone(&Utc))
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn spring_forward_runs_the_skipped_time_once_at_three() {
        let plan = CronPlan::parse("30 2 * * *", "America/New_York").unwrap();
        // 2026-03-08 is the spring-forward day in New York.
        let start = chrono_tz::America::New_York
            .with_ymd_and_hms(2026, 3, 8, 0, 0, 0)
            .unwrap()
            .with_timezone(&Utc);
        let next = plan.next_after(start).unwrap();
        assert_eq!(next, utc("2026-03-08T03:00:00-04:00"));
        let after = plan.next_after(next).unwrap();
        assert_eq!(after, utc("2026-03-09T02:30:00-04:00"));
    }

    #[test]
    fn fall_back_runs_the_repeated_time_once() {
        let plan = CronPlan::parse("30 1 * * *", "America/New_York").unwrap();
        let start = utc("2026-11-01T00:00:00-04:00");
        let first = plan.next_after(start).unwrap();
        assert_eq!(first, utc("2026-11-01T01:30:00-04:00"));
        let second = plan.next_after(first).unwrap();
        assert_eq!(
            second,
            utc("2026-11-02T01:30:00-05:00"),
            "not 01:30 EST the same day"
        );
    }

    #[test]
    fn seconds_are_optional_and_zones_count() {
        let every5 = CronPlan::parse("*/5 * * * * *", "UTC").unwrap();
        assert_eq!(
            every5.next_after(utc("2026-01-01T00:00:01Z")),
            Some(utc("2026-01-01T00:00:05Z"))
        );
        let nine = CronPlan::parse("0 9 * * *", "Asia/Tokyo").unwrap();
        assert_eq!(
            nine.next_after(utc("2026-01-01T01:00:00Z")),
            Some(utc("2026-01-02T00:00:00Z"))
        );
        assert_eq!(
            every5.latest_at_or_before(utc("2026-01-01T00:00:07Z")),
            Some(utc("2026-01-01T00:00:05Z"))
        );
    }

    #[test]
    fn bad_expressions_and_zones_say_why() {
        for (expr, zone, says) in [
            ("0 0 30 2 *", "UTC", "never fires"),
            ("bad", "UTC", "bad cron expression"),
            ("* * * * * * * *", "UTC", "bad cron expression"),
            ("61 * * * *", "UTC", "bad cron expression"),
            ("* * * * *", "Mars/Olympus", "unknown time zone"),
        ] {
            let e = CronPlan::parse(expr, zone).unwrap_err();
            assert!(e.0.contains(says), "{expr} in {zone}: {e}");
        }
    }
}
