//! Rate limits (GCRA, with `governor`): every API request per client IP, store
//! creations per client IP, login attempts per client IP and per account. Quotas come
//! from `ApiSettings` (`<count>/<period>`: a burst of `count`, refilled evenly over
//! `period`).
//!
//! Each limited response carries the IETF headers of
//! draft-ietf-httpapi-ratelimit-headers-09 (structured fields):
//! `RateLimit-Policy: "<name>";q=<count>;w=<window s>` and
//! `RateLimit: "<name>";r=<remaining>;t=<seconds until the quota is full again>`;
//! a refusal is a 429 problem with `Retry-After`.
//!
//! Owns the limiter state (bounded: [`Limits::retain_recent`] drops idle keys); it must
//! not decide which requests are limited (the edge and the login handler do).

use super::problem::ApiError;
use crate::config::{ApiSettings, RateSpec};
use governor::clock::{Clock, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};
use poem::http::{HeaderName, StatusCode, header};
use std::collections::HashMap;
use std::hash::Hash;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use uuid::Uuid;

type Keyed<K> = RateLimiter<K, DefaultKeyedStateStore<K>, DefaultClock, StateInformationMiddleware>;

pub const RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");
pub const RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");

/// One named quota, per key.
pub struct Limiter<K: Hash + Eq + Clone> {
    pub name: &'static str,
    spec: RateSpec,
    inner: Keyed<K>,
}

/// The state of one quota after a request was let through (for the headers).
#[derive(Debug, Clone)]
pub struct Verdict {
    pub name: &'static str,
    pub quota: u32,
    pub window_secs: u64,
    pub remaining: u32,
    pub reset_secs: u64,
}

impl Verdict {
    pub fn policy_item(&self) -> String {
        format!("\"{}\";q={};w={}", self.name, self.quota, self.window_secs)
    }

    pub fn state_item(&self) -> String {
        format!(
            "\"{}\";r={};t={}",
            self.name, self.remaining, self.reset_secs
        )
    }
}

fn ceil_secs(d: Duration) -> u64 {
    let s = d.as_secs();
    if d.subsec_nanos() > 0 { s + 1 } else { s }
}

impl<K: Hash + Eq + Clone> Limiter<K> {
    pub fn new(name: &'static str, spec: RateSpec) -> Self {
        let per_cell = spec.period / spec.count.get();
        let quota = Quota::with_period(per_cell)
            .unwrap_or_else(|| Quota::per_second(spec.count))
            .allow_burst(spec.count);
        Limiter {
            name,
            spec,
            inner: RateLimiter::keyed(quota).with_middleware::<StateInformationMiddleware>(),
        }
    }

    fn interval(&self) -> Duration {
        self.spec.period / self.spec.count.get()
    }

    /// Lets one request of `key` through, or refuses it with a 429 problem.
    pub fn check(&self, key: &K) -> Result<Verdict, ApiError> {
        let quota = self.spec.count.get();
        let window_secs = ceil_secs(self.spec.period);
        match self.inner.check_key(key) {
            Ok(snapshot) => {
                let remaining = snapshot.remaining_burst_capacity();
                let used = quota.saturating_sub(remaining);
                Ok(Verdict {
                    name: self.name,
                    quota,
                    window_secs,
                    remaining,
                    reset_secs: ceil_secs(self.interval() * used),
                })
            }
            Err(not_until) => {
                let wait = not_until.wait_time_from(self.inner.clock().now());
                Err(self.refusal(ceil_secs(wait).max(1)))
            }
        }
    }

    /// The 429 problem for a request of this quota that may retry in `retry` seconds.
    /// `RateLimit`'s `t` keeps its meaning, the time until the quota is full again: the
    /// quota is empty, so one refill interval per request of it after the first.
    fn refusal(&self, retry: u64) -> ApiError {
        let quota = self.spec.count.get();
        let verdict = Verdict {
            name: self.name,
            quota,
            window_secs: ceil_secs(self.spec.period),
            remaining: 0,
            reset_secs: retry + ceil_secs(self.interval() * (quota - 1)),
        };
        ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate-limited",
            "Too many requests",
            format!(
                "rate limit `{}` exceeded: at most {} requests per {}; retry in {retry} s",
                self.name,
                verdict.quota,
                humantime::format_duration(self.spec.period)
            ),
        )
        .with_header(header::RETRY_AFTER, retry.to_string())
        .with_header(RATELIMIT_POLICY, verdict.policy_item())
        .with_header(RATELIMIT, verdict.state_item())
    }

    pub fn retain_recent(&self) {
        self.inner.retain_recent();
        self.inner.shrink_to_fit();
    }
}

