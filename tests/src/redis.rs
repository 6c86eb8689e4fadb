//! A real `redis-server` (Debian's) for the tests that share rooms between nodes: each test
//! starts its own on a free loopback port with its own dir, and stops it by its process id.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::PATIENCE;

/// A running `redis-server`.
pub struct Redis {
    child: Child,
    /// Where it listens.
    pub addr: SocketAddr,
    dir: tempfile::TempDir,
    args: Vec<String>,
}

/// Whether `redis-server` can be run here. Without it, tests that need it say so and pass on a
/// developer's machine; under CI (`CI` set, where `.ci/run` installs it) they fail.
/// The token secret every node of a test cluster is given.
pub const CLUSTER_SECRET: &str = "a shared secret every node of the test cluster is given";

/// Flags for a node of a test cluster on the Redis at `url` (posting unthrottled), then `extra`.
pub fn node_args<'a>(url: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "--redis",
        url,
        "--jwt-secret",
        CLUSTER_SECRET,
        "--rate-burst=0",
    ];
    args.extend_from_slice(extra);
    args
}

pub fn available() -> bool {
    let found = Command::new("redis-server")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    crate::installed(found, "redis-server (apt-get install redis-server)")
}

impl Redis {
    /// Starts one with these extra settings (e.g. `--appendonly yes`).
    pub fn start(extra: &[&str]) -> Redis {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let dir = tempfile::tempdir().expect("a dir for redis");
        let args: Vec<String> = extra.iter().map(|a| (*a).to_owned()).collect();
        let child = spawn(port, &dir.path().to_path_buf(), &args);
        let redis = Redis {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            dir,
            args,
        };
        redis.wait_ready();
        redis
    }

    /// The URL nodes are given.
    pub fn url(&self) -> String {
        format!("redis://{}", self.addr)
    }

    /// Runs one command (inline protocol) and returns the reply's first line.
    pub fn cmd(&self, command: &str) -> String {
        let stream = TcpStream::connect(self.addr).expect("connect to redis");
        stream.set_read_timeout(Some(PATIENCE)).expect("timeout");
        (&stream)
            .write_all(format!("{command}\r\n").as_bytes())
            .expect("send");
        let mut line = String::new();
        BufReader::new(stream).read_line(&mut line).expect("reply");
        line.trim_end().to_owned()
    }

