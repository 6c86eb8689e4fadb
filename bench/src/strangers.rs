//! G1: one guest at every limit at once. The guest takes all it can of each resource a stranger
//! can reach (rooms, uploads, read markers, streams, connections, reactions) until refused;
//! the server's memory, disk, connections, listeners, rooms and (with `--nodes`) Redis keys are
//! read before, at the limits, and after the guest is gone (signed out; with no grace, it
//! departs within seconds, and its unposted uploads go within their pending time, 20 s here). The run is
//! complete when every resource stopped at its configured bound and came back when the guest
//! went.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use crate::clients::{Kind, request};
use crate::outcome::Outcome;
use crate::target::Target;

/// The limits G1's server runs with (every other one at its default): a guest's share of each
/// is a quarter.
pub const FLAGS: &[&str] = &[
    "--guest-name-grace=0s",
    "--upload-pending-for=20s",
    "--max-files-bytes-per-user=128MiB",
    "--max-connections-per-address=256",
    "--max-fresh-connections-per-address=32",
];

/// What a guest may hold: a quarter of the defaults and of [`FLAGS`].
const ROOMS: usize = 25; // of --max-rooms-per-user 100
const LISTENERS: usize = 16; // of --max-user-listeners 64
const FILE_BYTES: u64 = 32 << 20; // of --max-files-bytes-per-user 128 MiB
const FRESH: usize = 32; // --max-fresh-connections-per-address
/// What the guest tries before giving up on a resource (each bounds the run).
const TRIES: usize = 400;
/// How long the scenario waits for the guest's leftovers to go (its uploads the longest).
const DEPART_WITHIN: Duration = Duration::from_secs(60);

/// What the server holds, read at one moment.
#[derive(Debug, Clone, Copy, Default)]
struct Reading {
    rss_kib: u64,
    disk_bytes: u64,
    connections: u64,
    listeners: u64,
    rooms: u64,
    redis_keys: Option<u64>,
}

impl Reading {
    fn json(&self) -> Value {
        json!({
            "rss_kib": self.rss_kib, "disk_bytes": self.disk_bytes,
            "connections": self.connections, "listeners": self.listeners, "rooms": self.rooms,
            "redis_keys": self.redis_keys,
        })
    }
}