/// A quota only failures use up. [`FailureLimiter::admit`] refuses every attempt of a
/// key while its failures have used the quota up; [`FailureLimiter::failed`] counts
/// one. Sign-ins per account use it: an owner's own sign-ins cost nothing, so signing
/// in often never locks them out, while a password guesser is stopped after `count`
/// wrong guesses per `period`, whichever addresses the guesses come from. Attempts
/// admitted together are checked before their failures count, so the sign-in handler
/// asks `admit` again once the password is checked and refuses alike whatever the
/// outcome: only the checks that end before the lock (password checks run 4 at a time)
/// get an answer that tells the guess's outcome.
pub struct FailureLimiter<K: Hash + Eq + Clone> {
    limiter: Limiter<K>,
    /// Keys whose failures used their quota up, and until when they are refused.
    locked: Mutex<HashMap<K, Instant>>,
}

impl<K: Hash + Eq + Clone> FailureLimiter<K> {
    pub fn new(name: &'static str, spec: RateSpec) -> Self {
        FailureLimiter {
            limiter: Limiter::new(name, spec),
            locked: Mutex::new(HashMap::new()),
        }
    }

    /// Lets an attempt of `key` through unless its failures used the quota up.
    pub fn admit(&self, key: &K) -> Result<(), ApiError> {
        let now = Instant::now();
        let until = self
            .locked
            .lock()
            .expect("lock table")
            .get(key)
            .copied()
            .filter(|until| *until > now);
        match until {
            Some(until) => Err(self.limiter.refusal(ceil_secs(until - now).max(1))),
            None => Ok(()),
        }
    }

    /// Counts a failed attempt of `key`. The one that uses the quota up locks the key
    /// for one refill interval (`period / count`): at least until the quota lets one
    /// more through, sometimes a little longer (never shorter).
    pub fn failed(&self, key: &K) {
        let wait = match self.limiter.inner.check_key(key) {
            Ok(snapshot) if snapshot.remaining_burst_capacity() > 0 => return,
            Ok(_) => self.limiter.interval(),
            Err(not_until) => not_until.wait_time_from(self.limiter.inner.clock().now()),
        };
        self.locked
            .lock()
            .expect("lock table")
            .insert(key.clone(), Instant::now() + wait);
    }

    pub fn retain_recent(&self) {
        self.limiter.retain_recent();
        let now = Instant::now();
        let mut locked = self.locked.lock().expect("lock table");
        locked.retain(|_, until| *until > now);
        locked.shrink_to_fit();
    }
}

/// The key a client's per-IP quotas are kept under: an IPv4 address as it is (also
/// when it arrives IPv4-mapped), an IPv6 address's /64 network. One IPv6 subscriber,
/// home or server, is routinely given a whole /64; keyed per address, it would have
/// 2^64 quotas and could spray logins without ever being limited.
pub fn quota_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & !(u128::MAX >> 64))),
        },
    }
}

/// Every limiter of the API.
pub struct Limits {
    /// Every `/api` request, per client IP.
    pub global: Limiter<IpAddr>,
    /// `POST /api/stores`, per client IP.
    pub create: Limiter<IpAddr>,
    /// `POST /api/auth/login`, per client IP.
    pub login_ip: Limiter<IpAddr>,
    /// Failed `POST /api/auth/login`s, per normalised email address.
    pub login_account: FailureLimiter<String>,
    /// Open event streams, per account.
    pub streams: Arc<StreamSlots>,
}

/// Open event streams per account. Each polls the database twice a second for as long
/// as it stays open (hours, for a dashboard left open), and the rate limits count only
/// the requests that open them: without a cap one account could keep the database busy
/// with thousands. A stream holds its [`StreamSlot`] until it ends or its client goes.
pub struct StreamSlots {
    max: usize,
    open: Mutex<HashMap<Uuid, usize>>,
}

/// One open stream of one account; handed back when dropped.
pub struct StreamSlot {
    slots: Arc<StreamSlots>,
    user: Uuid,
}

impl StreamSlots {
    pub fn new(max: usize) -> Arc<Self> {
        Arc::new(StreamSlots {
            max,
            open: Mutex::new(HashMap::new()),
        })
    }

    /// A slot for one more stream of `user`, or the 429 that says how many are open.
    pub fn acquire(self: &Arc<Self>, user: Uuid) -> Result<StreamSlot, ApiError> {
        let mut open = self.open.lock().expect("stream slots lock");
        let count = open.entry(user).or_default();
        if *count >= self.max {
            return Err(ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too-many-streams",
                "Too many open event streams",
                format!(
                    "your account has {} event streams open, the most it may; close one (a \
                     dashboard tab showing a store) and retry",
                    self.max
                ),
            )
            .with_header(header::RETRY_AFTER, "5"));
        }
        *count += 1;
        Ok(StreamSlot {
            slots: Arc::clone(self),
            user,
        })
    }
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        let mut open = self.slots.open.lock().expect("stream slots lock");
        if let Some(count) = open.get_mut(&self.user) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.user);
            }
        }
    }
}

