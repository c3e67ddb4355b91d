//! Brute-force limits for the login form: failed logins are counted per user name and per
//! client address in a sliding window (`[auth] max_failed_logins`,
//! `max_failed_logins_per_address`, `failed_login_window`). Once either count reaches its limit,
//! further attempts are refused without checking the password until old failures leave the
//! window. A success clears the user name's count (not the address's: one address guessing
//! many names keeps its count). Memory is bounded: at most [`MAX_KEYS`] keys are tracked, and
//! the oldest are dropped first.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Most user names plus addresses tracked at once.
pub const MAX_KEYS: usize = 100_000;

#[derive(Hash, PartialEq, Eq, Clone, Debug)]
enum Key {
    User(String),
    Addr(IpAddr),
}

/// The failure counters.
pub struct Throttle {
    per_user: u32,
    per_addr: u32,
    window: Duration,
    failures: Mutex<HashMap<Key, VecDeque<Instant>>>,
}

/// Why an attempt is refused before it is checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Throttled {
    /// Which limit: `"user name"` or `"client address"`.
    pub by: &'static str,
    /// Seconds until the oldest failure leaves the window (for `Retry-After`).
    pub retry_after_secs: u64,
}

impl Throttle {
    /// Limits of `per_user` and `per_addr` failures within `window`.
    pub fn new(per_user: u32, per_addr: u32, window: Duration) -> Self {
        Self { per_user, per_addr, window, failures: Mutex::new(HashMap::new()) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Key, VecDeque<Instant>>> {
        self.failures.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether an attempt for `user` from `addr` may be checked at `now`.
    pub fn check(&self, user: &str, addr: IpAddr, now: Instant) -> Result<(), Throttled> {
        let mut m = self.lock();
        for (key, limit, by) in [
            (Key::User(user.to_string()), self.per_user, "user name"),
            (Key::Addr(addr), self.per_addr, "client address"),
        ] {
            if let Some(q) = m.get_mut(&key) {
                while q.front().is_some_and(|t| now.duration_since(*t) >= self.window) {
                    q.pop_front();
                }
                if q.len() >= limit as usize {
                    let oldest = q.front().copied().unwrap_or(now);
                    let left = self.window.saturating_sub(now.duration_since(oldest));
                    return Err(Throttled { by, retry_after_secs: left.as_secs().max(1) });
                }
            }
        }
        Ok(())
    }

    /// Records a failed attempt.
    pub fn failed(&self, user: &str, addr: IpAddr, now: Instant) {
        let mut m = self.lock();
        if m.len() >= MAX_KEYS {
            let window = self.window;
            m.retain(|_, q| q.back().is_some_and(|t| now.duration_since(*t) < window));
            if m.len() >= MAX_KEYS {
                m.clear();
            }
        }
        for key in [Key::User(user.to_string()), Key::Addr(addr)] {
            m.entry(key).or_default().push_back(now);
        }
    }

    /// Records a success: the user name's failures are forgotten.
    pub fn succeeded(&self, user: &str) {
        self.lock().remove(&Key::User(user.to_string()));
    }
}

/// The client address of a request: the peer, unless the peer is a trusted proxy, in which
/// case the rightmost `X-Forwarded-For` entry that is not itself a trusted proxy (entries left
/// of it could have been written by the client). Malformed entries stop the walk.
pub fn client_addr(peer: IpAddr, forwarded_for: Option<&str>, trusted: &[ipnet::IpNet]) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|n| n.contains(ip));
    if !is_trusted(&peer) {
        return peer;
    }
    let mut addr = peer;
    if let Some(xff) = forwarded_for {
        for entry in xff.rsplit(',') {
            match entry.trim().parse::<IpAddr>() {
                Ok(ip) => {
                    addr = ip;
                    if !is_trusted(&ip) {
                        break;
                    }
                }
                Err(_) => break,
            }
        }
    }
    addr
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_per_user_and_per_address_with_a_sliding_window() {
        let t = Throttle::new(3, 5, Duration::from_secs(60));
        let a: IpAddr = "192.0.2.1".parse().expect("ip");
        let b: IpAddr = "192.0.2.2".parse().expect("ip");
        let t0 = Instant::now();
        for _ in 0..3 {
            assert!(t.check("ann", a, t0).is_ok());
            t.failed("ann", a, t0);
        }
        let refused = t.check("ann", b, t0).expect_err("ann is locked from any address");
        assert_eq!(refused.by, "user name");
        assert_eq!(refused.retry_after_secs, 60);
        // Two more names from address a reach the address limit (5).
        t.failed("bob", a, t0);
        t.failed("cat", a, t0);
        assert_eq!(t.check("dan", a, t0).expect_err("address a is limited").by, "client address");
        assert!(t.check("dan", b, t0).is_ok());
        // The window slides.
        assert!(t.check("ann", b, t0 + Duration::from_secs(61)).is_ok());
        // A success forgets the name, not the address.
        t.succeeded("ann");
        assert!(t.check("ann", b, t0).is_ok());
        assert!(t.check("ann", a, t0).is_err());
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let trusted: Vec<ipnet::IpNet> = vec!["127.0.0.1/32".parse().expect("net"), "10.0.0.0/8".parse().expect("net")];
        let ip = |s: &str| s.parse::<IpAddr>().expect("ip");
        // Untrusted peer: its header is ignored.
        assert_eq!(client_addr(ip("203.0.113.9"), Some("1.2.3.4"), &trusted), ip("203.0.113.9"));
        // Trusted peer: the rightmost untrusted entry wins; a spoofed left entry does not.
        assert_eq!(client_addr(ip("127.0.0.1"), Some("6.6.6.6, 198.51.100.7, 10.1.2.3"), &trusted), ip("198.51.100.7"));
        assert_eq!(client_addr(ip("127.0.0.1"), None, &trusted), ip("127.0.0.1"));
        assert_eq!(client_addr(ip("127.0.0.1"), Some("junk"), &trusted), ip("127.0.0.1"));
    }
}
