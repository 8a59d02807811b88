//! Exponential backoff with jitter, shared by reconnects (`reconnect.backoff.ms` ..
//! `reconnect.backoff.max.ms`, KIP-144) and retries (`retry.backoff.ms` ..
//! `retry.backoff.max.ms`, KIP-580).

use std::time::Duration;

/// `base × 2^(attempt-1)` (attempt 0 counts as 1), capped at `max`, then ±20% jitter, never
/// above `max` (nor below 1 ms of cap).
pub(crate) fn exponential(base: Duration, max: Duration, attempt: u32) -> Duration {
    let base = base.as_millis() as u64;
    let max = (max.as_millis() as u64).max(1);
    let exp = base
        .saturating_mul(1u64 << attempt.saturating_sub(1).min(30))
        .min(max);
    let jittered = (exp as f64 * (0.8 + 0.4 * fastrand::f64())) as u64;
    Duration::from_millis(jittered.min(max))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_then_caps_with_jitter() {
        let ms = Duration::from_millis;
        for _ in 0..100 {
            let first = exponential(ms(100), ms(1000), 1);
            assert!((ms(80)..=ms(120)).contains(&first), "{first:?}");
            let third = exponential(ms(100), ms(1000), 3);
            assert!((ms(320)..=ms(480)).contains(&third), "{third:?}");
            assert!(exponential(ms(100), ms(1000), 30) <= ms(1000));
            assert!(exponential(ms(100), ms(1000), 30) >= ms(800));
        }
    }
}
