//! How much one user, a guest above all, may take, tried as an attacker would on the real
//! binaries: disk, rooms, connections, listeners, read markers, Redis, the room's memory. Each
//! is bounded per user (a guest at a quarter), refused with a problem that says why (and when
//! waiting helps, `Retry-After`), and what a guest leaves goes when the guest does.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use roomcast_e2e::grpc::{client, with_token};
use roomcast_e2e::raw::RawConn;
use roomcast_e2e::{
    Answer, PATIENCE, Server, SseStream, User, call_as, ok, post_json, request_with, wait_until,
};
use roomcast_proto::v1 as pb;
use serde_json::json;
use tonic::Code;

fn upload(server: &Server, who: &User, room: &str, bytes: usize) -> Answer {
    let body = "x".repeat(bytes);
    request_with(
        "POST",
        &server.url(&format!("/api/v1/rooms/{room}/attachments?name=f.txt")),
        &[
            ("Authorization", &format!("Bearer {}", who.token)),
            ("Content-Type", "text/plain"),
        ],
        Some(&body),
    )
}

#[test]
fn a_guests_files_are_bounded_and_unposted_uploads_go() {
    // A guest keeps a quarter of 400 KiB: 100 KiB.
    let server = Server::smol(&[
        "--max-files-bytes-per-user=400KiB",
        "--upload-pending-for=1s",
        "--upload-rate=20/1h",
        "--rate-burst=0",
    ]);
    let zoe = User::guest(&server, "zoe");
    let ada = User::register(&server, "ada");
    ok(call_as(
        &server,
        "POST",
        "/api/v1/rooms",
        &ada,
        Some(json!({"room": "lobby"})),
    ));
    let first = ok(upload(&server, &zoe, "lobby", 60 * 1024));
    let posted = json!({"text": "a file", "attachments": [first["id"]]});
    ok(call_as(
        &server,
        "POST",
        "/api/v1/rooms/lobby/messages",
        &zoe,
        Some(posted),
    ));
    // Posted files count too: 60 KiB kept, 40 KiB left.
    let over = upload(&server, &zoe, "lobby", 50 * 1024);
    let problem = over.problem(507, "files-quota");
    assert!(
        problem["detail"].as_str().unwrap().contains("102400"),
        "{problem}"
    );
    let pending = ok(upload(&server, &zoe, "lobby", 30 * 1024));
    let url = format!(
        "/api/v1/rooms/lobby/attachments/{}",
        pending["id"].as_str().unwrap()
    );
    assert_eq!(call_as(&server, "GET", &url, &zoe, None).status, 200);
    // Never posted: gone within seconds, and its bytes count no more.
    wait_until("the unposted upload to go", || {
        (call_as(&server, "GET", &url, &zoe, None).status == 404).then_some(())
    });
    ok(upload(&server, &zoe, "lobby", 30 * 1024));
    // An account keeps the whole 400 KiB.
    ok(upload(&server, &ada, "lobby", 200 * 1024));
    // Uploads have a pace of their own: a guest gets a quarter of twenty.
    let zoe2 = User::guest(&server, "zoe2");
    for _ in 0..5 {
        ok(upload(&server, &zoe2, "lobby", 10));
    }
    let paced = upload(&server, &zoe2, "lobby", 10);
    paced.problem(429, "rate-limited");
    assert!(paced.header("retry-after").is_some());
    ok(call_as(
        &server,
        "POST",
        "/api/v1/rooms/lobby/messages",
        &zoe2,
        Some(json!({"text": "words still go"})),
    ));
}

#[test]
fn uploads_stop_at_the_servers_total_and_the_disks_floor() {
    let server = Server::smol(&["--max-files-bytes=100KiB"]);
    let ada = User::register(&server, "ada");
    let bob = User::register(&server, "bob");
    ok(call_as(
        &server,
        "POST",
        "/api/v1/rooms",
        &ada,
        Some(json!({"room": "lobby"})),
    ));
    ok(upload(&server, &ada, "lobby", 90 * 1024));
    upload(&server, &bob, "lobby", 20 * 1024).problem(507, "files-full");
    ok(upload(&server, &bob, "lobby", 5 * 1024));
    // No disk has this much free: every upload is refused, before a byte is kept.
    let full = Server::smol(&["--min-free-disk=1000000GiB"]);
    let cy = User::register(&full, "cy");
    ok(call_as(
        &full,
        "POST",
        "/api/v1/rooms",
        &cy,
        Some(json!({"room": "lobby"})),
    ));
    upload(&full, &cy, "lobby", 10).problem(507, "disk-full");
}