    /// Kills it (SIGKILL) and starts it again on the same port and dir, with the same settings.
    pub fn kill_and_restart(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.child = spawn(self.addr.port(), &self.dir.path().to_path_buf(), &self.args);
        self.wait_ready();
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + PATIENCE;
        while Instant::now() < deadline {
            if TcpStream::connect(self.addr).is_ok() && self.cmd("PING") == "+PONG" {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("redis-server did not start on {}", self.addr);
    }
}

fn spawn(port: u16, dir: &PathBuf, extra: &[String]) -> Child {
    Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .arg("--dir")
        .arg(dir)
        .args(["--save", "", "--protected-mode", "no"])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start redis-server")
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A Redis Cluster of `masters` `redis-server`s on one machine (no replicas), made with
/// `redis-cli --cluster create`, each on a free loopback port with its own dir.
pub struct RedisCluster {
    /// Its members; the first is the seed nodes are given.
    pub nodes: Vec<Redis>,
}

impl RedisCluster {
    /// Starts the servers and joins them, waiting until the cluster says `cluster_state:ok`.
    pub fn start(masters: usize) -> RedisCluster {
        let nodes: Vec<Redis> = (0..masters)
            .map(|_| {
                Redis::start(&[
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                    "--cluster-node-timeout",
                    "5000",
                ])
            })
            .collect();
        let status = Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(nodes.iter().map(|n| n.addr.to_string()))
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("redis-cli (apt-get install redis-tools)");
        assert!(status.success(), "redis-cli --cluster create failed");
        let deadline = Instant::now() + PATIENCE;
        for node in &nodes {
            loop {
                let info = Command::new("redis-cli")
                    .args(["-p", &node.addr.port().to_string(), "cluster", "info"])
                    .output()
                    .expect("redis-cli");
                if String::from_utf8_lossy(&info.stdout).contains("cluster_state:ok") {
                    break;
                }
                assert!(Instant::now() < deadline, "the cluster did not become ok");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        RedisCluster { nodes }
    }

    /// The seed URL nodes are given (with `--redis-cluster`).
    pub fn url(&self) -> String {
        self.nodes[0].url()
    }
}

/// A TCP proxy in front of a Redis that can freeze connections: what Redis sends on them stops
/// arriving, the sockets stay open. This is how a wedged pub/sub subscriber looks to a client
/// (centrifugo#1189): publishes succeed, nothing comes back. It can also hold every byte, both
/// ways, for a while: a node behind a slow link hears of every entry late.
pub struct Proxy {
    /// Where clients connect.
    pub addr: SocketAddr,
    state: std::sync::Arc<ProxyState>,
}

#[derive(Default)]
struct ProxyState {
    /// Connections accepted so far.
    accepted: std::sync::atomic::AtomicUsize,
    /// Connections frozen, by their order of arrival.
    frozen: std::sync::Mutex<std::collections::BTreeSet<usize>>,
    /// New connections are frozen too.
    freeze_new: std::sync::atomic::AtomicBool,
}

impl Proxy {
    /// Forwards to `upstream` until dropped (its threads end with their sockets).
    pub fn start(upstream: SocketAddr) -> Proxy {
        Proxy::lagging(upstream, Duration::ZERO)
    }

    /// Forwards to `upstream`, each byte `lag` after it arrived, both ways.
    pub fn lagging(upstream: SocketAddr, lag: Duration) -> Proxy {
        use std::sync::atomic::Ordering;
        let listener = TcpListener::bind("127.0.0.1:0").expect("a proxy port");
        let addr = listener.local_addr().expect("its address");
        let state = std::sync::Arc::new(ProxyState::default());
        let shared = state.clone();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { break };
                let Ok(server) = TcpStream::connect(upstream) else {
                    break;
                };
                let n = shared.accepted.fetch_add(1, Ordering::SeqCst);
                if shared.freeze_new.load(Ordering::SeqCst) {
                    shared.frozen.lock().expect("not poisoned").insert(n);
                }
                let (c_read, s_write) = (
                    client.try_clone().expect("clone"),
                    server.try_clone().expect("clone"),
                );
                forward(c_read, s_write, lag, || false);
                let state = shared.clone();
                // A frozen connection swallows what Redis says.
                forward(server, client, lag, move || {
                    state.frozen.lock().expect("not poisoned").contains(&n)
                });
            }
        });
        Proxy { addr, state }
    }

    /// The URL clients are given.
    pub fn url(&self) -> String {
        format!("redis://{}", self.addr)
    }

    /// Freezes the connection that arrived `n`th (from 0), and every new one while `new` holds.
    pub fn freeze(&self, n: usize, new: bool) {
        use std::sync::atomic::Ordering;
        self.state.frozen.lock().expect("not poisoned").insert(n);
        self.state.freeze_new.store(new, Ordering::SeqCst);
    }

    /// Lets new connections through again (frozen ones stay frozen).
    pub fn thaw_new(&self) {
        self.state
            .freeze_new
            .store(false, std::sync::atomic::Ordering::SeqCst);
    }
}

/// Copies what `from` says to `to`, each chunk `lag` after it was read (a queue between two
/// threads, so lags do not add up), dropping chunks while `frozen`; ends with either socket.
fn forward(
    mut from: TcpStream,
    mut to: TcpStream,
    lag: Duration,
    frozen: impl Fn() -> bool + Send + 'static,
) {
    let (tx, rx) = std::sync::mpsc::channel::<(Instant, Vec<u8>)>();
    std::thread::spawn(move || {
        let mut buf = [0u8; 16 * 1024];
        while let Ok(read @ 1..) = std::io::Read::read(&mut from, &mut buf) {
            if !frozen()
                && tx
                    .send((Instant::now() + lag, buf[..read].to_vec()))
                    .is_err()
            {
                break;
            }
        }
    });
    std::thread::spawn(move || {
        for (due, bytes) in rx {
            std::thread::sleep(due.saturating_duration_since(Instant::now()));
            if to.write_all(&bytes).is_err() {
                break;
            }
        }
        let _ = to.shutdown(std::net::Shutdown::Write);
    });
}
