//! Durable history through the real binaries: acknowledged messages survive SIGKILL, numbering
//! continues, listeners resume exactly across a restart, both hosts share one data dir, and a
//! data dir that cannot be used is refused with one line that says why.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use roomcast_e2e::grpc::{as_user, client, create, next_seq, open, submit};
use roomcast_e2e::{
    PATIENCE, Server, SseStream, create_room, get, guest_token, refused_start, say,
};
use roomcast_proto::v1 as pb;
use serde_json::{Value, json};

fn dir_flag(dir: &Path) -> String {
    format!("--data-dir={}", dir.display())
}

/// Flags for a server on `dir`, without rate limits, plus `extra`.
fn on_dir(dir: &Path, extra: &[&str]) -> Vec<String> {
    let mut flags = vec![dir_flag(dir), "--rate-burst=0".to_owned()];
    flags.extend(extra.iter().map(|f| (*f).to_owned()));
    flags
}

fn strs(flags: &[String]) -> Vec<&str> {
    flags.iter().map(String::as_str).collect()
}

/// The sequence numbers on a history page.
fn page_seqs(page: &Value) -> Vec<u64> {
    page["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .map(|m| m["seq"].as_u64().expect("seq"))
        .collect()
}

/// Creates `room` and posts `m1` ..= `m{n}` to it.
fn fill_room(server: &Server, room: &str, n: u64) {
    create_room(server, room);
    for i in 1..=n {
        assert_eq!(say(server, room, "ada", &format!("m{i}"))["seq"], i);
    }
}

/// Posts `tag-0`, `tag-1`, ... until the server stops answering (or `stop`); returns what was
/// acknowledged as `(seq, text)`.
fn submit_until_gone(
    token: String,
    url: String,
    tag: String,
    stop: Arc<AtomicBool>,
    acks: Arc<AtomicUsize>,
) -> Vec<(u64, String)> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(PATIENCE))
        .http_status_as_error(false)
        .build()
        .into();
    let mut acked = Vec::new();
    for i in 0.. {
        if stop.load(Ordering::SeqCst) {
            break;
        }
        let text = format!("{tag}-{i}");
        let sent = agent
            .post(&url)
            .header("Content-Type", "application/json")
            .header("Authorization", format!("Bearer {token}"))
            .send(json!({"text": text}).to_string());
        let Ok(mut res) = sent else { break };
        // A connection cut mid-answer is not an acknowledgement.
        let Ok(body) = res.body_mut().read_to_string() else {
            break;
        };
        assert_eq!(res.status(), 201, "{body}");
        let seq = serde_json::from_str::<Value>(&body).expect("JSON")["seq"]
            .as_u64()
            .expect("a seq");
        acked.push((seq, text));
        acks.fetch_add(1, Ordering::SeqCst);
    }
    acked
}

/// Every message of `room`, paging forward from the start; asserts the numbering is contiguous.
fn whole_history(server: &Server, room: &str) -> Vec<(u64, String)> {
    let mut all = Vec::new();
    loop {
        let after = all.len();
        let page = get(&server.url(&format!(
            "/api/v1/rooms/{room}/messages?after={after}&limit=500"
        )));
        assert_eq!(page.status, 200, "{}", page.body);
        let page = page.json();
        assert!(page["gap"].is_null(), "nothing is missing: {page}");
        let messages = page["messages"].as_array().expect("messages");
        for m in messages {
            let seq = m["seq"].as_u64().unwrap();
            assert_eq!(seq, all.len() as u64 + 1, "contiguous numbering");
            all.push((seq, m["text"].as_str().unwrap().to_owned()));
        }
        if messages.is_empty() || all.len() as u64 == page["latest"].as_u64().unwrap() {
            return all;
        }
    }
}