/// Reads the server's gauges from `/metrics`, its memory and files, and Redis's key count.
async fn read(target: &Target) -> anyhow::Result<Reading> {
    // From another loopback address than the guest's, whose connections are at their limit.
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.bind(SocketAddr::from(([127, 0, 0, 2], 0)))?;
    let mut conn = BufReader::new(socket.connect(target.addr).await?);
    let (status, body) = request(&mut conn, "GET", "/metrics", "", None).await?;
    ensure!(status == 200, "GET /metrics: {status}");
    let text = String::from_utf8_lossy(&body);
    let sum = |name: &str| -> u64 {
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .filter(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{']))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>() as u64
    };
    let redis_keys = match target.redis {
        Some(redis) => Some(dbsize(redis).await?),
        None => None,
    };
    Ok(Reading {
        rss_kib: target.rss_kib().context("G1 needs the server's pid")?,
        disk_bytes: target.data_dir().map_or(0, dir_bytes),
        connections: sockets(target.pid.context("G1 needs the server's pid")?),
        listeners: sum("roomcast_listeners"),
        rooms: sum("roomcast_rooms"),
        redis_keys,
    })
}

/// The sockets a process holds open (its listener and the reading connection among them).
fn sockets(pid: u32) -> u64 {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .into_iter()
        .flatten()
        .flatten()
        .filter(|fd| {
            std::fs::read_link(fd.path())
                .is_ok_and(|target| target.to_string_lossy().starts_with("socket:"))
        })
        .count() as u64
}

/// Redis's key count.
async fn dbsize(redis: SocketAddr) -> anyhow::Result<u64> {
    let mut conn = TcpStream::connect(redis).await?;
    conn.write_all(b"DBSIZE\r\n").await?;
    let mut reply = [0u8; 64];
    let n = conn.read(&mut reply).await?;
    let reply = String::from_utf8_lossy(&reply[..n]);
    reply
        .trim()
        .trim_start_matches(':')
        .parse()
        .with_context(|| format!("DBSIZE said {reply:?}"))
}

/// Bytes of every file under `dir`, each file once however many names (hard links) it has.
fn dir_bytes(dir: &std::path::Path) -> u64 {
    fn walk(dir: &std::path::Path, seen: &mut std::collections::HashSet<(u64, u64)>) -> u64 {
        use std::os::unix::fs::MetadataExt;
        std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| match e.metadata() {
                Ok(m) if m.is_dir() => walk(&e.path(), seen),
                Ok(m) if seen.insert((m.dev(), m.ino())) => m.len(),
                Ok(_) | Err(_) => 0,
            })
            .sum()
    }
    walk(dir, &mut std::collections::HashSet::new())
}

/// One call as the guest on a connection of its own; the status and the body.
async fn call(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: &str,
    token: &str,
) -> anyhow::Result<(u16, Value)> {
    let mut conn = BufReader::new(TcpStream::connect(addr).await?);
    let (status, body) = request(&mut conn, method, path, body, Some(token)).await?;
    Ok((status, serde_json::from_slice(&body).unwrap_or(Value::Null)))
}

/// Rooms the host account makes for the guest to mark read and react in.
const HOSTED: usize = 30;

/// A token from `path` (register, guest) with `body`.
async fn sign_up(addr: SocketAddr, path: &str, body: Value) -> anyhow::Result<String> {
    let mut conn = BufReader::new(TcpStream::connect(addr).await?);
    let (status, answer) = request(&mut conn, "POST", path, &body.to_string(), None).await?;
    ensure!(status == 201, "{path}: {status}");
    let answer: Value = serde_json::from_slice(&answer)?;
    Ok(answer["token"].as_str().context("a token")?.to_owned())
}

/// Posts a message to `room`, waiting as the post rate tells.
async fn post_paced(addr: SocketAddr, room: &str, token: &str) -> anyhow::Result<()> {
    let path = format!("/api/v1/rooms/{room}/messages");
    for _ in 0..50 {
        let (status, answer) = call(
            addr,
            "POST",
            &path,
            &json!({"text": "hello"}).to_string(),
            token,
        )
        .await?;
        if status == 201 {
            return Ok(());
        }
        let wait = answer["retry_after_ms"].as_u64().unwrap_or(200);
        tokio::time::sleep(Duration::from_millis(wait)).await;
    }
    anyhow::bail!("cannot post to {room}")
}

/// Uploads `bytes` to `room` as `token`; the status and the answer. A server that refuses
/// before reading the body answers at once and closes: its answer is read even so.
async fn upload(
    addr: SocketAddr,
    room: &str,
    bytes: &[u8],
    token: &str,
) -> anyhow::Result<(u16, Value)> {
    let mut conn = TcpStream::connect(addr).await?;
    let head = format!(
        "POST /api/v1/rooms/{room}/attachments?name=big.bin HTTP/1.1\r\nHost: bench\r\n\
         Authorization: Bearer {token}\r\nContent-Type: application/octet-stream\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        bytes.len()
    );
    conn.write_all(head.as_bytes()).await?;
    let _ = conn.write_all(bytes).await;
    let mut answer = Vec::new();
    let _ = conn.read_to_end(&mut answer).await;
    let text = String::from_utf8_lossy(&answer);
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .context("an answer to the upload")?;
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    Ok((status, serde_json::from_str(body).unwrap_or(Value::Null)))
}

/// Runs G1 on a roomcast-smol `target` started with [`FLAGS`].
pub async fn guest_at_every_limit(target: &Target) -> anyhow::Result<Outcome> {
    ensure!(
        matches!(target.kind, Kind::Sse | Kind::Ws),
        "G1 runs against roomcast-smol (sse or ws)"
    );
    let addr = target.addr;
    // A host account's rooms, each with a message: where the guest marks read and reacts.
    let host = sign_up(
        addr,
        "/api/v1/auth/register",
        json!({"name": "g1-host", "password": "the host's password"}),
    )
    .await?;
    let mut hosted = Vec::new();
    for i in 0..HOSTED {
        let room = format!("g1-hall-{i}");
        let (status, _) = call(
            addr,
            "POST",
            "/api/v1/rooms",
            &json!({"room": room}).to_string(),
            &host,
        )
        .await?;
        ensure!(status == 201, "the host's room {room}: {status}");
        post_paced(addr, &room, &host).await?;
        hosted.push(room);
    }
    let before = read(target).await?;
    let started = Instant::now();
    let token = sign_up(addr, "/api/v1/auth/guest", json!({"nickname": "intruder"})).await?;
    let mut refused: Vec<(String, String)> = Vec::new();
    let note = |refused: &mut Vec<(String, String)>, what: &str, answer: &Value| {
        refused.push((
            what.to_owned(),
            answer["code"].as_str().unwrap_or("-").to_owned(),
        ));
    };

    // Rooms, until refused.
    let mut rooms = Vec::new();
    for i in 0..TRIES {
        let room = format!("g1-{i}");
        let (status, answer) = call(
            addr,
            "POST",
            "/api/v1/rooms",
            &json!({"room": room}).to_string(),
            &token,
        )
        .await?;
        if status != 201 {
            note(&mut refused, "rooms", &answer);
            break;
        }
        rooms.push(room);
    }
    ensure!(!rooms.is_empty(), "the guest created no room at all");
    // A read marker in each of the host's rooms, until refused (each a step of the read pace).
    let mut markers = 0;
    for room in &hosted {
        let read = format!("/api/v1/rooms/{room}/read");
        let (status, answer) =
            call(addr, "PUT", &read, &json!({"seq": 1}).to_string(), &token).await?;
        if status == 200 {
            markers += 1;
        } else {
            note(&mut refused, "read markers", &answer);
            break;
        }
    }
    // Reactions toggled on one message for two seconds: each toggle an entry at the post rate,
    // none pushing a message out of memory.
    let reaction = format!(
        "/api/v1/rooms/{}/messages/1/reactions/%F0%9F%91%8D",
        hosted[0]
    );
    let (mut toggles, mut adding) = (0, true);
    let toggling = Instant::now();
    while toggling.elapsed() < Duration::from_secs(2) {
        let method = if adding { "PUT" } else { "DELETE" };
        let (status, _) = call(addr, method, &reaction, "", &token).await?;
        if status == 201 {
            toggles += 1;
            adding = !adding;
        } else {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    // Uploads of 10 MiB, never posted, until refused.
    let mut uploaded = 0u64;
    let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
    for _ in 0..TRIES {
        // Each file its own bytes: kept apart, not once by content.
        let file: Vec<u8> = (0..(10 << 20) / 8)
            .flat_map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                seed.to_le_bytes()
            })
            .collect();
        let (status, answer) = upload(addr, &rooms[0], &file, &token).await?;
        if status != 201 {
            note(&mut refused, "uploads", &answer);
            break;
        }
        uploaded += answer["size"].as_u64().unwrap_or(0);
    }
    // Event streams across its rooms, until refused.
    let mut streams = Vec::new();
    for i in 0..TRIES {
        let room = &rooms[i % rooms.len()];
        let mut stream = TcpStream::connect(addr).await?;
        let ask = format!(
            "GET /api/v1/rooms/{room}/events HTTP/1.1\r\nHost: bench\r\nAccept: text/event-stream\r\nAuthorization: Bearer {token}\r\n\r\n"
        );
        stream.write_all(ask.as_bytes()).await?;
        let mut head = [0u8; 12];
        stream.read_exact(&mut head).await?;
        if !head.starts_with(b"HTTP/1.1 200") {
            refused.push((
                "listeners".into(),
                String::from_utf8_lossy(&head).into_owned(),
            ));
            break;
        }
        streams.push(stream);
    }
    // Connections that send nothing, until the server stops taking them.
    let mut silent = Vec::new();
    for _ in 0..TRIES {
        let mut conn = TcpStream::connect(addr).await?;
        // A refused one is answered (429) and closed at once; a held one says nothing.
        let mut answer = [0u8; 512];
        match tokio::time::timeout(Duration::from_millis(100), conn.read(&mut answer)).await {
            Err(_) => silent.push(conn),
            Ok(read) => {
                let said = String::from_utf8_lossy(&answer[..read.unwrap_or(0)]).into_owned();
                let code = said
                    .split("\"code\":\"")
                    .nth(1)
                    .and_then(|rest| rest.split('"').next())
                    .unwrap_or("closed")
                    .to_owned();
                refused.push(("connections".into(), code));
                break;
            }
        }
    }
    // A refusal slower than the wait above (the server busy) is no held connection: look
    // again, now that the server has had time to answer each.
    let mut held_silent = Vec::new();
    for mut conn in silent {
        let mut byte = [0u8; 1];
        if tokio::time::timeout(Duration::from_millis(20), conn.read(&mut byte))
            .await
            .is_err()
        {
            held_silent.push(conn);
        }
    }
    let silent = held_silent;
    let at = read(target).await?;

    // The guest goes: its sockets closed, then signed out (no grace).
    let held = streams.len();
    let silent_held = silent.len();
    drop(streams);
    drop(silent);
    let signed_out = loop {
        let (status, _) = call(addr, "POST", "/api/v1/auth/sign-out", "", &token).await?;
        // Its silent connections may take a moment to be let go.
        if status != 429 || started.elapsed() > Duration::from_secs(60) {
            break status;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    ensure!(signed_out < 300, "sign-out: {signed_out}");
    let deadline = Instant::now() + DEPART_WITHIN;
    let after = loop {
        let now = read(target).await?;
        let gone = now.rooms <= before.rooms
            && now.listeners <= before.listeners
            && now.connections <= before.connections
            && now.disk_bytes < before.disk_bytes + FILE_BYTES / 4;
        if gone || Instant::now() > deadline {
            break now;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let seconds = started.elapsed().as_secs_f64();

    let bounded = rooms.len() <= ROOMS
        && held <= LISTENERS
        && streams_len_ok(at.listeners, before.listeners)
        && uploaded <= FILE_BYTES
        && silent_held <= FRESH
        && (at.connections.saturating_sub(before.connections)) as usize <= LISTENERS + FRESH + 2;
    let returned = after.rooms <= before.rooms
        && after.listeners <= before.listeners
        && after.connections <= before.connections
        && after.disk_bytes < before.disk_bytes + FILE_BYTES / 4;
    let complete = bounded && returned;
    let kib = |r: &Reading| r.rss_kib;
    let row = [
        "G1".into(),
        target.kind.name().into(),
        "one guest at every limit".into(),
        format!(
            "{} rooms, {} markers, {} toggles, {} MiB kept, {} streams, {} silent connections",
            rooms.len(),
            markers,
            toggles,
            uploaded >> 20,
            held,
            silent_held,
        ),
        "".into(),
        "".into(),
        "".into(),
        format!(
            "RSS {} → {} → {} KiB; disk {} → {} → {} KiB; sockets {} → {} → {}; listeners {} → {} → {}; rooms {} → {} → {}{}; {}",
            kib(&before),
            kib(&at),
            kib(&after),
            before.disk_bytes >> 10,
            at.disk_bytes >> 10,
            after.disk_bytes >> 10,
            before.connections,
            at.connections,
            after.connections,
            before.listeners,
            at.listeners,
            after.listeners,
            before.rooms,
            at.rooms,
            after.rooms,
            match (before.redis_keys, at.redis_keys, after.redis_keys) {
                (Some(b), Some(a), Some(c)) => format!("; Redis keys {b} → {a} → {c}"),
                _ => String::new(),
            },
            if complete {
                "bounded and returned"
            } else {
                "NOT bounded or returned"
            },
        ),
    ];
    Ok(Outcome {
        row,
        complete,
        json: json!({
            "scenario": "G1", "target": target.kind.name(), "seconds": seconds,
            "before": before.json(), "at_limits": at.json(), "after": after.json(),
            "rooms_created": rooms.len(), "markers": markers, "toggles": toggles,
            "uploaded_bytes": uploaded, "streams": held, "silent_connections": silent_held,
            "refused": refused, "bounded": bounded,
            "returned": returned,
        }),
    })
}

/// Whether the guest's streams stayed within its share.
fn streams_len_ok(at: u64, before: u64) -> bool {
    (at.saturating_sub(before)) as usize <= LISTENERS
}
