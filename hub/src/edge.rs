//! What both hosts do at the edge before a request is read: raise the open-file limit, listen
//! with a deep backlog, cap the connections held at once (answering the rest at once, and
//! logging once per burst), and tell which address a client really has behind a proxy.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ipnet::IpNet;
use roomcast_identity::Origin;

/// Connection-level flags both binaries take.
#[derive(Debug, Clone, clap::Args)]
pub struct EdgeArgs {
    /// Most client connections held at once; clients over it are answered at once (503 with
    /// Retry-After, or a close that streams reconnect after). Default: a little below the
    /// process's open-file limit, which the server raises to its hard limit at start.
    #[arg(long, env = "ROOMCAST_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,
    /// Connections the kernel queues before they are accepted (the kernel caps it at
    /// net.core.somaxconn). A restart's thousands of reconnects fit in it instead of waiting
    /// for TCP's SYN retries.
    #[arg(long, env = "ROOMCAST_LISTEN_BACKLOG", default_value_t = 4096)]
    pub listen_backlog: u32,
    /// Proxies (addresses or CIDR blocks, comma separated) whose `X-Forwarded-For` tells the
    /// client's address, for per-address limits. Without them every client behind one proxy
    /// would share its address's limits. Their own connections are not capped per address.
    #[arg(long, env = "ROOMCAST_TRUSTED_PROXIES", value_delimiter = ',', value_parser = parse_net)]
    pub trusted_proxies: Vec<IpNet>,
    /// Most connections one client address (an IPv6 /64) holds at once.
    #[arg(
        long,
        env = "ROOMCAST_MAX_CONNECTIONS_PER_ADDRESS",
        default_value_t = 256
    )]
    pub max_connections_per_address: usize,
    /// Most connections one client address holds that have not yet sent a whole request (a
    /// request head, or HTTP/2's preface).
    #[arg(
        long,
        env = "ROOMCAST_MAX_FRESH_CONNECTIONS_PER_ADDRESS",
        default_value_t = 32
    )]
    pub max_fresh_connections_per_address: usize,
}

impl EdgeArgs {
    /// Raises the open-file limit, listens on `addr`, and sizes the connection cap.
    pub fn listen(&self, addr: SocketAddr) -> io::Result<(TcpListener, Arc<ConnectionLimit>)> {
        let files = raise_open_files();
        let max = self.max_connections.unwrap_or_else(|| default_cap(files));
        tracing::info!(open_files = files, "connections at most {max}");
        let listener = bind(addr, self.listen_backlog)?;
        let limit = ConnectionLimit::new(max).per_address(
            self.max_connections_per_address,
            self.max_fresh_connections_per_address,
            self.trusted_proxies.clone(),
        );
        Ok((listener, Arc::new(limit)))
    }

    /// Who a client is, from its socket's peer address and, if that is a trusted proxy, the
    /// `X-Forwarded-For` values (each may hold several addresses, left to right).
    pub fn client_ip<'a>(
        &self,
        peer: IpAddr,
        forwarded_for: impl Iterator<Item = &'a str>,
    ) -> IpAddr {
        client_ip(peer, forwarded_for, &self.trusted_proxies)
    }

    /// Whether a trusted proxy says its client came over HTTPS (`X-Forwarded-Proto`, whose
    /// first value is the scheme the client used).
    pub fn forwarded_https<'a>(
        &self,
        peer: IpAddr,
        mut forwarded_proto: impl Iterator<Item = &'a str>,
    ) -> bool {
        self.trusted_proxies.iter().any(|net| net.contains(&peer))
            && forwarded_proto
                .next()
                .and_then(|v| v.split(',').next())
                .is_some_and(|scheme| scheme.trim().eq_ignore_ascii_case("https"))
    }
}

/// An address (`127.0.0.1`) or a CIDR block (`10.0.0.0/8`).
fn parse_net(s: &str) -> Result<IpNet, String> {
    let s = s.trim();
    s.parse::<IpNet>()
        .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
        .map_err(|_| format!("{s:?} is neither an address nor a CIDR block"))
}