#[test]
fn acknowledged_messages_survive_sigkill_and_numbering_continues() {
    let dir = tempfile::tempdir().unwrap();
    let flags = on_dir(dir.path(), &[]);
    let flags = strs(&flags);
    let mut acked: Vec<(u64, String)> = Vec::new();
    for round in 0..3 {
        let mut server = Server::smol(&flags);
        if round == 0 {
            create_room(&server, "crash");
        }
        let (stop, acks) = (
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicUsize::new(0)),
        );
        let submitters: Vec<_> = (0..8)
            .map(|t| {
                let url = server.url("/api/v1/rooms/crash/messages");
                let token = guest_token(server.addr, "crash").expect("a guest token");
                let (stop, acks) = (stop.clone(), acks.clone());
                std::thread::spawn(move || {
                    submit_until_gone(token, url, format!("r{round}t{t}"), stop, acks)
                })
            })
            .collect();
        let deadline = Instant::now() + PATIENCE;
        while acks.load(Ordering::SeqCst) < 400 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        // Mid-stream: eight submitters have requests in flight.
        server.signal("KILL");
        server.wait();
        stop.store(true, Ordering::SeqCst);
        for submitter in submitters {
            acked.extend(submitter.join().expect("submitter"));
        }
        assert!(
            acks.load(Ordering::SeqCst) >= 400,
            "the server acknowledged submits"
        );

        let server = Server::smol(&flags);
        let stored = whole_history(&server, "crash");
        let by_seq: BTreeMap<u64, &str> = stored.iter().map(|(s, t)| (*s, t.as_str())).collect();
        for (seq, text) in &acked {
            assert_eq!(
                by_seq.get(seq),
                Some(&text.as_str()),
                "acknowledged message {seq} is kept"
            );
        }
        let mut texts = HashSet::new();
        for (_, text) in &stored {
            assert!(texts.insert(text), "{text} is stored once");
            assert!(text.starts_with('r'), "only what was sent: {text}");
        }
        let next = say(&server, "crash", "ada", &format!("r{round}-after-crash"));
        assert_eq!(
            next["seq"],
            stored.len() as u64 + 1,
            "the sequence continues"
        );
        acked.push((stored.len() as u64 + 1, format!("r{round}-after-crash")));
    }
}

#[test]
fn a_listener_resumes_exactly_after_what_it_saw_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let flags = on_dir(dir.path(), &["--history-len=5"]);
    let flags = strs(&flags);
    let mut server = Server::smol(&flags);
    fill_room(&server, "r", 20);
    // From the very start: older than the ring (5), so read from disk, then the ring.
    let mut sse =
        SseStream::open(server.addr, "/api/v1/rooms/r/events?user=bob", Some("0")).unwrap();
    assert_eq!(sse.message_seqs(12), (1..=12).collect::<Vec<_>>());
    let seen = sse.last_event_id().to_owned();
    assert_eq!(seen, "12");
    drop(sse);
    server.signal("KILL");
    server.wait();

    let server = Server::smol(&flags);
    for n in 21..=23 {
        assert_eq!(say(&server, "r", "ada", &format!("m{n}"))["seq"], n);
    }
    let mut sse =
        SseStream::open(server.addr, "/api/v1/rooms/r/events?user=bob", Some(&seen)).unwrap();
    assert_eq!(sse.message_seqs(11), (13..=23).collect::<Vec<_>>());
    say(&server, "r", "ada", "live");
    assert_eq!(sse.message_seqs(1), [24]);
    // History pages reach back past the ring too.
    let page = get(&server.url("/api/v1/rooms/r/messages?before=4&limit=10")).json();
    let seqs = page_seqs(&page);
    assert_eq!(
        (seqs, page["first_held"].as_u64()),
        (vec![1, 2, 3], Some(1))
    );
}

