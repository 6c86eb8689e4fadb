//! Token buckets by key, for the attempts identity limits: sign-ins per (account, address) and
//! per address, sign-ups per address. Limiting per account alone would let anyone lock anyone
//! out; per (account, address) and per address, an attacker runs dry while the owner, from
//! their own address, still gets in.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::{IpAddr, Ipv6Addr};
use std::time::{Duration, Instant};

/// Where attempts come from, as limits count it: an IPv4 address, or an IPv6 /64 (one host
/// usually holds a whole /64, so counting single v6 addresses would count nothing).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Origin(IpAddr);

impl From<IpAddr> for Origin {
    fn from(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(v4) => Origin(IpAddr::V4(v4)),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Origin(IpAddr::V4(v4)),
                None => {
                    let prefix = u128::from(v6) & !((1u128 << 64) - 1);
                    Origin(IpAddr::V6(Ipv6Addr::from(prefix)))
                }
            },
        }
    }
}

/// A burst, then one more every `every`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Allowance {
    /// Attempts allowed back to back.
    pub burst: u32,
    /// One more is allowed each time this passes.
    pub every: Duration,
}

/// Token buckets by key. A full bucket is the same as none, so buckets that have refilled are
/// forgotten whenever the map has doubled since the last sweep: memory stays proportional to
/// the keys active within one refill.
#[derive(Debug)]
pub(crate) struct Buckets<K> {
    allowance: Allowance,
    levels: HashMap<K, (f64, Instant)>,
    sweep_at: usize,
}

impl<K: Hash + Eq + Clone> Buckets<K> {
    pub(crate) fn new(allowance: Allowance) -> Self {
        Buckets {
            allowance,
            levels: HashMap::new(),
            sweep_at: 1024,
        }
    }

    fn burst(&self) -> f64 {
        f64::from(self.allowance.burst.max(1))
    }

    fn per_second(&self) -> f64 {
        1.0 / self.allowance.every.as_secs_f64().max(1e-3)
    }

    /// The tokens in `key`'s bucket at `now`.
    fn level(&self, key: &K, now: Instant) -> f64 {
        match self.levels.get(key) {
            Some((tokens, at)) => (tokens
                + now.saturating_duration_since(*at).as_secs_f64() * self.per_second())
            .min(self.burst()),
            None => self.burst(),
        }
    }

    /// `Err(retry_after)` if `key` has no attempt left at `now`.
    pub(crate) fn check(&self, key: &K, now: Instant) -> Result<(), Duration> {
        let level = self.level(key, now);
        if level >= 1.0 {
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - level) / self.per_second()))
        }
    }

    /// Takes one attempt from `key`'s bucket (after a successful [`Buckets::check`]).
    pub(crate) fn take(&mut self, key: K, now: Instant) {
        let level = self.level(&key, now) - 1.0;
        self.levels.insert(key, (level.max(0.0), now));
        if self.levels.len() >= self.sweep_at {
            let (burst, per_second) = (self.burst(), self.per_second());
            self.levels.retain(|_, (tokens, at)| {
                *tokens + now.saturating_duration_since(*at).as_secs_f64() * per_second < burst
            });
            self.sweep_at = (self.levels.len() * 2).max(1024);
        }
    }

    /// Checks and takes in one step.
    pub(crate) fn admit(&mut self, key: K, now: Instant) -> Result<(), Duration> {
        self.check(&key, now)?;
        self.take(key, now);
        Ok(())
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.levels.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allowance(burst: u32, secs: u64) -> Allowance {
        Allowance {
            burst,
            every: Duration::from_secs(secs),
        }
    }

    #[test]
    fn a_burst_then_one_per_interval() {
        let mut b = Buckets::new(allowance(3, 10));
        let t0 = Instant::now();
        for _ in 0..3 {
            b.admit("k", t0).unwrap();
        }
        let wait = b.admit("k", t0).unwrap_err();
        assert!(wait > Duration::from_secs(9) && wait <= Duration::from_secs(10));
        assert!(b.admit("other", t0).is_ok(), "keys are independent");
        assert!(b.admit("k", t0 + Duration::from_secs(10)).is_ok());
        assert!(b.admit("k", t0 + Duration::from_secs(10)).is_err());
    }

    #[test]
    fn refilled_buckets_are_forgotten() {
        let mut b = Buckets::new(allowance(1, 1));
        let t0 = Instant::now();
        for n in 0..5000u32 {
            b.admit(n, t0 + Duration::from_secs(u64::from(n) * 2))
                .unwrap();
        }
        assert!(b.len() < 2048, "{} buckets kept", b.len());
    }

    #[test]
    fn v6_addresses_count_by_their_64_prefix() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::9".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(Origin::from(a), Origin::from(b));
        assert_ne!(Origin::from(a), Origin::from(c));
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        assert_eq!(
            Origin::from(mapped),
            Origin::from("10.0.0.1".parse::<IpAddr>().unwrap())
        );
    }
}