/// Raises the soft limit on open files to the hard limit; returns the limit now in force.
pub fn raise_open_files() -> u64 {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => limit,
        Err(e) => {
            tracing::warn!(error = %e, "cannot raise the open-file limit");
            rlimit::getrlimit(rlimit::Resource::NOFILE).map_or(1024, |(soft, _)| soft)
        }
    }
}

/// The connections to allow with `files` descriptors: the rest are kept for the store, the
/// runtime, and accepting (and answering) clients over the cap.
fn default_cap(files: u64) -> usize {
    let reserve = (files / 20).clamp(64, 1024);
    usize::try_from(files.saturating_sub(reserve).max(1)).unwrap_or(usize::MAX)
}

/// A listening socket with `backlog` (std's `bind` uses 128), reusable at once after a restart.
pub fn bind(addr: SocketAddr, backlog: u32) -> io::Result<TcpListener> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(i32::try_from(backlog).unwrap_or(i32::MAX))?;
    Ok(socket.into())
}

/// The client's address: the peer, unless the peer is a trusted proxy, in which case the
/// rightmost `X-Forwarded-For` entry that is not itself a trusted proxy (entries further left
/// were written by the client and prove nothing).
pub fn client_ip<'a>(
    peer: IpAddr,
    forwarded_for: impl Iterator<Item = &'a str>,
    trusted: &[IpNet],
) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    if !is_trusted(&peer) {
        return peer;
    }
    let hops: Vec<&str> = forwarded_for.flat_map(|v| v.split(',')).collect();
    let mut client = peer;
    for hop in hops.iter().rev() {
        match hop.trim().parse::<IpAddr>() {
            Ok(ip) if is_trusted(&ip) => client = ip,
            Ok(ip) => return ip,
            // A garbled entry: trust nothing further left.
            Err(_) => return client,
        }
    }
    client
}

/// The cap on connections held at once, in all and per client address. Hosts take a
/// [`ConnectionSlot`] per accepted connection; when none is given they answer the client at
/// once and drop it. An address holds at most so many connections, and fewer that have not yet
/// sent a whole request ([`ConnectionSlot::settled`]); the last tenth of the cap is kept for
/// addresses holding few ([`roomcast_core::RESERVE_PERCENT`]), so one client filling the server
/// leaves room for everyone else. Reaching the cap is logged once per burst, with the count
/// refused when it ends.
#[derive(Debug)]
pub struct ConnectionLimit {
    max: usize,
    per_address: usize,
    fresh_per_address: usize,
    /// Addresses not counted per address (trusted proxies: their clients are many).
    exempt: Vec<IpNet>,
    open: AtomicUsize,
    /// Per address: connections held, and of them those that sent no whole request yet.
    addresses: Mutex<HashMap<Origin, (usize, usize)>>,
    refusing: AtomicBool,
    refused: AtomicU64,
}

/// Why a connection was not given a slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Turned {
    /// The server holds as many connections as it allows (or all but the reserve, and this
    /// address holds several).
    Full,
    /// This address holds as many as one address may.
    Address,
}

impl ConnectionLimit {
    /// A cap of `max` connections, none per address.
    pub fn new(max: usize) -> Self {
        ConnectionLimit {
            max: max.max(1),
            per_address: usize::MAX,
            fresh_per_address: usize::MAX,
            exempt: Vec::new(),
            open: AtomicUsize::new(0),
            addresses: Mutex::new(HashMap::new()),
            refusing: AtomicBool::new(false),
            refused: AtomicU64::new(0),
        }
    }

    /// With at most `open` connections per address, `fresh` of them without a whole request
    /// yet; `exempt` addresses (trusted proxies) are not counted.
    pub fn per_address(self, open: usize, fresh: usize, exempt: Vec<IpNet>) -> Self {
        ConnectionLimit {
            per_address: open.max(1),
            fresh_per_address: fresh.max(1),
            exempt,
            ..self
        }
    }

