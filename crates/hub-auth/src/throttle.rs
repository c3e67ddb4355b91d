//! Brute-force limits for the login form: attempts are counted per user name and per client
//! address in a sliding window (`[auth] max_failed_logins`, `max_failed_logins_per_address`,
//! `failed_login_window`). Once either count reaches its limit, further attempts are refused
//! without checking the password until old ones leave the window.
//!
//! **Reserve, then check.** [`Throttle::reserve`] counts an attempt *before* the password is
//! checked, under one lock with the limit check, so parallel requests cannot all pass the check
//! while the slow PAM or KDC call runs: with a limit of 5, at most 5 attempts are ever in flight
//! or failed in the window. A success refunds the reservation ([`Reservation::succeeded`]) and
//! forgets the user name's failures (not the address's: one address guessing many names keeps
//! its count); a reservation dropped without a verdict counts as a failure.
//!
//! **Addresses.** IPv4 addresses count one by one; IPv6 clients by their /64 (one host
//! usually has a whole /64 to pick addresses from), and an IPv4-mapped IPv6 address as its IPv4.
//!
//! **Memory** is bounded at [`MAX_KEYS`] keys. When full, keys whose attempts have all left the
//! window go first; then, if still full, the tenth of the keys with the fewest attempts in the
//! window (oldest first among equals). A key at its limit is never dropped, so nobody can free
//! a locked name or address by flooding the table with new keys; if every key is at its limit,
//! a new key's attempt is refused (`by: "hub-wide limit"`) until the window frees some.

use hub_core::Recover;
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

/// `addr` as the throttle counts it: IPv4 as is, IPv6 masked to its /64, IPv4-mapped IPv6 as
/// the IPv4 address.
pub fn address_key(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V4(_) => addr,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(std::net::Ipv6Addr::from(v6.to_bits() & !((1u128 << 64) - 1))),
        },
    }
}

/// The attempt counters.
pub struct Throttle {
    per_user: u32,
    per_addr: u32,
    window: Duration,
    attempts: Mutex<HashMap<Key, VecDeque<Instant>>>,
}

/// Why an attempt is refused before it is checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Throttled {
    /// Which limit: `"user name"`, `"client address"` or `"hub-wide limit"`.
    pub by: &'static str,
    /// Seconds until the oldest attempt leaves the window (for `Retry-After`).
    pub retry_after_secs: u64,
}

/// One counted attempt, from [`Throttle::reserve`]. Tell it how the attempt ended; dropped
/// without a verdict it stays counted, as a failure.
pub struct Reservation<'a> {
    throttle: &'a Throttle,
    user: String,
    addr: IpAddr,
    at: Instant,
}

impl Reservation<'_> {
    /// The password was right: this attempt is refunded and the user name's failures are
    /// forgotten (the address keeps its other attempts).
    pub fn succeeded(self) {
        let mut m = self.throttle.lock();
        m.remove(&Key::User(self.user.clone()));
        if let Some(q) = m.get_mut(&Key::Addr(self.addr))
            && let Some(i) = q.iter().rposition(|t| *t == self.at)
        {
            q.remove(i);
        }
    }

    /// The attempt failed: it stays counted (the same as dropping the reservation).
    pub fn failed(self) {}
}