#[tokio::test]
async fn the_grpc_host_persists_restores_and_shares_the_data_dir() {
    let dir = tempfile::tempdir().unwrap();
    let flags = on_dir(dir.path(), &["--history-len=5"]);
    let flags = strs(&flags);
    // Written by the web host, stopped cleanly...
    let mut web = Server::smol(&flags);
    create_room(&web, "shared");
    for n in 1..=3 {
        say(&web, "shared", "ada", &format!("web {n}"));
    }
    web.signal("TERM");
    assert!(web.wait().success());
    // ...read and continued by the gRPC host, then killed...
    let mut grpc = Server::tokio(&flags);
    let mut c = client(&grpc).await;
    for n in 4..=30 {
        assert_eq!(
            submit(&mut c, "bob", "shared", &format!("grpc {n}"))
                .await
                .seq,
            n
        );
    }
    let mut s = open(&mut c, "cy", "shared", Some(0)).await;
    for n in 1..=30 {
        assert_eq!(next_seq(&mut s).await, n);
    }
    drop(s);
    grpc.signal("KILL");
    grpc.wait();
    // ...and restored by it again.
    let grpc = Server::tokio(&flags);
    let mut c = client(&grpc).await;
    let mut s = open(&mut c, "cy", "shared", Some(2)).await;
    assert_eq!(submit(&mut c, "bob", "shared", "after").await.seq, 31);
    for n in 3..=31 {
        assert_eq!(next_seq(&mut s).await, n);
    }
    let req = as_user(
        &mut c,
        "cy",
        pb::HistoryRequest {
            room: "shared".into(),
            cursor: Some(pb::history_request::Cursor::Before(4)),
            limit: 10,
        },
    )
    .await;
    let page = c.history(req).await.expect("history").into_inner();
    let texts: Vec<&str> = page.messages.iter().map(|m| m.text.as_str()).collect();
    assert_eq!(texts, ["web 1", "web 2", "web 3"]);
    // Creating again is idempotent: the room came back with its history.
    create(&mut c, "shared").await;
}

/// Asserts a start is refused with exit status 1 and exactly one line naming `cause`.
fn assert_refused(args: &[&str], cause: &str) {
    for (package, bin) in [
        ("roomcast-smol", "roomcast-smol"),
        ("roomcast-tokio", "roomcast-tokio"),
    ] {
        let (status, stderr) = refused_start(package, bin, args);
        assert_eq!(status.code(), Some(1), "{bin}: {stderr}");
        let errors: Vec<&str> = stderr
            .lines()
            .filter(|l| l.starts_with("error: "))
            .collect();
        assert_eq!(errors.len(), 1, "{bin}: one line:\n{stderr}");
        assert!(
            errors[0].contains(cause),
            "{bin}: {:?} names {cause:?}",
            errors[0]
        );
    }
}

#[test]
fn unusable_data_dirs_are_refused_with_one_line_that_says_why() {
    let dir = tempfile::tempdir().unwrap();
    // Not a directory (root can write anywhere, but not below a file).
    let file = dir.path().join("a-file");
    std::fs::write(&file, "").unwrap();
    let under_file = dir_flag(&file.join("data"));
    assert_refused(
        &[&under_file],
        "choose a writable --data-dir, or run with --in-memory",
    );

    let garbage = dir.path().join("garbage");
    std::fs::create_dir(&garbage).unwrap();
    std::fs::write(garbage.join("roomcast.db"), vec![7u8; 8192]).unwrap();
    assert_refused(
        &[&dir_flag(&garbage)],
        "is not a roomcast database (not an SQLite file)",
    );

    let foreign = dir.path().join("foreign");
    std::fs::create_dir(&foreign).unwrap();
    rusqlite::Connection::open(foreign.join("roomcast.db"))
        .unwrap()
        .execute_batch("CREATE TABLE orders (id INTEGER)")
        .unwrap();
    assert_refused(
        &[&dir_flag(&foreign)],
        "an SQLite database of another application",
    );

    let newer = dir.path().join("newer");
    let mut server = Server::smol(&[&dir_flag(&newer)]);
    server.signal("TERM");
    server.wait();
    rusqlite::Connection::open(newer.join("roomcast.db"))
        .unwrap()
        .pragma_update(None, "user_version", 99)
        .unwrap();
    assert_refused(
        &[&dir_flag(&newer)],
        "has schema version 99, newer than this roomcast knows",
    );

    let busy = dir.path().join("busy");
    let running = Server::smol(&[&dir_flag(&busy)]);
    assert_refused(
        &[&dir_flag(&busy)],
        "is in use by another running roomcast (pid ",
    );
    drop(running);
}

#[test]
fn in_memory_keeps_nothing() {
    let mut server = Server::smol(&["--in-memory"]);
    create_room(&server, "brief");
    say(&server, "brief", "ada", "gone soon");
    server.signal("TERM");
    server.wait();
    let server = Server::smol(&["--in-memory"]);
    assert_eq!(get(&server.url("/api/v1/rooms/brief")).status, 404);
}