#[tokio::test]
async fn grpc_uploads_are_bounded_of_one_room_and_have_a_deadline() {
    let server = Server::tokio(&["--max-files-bytes-per-user=40KiB", "--request-timeout=1s"]);
    let mut c = client(&server).await;
    let token = c
        .guest(pb::GuestRequest {
            nickname: "zoe".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .token;
    for room in ["a", "b"] {
        let create = pb::CreateRoomRequest {
            room: room.into(),
            private: false,
        };
        c.create_room(with_token(&token, create)).await.unwrap();
    }
    let chunk = |room: &str, bytes: usize| pb::UploadChunk {
        room: room.into(),
        name: "f".into(),
        data: vec![7; bytes],
    };
    // A guest's quarter of 40 KiB is 10 KiB.
    let over = futures_util::stream::iter(vec![chunk("a", 8 * 1024), chunk("", 8 * 1024)]);
    let refused = c.upload(with_token(&token, over)).await.unwrap_err();
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    assert!(refused.message().contains("files-quota"), "{refused:?}");
    // Every chunk goes to the room the first names.
    let mixed = futures_util::stream::iter(vec![chunk("a", 10), chunk("b", 10)]);
    let refused = c.upload(with_token(&token, mixed)).await.unwrap_err();
    assert!(refused.message().contains("one room"), "{refused:?}");
    // One that never ends is cut off at its deadline.
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    tx.send(chunk("a", 10)).await.unwrap();
    let slow = tokio_stream_from(rx);
    let refused = tokio::time::timeout(PATIENCE, c.upload(with_token(&token, slow)))
        .await
        .expect("answered within the deadline, not never")
        .unwrap_err();
    assert_eq!(refused.code(), Code::DeadlineExceeded, "{refused:?}");
    drop(tx);
}

/// Whether the server closes `conn` within [`PATIENCE`] (whatever it says first is read and
/// dropped).
async fn closed_by_server(conn: &mut tokio::net::TcpStream) -> bool {
    use tokio::io::AsyncReadExt;
    let mut sink = [0u8; 64];
    tokio::time::timeout(PATIENCE, async {
        while let Ok(1..) = conn.read(&mut sink).await {}
    })
    .await
    .is_ok()
}

/// A stream of what `rx` receives (the client sends while the test holds `tx`).
fn tokio_stream_from<T: Send + 'static>(
    rx: tokio::sync::mpsc::Receiver<T>,
) -> impl futures_util::Stream<Item = T> {
    futures_util::stream::unfold(rx, |mut rx| async move { Some((rx.recv().await?, rx)) })
}

#[test]
fn a_guest_creates_rooms_at_a_pace_up_to_a_share_and_empty_ones_go_with_them() {
    let server = Server::smol(&[
        "--max-rooms-per-user=8",
        "--room-rate=40/1h",
        "--guest-name-grace=0s",
    ]);
    let zoe = User::guest(&server, "zoe");
    ok(call_as(
        &server,
        "POST",
        "/api/v1/rooms",
        &zoe,
        Some(json!({"room": "z-empty"})),
    ));
    ok(call_as(
        &server,
        "POST",
        "/api/v1/rooms",
        &zoe,
        Some(json!({"room": "z-spoken"})),
    ));
    let third = call_as(
        &server,
        "POST",
        "/api/v1/rooms",
        &zoe,
        Some(json!({"room": "z-third"})),
    );
    third.problem(429, "too-many-owned-rooms");
    ok(call_as(
        &server,
        "POST",
        "/api/v1/rooms/z-spoken/messages",
        &zoe,
        Some(json!({"text": "hello"})),
    ));
    // The pace: a quarter of 40 an hour is 10 at once; deleting does not give them back.
    let cy = User::guest(&server, "cy");
    let mut made = 0;
    let paced = loop {
        let room = json!({"room": format!("c{made}")});
        let res = call_as(&server, "POST", "/api/v1/rooms", &cy, Some(room));
        if res.status != 201 {
            break res;
        }
        ok(call_as(
            &server,
            "DELETE",
            &format!("/api/v1/rooms/c{made}"),
            &cy,
            None,
        ));
        made += 1;
        assert!(made <= 10, "the pace holds");
    };
    paced.problem(429, "rate-limited");
    assert!(paced.header("retry-after").is_some());
    // zoe leaves: her empty room goes, the room with words stays.
    let ada = User::register(&server, "ada");
    ok(call_as(
        &server,
        "POST",
        "/api/v1/auth/sign-out",
        &zoe,
        None,
    ));
    wait_until("zoe's empty room to go", || {
        (call_as(&server, "GET", "/api/v1/rooms/z-empty", &ada, None).status == 404).then_some(())
    });
    assert_eq!(
        call_as(&server, "GET", "/api/v1/rooms/z-spoken", &ada, None).status,
        200
    );
    server.wait_for_log("departed guests reclaimed");
}

#[test]
fn one_address_holds_a_bounded_share_of_connections() {
    let server = Server::smol(&[
        "--max-connections=40",
        "--max-connections-per-address=6",
        "--max-fresh-connections-per-address=3",
    ]);
    // Three that send nothing: a fourth from the same address is refused at once.
    let silent: Vec<TcpStream> = (0..3)
        .map(|_| TcpStream::connect(server.addr).unwrap())
        .collect();
    let mut fourth = RawConn::connect(server.addr);
    fourth
        .send(b"GET /healthz HTTP/1.1\r\nHost: roomcast\r\n\r\n")
        .unwrap();
    let refused = fourth.response().unwrap();
    refused.problem(429, "too-many-connections-from-address");
    drop(silent);
    // Connections that sent a request count to six.
    let mut held = Vec::new();
    wait_until("the silent ones to be let go", || {
        let mut conn = RawConn::connect(server.addr);
        conn.send(b"GET /healthz HTTP/1.1\r\nHost: roomcast\r\n\r\n")
            .unwrap();
        let answered = conn.response().unwrap().status() == 200;
        answered.then(|| held.push(conn))
    });
    while held.len() < 6 {
        let mut conn = RawConn::connect(server.addr);
        conn.send(b"GET /healthz HTTP/1.1\r\nHost: roomcast\r\n\r\n")
            .unwrap();
        assert_eq!(conn.response().unwrap().status(), 200);
        held.push(conn);
    }
    let mut seventh = RawConn::connect(server.addr);
    seventh
        .send(b"GET /healthz HTTP/1.1\r\nHost: roomcast\r\n\r\n")
        .unwrap();
    seventh
        .response()
        .unwrap()
        .problem(429, "too-many-connections-from-address");
    // Another address is not held up.
    let mut other = RawConn::connect_from("127.0.0.2".parse().unwrap(), server.addr);
    other
        .send(b"GET /healthz HTTP/1.1\r\nHost: roomcast\r\n\r\n")
        .unwrap();
    assert_eq!(other.response().unwrap().status(), 200);
}

#[test]
fn one_user_holds_a_bounded_share_of_listeners_and_the_last_are_kept() {
    let server = Server::smol(&["--max-user-listeners=8", "--max-listeners=20"]);
    let ada = User::register(&server, "ada");
    for room in ["a", "b", "c"] {
        ok(call_as(
            &server,
            "POST",
            "/api/v1/rooms",
            &ada,
            Some(json!({"room": room})),
        ));
    }
    let zoe = User::guest(&server, "zoe");
    let open = |who: &User, room: &str| {
        SseStream::open_with_token(
            server.addr,
            &format!("/api/v1/rooms/{room}/events"),
            &who.token,
        )
    };
    // A guest holds a quarter of 8, across rooms.
    let mut held = vec![open(&zoe, "a").unwrap(), open(&zoe, "b").unwrap()];
    let refused = open(&zoe, "c").err().expect("refused");
    assert_eq!(
        (refused.status, refused.body["code"].as_str()),
        (429, Some("too-many-own-listeners"))
    );
    // Accounts fill the server up to its reserve, four streams each.
    for n in 0..4 {
        let user = User::register(&server, &format!("filler{n}"));
        for _ in 0..4 {
            held.push(open(&user, "a").unwrap());
        }
        if n == 3 {
            // 2 + 16 = 18 open: the reserve (the last two) is not for those holding four.
            let refused = open(&user, "b").err().expect("refused");
            assert_eq!(
                (refused.status, refused.body["code"].as_str()),
                (503, Some("server-full"))
            );
        }
    }
    // Someone holding few still gets in, in their own room.
    held.push(open(&ada, "c").unwrap());
    held.push(open(&ada, "c").unwrap());
    let refused = open(&ada, "c").err().expect("refused");
    assert_eq!(refused.body["code"], "server-full", "the cap holds");
}

#[tokio::test]
async fn an_h2_connection_without_a_preface_or_a_call_is_closed() {
    let server = Server::tokio(&["--idle-timeout=1s"]);
    // No preface at all: closed after the handshake deadline (10 s).
    let mut silent = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    assert!(
        closed_by_server(&mut silent).await,
        "a connection that never sent the preface is closed"
    );
    // A preface and settings, then nothing: idle, closed after a second.
    let mut idle = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    {
        use tokio::io::AsyncWriteExt;
        idle.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0")
            .await
            .unwrap();
    }
    assert!(
        closed_by_server(&mut idle).await,
        "an idle connection is closed"
    );
    // A quiet stream is not idle: it stays open past the idle timeout.
    let mut c = client(&server).await;
    let token = c
        .guest(pb::GuestRequest {
            nickname: "ada".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .token;
    let create = pb::CreateRoomRequest {
        room: "quiet".into(),
        private: false,
    };
    c.create_room(with_token(&token, create)).await.unwrap();
    let listen = pb::StreamRequest {
        room: "quiet".into(),
        resume_after: None,
    };
    let mut stream = c
        .stream(with_token(&token, listen))
        .await
        .unwrap()
        .into_inner();
    stream.message().await.unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let post = pb::SubmitRequest {
        room: "quiet".into(),
        text: "still here".into(),
        ..Default::default()
    };
    c.submit(with_token(&token, post)).await.unwrap();
    let event = stream
        .message()
        .await
        .unwrap()
        .expect("the stream is still open");
    assert!(
        matches!(event.event, Some(pb::stream_event::Event::Message(_))),
        "{event:?}"
    );
}

/// How many read markers the data dir keeps, read from its SQLite file.
fn markers(dir: &std::path::Path) -> i64 {
    let conn = rusqlite::Connection::open_with_flags(
        dir.join("roomcast.db"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    conn.query_row("SELECT COUNT(*) FROM read_markers", [], |r| r.get(0))
        .unwrap()
}

#[test]
fn read_markers_move_forward_at_a_pace_and_go_with_their_guest() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let server = Server::smol(&[
        "--data-dir",
        data,
        "--read-rate=8/1h",
        "--guest-name-grace=0s",
    ]);
    let ada = User::register(&server, "ada");
    for room in ["empty", "busy"] {
        ok(call_as(
            &server,
            "POST",
            "/api/v1/rooms",
            &ada,
            Some(json!({"room": room})),
        ));
    }
    let say = |text: &str| {
        let body = json!({ "text": text });
        call_as(
            &server,
            "POST",
            "/api/v1/rooms/busy/messages",
            &ada,
            Some(body),
        )
    };
    let mark = |who: &User, room: &str, seq: u64| {
        let path = format!("/api/v1/rooms/{room}/read");
        call_as(&server, "PUT", &path, who, Some(json!({ "seq": seq })))
    };
    ok(say("one"));
    ok(say("two"));
    let zoe = User::guest(&server, "zoe");
    // Marking an empty room, or back, keeps nothing and costs nothing.
    for _ in 0..10 {
        ok(mark(&zoe, "empty", 0));
        ok(mark(&zoe, "empty", 5));
    }
    assert_eq!(markers(dir.path()), 0, "no marker that does not move");
    ok(mark(&zoe, "busy", 1));
    ok(mark(&zoe, "busy", 1));
    // The pace: a guest's quarter of 8 is 2.
    ok(mark(&zoe, "busy", 2));
    ok(mark(&ada, "busy", 1));
    wait_until("the markers to be kept", || {
        (markers(dir.path()) == 2).then_some(())
    });
    ok(say("three"));
    mark(&zoe, "busy", 3).problem(429, "rate-limited");
    // zoe leaves: her marker goes; ada's stays.
    ok(call_as(
        &server,
        "POST",
        "/api/v1/auth/sign-out",
        &zoe,
        None,
    ));
    wait_until("zoe's marker to go", || {
        (markers(dir.path()) == 1).then_some(())
    });
}

#[test]
fn reactions_and_edits_push_no_message_out_of_memory() {
    // In memory only, with room for five: what the ring loses is lost.
    let server = Server::smol(&["--in-memory", "--history-len=5", "--rate-burst=0"]);
    let ada = User::register(&server, "ada");
    ok(call_as(
        &server,
        "POST",
        "/api/v1/rooms",
        &ada,
        Some(json!({"room": "lobby"})),
    ));
    for n in 1..=5 {
        let text = json!({"text": format!("message {n}")});
        ok(call_as(
            &server,
            "POST",
            "/api/v1/rooms/lobby/messages",
            &ada,
            Some(text),
        ));
    }
    for round in 0..20 {
        let (method, emoji) = if round % 2 == 0 {
            ("PUT", "%F0%9F%91%8D")
        } else {
            ("DELETE", "%F0%9F%91%8D")
        };
        ok(call_as(
            &server,
            method,
            &format!("/api/v1/rooms/lobby/messages/5/reactions/{emoji}"),
            &ada,
            None,
        ));
        let edit = json!({"text": format!("message 4, edit {round}")});
        ok(call_as(
            &server,
            "PATCH",
            "/api/v1/rooms/lobby/messages/4",
            &ada,
            Some(edit),
        ));
    }
    let page = ok(call_as(
        &server,
        "GET",
        "/api/v1/rooms/lobby/messages?limit=50",
        &ada,
        None,
    ));
    let texts: Vec<&str> = page["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["kind"].is_null())
        .filter_map(|m| m["text"].as_str())
        .collect();
    assert_eq!(
        texts,
        [
            "message 1",
            "message 2",
            "message 3",
            "message 4, edit 19",
            "message 5"
        ],
        "every message stays, as it now is"
    );
}

#[test]
fn ranges_of_nothing_and_early_refusals_say_what_they_are() {
    let server = Server::smol(&[]);
    let ada = User::register(&server, "ada");
    ok(call_as(
        &server,
        "POST",
        "/api/v1/rooms",
        &ada,
        Some(json!({"room": "lobby"})),
    ));
    let file = ok(upload(&server, &ada, "lobby", 100));
    let url = format!(
        "/api/v1/rooms/lobby/attachments/{}",
        file["id"].as_str().unwrap()
    );
    let auth = format!("Bearer {}", ada.token);
    let nothing = request_with(
        "GET",
        &server.url(&url),
        &[("Authorization", &auth), ("Range", "bytes=-0")],
        None,
    );
    assert_eq!(nothing.status, 416, "{}", nothing.body);
    assert_eq!(nothing.header("content-range"), Some("bytes */100"));
    // A refusal before the body was asked for closes the connection, and says so.
    let mut conn = TcpStream::connect(server.addr).unwrap();
    conn.set_read_timeout(Some(PATIENCE)).unwrap();
    conn.write_all(
        b"POST /api/v1/rooms/lobby/messages HTTP/1.1\r\nHost: roomcast\r\n\
          Content-Type: application/json\r\nContent-Length: 20\r\nExpect: 100-continue\r\n\r\n",
    )
    .unwrap();
    let mut answer = Vec::new();
    let _ = conn.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer).to_lowercase();
    assert!(answer.starts_with("http/1.1 401"), "{answer}");
    assert!(answer.contains("connection: close"), "{answer}");
    assert!(!answer.contains("100 continue"), "{answer}");
}

#[test]
fn a_deleted_rooms_tombstone_in_redis_is_short_lived() {
    use roomcast_e2e::redis::{self, Redis};
    if !redis::available() {
        return;
    }
    let redis = Redis::start(&[]);
    let url = redis.url();
    let node = Server::smol(&redis::node_args(&url, &["--room-rate=8/1h"]));
    let zoe = User::guest(&node, "zoe");
    ok(call_as(
        &node,
        "POST",
        "/api/v1/rooms",
        &zoe,
        Some(json!({"room": "gone"})),
    ));
    ok(call_as(&node, "DELETE", "/api/v1/rooms/gone", &zoe, None));
    let ttl: i64 = redis
        .cmd("TTL rc:{gone}:gone")
        .trim_start_matches(':')
        .parse()
        .unwrap();
    assert!(
        (1..=600).contains(&ttl),
        "a tombstone for minutes, not a day: {ttl}"
    );
    // Creating and deleting is paced: a guest's loop stops at once (a quarter of 8).
    ok(call_as(
        &node,
        "POST",
        "/api/v1/rooms",
        &zoe,
        Some(json!({"room": "again"})),
    ));
    ok(call_as(&node, "DELETE", "/api/v1/rooms/again", &zoe, None));
    call_as(
        &node,
        "POST",
        "/api/v1/rooms",
        &zoe,
        Some(json!({"room": "and-again"})),
    )
    .problem(429, "rate-limited");
}

#[test]
fn with_redis_a_departed_guest_leaves_nothing_on_any_node() {
    use roomcast_e2e::redis::{self, Redis};
    if !redis::available() {
        return;
    }
    let redis = Redis::start(&[]);
    let url = redis.url();
    let a = Server::smol(&redis::node_args(&url, &["--guest-name-grace=0s"]));
    let b = Server::smol(&redis::node_args(&url, &["--guest-name-grace=0s"]));
    let zoe = User::guest(&a, "zoe");
    post_json(&b.url("/api/v1/auth/guest"), &json!({"nickname": "ZOE"})).problem(409, "name-taken");
    let ada = User::register(&b, "ada");
    ok(call_as(
        &a,
        "POST",
        "/api/v1/rooms",
        &zoe,
        Some(json!({"room": "z-empty"})),
    ));
    ok(call_as(
        &b,
        "POST",
        "/api/v1/rooms",
        &ada,
        Some(json!({"room": "hall"})),
    ));
    ok(call_as(
        &b,
        "POST",
        "/api/v1/rooms/hall/messages",
        &ada,
        Some(json!({"text": "hi"})),
    ));
    ok(call_as(
        &b,
        "PUT",
        "/api/v1/rooms/hall/read",
        &zoe,
        Some(json!({"seq": 1})),
    ));
    wait_until("zoe's marker in Redis", || {
        (redis.cmd("HLEN rc:{hall}:read") == ":1").then_some(())
    });
    assert_eq!(redis.cmd("EXISTS rc:{z-empty}"), ":1");
    ok(call_as(&b, "POST", "/api/v1/auth/sign-out", &zoe, None));
    wait_until("zoe's leftovers to go", || {
        let gone =
            redis.cmd("EXISTS rc:{z-empty}") == ":0" && redis.cmd("HLEN rc:{hall}:read") == ":0";
        gone.then_some(())
    });
    for node in [&a, &b] {
        assert_eq!(
            call_as(node, "GET", "/api/v1/rooms/z-empty", &ada, None).status,
            404
        );
    }
    assert_eq!(
        call_as(&a, "GET", "/api/v1/rooms/hall", &ada, None).status,
        200
    );
    // The name is free again, and its next holder is someone else.
    let next = User::guest(&b, "zoe");
    assert_eq!(call_as(&b, "GET", "/api/v1/rooms", &next, None).status, 200);
}
