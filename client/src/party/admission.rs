//! Who may use a computing node's registration endpoint, and how often.
//!
//! Every registration costs the node a decode, a signature check and a CheckTx round trip, and
//! anyone who reaches the endpoint may send one. Two bounds apply before any of that, decided
//! from the connection alone, so a refused request costs a table lookup:
//!
//! - an **allow-list** of networks (`--register-allow`, [`Cidr`]): other sources are refused
//!   (403); an empty list allows every source;
//! - a **token bucket per client** (`--register-rate` per minute, `--register-burst` at once,
//!   [`RateLimit`]): a client over its rate is refused (429) with the time after which its next
//!   token is there.
//!
//! A client is an IPv4 address, or the /64 network of an IPv6 address (one host commonly holds a
//! whole /64, so a finer key would give it billions of buckets). IPv4 addresses mapped into
//! IPv6 count as IPv4.
//!
//! The buckets are kept as theoretical arrival times (the generic cell rate algorithm): one
//! instant per client, the time at which its bucket is full again. A client whose instant has
//! passed has a full bucket, exactly as one never seen, so it can be forgotten without changing
//! any answer; the table forgets those when it is full, and beyond [`MAX_CLIENTS`] clients
//! forgets the one closest to a full bucket. The clock is the caller's: every decision takes the
//! current instant.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::str::FromStr;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Most clients whose buckets are kept at once.
pub const MAX_CLIENTS: usize = 4096;

/// A block of IP addresses: a network address and a prefix length (`10.0.0.0/8`, `fd00::/8`;
/// a bare address is a block of one).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

/// Why a text is not a [`Cidr`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CidrError {
    /// The address part is not an IP address.
    #[error("{0:?} is not an IP address or a CIDR block like 10.0.0.0/8 or fd00::/8")]
    Address(String),
    /// The prefix length is not a number of at most the address's bits.
    #[error("{text:?}: the prefix length must be a number from 0 to {max}")]
    Prefix {
        /// The block as written.
        text: String,
        /// The address's bits (32 or 128).
        max: u8,
    },
    /// The address has bits set past the prefix.
    #[error("{text:?} has bits set past its /{prefix} prefix: the block is {network}/{prefix}")]
    HostBits {
        /// The block as written.
        text: String,
        /// The network address of the block.
        network: IpAddr,
        /// The prefix length.
        prefix: u8,
    },
}

impl Cidr {
    /// Whether `ip` is in the block.
    pub fn contains(&self, ip: IpAddr) -> bool {
        masked(ip.to_canonical(), self.prefix) == Some(self.network)
    }
}

/// `ip` with the bits past `prefix` cleared; `None` when `prefix` is longer than `ip`.
fn masked(ip: IpAddr, prefix: u8) -> Option<IpAddr> {
    match ip {
        IpAddr::V4(a) => {
            let keep = u32::MAX.checked_shl(32u32.checked_sub(prefix.into())?).unwrap_or(0);
            Some(IpAddr::V4((u32::from(a) & keep).into()))
        }
        IpAddr::V6(a) => {
            let keep = u128::MAX.checked_shl(128u32.checked_sub(prefix.into())?).unwrap_or(0);
            Some(IpAddr::V6((u128::from(a) & keep).into()))
        }
    }
}

impl FromStr for Cidr {
    type Err = CidrError;

    fn from_str(s: &str) -> Result<Self, CidrError> {
        let text = s.trim();
        let (address, prefix) = match text.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (text, None),
        };
        let ip: IpAddr = address.parse().map_err(|_| CidrError::Address(text.to_owned()))?;
        let ip = ip.to_canonical();
        let max = if ip.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or(CidrError::Prefix { text: text.to_owned(), max })?,
        };
        let network = masked(ip, prefix).ok_or(CidrError::Prefix { text: text.to_owned(), max })?;
        if network != ip {
            return Err(CidrError::HostBits { text: text.to_owned(), network, prefix });
        }
        Ok(Cidr { network, prefix })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

/// How many requests a client may send: `per_minute` on average, `burst` at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateLimit {
    /// Requests per minute, on average.
    pub per_minute: NonZeroU32,
    /// Requests at once, after a quiet spell.
    pub burst: NonZeroU32,
}

