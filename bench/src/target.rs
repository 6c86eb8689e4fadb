//! The server under test: started by the generator as its own process (so the two never share
//! one process's open-file limit), or one already running, given by address.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::clients::Kind;

/// How long roomcast servers the generator starts keep an idle room's messages in memory
/// (`--room-unload-after`), so M3 finds its rooms cold without waiting ten minutes.
pub const UNLOAD_AFTER_SECONDS: u64 = 3;

/// A server to measure.
pub struct Target {
    /// What it is and how to talk to it.
    pub kind: Kind,
    /// Where it listens (loopback).
    pub addr: SocketAddr,
    /// Where publishers connect: `addr`, or with several nodes another node than the
    /// listeners', so every delivery crosses Redis.
    pub publish_addr: SocketAddr,
    /// With several nodes: Redis and the other nodes, stopped with this one.
    others: Vec<Child>,
    /// With several nodes: where their Redis listens.
    pub redis: Option<SocketAddr>,
    /// Its process, to read its memory.
    pub pid: Option<u32>,
    child: Option<Child>,
    _data: Option<tempfile::TempDir>,
}

/// Where the Socket.IO peer lives.
pub fn socketio_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("peers/socketio")
}

/// Whether the Socket.IO peer can run (its `npm ci` has been done).
pub fn socketio_installed() -> bool {
    socketio_dir().join("node_modules/socket.io").is_dir()
}

impl Target {
    /// A server already running at `addr` (with `pid`, memory can be read).
    pub fn attach(kind: Kind, addr: SocketAddr, pid: Option<u32>) -> Target {
        Target {
            kind,
            addr,
            publish_addr: addr,
            others: Vec::new(),
            redis: None,
            pid,
            child: None,
            _data: None,
        }
    }

    /// Where the server keeps its data, if the generator made it a data dir.
    pub fn data_dir(&self) -> Option<&Path> {
        self._data.as_ref().map(tempfile::TempDir::path)
    }

    /// Starts the server for `kind` on a free loopback port: roomcast binaries from `bin_dir`
    /// (in memory unless `durable`), the Socket.IO peer with node, or the floor writer (this
    /// binary's `floor-server`). Returns once it accepts connections. With
    /// `nodes` above 1, a `redis-server` and that many roomcast nodes sharing rooms through it
    /// (listeners on the first, publishers on the last).
    /// With `extra` flags for roomcast, and with `relaxed`, rate limits and the limits per
    /// user and per address off (where the binary has them: builds from before lack them).
    pub fn spawn_with(
        kind: Kind,
        bin_dir: &Path,
        durable: bool,
        nodes: usize,
        extra: &[String],
        relaxed: bool,
    ) -> anyhow::Result<Target> {
        if nodes > 1 {
            return Target::spawn_cluster(kind, bin_dir, nodes, durable, extra, relaxed);
        }
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        crate::clients::forget_tokens(addr);
        let mut data = None;
        let command = match kind {
            Kind::Sse | Kind::Ws | Kind::Grpc => {
                let bin = if kind == Kind::Grpc {
                    "roomcast-tokio"
                } else {
                    "roomcast-smol"
                };
                let path = bin_dir.join(bin);
                let mut command = Command::new(&path);
                command.args([
                    "--listen",
                    &addr.to_string(),
                    "--max-listeners-per-room=20000",
                    "--max-rooms=200000",
                ]);
                if relaxed {
                    command.arg("--rate-burst=0");
                }
                // Every client signs up from this one address. (Builds from before the
                // sign-up limit lack the flag; asking keeps them comparable.)
                if relaxed && knows_flag(&path, "--sign-up-burst") {
                    command.arg("--sign-up-burst=0");
                }
                // M3 waits for idle rooms to go cold (builds from before have no such flag).
                if knows_flag(&path, "--room-unload-after") {
                    command.arg(format!("--room-unload-after={}s", UNLOAD_AFTER_SECONDS));
                }
                if durable {
                    let dir = tempfile::tempdir()?;
                    command.arg("--data-dir").arg(dir.path());
                    data = Some(dir);
                } else {
                    command.arg("--in-memory");
                }
                if relaxed && knows_flag(&path, "--max-user-listeners") {
                    command.args(RELAXED);
                }
                command.args(extra);
                command.env("RUST_LOG", "warn");
                command
            }
            Kind::Socketio => {
                if !socketio_installed() {
                    bail!(
                        "the Socket.IO peer is not installed: run `npm ci` in {}",
                        socketio_dir().display()
                    );
                }
                let mut command = Command::new("node");
                command
                    .arg(socketio_dir().join("server.js"))
                    .arg(port.to_string());
                command
            }
            Kind::Floor => {
                let mut command = Command::new(std::env::current_exe()?);
                command.args(["floor-server", "--listen", &addr.to_string()]);
                command
            }
        };
        let child = launch(command, kind)?;
        let target = Target {
            kind,
            addr,
            publish_addr: addr,
            others: Vec::new(),
            redis: None,
            pid: Some(child.id()),
            child: Some(child),
            _data: data,
        };
        wait_listening(kind, addr)?;
        Ok(target)
    }