    fn addresses(&self) -> std::sync::MutexGuard<'_, HashMap<Origin, (usize, usize)>> {
        self.addresses
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A slot for one more connection from `peer`, or why not (counted as refused).
    pub fn try_open(self: &Arc<Self>, peer: IpAddr) -> Result<ConnectionSlot, Turned> {
        let origin =
            (!self.exempt.iter().any(|net| net.contains(&peer))).then(|| Origin::from(peer));
        let mut addresses = self.addresses();
        let (held, fresh) = origin
            .and_then(|o| addresses.get(&o).copied())
            .unwrap_or((0, 0));
        let turned = if held >= self.per_address || fresh >= self.fresh_per_address {
            Some(Turned::Address)
        } else {
            let taken = self
                .open
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |open| {
                    roomcast_core::Limits::may_take(self.max, open, held).then_some(open + 1)
                });
            taken.err().map(|_| Turned::Full)
        };
        if let Some(turned) = turned {
            drop(addresses);
            self.turned(turned);
            return Err(turned);
        }
        if let Some(origin) = origin {
            let counts = addresses.entry(origin).or_default();
            counts.0 += 1;
            counts.1 += 1;
        }
        Ok(ConnectionSlot {
            limit: Arc::clone(self),
            origin,
            fresh: true,
        })
    }

    fn turned(&self, turned: Turned) {
        let reason = match turned {
            Turned::Full => "full",
            Turned::Address => "address",
        };
        metrics::counter!("roomcast_connections_refused_total", "reason" => reason).increment(1);
        if turned == Turned::Address {
            return;
        }
        self.refused.fetch_add(1, Ordering::Relaxed);
        if !self.refusing.swap(true, Ordering::AcqRel) {
            tracing::warn!(
                max = self.max,
                "connection limit reached: turning new clients away until some leave (--max-connections)"
            );
        }
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Acquire)
    }

    /// Connections `peer`'s address holds now.
    pub fn held_by(&self, peer: IpAddr) -> usize {
        self.addresses()
            .get(&Origin::from(peer))
            .map_or(0, |(held, _)| *held)
    }

    fn close(&self, origin: Option<Origin>, fresh: bool) {
        if let Some(origin) = origin {
            let mut addresses = self.addresses();
            if let Some(counts) = addresses.get_mut(&origin) {
                counts.0 -= 1;
                counts.1 -= usize::from(fresh);
                if counts.0 == 0 {
                    addresses.remove(&origin);
                }
            }
        }
        let open = self.open.fetch_sub(1, Ordering::AcqRel) - 1;
        // The burst is over once a tenth of the cap is free again.
        if open <= self.max - self.max.div_ceil(10) && self.refusing.swap(false, Ordering::AcqRel) {
            let refused = self.refused.swap(0, Ordering::Relaxed);
            tracing::info!(refused, open, "below the connection limit again");
        }
    }
}

/// One connection's place under the cap, given back when dropped.
#[derive(Debug)]
pub struct ConnectionSlot {
    limit: Arc<ConnectionLimit>,
    origin: Option<Origin>,
    /// Not yet sent a whole request.
    fresh: bool,
}

impl ConnectionSlot {
    /// The connection sent a whole request: it no longer counts among its address's fresh
    /// ones.
    pub fn settled(&mut self) {
        if std::mem::take(&mut self.fresh)
            && let Some(origin) = self.origin
            && let Some(counts) = self.limit.addresses().get_mut(&origin)
        {
            counts.1 -= 1;
        }
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        self.limit.close(self.origin, self.fresh);
    }
}

/// Logs failures to accept once per burst (they come in floods when descriptors run out), and
/// says how long to pause before accepting again.
#[derive(Debug, Default)]
pub struct AcceptErrors {
    failing: bool,
    failed: u64,
}

impl AcceptErrors {
    /// Pause after a failed accept.
    pub const PAUSE: Duration = Duration::from_millis(50);

    /// Records a failure.
    pub fn failed(&mut self, error: &io::Error) {
        self.failed += 1;
        if !self.failing {
            self.failing = true;
            tracing::warn!(%error, "accept failed; pausing briefly between attempts");
        }
    }

