//! Retry delays: exponential with full jitter, capped. Pure, so the schedule is
//! testable without waiting.

use rand::Rng;
use std::time::Duration;

/// First retry after about this long.
pub const BASE: Duration = Duration::from_secs(2);
/// Never wait longer than this between attempts.
pub const CAP: Duration = Duration::from_secs(120);

/// The upper bound of the delay before attempt `attempt + 1` (`attempt` ≥ 1 failed
/// attempts so far): `BASE * 2^(attempt-1)`, capped at `CAP`.
pub fn ceiling(attempt: u32) -> Duration {
    let exp = attempt.saturating_sub(1).min(16);
    BASE.saturating_mul(1u32 << exp).min(CAP)
}

/// A delay drawn uniformly from `[ceiling/2, ceiling]` ("equal jitter"): replicas that
/// failed together do not retry together, and no retry comes sooner than half the
/// ceiling.
pub fn delay(attempt: u32) -> Duration {
    delay_within(attempt, CAP)
}

/// [`delay`] with the ceiling held at `cap` (for pauses that must end soon after the
/// cause is gone, such as the database being away).
pub fn delay_within(attempt: u32, cap: Duration) -> Duration {
    let ceiling = ceiling(attempt).min(cap);
    let half = ceiling / 2;
    let spread = ceiling - half;
    half + spread.mul_f64(rand::rng().random::<f64>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_then_caps() {
        assert_eq!(ceiling(1), Duration::from_secs(2));
        assert_eq!(ceiling(2), Duration::from_secs(4));
        assert_eq!(ceiling(5), Duration::from_secs(32));
        assert_eq!(ceiling(7), CAP);
        assert_eq!(ceiling(1000), CAP);
    }

    #[test]
    fn a_capped_delay_stays_under_its_cap_and_keeps_its_jitter() {
        let cap = Duration::from_secs(5);
        assert!(delay_within(1, cap) <= Duration::from_secs(2));
        let many: Vec<Duration> = (0..200).map(|_| delay_within(30, cap)).collect();
        assert!(many.iter().all(|d| *d >= cap / 2 && *d <= cap), "{many:?}");
        assert!(many.iter().any(|d| *d != many[0]), "jittered");
    }

    #[test]
    fn jitter_stays_in_range() {
        for attempt in 1..10 {
            for _ in 0..100 {
                let d = delay(attempt);
                assert!(d >= ceiling(attempt) / 2 && d <= ceiling(attempt), "{d:?}");
            }
        }
    }
}