    /// A `redis-server` (appendonly, fsync every second) and `nodes` roomcast nodes on it,
    /// each with a data dir of its own under Redis's if `durable`.
    fn spawn_cluster(
        kind: Kind,
        bin_dir: &Path,
        nodes: usize,
        durable: bool,
        extra: &[String],
        relaxed: bool,
    ) -> anyhow::Result<Target> {
        if kind == Kind::Floor {
            bail!("--nodes is for roomcast and the Socket.IO peer");
        }
        if kind == Kind::Socketio && !socketio_installed() {
            bail!(
                "the Socket.IO peer is not installed: run `npm ci` in {}",
                socketio_dir().display()
            );
        }
        let free = || -> anyhow::Result<SocketAddr> {
            let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
            Ok(SocketAddr::from(([127, 0, 0, 1], port)))
        };
        let dir = tempfile::tempdir()?;
        let redis_addr = free()?;
        let redis = Command::new("redis-server")
            .args([
                "--port",
                &redis_addr.port().to_string(),
                "--bind",
                "127.0.0.1",
            ])
            .arg("--dir")
            .arg(dir.path())
            .args([
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "everysec",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .context("cannot start redis-server (apt-get install redis-server)")?;
        let mut others = vec![redis];
        wait_listening(kind, redis_addr)?;
        let mut addrs = Vec::new();
        let mut first = None;
        for n in 0..nodes {
            let addr = free()?;
            crate::clients::forget_tokens(addr);
            let redis_url = format!("redis://{redis_addr}");
            let command = match kind {
                // Socket.IO 4 with @socket.io/redis-adapter: the peer on as many nodes.
                Kind::Socketio => {
                    let mut command = Command::new("node");
                    command
                        .arg(socketio_dir().join("server.js"))
                        .arg(addr.port().to_string())
                        .env("REDIS_URL", &redis_url);
                    command
                }
                Kind::Sse | Kind::Ws | Kind::Grpc | Kind::Floor => {
                    let bin = if kind == Kind::Grpc {
                        "roomcast-tokio"
                    } else {
                        "roomcast-smol"
                    };
                    let path = bin_dir.join(bin);
                    let mut command = Command::new(&path);
                    if relaxed && knows_flag(&path, "--max-user-listeners") {
                        command.args(RELAXED);
                    }
                    if relaxed {
                        command.args(["--rate-burst=0", "--sign-up-burst=0"]);
                    }
                    if durable {
                        let data = dir.path().join(format!("node{n}"));
                        command.arg("--data-dir").arg(data);
                    } else {
                        command.arg("--in-memory");
                    }
                    command.args(extra);
                    command
                        .args(["--listen", &addr.to_string()])
                        .args(["--max-listeners-per-room=20000", "--max-rooms=200000"])
                        .args(["--redis", &redis_url])
                        .args(["--node-id", &format!("load{n}")])
                        .args([
                            "--jwt-secret",
                            "roomcast-load's secret for its test cluster",
                        ])
                        .env("RUST_LOG", "warn");
                    command
                }
            };
            let child = launch(command, kind)?;
            wait_listening(kind, addr)?;
            addrs.push(addr);
            match first {
                None => first = Some(child),
                Some(_) => others.push(child),
            }
        }
        let child = first.context("at least one node")?;
        Ok(Target {
            kind,
            addr: addrs[0],
            publish_addr: addrs[addrs.len() - 1],
            redis: Some(redis_addr),
            others,
            pid: Some(child.id()),
            child: Some(child),
            _data: Some(dir),
        })
    }

    /// The server's resident memory, in KiB.
    pub fn rss_kib(&self) -> Option<u64> {
        rss_kib(self.pid?)
    }
}

impl Target {
    /// CPU time the server has used so far (user and system), in seconds.
    pub fn cpu_seconds(&self) -> Option<f64> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid?)).ok()?;
        // Fields after the command name, which is in parentheses and may hold spaces.
        let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
        let ticks: u64 =
            fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
        // The kernel's USER_HZ is 100 on Linux.
        Some(ticks as f64 / 100.0)
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        for child in self.child.iter_mut().chain(self.others.iter_mut().rev()) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The limits per user and per address turned off: the throughput scenarios sign every client
/// up from one address and open thousands of streams, as no single stranger may.
const RELAXED: &[&str] = &[
    "--max-connections-per-address=1000000",
    "--max-fresh-connections-per-address=1000000",
    "--max-user-listeners=1000000",
    "--max-rooms-per-user=1000000",
    "--room-rate=0/1s",
    "--upload-rate=0/1s",
    "--read-rate=0/1s",
];

/// Starts a server process, its output discarded.
fn launch(mut command: Command, kind: Kind) -> anyhow::Result<Child> {
    command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .with_context(|| format!("cannot start the {} server", kind.name()))
}

/// Waits until `addr` accepts connections (30 s at most).
fn wait_listening(kind: Kind, addr: SocketAddr) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(addr).is_err() {
        if Instant::now() > deadline {
            bail!(
                "the {} server did not listen on {addr} within 30 s",
                kind.name()
            );
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    Ok(())
}

/// Whether the server binary at `path` takes `flag` (from its `--help`).
fn knows_flag(path: &Path, flag: &str) -> bool {
    Command::new(path)
        .arg("--help")
        .output()
        .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).contains(flag))
}

/// A process's resident memory, in KiB.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Whether the server (listening on `server_port`) still holds the connection from local port
/// `port`, from the server side's row in `/proc/net/tcp` (the client's own side cannot tell: a
/// stalled client's full window keeps the server's FIN from reaching it). `None` once the row is
/// gone. Both ports are matched: rows left in TIME_WAIT by an earlier run's connections may
/// carry the same client port.
pub fn established(server_port: u16, port: u16) -> Option<bool> {
    let table = std::fs::read_to_string("/proc/net/tcp").ok()?;
    let (local, remote) = (format!(":{server_port:04X}"), format!(":{port:04X}"));
    table.lines().skip(1).find_map(|line| {
        let mut fields = line.split_whitespace();
        let (_, local_addr, remote_addr, state) = (
            fields.next()?,
            fields.next()?,
            fields.next()?,
            fields.next()?,
        );
        (local_addr.ends_with(&local) && remote_addr.ends_with(&remote)).then_some(state == "01")
    })
}