/// Token buckets by client, bounded in number (see the module documentation).
#[derive(Debug)]
pub struct Limiter {
    /// Time between two tokens.
    interval: Duration,
    /// How far ahead of now a client's full-bucket time may be and still take a token.
    tolerance: Duration,
    /// Each client's full-bucket time (only those still in the future matter).
    full_at: BTreeMap<IpAddr, Instant>,
    /// Most clients kept.
    capacity: usize,
}

impl Limiter {
    /// Buckets of `limit`, for at most [`MAX_CLIENTS`] clients at once.
    pub fn new(limit: RateLimit) -> Self {
        Self::with_capacity(limit, MAX_CLIENTS)
    }

    fn with_capacity(limit: RateLimit, capacity: usize) -> Self {
        let interval = Duration::from_secs(60) / limit.per_minute.get();
        Limiter {
            interval,
            tolerance: interval.saturating_mul(limit.burst.get() - 1),
            full_at: BTreeMap::new(),
            capacity: capacity.max(1),
        }
    }

    /// Take a token from `ip`'s bucket at `now`; when it is empty, how long until the next.
    pub fn take(&mut self, ip: IpAddr, now: Instant) -> Result<(), Duration> {
        let client = lemal_app::http::source_of(ip);
        let full_at = self.full_at.get(&client).copied().filter(|t| *t > now).unwrap_or(now);
        let ahead = full_at.saturating_duration_since(now);
        if ahead > self.tolerance {
            return Err(ahead - self.tolerance);
        }
        if !self.full_at.contains_key(&client) {
            self.make_room(now);
        }
        self.full_at.insert(client, full_at.checked_add(self.interval).unwrap_or(full_at));
        Ok(())
    }

    /// Below capacity, one more client fits: forget the full buckets, and if none is, the one
    /// closest to full.
    fn make_room(&mut self, now: Instant) {
        if self.full_at.len() < self.capacity {
            return;
        }
        self.full_at.retain(|_, t| *t > now);
        while self.full_at.len() >= self.capacity {
            let Some(soonest) = self.full_at.iter().min_by_key(|(_, t)| **t).map(|(c, _)| *c)
            else {
                break;
            };
            self.full_at.remove(&soonest);
        }
    }

    /// How many clients are kept.
    pub fn clients(&self) -> usize {
        self.full_at.len()
    }
}

/// Why a request is refused before it is read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Its source is not on the allow-list.
    NotAllowed,
    /// Its client is over its rate; the next token is there after `retry_after`.
    RateLimited {
        /// How long until the client's next token.
        retry_after: Duration,
    },
}

impl Refusal {
    /// The `outcome` label of the registrations metric.
    pub fn outcome(&self) -> &'static str {
        match self {
            Refusal::NotAllowed => "not_allowed",
            Refusal::RateLimited { .. } => "rate_limited",
        }
    }

    /// The HTTP status.
    pub fn status(&self) -> u16 {
        match self {
            Refusal::NotAllowed => 403,
            Refusal::RateLimited { .. } => 429,
        }
    }

    /// Whole seconds to wait (the `Retry-After` header), rounded up; `None` when waiting does
    /// not help.
    pub fn retry_after_secs(&self) -> Option<u64> {
        match self {
            Refusal::NotAllowed => None,
            Refusal::RateLimited { retry_after } => {
                let secs = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
                Some(secs.max(1))
            }
        }
    }
}

/// The allow-list and the buckets of one endpoint.
#[derive(Debug)]
pub struct Admission {
    allow: Vec<Cidr>,
    limiter: Mutex<Limiter>,
}

impl Admission {
    /// Admit sources in `allow` (all when empty) at `limit` per client.
    pub fn new(allow: Vec<Cidr>, limit: RateLimit) -> Self {
        Admission { allow, limiter: Mutex::new(Limiter::new(limit)) }
    }