impl Throttle {
    /// Limits of `per_user` and `per_addr` attempts within `window`.
    pub fn new(per_user: u32, per_addr: u32, window: Duration) -> Self {
        Self { per_user, per_addr, window, attempts: Mutex::new(HashMap::new()) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Key, VecDeque<Instant>>> {
        self.attempts.lock().recover()
    }

    /// Counts an attempt for `user` from `addr` at `now` if both are under their limits, in
    /// one step with the check (see the module documentation); else says which limit refused
    /// it and for how long.
    pub fn reserve(&self, user: &str, addr: IpAddr, now: Instant) -> Result<Reservation<'_>, Throttled> {
        let addr = address_key(addr);
        let keys = [
            (Key::User(user.to_string()), self.per_user, "user name"),
            (Key::Addr(addr), self.per_addr, "client address"),
        ];
        let mut m = self.lock();
        for (key, limit, by) in &keys {
            if let Some(q) = m.get_mut(key) {
                while q.front().is_some_and(|t| now.duration_since(*t) >= self.window) {
                    q.pop_front();
                }
                if q.len() >= *limit as usize {
                    return Err(Throttled { by, retry_after_secs: self.left(q, now) });
                }
            }
        }
        let new_keys = keys.iter().filter(|(k, _, _)| !m.contains_key(k)).count();
        if m.len() + new_keys > MAX_KEYS {
            self.evict(&mut m, now);
            if m.len() + new_keys > MAX_KEYS {
                return Err(Throttled { by: "hub-wide limit", retry_after_secs: self.window.as_secs().max(1) });
            }
        }
        for (key, _, _) in keys {
            m.entry(key).or_default().push_back(now);
        }
        Ok(Reservation { throttle: self, user: user.to_string(), addr, at: now })
    }

    /// Seconds until the oldest attempt in `q` leaves the window (at least 1).
    fn left(&self, q: &VecDeque<Instant>, now: Instant) -> u64 {
        let oldest = q.front().copied().unwrap_or(now);
        self.window.saturating_sub(now.duration_since(oldest)).as_secs().max(1)
    }

    /// Makes room (see the module documentation): expired keys, then the tenth with the
    /// fewest attempts, never a key at its limit.
    fn evict(&self, m: &mut HashMap<Key, VecDeque<Instant>>, now: Instant) {
        let window = self.window;
        m.retain(|_, q| {
            while q.front().is_some_and(|t| now.duration_since(*t) >= window) {
                q.pop_front();
            }
            !q.is_empty()
        });
        if m.len() < MAX_KEYS {
            return;
        }
        let limit = |k: &Key| match k {
            Key::User(_) => self.per_user as usize,
            Key::Addr(_) => self.per_addr as usize,
        };
        let mut candidates: Vec<(usize, Instant, Key)> = m
            .iter()
            .filter(|(k, q)| q.len() < limit(k))
            .map(|(k, q)| (q.len(), q.back().copied().unwrap_or(now), k.clone()))
            .collect();
        candidates.sort_by_key(|c| (c.0, c.1));
        for (_, _, k) in candidates.into_iter().take(MAX_KEYS / 10) {
            m.remove(&k);
        }
    }

    /// How many attempts are counted for `user` now (for tests and the metrics).
    pub fn counted(&self, user: &str) -> usize {
        self.lock().get(&Key::User(user.to_string())).map_or(0, VecDeque::len)
    }
}

/// The client address of a request: the peer, unless the peer is a trusted proxy, in which
/// case the rightmost `X-Forwarded-For` entry that is not itself a trusted proxy (entries left
/// of it could have been written by the client). Malformed entries stop the walk.
///
/// `peer_trusted` says whether the peer itself is a trusted proxy (in `trusted`, or the hub's
/// own Unix socket, see [`hub_config::HubConfig::trusts`]).
pub fn client_addr(peer: IpAddr, peer_trusted: bool, forwarded_for: Option<&str>, trusted: &[ipnet::IpNet]) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|n| n.contains(ip));
    if !peer_trusted {
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

    /// The refusal of an attempt that must be refused.
    fn refused(r: Result<Reservation<'_>, Throttled>, why: &str) -> Throttled {
        match r {
            Err(t) => t,
            Ok(_) => panic!("admitted, but {why}"),
        }
    }

    #[test]
    fn limits_per_user_and_per_address_with_a_sliding_window() {
        let t = Throttle::new(3, 5, Duration::from_secs(60));
        let a: IpAddr = "192.0.2.1".parse().expect("ip");
        let b: IpAddr = "192.0.2.2".parse().expect("ip");
        let t0 = Instant::now();
        for _ in 0..3 {
            t.reserve("ann", a, t0).expect("under the limit").failed();
        }
        let locked = refused(t.reserve("ann", b, t0), "ann is locked from any address");
        assert_eq!(locked.by, "user name");
        assert_eq!(locked.retry_after_secs, 60);
        // Two more names from address a reach the address limit (5).
        drop(t.reserve("bob", a, t0).expect("bob"));
        drop(t.reserve("cat", a, t0).expect("cat"));
        assert_eq!(refused(t.reserve("dan", a, t0), "address a is limited").by, "client address");
        // The window slides.
        assert!(t.reserve("ann", b, t0 + Duration::from_secs(61)).is_ok());
    }

    #[test]
    fn reservations_hold_under_parallel_attempts_and_successes_refund() {
        let t = std::sync::Arc::new(Throttle::new(5, 1000, Duration::from_secs(60)));
        let a: IpAddr = "192.0.2.1".parse().expect("ip");
        let t0 = Instant::now();
        // 30 attempts at once, each holding its reservation while "PAM" runs.
        let admitted = std::sync::atomic::AtomicUsize::new(0);
        std::thread::scope(|s| {
            for _ in 0..30 {
                s.spawn(|| {
                    if let Ok(r) = t.reserve("ann", a, t0) {
                        admitted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        std::thread::sleep(Duration::from_millis(20));
                        r.failed();
                    }
                });
            }
        });
        assert_eq!(admitted.into_inner(), 5, "exactly the limit is checked");
        // A success refunds its own attempt on the address and clears the name.
        let t = Throttle::new(3, 3, Duration::from_secs(60));
        t.reserve("bob", a, t0).expect("1").failed();
        t.reserve("bob", a, t0).expect("2").succeeded();
        assert_eq!(t.counted("bob"), 0);
        t.reserve("cat", a, t0).expect("3").failed();
        t.reserve("dan", a, t0).expect("the refunded attempt freed a place on the address").failed();
        assert_eq!(refused(t.reserve("eve", a, t0), "address full").by, "client address");
    }

    #[test]
    fn ipv6_clients_count_by_slash_64() {
        let t = Throttle::new(100, 2, Duration::from_secs(60));
        let t0 = Instant::now();
        let ip = |s: &str| s.parse::<IpAddr>().expect("ip");
        t.reserve("a", ip("2001:db8:1:2::1"), t0).expect("1").failed();
        t.reserve("b", ip("2001:db8:1:2:ffff::9"), t0).expect("2").failed();
        assert_eq!(refused(t.reserve("c", ip("2001:db8:1:2:abcd::1"), t0), "same /64").by, "client address");
        assert!(t.reserve("c", ip("2001:db8:1:3::1"), t0).is_ok(), "another /64");
        assert_eq!(address_key(ip("::ffff:192.0.2.7")), ip("192.0.2.7"));
    }

    #[test]
    fn flooding_the_table_never_frees_a_locked_name() {
        let t = Throttle::new(3, u32::MAX, Duration::from_secs(3600));
        let t0 = Instant::now();
        let victim_addr: IpAddr = "198.51.100.1".parse().expect("ip");
        for _ in 0..3 {
            t.reserve("victim", victim_addr, t0).expect("guess").failed();
        }
        // Far more new names than the table holds, from addresses of their own.
        for i in 0..(MAX_KEYS as u32 + 20_000) {
            let addr = IpAddr::V4(std::net::Ipv4Addr::from(0x0a00_0000 + i));
            let _ = t.reserve(&format!("junk{i}"), addr, t0 + Duration::from_millis(1));
        }
        assert!(t.lock().len() <= MAX_KEYS);
        assert_eq!(refused(t.reserve("victim", victim_addr, t0), "still locked").by, "user name");
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let trusted: Vec<ipnet::IpNet> = vec!["127.0.0.1/32".parse().expect("net"), "10.0.0.0/8".parse().expect("net")];
        let ip = |s: &str| s.parse::<IpAddr>().expect("ip");
        // Untrusted peer: its header is ignored.
        assert_eq!(
            client_addr(
                ip("203.0.113.9"),
                trusted.iter().any(|n| n.contains(&ip("203.0.113.9"))),
                Some("1.2.3.4"),
                &trusted
            ),
            ip("203.0.113.9")
        );
        // Trusted peer: the rightmost untrusted entry wins; a spoofed left entry does not.
        assert_eq!(
            client_addr(
                ip("127.0.0.1"),
                trusted.iter().any(|n| n.contains(&ip("127.0.0.1"))),
                Some("6.6.6.6, 198.51.100.7, 10.1.2.3"),
                &trusted
            ),
            ip("198.51.100.7")
        );
        assert_eq!(
            client_addr(ip("127.0.0.1"), trusted.iter().any(|n| n.contains(&ip("127.0.0.1"))), None, &trusted),
            ip("127.0.0.1")
        );
        assert_eq!(
            client_addr(ip("127.0.0.1"), trusted.iter().any(|n| n.contains(&ip("127.0.0.1"))), Some("junk"), &trusted),
            ip("127.0.0.1")
        );
    }
}