impl Limits {
    pub fn new(settings: &ApiSettings) -> Self {
        Limits {
            global: Limiter::new("global", settings.rate_limit),
            create: Limiter::new("create", settings.create_rate_limit),
            login_ip: Limiter::new("login", settings.login_rate_limit),
            login_account: FailureLimiter::new("login-account", settings.login_account_rate_limit),
            streams: StreamSlots::new(settings.max_streams_per_user as usize),
        }
    }

    /// Forgets keys whose quota is full again, so memory stays bounded by the clients
    /// seen in one window.
    pub fn retain_recent(&self) {
        self.global.retain_recent();
        self.create.retain_recent();
        self.login_ip.retain_recent();
        self.login_account.retain_recent();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    #[test]
    fn an_ipv6_network_of_64_bits_shares_one_quota() {
        let key = |s: &str| quota_key(s.parse().unwrap()).to_string();
        assert_eq!(key("203.0.113.7"), "203.0.113.7");
        assert_eq!(key("::ffff:203.0.113.7"), "203.0.113.7");
        assert_eq!(key("2001:db8:1:2:aaaa:bbbb:cccc:dddd"), "2001:db8:1:2::");
        assert_eq!(key("2001:db8:1:2::1"), "2001:db8:1:2::");
        assert_eq!(key("2001:db8:1:3::1"), "2001:db8:1:3::");
        assert_eq!(key("::1"), "::");

        // Every address of one /64 draws from the same bucket.
        let l = Limiter::<IpAddr>::new("login", "2/1m".parse().unwrap());
        for addr in ["2001:db8::1", "2001:db8::ffff:2"] {
            l.check(&quota_key(addr.parse().unwrap())).unwrap();
        }
        assert!(l.check(&quota_key("2001:db8::3".parse().unwrap())).is_err());
        assert!(
            l.check(&quota_key("2001:db8:0:1::3".parse().unwrap()))
                .is_ok()
        );
    }

    fn retry_after(e: &ApiError) -> u64 {
        e.headers
            .iter()
            .find(|(n, _)| n == header::RETRY_AFTER)
            .map(|(_, v)| v.to_str().unwrap().parse::<u64>().unwrap())
            .expect("a Retry-After header")
    }

    #[test]
    fn refuses_after_the_burst_with_headers() {
        let l = Limiter::<IpAddr>::new("global", "3/1m".parse().unwrap());
        let ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let v = l.check(&ip).unwrap();
        assert_eq!((v.quota, v.window_secs, v.remaining), (3, 60, 2));
        assert_eq!(v.reset_secs, 20);
        assert_eq!(v.policy_item(), "\"global\";q=3;w=60");
        l.check(&ip).unwrap();
        let v = l.check(&ip).unwrap();
        assert_eq!(v.remaining, 0);
        let e = l.check(&ip).unwrap_err();
        assert_eq!(e.status, StatusCode::TOO_MANY_REQUESTS);
        let retry = retry_after(&e);
        assert!((1..=20).contains(&retry), "{retry}");
        // `t` on the refusal means what it means on a success: until the quota is full
        // again, two more refills (20 s each) after the next.
        let state = e
            .headers
            .iter()
            .find(|(n, _)| n == RATELIMIT)
            .map(|(_, v)| v.to_str().unwrap().to_owned())
            .expect("a RateLimit header");
        assert_eq!(state, format!("\"global\";r=0;t={}", retry + 40));
        // Another key has its own quota.
        assert!(l.check(&IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1))).is_ok());
    }

    #[test]
    fn only_failures_use_a_failure_quota_up() {
        let l = FailureLimiter::<String>::new("login-account", "3/1m".parse().unwrap());
        let key = "owner@example.test".to_owned();
        // Successes cost nothing: admitted as often as asked.
        for _ in 0..10 {
            l.admit(&key).unwrap();
        }
        l.failed(&key);
        l.failed(&key);
        l.admit(&key).expect("two failures of three");
        l.failed(&key);
        let e = l
            .admit(&key)
            .expect_err("the third failure used the quota up");
        assert_eq!(e.status, StatusCode::TOO_MANY_REQUESTS);
        let retry = retry_after(&e);
        assert!((1..=20).contains(&retry), "one refill, 20 s: {retry}");
        assert!(e.detail.contains("`login-account`"), "{}", e.detail);
        // Another key is not locked; forgetting keeps the lock while it lasts.
        l.admit(&"other@example.test".to_owned()).unwrap();
        l.retain_recent();
        assert!(l.admit(&key).is_err());
    }
}