    /// Whether a request from `peer` may be read at `now`. A source off the allow-list takes
    /// no token.
    pub fn admit(&self, peer: IpAddr, now: Instant) -> Result<(), Refusal> {
        if !self.allow.is_empty() && !self.allow.iter().any(|c| c.contains(peer)) {
            return Err(Refusal::NotAllowed);
        }
        // Nothing in take() panics halfway, so the table of a poisoned lock is still sound.
        let mut limiter = self.limiter.lock().unwrap_or_else(PoisonError::into_inner);
        limiter.take(peer, now).map_err(|retry_after| Refusal::RateLimited { retry_after })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limit(per_minute: u32, burst: u32) -> RateLimit {
        RateLimit {
            per_minute: NonZeroU32::new(per_minute).expect("non-zero"),
            burst: NonZeroU32::new(burst).expect("non-zero"),
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("an address")
    }

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn a_client_may_send_its_burst_at_once_and_then_waits_for_the_next_token() {
        let t0 = Instant::now();
        let mut l = Limiter::new(limit(30, 3));
        let a = ip("192.0.2.1");
        for _ in 0..3 {
            assert_eq!(l.take(a, t0), Ok(()));
        }
        assert_eq!(l.take(a, t0), Err(secs(2)), "one token every 2 s");
        assert_eq!(l.take(a, t0 + secs(1)), Err(secs(1)));
        assert_eq!(l.take(a, t0 + secs(2)), Ok(()), "refilled");
        assert_eq!(l.take(a, t0 + secs(2)), Err(secs(2)));
        // Another client has a bucket of its own.
        assert_eq!(l.take(ip("192.0.2.2"), t0), Ok(()));
    }

    #[test]
    fn a_quiet_client_gets_its_whole_burst_back_but_no_more() {
        let t0 = Instant::now();
        let mut l = Limiter::new(limit(60, 2));
        let a = ip("192.0.2.1");
        assert_eq!((l.take(a, t0), l.take(a, t0)), (Ok(()), Ok(())));
        assert!(l.take(a, t0).is_err());
        let later = t0 + secs(3600);
        assert_eq!((l.take(a, later), l.take(a, later)), (Ok(()), Ok(())));
        assert_eq!(l.take(a, later), Err(secs(1)));
    }

    #[test]
    fn an_ipv6_client_is_its_slash_64_and_a_mapped_ipv4_address_is_ipv4() {
        let t0 = Instant::now();
        let mut l = Limiter::new(limit(1, 1));
        assert!(l.take(ip("2001:db8:1:2::1"), t0).is_ok());
        assert!(l.take(ip("2001:db8:1:2:ffff::9"), t0).is_err(), "same /64");
        assert!(l.take(ip("2001:db8:1:3::1"), t0).is_ok(), "another /64");
        assert!(l.take(ip("198.51.100.7"), t0).is_ok());
        assert!(l.take(ip("::ffff:198.51.100.7"), t0).is_err(), "the same IPv4 client");
    }

    #[test]
    fn a_full_table_forgets_full_buckets_first_then_the_one_closest_to_full() {
        let t0 = Instant::now();
        let mut l = Limiter::with_capacity(limit(60, 1), 3);
        for (i, at) in [0, 10, 20].into_iter().enumerate() {
            assert!(l.take(ip(&format!("192.0.2.{i}")), t0 + secs(at)).is_ok());
        }
        assert_eq!(l.clients(), 3);
        // At 30 s every bucket is full again: all three are forgotten for the newcomer.
        assert!(l.take(ip("192.0.2.9"), t0 + secs(30)).is_ok());
        assert_eq!(l.clients(), 1);
        // Three busy clients at 40.0, 40.5 and 40.9 s: a fourth evicts the one that sent first.
        let mut l = Limiter::with_capacity(limit(60, 1), 3);
        let busy = [("192.0.2.1", 0), ("192.0.2.2", 500), ("192.0.2.3", 900)];
        let at = |ms: u64| t0 + secs(40) + Duration::from_millis(ms);
        for (a, ms) in busy {
            assert!(l.take(ip(a), at(ms)).is_ok());
        }
        assert!(l.take(ip("192.0.2.4"), at(950)).is_ok());
        assert_eq!(l.clients(), 3);
        assert!(l.take(ip("192.0.2.1"), at(960)).is_ok(), "forgotten, so full again");
        assert!(l.take(ip("192.0.2.3"), at(960)).is_err(), "still kept, still empty");
    }

    #[test]
    fn the_table_never_holds_more_than_its_capacity() {
        let t0 = Instant::now();
        let mut l = Limiter::with_capacity(limit(1, 1), 16);
        for i in 0..1000u32 {
            let a = IpAddr::V4(i.into());
            assert!(l.take(a, t0).is_ok());
            assert!(l.clients() <= 16);
        }
    }

    #[test]
    fn cidr_blocks_parse_and_contain_their_addresses() {
        let ten: Cidr = "10.0.0.0/8".parse().expect("block");
        assert!(ten.contains(ip("10.200.3.4")) && !ten.contains(ip("11.0.0.1")));
        assert!(ten.contains(ip("::ffff:10.1.1.1")), "mapped IPv4");
        assert!(!ten.contains(ip("fd00::1")));
        let one: Cidr = " 127.0.0.1 ".parse().expect("a bare address");
        assert_eq!(one.to_string(), "127.0.0.1/32");
        assert!(one.contains(ip("127.0.0.1")) && !one.contains(ip("127.0.0.2")));
        let ula: Cidr = "fd00::/8".parse().expect("block");
        assert!(ula.contains(ip("fd12:3456::1")) && !ula.contains(ip("fe80::1")));
        let all: Cidr = "0.0.0.0/0".parse().expect("block");
        assert!(all.contains(ip("203.0.113.5")) && !all.contains(ip("2001:db8::1")));
        let all6: Cidr = "::/0".parse().expect("block");
        assert!(all6.contains(ip("2001:db8::1")));
    }

    #[test]
    fn bad_cidr_blocks_are_refused_with_the_reason() {
        assert_eq!("10.0.0/8".parse::<Cidr>(), Err(CidrError::Address("10.0.0/8".into())));
        assert_eq!("".parse::<Cidr>(), Err(CidrError::Address(String::new())));
        assert_eq!(
            "10.0.0.0/33".parse::<Cidr>(),
            Err(CidrError::Prefix { text: "10.0.0.0/33".into(), max: 32 })
        );
        assert!(matches!("fd00::/129".parse::<Cidr>(), Err(CidrError::Prefix { max: 128, .. })));
        assert!(matches!("10.0.0.0/x".parse::<Cidr>(), Err(CidrError::Prefix { .. })));
        let e = "10.1.2.3/8".parse::<Cidr>().expect_err("host bits");
        assert_eq!(
            e,
            CidrError::HostBits { text: "10.1.2.3/8".into(), network: ip("10.0.0.0"), prefix: 8 }
        );
        assert!(e.to_string().contains("the block is 10.0.0.0/8"), "{e}");
    }

    #[test]
    fn the_allow_list_refuses_other_sources_without_taking_their_tokens() {
        let t0 = Instant::now();
        let lan = vec!["10.0.0.0/8".parse().expect("block")];
        let a = Admission::new(lan, limit(60, 1));
        assert_eq!(a.admit(ip("192.0.2.1"), t0), Err(Refusal::NotAllowed));
        assert_eq!(a.admit(ip("10.0.0.1"), t0), Ok(()));
        let refused = a.admit(ip("10.0.0.1"), t0).expect_err("over the rate");
        assert_eq!(refused, Refusal::RateLimited { retry_after: secs(1) });
        assert_eq!((refused.status(), refused.retry_after_secs()), (429, Some(1)));
        assert_eq!(Refusal::NotAllowed.status(), 403);
        let everyone = Admission::new(Vec::new(), limit(60, 1));
        assert_eq!(everyone.admit(ip("192.0.2.1"), t0), Ok(()));
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        let wait = |ms| Refusal::RateLimited { retry_after: Duration::from_millis(ms) };
        assert_eq!(wait(1).retry_after_secs(), Some(1));
        assert_eq!(wait(0).retry_after_secs(), Some(1));
        assert_eq!(wait(2000).retry_after_secs(), Some(2));
        assert_eq!(wait(2001).retry_after_secs(), Some(3));
    }
}