#[test]
fn retention_trims_disk_and_a_resume_past_it_is_told_of_the_gap() {
    let dir = tempfile::tempdir().unwrap();
    let flags = on_dir(dir.path(), &["--history-len=5", "--retain-messages=3"]);
    let flags = strs(&flags);
    let mut server = Server::smol(&flags);
    fill_room(&server, "r", 12);
    // Retention runs in the background; the ring (5) still holds 8..=12 until it moves on.
    let deadline = Instant::now() + PATIENCE;
    let page = loop {
        let page = get(&server.url("/api/v1/rooms/r/messages?after=0")).json();
        if !page["gap"].is_null() {
            break page;
        }
        assert!(Instant::now() < deadline, "retention never ran: {page}");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(page["gap"], json!({"after": 0, "first_held": 8}));
    server.signal("TERM");
    server.wait();
    // After a restart only what the disk kept comes back.
    let server = Server::smol(&flags);
    let page = get(&server.url("/api/v1/rooms/r/messages?after=0")).json();
    assert_eq!(page["gap"], json!({"after": 0, "first_held": 10}));
    let seqs = page_seqs(&page);
    assert_eq!(seqs, [10, 11, 12]);
    assert_eq!(say(&server, "r", "ada", "next")["seq"], 13);
}

/// A room nobody uses lets its messages leave memory (`--room-unload-after`), at once or across
/// a restart; its history, resumes and numbering are all still there, read from disk.
#[test]
fn an_idle_rooms_messages_leave_memory_and_are_read_from_disk() {
    let dir = tempfile::tempdir().unwrap();
    let flags = on_dir(dir.path(), &["--room-unload-after=1s"]);
    let flags = strs(&flags);
    let mut server = Server::smol(&flags);
    create_room(&server, "attic");
    for i in 1..=5 {
        say(&server, "attic", "ann", &format!("m{i}"));
    }
    let held = |server: &Server| {
        let text = get(&server.url("/metrics")).body;
        roomcast_e2e::metric(&text, "roomcast_messages_held")
    };
    assert_eq!(held(&server), Some(5.0));
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(
        held(&server),
        Some(0.0),
        "an idle room's messages left memory"
    );
    // Cold now: a resume from the start and a history page come from disk.
    let mut stream = SseStream::open(
        server.addr,
        "/api/v1/rooms/attic/events?user=bob",
        Some("0"),
    )
    .expect("a resume");
    assert_eq!(stream.message_seqs(5), vec![1, 2, 3, 4, 5]);
    say(&server, "attic", "ann", "m6");
    assert_eq!(
        stream.message_seqs(1),
        vec![6],
        "live after the backlog from disk"
    );
    drop(stream);
    server.signal("TERM");
    let _ = server.wait();

    // Restarted after longer than that: the room comes back without its messages in memory.
    std::thread::sleep(Duration::from_millis(1100));
    let server = Server::smol(&flags);
    assert_eq!(
        held(&server),
        Some(0.0),
        "restored without its messages in memory"
    );
    let page = get(&server.url("/api/v1/rooms/attic/messages?user=bob&limit=10")).json();
    assert_eq!(page_seqs(&page), vec![1, 2, 3, 4, 5, 6], "{page}");
    assert_eq!(
        say(&server, "attic", "ann", "m7")["seq"],
        7,
        "numbering goes on"
    );
}

/// Without a store, memory is the only copy: an idle room keeps its messages.
#[test]
fn in_memory_an_idle_room_keeps_its_messages() {
    let server = Server::smol(&["--in-memory", "--rate-burst=0", "--room-unload-after=1s"]);
    create_room(&server, "only");
    for i in 1..=3 {
        say(&server, "only", "ann", &format!("m{i}"));
    }
    std::thread::sleep(Duration::from_millis(1500));
    let page = get(&server.url("/api/v1/rooms/only/messages?user=bob")).json();
    assert_eq!(page_seqs(&page), vec![1, 2, 3], "{page}");
}
