//! What both hosts do at the edge before a request is read: raise the open-file limit, listen
//! with a deep backlog, cap the connections held at once (answering the rest at once, and
//! logging once per burst), and tell which address a client really has behind a proxy.

use std::io;
use std::net::{IpAddr, SocketAddr, TcpListener};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use ipnet::IpNet;

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
    /// would share its address's limits.
    #[arg(long, env = "ROOMCAST_TRUSTED_PROXIES", value_delimiter = ',', value_parser = parse_net)]
    pub trusted_proxies: Vec<IpNet>,
}

impl EdgeArgs {
    /// Raises the open-file limit, listens on `addr`, and sizes the connection cap.
    pub fn listen(&self, addr: SocketAddr) -> io::Result<(TcpListener, Arc<ConnectionLimit>)> {
        let files = raise_open_files();
        let max = self.max_connections.unwrap_or_else(|| default_cap(files));
        tracing::info!(open_files = files, "connections at most {max}");
        let listener = bind(addr, self.listen_backlog)?;
        Ok((listener, Arc::new(ConnectionLimit::new(max))))
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

/// The cap on connections held at once. Hosts take a [`ConnectionSlot`] per accepted
/// connection; when none is left they answer the client at once and drop it. Reaching the cap
/// is logged once per burst, with the count refused when it ends.
#[derive(Debug)]
pub struct ConnectionLimit {
    max: usize,
    open: AtomicUsize,
    refusing: AtomicBool,
    refused: AtomicU64,
}

impl ConnectionLimit {
    /// A cap of `max` connections.
    pub fn new(max: usize) -> Self {
        ConnectionLimit {
            max: max.max(1),
            open: AtomicUsize::new(0),
            refusing: AtomicBool::new(false),
            refused: AtomicU64::new(0),
        }
    }

    /// A slot for one more connection, or `None` at the cap (counted as refused).
    pub fn try_open(self: &Arc<Self>) -> Option<ConnectionSlot> {
        let taken = self
            .open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |open| {
                (open < self.max).then_some(open + 1)
            });
        if taken.is_ok() {
            return Some(ConnectionSlot(Arc::clone(self)));
        }
        self.refused.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("roomcast_connections_refused_total").increment(1);
        if !self.refusing.swap(true, Ordering::AcqRel) {
            tracing::warn!(
                max = self.max,
                "connection limit reached: turning new clients away until some leave (--max-connections)"
            );
        }
        None
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Acquire)
    }

    fn close(&self) {
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
pub struct ConnectionSlot(Arc<ConnectionLimit>);

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        self.0.close();
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
        let a = limit.try_open().unwrap();
        let _b = limit.try_open().unwrap();
        assert!(limit.try_open().is_none());
        drop(a);
        assert!(limit.try_open().is_some());
        assert_eq!(limit.open(), 1, "the new slot was dropped at once");
    }

    #[test]
    fn the_default_cap_leaves_room_for_files() {
        assert_eq!(default_cap(20_000), 19_000);
        assert_eq!(default_cap(1024), 960);
        assert!(default_cap(0) >= 1);
    }
}
