//! Deadlines from durations a user passes: they saturate instead of overflowing `Instant`.
//!
//! `Instant + Duration` panics on overflow (`close(Duration::MAX)` did). Every deadline built
//! from a user's duration goes through [`deadline_after`]: past what `Instant` can hold it is
//! "far in the future" (about 30 years, as tokio's own far-future instant), which no producer
//! outlives.

use std::time::{Duration, Instant};

/// About 30 years: the deadline of a duration too large for `Instant`.
pub(crate) const FAR_FUTURE: Duration = Duration::from_secs(86_400 * 365 * 30);

/// `now + d`, saturated at `now + FAR_FUTURE` (never panics).
#[inline]
pub(crate) fn deadline_after(now: Instant, d: Duration) -> Instant {
    now.checked_add(d.min(FAR_FUTURE))
        .or_else(|| now.checked_add(Duration::from_secs(86_400)))
        .unwrap_or(now)
}

/// [`deadline_after`] for tokio's clock.
#[inline]
pub(crate) fn tokio_deadline_after(now: tokio::time::Instant, d: Duration) -> tokio::time::Instant {
    tokio::time::Instant::from_std(deadline_after(now.into_std(), d))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absurd_durations_saturate() {
        let now = Instant::now();
        assert_eq!(
            deadline_after(now, Duration::from_secs(1)),
            now + Duration::from_secs(1)
        );
        assert_eq!(deadline_after(now, Duration::MAX), now + FAR_FUTURE);
        let t = tokio::time::Instant::now();
        assert!(tokio_deadline_after(t, Duration::MAX) > t + Duration::from_secs(86_400 * 365));
    }
}
