//! What a hostile client may spend on identity, by where it comes from: sign-in attempts per
//! (account, address) and per address, sign-ups per address. Limiting per account alone would
//! let anyone lock anyone out; per (account, address) and per address, an attacker runs dry
//! while the owner, from their own address, still gets in. The buckets are core's
//! [`RateLimiter`], on the time the caller passes in.

use std::net::{IpAddr, Ipv6Addr};
use std::time::Duration;

use roomcast_core::{RateLimiter, Refill, Timestamp};

/// Sign-in attempts for one account from one address: five, then one every 12 s.
const SIGN_IN_PER_ACCOUNT_AND_ADDRESS: Allowance = Allowance {
    burst: 5,
    every: Duration::from_secs(12),
};
/// Sign-in attempts from one address, whatever the account: twenty, then one every 3 s.
const SIGN_IN_PER_ADDRESS: Allowance = Allowance {
    burst: 20,
    every: Duration::from_secs(3),
};

/// Where attempts come from, as limits count it: an IPv4 address, or an IPv6 /64 (one host
/// usually holds a whole /64, so counting single v6 addresses would count nothing).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
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

impl From<Allowance> for Refill {
    fn from(allowance: Allowance) -> Self {
        Refill::every(allowance.burst, allowance.every)
    }
}

/// The attempt limits, on injected time.
/// The allowances a sign-in takes from, by name, for a directory shared by several nodes: the
/// same two as [`Attempts::sign_in`] keeps in memory.
pub(crate) fn sign_in_allowances(name: Option<&str>, origin: Origin) -> Vec<(String, Allowance)> {
    let mut allowances = vec![(format!("in:{}", origin.0), SIGN_IN_PER_ADDRESS)];
    if let Some(name) = name {
        let pair = format!("in:{}:{name}", origin.0);
        allowances.push((pair, SIGN_IN_PER_ACCOUNT_AND_ADDRESS));
    }
    allowances
}

/// The allowance a sign-up takes from, by name, for a shared directory.
pub(crate) fn sign_up_allowance(origin: Origin, allowance: Allowance) -> (String, Allowance) {
    (format!("up:{}", origin.0), allowance)
}

#[derive(Debug)]
pub(crate) struct Attempts {
    sign_in_pairs: RateLimiter<(String, Origin)>,
    sign_in_origins: RateLimiter<Origin>,
    sign_ups: RateLimiter<Origin>,
}

impl Attempts {
    /// Sign-ins limited as above; sign-ups by `sign_ups`, or not at all.
    pub(crate) fn new(sign_ups: Option<Allowance>) -> Self {
        Attempts {
            sign_in_pairs: RateLimiter::new(Some(SIGN_IN_PER_ACCOUNT_AND_ADDRESS.into())),
            sign_in_origins: RateLimiter::new(Some(SIGN_IN_PER_ADDRESS.into())),
            sign_ups: RateLimiter::new(sign_ups.map(Refill::from)),
        }
    }

    /// Takes one sign-up from `origin`'s allowance, or says how long until there is one.
    pub(crate) fn sign_up(&mut self, origin: Origin, now: Timestamp) -> Result<(), Duration> {
        self.forget_refilled(now);
        self.sign_ups.take(&origin, now)
    }

    /// Takes one sign-in attempt for `name` from `origin`, from both the pair's and the
    /// address's allowance, or from neither. A name that cannot exist (`None`) costs the address
    /// only, and keeps no per-name state.
    pub(crate) fn sign_in(
        &mut self,
        name: Option<&str>,
        origin: Origin,
        now: Timestamp,
    ) -> Result<(), Duration> {
        self.forget_refilled(now);
        let pair = name.map(|n| (n.to_owned(), origin));
        self.sign_in_origins.check(&origin, now)?;
        if let Some(pair) = &pair {
            self.sign_in_pairs.check(pair, now)?;
            self.sign_in_pairs.take(pair, now)?;
        }
        self.sign_in_origins.take(&origin, now)
    }

    /// Forgets the buckets that are full again, so memory follows the keys active within one
    /// refill.
    fn forget_refilled(&mut self, now: Timestamp) {
        self.sign_in_pairs.handle_timeout(now);
        self.sign_in_origins.handle_timeout(now);
        self.sign_ups.handle_timeout(now);
    }

    #[cfg(test)]
    fn tracked(&self) -> usize {
        self.sign_in_pairs.tracked() + self.sign_in_origins.tracked() + self.sign_ups.tracked()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64) -> Timestamp {
        Timestamp::from_unix_millis(1_700_000_000_000 + secs * 1000)
    }

    fn origin(last: u8) -> Origin {
        Origin::from(IpAddr::from([10, 0, 0, last]))
    }

    #[test]
    fn sign_ups_are_a_burst_then_one_per_interval() {
        let allowance = Allowance {
            burst: 3,
            every: Duration::from_secs(10),
        };
        let mut a = Attempts::new(Some(allowance));
        for _ in 0..3 {
            a.sign_up(origin(1), at(0)).unwrap();
        }
        assert_eq!(a.sign_up(origin(1), at(0)), Err(Duration::from_secs(10)));
        assert!(
            a.sign_up(origin(2), at(0)).is_ok(),
            "addresses are independent"
        );
        assert!(a.sign_up(origin(1), at(10)).is_ok());
        assert!(a.sign_up(origin(1), at(10)).is_err());
        let mut unlimited = Attempts::new(None);
        for _ in 0..100 {
            unlimited.sign_up(origin(1), at(0)).unwrap();
        }
    }

    #[test]
    fn sign_ins_are_limited_per_account_and_address_and_per_address() {
        let mut a = Attempts::new(None);
        for _ in 0..5 {
            a.sign_in(Some("ada"), origin(1), at(0)).unwrap();
        }
        assert_eq!(
            a.sign_in(Some("ada"), origin(1), at(0)),
            Err(Duration::from_secs(12))
        );
        // The owner, from elsewhere, still gets in; the attacker may try other accounts.
        assert!(a.sign_in(Some("ada"), origin(2), at(0)).is_ok());
        for n in 0..15 {
            let name = format!("user{n}");
            a.sign_in(Some(&name), origin(1), at(0)).unwrap();
        }
        // Twenty from one address in all (the refused one took nothing).
        assert_eq!(
            a.sign_in(Some("zoe"), origin(1), at(0)),
            Err(Duration::from_secs(3))
        );
        assert!(a.sign_in(None, origin(1), at(3)).is_ok());
    }

    #[test]
    fn refilled_buckets_are_forgotten() {
        let mut a = Attempts::new(None);
        for n in 0..5000u64 {
            let from = Origin::from(IpAddr::from([10, 1, (n / 256) as u8, (n % 256) as u8]));
            a.sign_in(Some("ada"), from, at(n * 60)).unwrap();
        }
        assert!(a.tracked() <= 2, "{} buckets kept", a.tracked());
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