    /// Records a success, logging the end of a burst of failures.
    pub fn accepted(&mut self) {
        if self.failing {
            self.failing = false;
            tracing::info!(failed = self.failed, "accepting again");
            self.failed = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwarded_addresses_count_only_behind_trusted_proxies() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        // Not behind a trusted proxy: the header is the client's own claim.
        assert_eq!(
            client_ip(ip("203.0.113.9"), ["1.2.3.4"].into_iter(), &trusted),
            ip("203.0.113.9")
        );
        // Behind one: the rightmost untrusted hop, not what the client wrote further left.
        assert_eq!(
            client_ip(
                ip("10.0.0.1"),
                ["6.6.6.6, 198.51.100.7"].into_iter(),
                &trusted
            ),
            ip("198.51.100.7")
        );
        assert_eq!(
            client_ip(
                ip("10.0.0.1"),
                ["198.51.100.7", "10.0.0.2"].into_iter(),
                &trusted
            ),
            ip("198.51.100.7")
        );
        assert_eq!(
            client_ip(ip("10.0.0.1"), ["garbage"].into_iter(), &trusted),
            ip("10.0.0.1")
        );
        assert_eq!(
            client_ip(ip("10.0.0.1"), std::iter::empty(), &trusted),
            ip("10.0.0.1")
        );
    }

    #[test]
    fn proxies_are_addresses_or_blocks() {
        assert_eq!(parse_net("127.0.0.1").unwrap().to_string(), "127.0.0.1/32");
        assert_eq!(parse_net(" 10.0.0.0/8").unwrap().to_string(), "10.0.0.0/8");
        assert!(parse_net("proxy.example").is_err());
    }

    #[test]
    fn the_cap_refuses_then_admits_again() {
        let limit = Arc::new(ConnectionLimit::new(2));
        let ip = IpAddr::from([127, 0, 0, 1]);
        let a = limit.try_open(ip).unwrap();
        let _b = limit.try_open(IpAddr::from([127, 0, 0, 2])).unwrap();
        assert_eq!(limit.try_open(ip).unwrap_err(), Turned::Full);
        drop(a);
        assert!(limit.try_open(ip).is_ok());
        assert_eq!(limit.open(), 1, "the new slot was dropped at once");
    }

    #[test]
    fn one_address_holds_a_bounded_share_and_the_reserve_is_kept() {
        let proxy: IpNet = "10.0.0.1/32".parse().unwrap();
        let limit = Arc::new(ConnectionLimit::new(40).per_address(8, 3, vec![proxy]));
        let attacker = IpAddr::from([192, 0, 2, 1]);
        let mut held: Vec<ConnectionSlot> =
            (0..3).map(|_| limit.try_open(attacker).unwrap()).collect();
        assert_eq!(
            limit.try_open(attacker).unwrap_err(),
            Turned::Address,
            "three that sent nothing yet"
        );
        for slot in &mut held {
            slot.settled();
        }
        for _ in 0..5 {
            let mut slot = limit.try_open(attacker).unwrap();
            slot.settled();
            held.push(slot);
        }
        assert_eq!(limit.held_by(attacker), 8);
        assert_eq!(limit.try_open(attacker).unwrap_err(), Turned::Address);
        // A trusted proxy's connections are its clients': not capped per address.
        held.extend((0..24).map(|_| limit.try_open(IpAddr::from([10, 0, 0, 1])).unwrap()));
        let heavy = IpAddr::from([192, 0, 2, 9]);
        for _ in 0..4 {
            let mut slot = limit.try_open(heavy).unwrap();
            slot.settled();
            held.push(slot);
        }
        assert_eq!(limit.open(), 36, "all but the reserve");
        assert_eq!(
            limit.try_open(heavy).unwrap_err(),
            Turned::Full,
            "the reserve is not for those holding several"
        );
        let victim = IpAddr::from([198, 51, 100, 7]);
        for _ in 0..4 {
            let mut slot = limit.try_open(victim).unwrap();
            slot.settled();
            held.push(slot);
        }
        assert_eq!(limit.try_open(victim).unwrap_err(), Turned::Full);
        drop(held);
        assert_eq!((limit.open(), limit.held_by(attacker)), (0, 0));
    }

    #[test]
    fn the_default_cap_leaves_room_for_files() {
        assert_eq!(default_cap(20_000), 19_000);
        assert_eq!(default_cap(1024), 960);
        assert!(default_cap(0) >= 1);
    }
}
