//! Edits, deletions, reactions and replies against the real binaries: over REST with SSE,
//! WebSocket and gRPC, resumed, past the ring, and across a restart; every refusal named.

use std::net::TcpStream;

use roomcast_e2e::grpc::{self, Client, as_user};
use roomcast_e2e::sse::SseStream;
use roomcast_e2e::{PATIENCE, Server, call, get, say};
use roomcast_proto::v1 as pb;
use roomcast_proto::v1::stream_event::Event;
use serde_json::{Value, json};
use tonic::Code;
use tungstenite::stream::MaybeTlsStream;
use tungstenite::{Message, WebSocket};

/// `emoji` as a path segment.
fn encoded(emoji: &str) -> String {
    emoji.bytes().map(|b| format!("%{b:02X}")).collect()
}

fn message_url(server: &Server, room: &str, seq: u64, user: &str) -> String {
    server.url(&format!("/api/v1/rooms/{room}/messages/{seq}?user={user}"))
}

fn reaction_url(server: &Server, room: &str, seq: u64, emoji: &str, user: &str) -> String {
    let emoji = encoded(emoji);
    server.url(&format!(
        "/api/v1/rooms/{room}/messages/{seq}/reactions/{emoji}?user={user}"
    ))
}

fn create_owned(server: &Server, room: &str, owner: &str) {
    let url = server.url(&format!("/api/v1/rooms?user={owner}"));
    let res = call("POST", &url, Some(&json!({ "room": room })));
    assert_eq!(res.status, 201, "{}", res.body);
}

fn history(server: &Server, room: &str) -> Vec<Value> {
    let res = get(&server.url(&format!("/api/v1/rooms/{room}/messages?after=0&user=cy")));
    assert_eq!(res.status, 200, "{}", res.body);
    res.json()["messages"].as_array().expect("messages").clone()
}

/// The next `n` entries of a stream (messages and changes), as (event type, body).
fn entries(stream: &mut SseStream, n: usize) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    while out.len() < n {
        let event = stream.next_event().expect("the stream stays open");
        if ["message", "edited", "deleted", "reaction"].contains(&event.event.as_str()) {
            out.push((event.event.clone(), event.json()));
        }
    }
    out
}

#[test]
fn edits_deletions_reactions_and_replies_over_rest_and_sse() {
    let dir = tempfile::tempdir().unwrap();
    let data = format!("--data-dir={}", dir.path().display());
    let mut server = Server::smol(&[&data, "--rate-burst=0"]);
    create_owned(&server, "r", "ada");
    let mut live = SseStream::open(server.addr, "/api/v1/rooms/r/events?user=cy", Some("0"))
        .expect("the stream opens");
    say(&server, "r", "ada", "hello");
    let secret = "the door code is 4711";
    say(&server, "r", "bob", secret);

    // Bob edits his message; nobody else may.
    let edit = |user: &str, seq: u64, text: &str| {
        call(
            "PATCH",
            &message_url(&server, "r", seq, user),
            Some(&json!({ "text": text })),
        )
    };
    let edited = edit("bob", 2, "the door code is 4711, again");
    assert_eq!(edited.status, 201, "{}", edited.body);
    let body = edited.json();
    assert_eq!(
        (body["seq"].as_u64(), body["of"].as_u64()),
        (Some(3), Some(2))
    );
    assert_eq!(body["kind"], "edited");
    edit("ada", 2, "mine now").problem(403, "permission-denied");
    edit("bob", 9, "nothing").problem(404, "message-not-found");
    edit("bob", 2, " ").problem(400, "empty-message");

    // Reactions: one of each emoji per user, ❤ and ❤️ the same, only emoji.
    let react = |method: &str, user: &str, seq: u64, emoji: &str| {
        call(method, &reaction_url(&server, "r", seq, emoji, user), None)
    };
    assert_eq!(react("PUT", "ada", 1, "👍").status, 201);
    let again = react("PUT", "ada", 1, "👍");
    assert_eq!(again.status, 200, "twice is once: {}", again.body);
    assert_eq!(again.json()["seq"], 1, "the message as it is");
    assert_eq!(react("PUT", "bob", 1, "❤").status, 201);
    assert_eq!(react("PUT", "cy", 1, "❤\u{fe0f}").status, 201);
    react("PUT", "bob", 1, "nope").problem(400, "invalid-emoji");
    react("PUT", "bob", 1, "👍👍").problem(400, "invalid-emoji");
    react("PUT", "bob", 99, "👍").problem(404, "message-not-found");
    react("PUT", "bob", 3, "👍").problem(400, "not-a-message");
    let taken = react("DELETE", "cy", 1, "❤");
    assert_eq!(taken.status, 201, "{}", taken.body);
    assert_eq!(taken.json()["added"], false);

    // A reply names the message it answers.
    let reply = call(
        "POST",
        &server.url("/api/v1/rooms/r/messages?user=bob"),
        Some(&json!({ "text": "re: hello", "reply_to": 1 })),
    );
    assert_eq!(reply.status, 201, "{}", reply.body);
    assert_eq!(reply.json()["reply_to"], 1);
    call(
        "POST",
        &server.url("/api/v1/rooms/r/messages?user=bob"),
        Some(&json!({ "text": "to nothing", "reply_to": 99 })),
    )
    .problem(404, "message-not-found");

    // The owner deletes bob's message: its text goes, and its edit's with it.
    let deleted = call("DELETE", &message_url(&server, "r", 2, "ada"), None);
    assert_eq!(deleted.status, 201, "{}", deleted.body);
    assert_eq!(deleted.json()["kind"], "deleted");
    edit("bob", 2, "back").problem(409, "message-deleted");
    call("DELETE", &message_url(&server, "r", 2, "bob"), None).problem(409, "message-deleted");
    react("PUT", "bob", 2, "👍").problem(409, "message-deleted");
    call("DELETE", &message_url(&server, "r", 1, "bob"), None).problem(403, "permission-denied");

    // The live stream got every entry, each once, in order, by its type.
    let got: Vec<(String, u64)> = entries(&mut live, 9)
        .into_iter()
        .map(|(kind, body)| (kind, body["seq"].as_u64().unwrap()))
        .collect();
    let kinds = [
        "message", "message", "edited", "reaction", "reaction", "reaction", "reaction", "message",
        "deleted",
    ];
    let want: Vec<(String, u64)> = kinds
        .iter()
        .zip(1..)
        .map(|(k, s)| ((*k).to_owned(), s))
        .collect();
    assert_eq!(got, want);

    // History shows each message as it is now; nothing of the deleted text is left.
    let check = |entries: &[Value]| {
        assert!(
            entries[1]["deleted"] == true && entries[1]["text"] == "",
            "{}",
            entries[1]
        );
        assert!(
            entries[2]["deleted"] == true && entries[2]["text"] == "",
            "{}",
            entries[2]
        );
        let mut reactions = entries[0]["reactions"].clone();
        for reaction in reactions.as_array_mut().unwrap() {
            // Who reacted, by name, and by id behind it.
            let ids = reaction
                .as_object_mut()
                .unwrap()
                .remove("user_ids")
                .unwrap();
            let names = reaction["users"].as_array().unwrap();
            for (id, name) in ids.as_array().unwrap().iter().zip(names) {
                let name = name.as_str().unwrap();
                assert!(
                    id.as_str().unwrap().starts_with(&format!("{name}~")),
                    "{id}"
                );
            }
        }
        assert_eq!(
            reactions,
            json!([
                { "emoji": "👍", "count": 1, "users": ["ada"] },
                { "emoji": "❤\u{fe0f}", "count": 1, "users": ["bob"] },
            ]),
        );
        assert_eq!(entries[7]["reply_to"], 1);
        assert!(!entries.iter().any(|e| e.to_string().contains("4711")));
    };
    check(&history(&server, "r"));
    // A listener that resumes from the start replays the log with the deleted text gone.
    let mut resumed = SseStream::open(server.addr, "/api/v1/rooms/r/events?user=dan", Some("0"))
        .expect("the stream opens");
    let replay = entries(&mut resumed, 9);
    assert!(
        !replay
            .iter()
            .any(|(_, body)| body.to_string().contains("4711")),
        "{replay:?}"
    );

    // After a restart it is all as it was.
    drop(live);
    drop(resumed);
    server.signal("TERM");
    server.wait();
    let server = Server::smol(&[&data]);
    check(&history(&server, "r"));
    let bytes: Vec<u8> = std::fs::read_dir(dir.path())
        .unwrap()
        .flat_map(|f| std::fs::read(f.unwrap().path()).unwrap_or_default())
        .collect();
    assert!(
        !bytes.windows(4).any(|w| w == b"4711"),
        "the deleted text is gone from the data dir"
    );
}

#[test]
fn messages_older_than_memory_and_past_the_edit_window() {
    let server = Server::smol(&["--rate-burst=0", "--history-len=4", "--edit-window=1s"]);
    create_owned(&server, "old", "ada");
    say(&server, "old", "bob", "the first");
    for i in 0..6 {
        say(&server, "old", "ada", &format!("filler {i}"));
    }
    // Message 1 left memory: the server reads it back to change it, and keeps its state.
    let url = reaction_url(&server, "old", 1, "🎉", "cy");
    assert_eq!(call("PUT", &url, None).status, 201);
    assert_eq!(
        call("PUT", &url, None).status,
        200,
        "the reaction is remembered"
    );
    let url = reaction_url(&server, "old", 1, "🎉", "dan");
    assert_eq!(call("PUT", &url, None).status, 201);
    let first = &history(&server, "old")[0];
    assert_eq!(
        first["reactions"][0]["users"],
        json!(["cy", "dan"]),
        "{first}"
    );

    std::thread::sleep(std::time::Duration::from_millis(1200));
    call(
        "PATCH",
        &message_url(&server, "old", 2, "ada"),
        Some(&json!({ "text": "too late" })),
    )
    .problem(403, "edit-window-closed");
    call("DELETE", &message_url(&server, "old", 1, "bob"), None).problem(403, "edit-window-closed");
    // The owner deletes anything at any time, however old.
    let deleted = call("DELETE", &message_url(&server, "old", 1, "ada"), None);
    assert_eq!(deleted.status, 201, "{}", deleted.body);
    let first = &history(&server, "old")[0];
    assert!(
        first["deleted"] == true && first.get("reactions").is_none(),
        "{first}"
    );
}

type Socket = WebSocket<MaybeTlsStream<TcpStream>>;

/// The JSON text frames up to and including the next one of `kind`.
fn frames_until(socket: &mut Socket, kind: &str) -> Vec<Value> {
    let deadline = std::time::Instant::now() + PATIENCE;
    let mut frames = Vec::new();
    loop {
        assert!(std::time::Instant::now() < deadline, "no {kind} frame");
        if let Message::Text(text) = socket.read().expect("a frame") {
            let frame: Value = serde_json::from_str(&text).expect("JSON");
            let done = frame["type"] == kind;
            frames.push(frame);
            if done {
                return frames;
            }
        }
    }
}

/// The next JSON text frame of `kind`, skipping others.
fn next_of(socket: &mut Socket, kind: &str) -> Value {
    frames_until(socket, kind)
        .pop()
        .expect("one frame at least")
}

fn send(socket: &mut Socket, frame: Value) {
    socket.send(Message::text(frame.to_string())).expect("send");
}

#[test]
fn changes_over_websocket() {
    let server = Server::smol(&["--rate-burst=0"]);
    create_owned(&server, "ws", "ada");
    let mut bob = roomcast_e2e::ws_connect(&server, "/api/v1/rooms/ws/ws?user=bob");
    let mut cy = roomcast_e2e::ws_connect(&server, "/api/v1/rooms/ws/ws?user=cy");
    send(
        &mut bob,
        json!({ "type": "submit", "text": "hi", "ref": "a" }),
    );
    assert_eq!(next_of(&mut bob, "ack")["message"]["seq"], 1);
    send(
        &mut bob,
        json!({ "type": "edit", "of": 1, "text": "hi!", "ref": "b" }),
    );
    let ack = next_of(&mut bob, "ack");
    assert_eq!(
        (ack["ref"].as_str(), ack["message"]["kind"].as_str()),
        (Some("b"), Some("edited"))
    );
    send(
        &mut bob,
        json!({ "type": "react", "of": 1, "emoji": "🎉", "ref": "c" }),
    );
    assert_eq!(next_of(&mut bob, "ack")["message"]["emoji"], "🎉");
    send(
        &mut bob,
        json!({ "type": "react", "of": 1, "emoji": "🎉", "ref": "d" }),
    );
    assert_eq!(next_of(&mut bob, "ack")["duplicate"], true);
    send(
        &mut bob,
        json!({ "type": "react", "of": 1, "emoji": ":tada:", "ref": "e" }),
    );
    let refused = next_of(&mut bob, "error");
    assert_eq!(
        (refused["ref"].as_str(), refused["code"].as_str()),
        (Some("e"), Some("invalid-emoji"))
    );
    send(
        &mut bob,
        json!({ "type": "submit", "text": "re", "reply_to": 1, "ref": "f" }),
    );
    assert_eq!(next_of(&mut bob, "ack")["message"]["reply_to"], 1);
    send(
        &mut cy,
        json!({ "type": "edit", "of": 1, "text": "cy was here", "ref": "g" }),
    );
    let mut seen = frames_until(&mut cy, "error");
    assert_eq!(seen.pop().expect("the error")["code"], "permission-denied");
    send(&mut bob, json!({ "type": "delete", "of": 1, "ref": "h" }));
    assert_eq!(next_of(&mut bob, "ack")["message"]["kind"], "deleted");

    // Cy saw each change as its own frame type, in order.
    seen.extend(frames_until(&mut cy, "deleted"));
    let types: Vec<&str> = seen
        .iter()
        .filter_map(|f| f["type"].as_str())
        .filter(|t| *t != "presence")
        .collect();
    assert_eq!(
        types,
        ["message", "edited", "reaction", "message", "deleted"]
    );
    assert_eq!(
        seen.iter().find(|f| f["type"] == "edited").expect("edited")["text"],
        "hi!"
    );
    let reaction = seen
        .iter()
        .find(|f| f["type"] == "reaction")
        .expect("reaction");
    assert_eq!(
        (reaction["of"].as_u64(), reaction["added"].as_bool()),
        (Some(1), Some(true))
    );
    assert_eq!(seen.last().expect("deleted")["of"], 1);
}

async fn grpc_client(server: &Server) -> Client {
    grpc::client(server).await
}

#[tokio::test(flavor = "current_thread")]
async fn changes_over_grpc() {
    let server = Server::tokio(&["--rate-burst=0"]);
    let mut c = grpc_client(&server).await;
    grpc::create(&mut c, "g").await;
    let mut stream = grpc::open(&mut c, "cy", "g", Some(0)).await;
    let posted = grpc::submit(&mut c, "bob", "g", "hi").await;
    assert_eq!(posted.seq, 1);

    let req = as_user(
        &mut c,
        "bob",
        pb::EditMessageRequest {
            room: "g".into(),
            seq: 1,
            text: "hi!".into(),
        },
    )
    .await;
    let edited = c.edit_message(req).await.expect("edited").into_inner();
    assert_eq!(edited.message.expect("entry").kind, "edited");
    let req = as_user(
        &mut c,
        "cy",
        pb::EditMessageRequest {
            room: "g".into(),
            seq: 1,
            text: "no".into(),
        },
    )
    .await;
    assert_eq!(
        c.edit_message(req).await.unwrap_err().code(),
        Code::PermissionDenied
    );
    let react = |emoji: &str, remove| pb::ReactRequest {
        room: "g".into(),
        seq: 1,
        emoji: emoji.into(),
        remove,
    };
    let req = as_user(&mut c, "cy", react("👍", false)).await;
    let reacted = c.react(req).await.expect("reacted").into_inner();
    assert!(!reacted.duplicate);
    let req = as_user(&mut c, "cy", react("👍", false)).await;
    let again = c.react(req).await.expect("answered").into_inner();
    assert!(again.duplicate);
    let message = again.message.expect("the message");
    assert_eq!(
        (
            message.reactions[0].count,
            message.reactions[0].users.clone()
        ),
        (1, vec!["cy".to_owned()])
    );
    let req = as_user(&mut c, "cy", react("not one", false)).await;
    assert_eq!(
        c.react(req).await.unwrap_err().code(),
        Code::InvalidArgument
    );
    let req = as_user(
        &mut c,
        "cy",
        pb::DeleteMessageRequest {
            room: "g".into(),
            seq: 7,
        },
    )
    .await;
    assert_eq!(
        c.delete_message(req).await.unwrap_err().code(),
        Code::NotFound
    );
    let req = as_user(
        &mut c,
        "bob",
        pb::DeleteMessageRequest {
            room: "g".into(),
            seq: 1,
        },
    )
    .await;
    c.delete_message(req).await.expect("deleted");
    let req = as_user(&mut c, "cy", react("👍", true)).await;
    assert_eq!(
        c.react(req).await.unwrap_err().code(),
        Code::FailedPrecondition
    );

    let mut seen = Vec::new();
    while seen.len() < 4 {
        match grpc::next(&mut stream).await.expect("open") {
            Event::Message(m) => seen.push(("message", m.seq, m.text)),
            Event::Edited(m) => seen.push(("edited", m.seq, m.text)),
            Event::Reaction(m) => seen.push(("reaction", m.seq, m.emoji)),
            Event::Deleted(m) => seen.push(("deleted", m.seq, m.of.to_string())),
            Event::Presence(_) | Event::Joined(_) | Event::Left(_) | Event::Typing(_) => {}
            other @ (Event::Gap(_) | Event::Closed(_) | Event::Moderation(_)) => {
                panic!("unexpected {other:?}")
            }
        }
    }
    assert_eq!(
        seen,
        [
            ("message", 1, "hi".to_owned()),
            ("edited", 2, "hi!".to_owned()),
            ("reaction", 3, "👍".to_owned()),
            ("deleted", 4, "1".to_owned()),
        ]
    );
    let req = as_user(
        &mut c,
        "cy",
        pb::HistoryRequest {
            room: "g".into(),
            cursor: Some(pb::history_request::Cursor::After(0)),
            limit: 10,
        },
    )
    .await;
    let page = c.history(req).await.expect("history").into_inner();
    assert!(page.messages[0].deleted && page.messages[0].text.is_empty());
    assert!(
        page.messages[1].text.is_empty(),
        "the edit lost its text too"
    );
}

#[test]
fn typing_reaches_the_room_over_rest_and_websocket_and_is_never_replayed() {
    let server = Server::smol(&["--rate-burst=0"]);
    create_owned(&server, "t", "ada");
    let mut cy = SseStream::open(server.addr, "/api/v1/rooms/t/events?user=cy", None)
        .expect("the stream opens");
    let typing = |user: &str| {
        let url = server.url(&format!("/api/v1/rooms/t/typing?user={user}"));
        call("POST", &url, None)
    };
    assert_eq!(typing("bob").status, 204);
    let seen = cy.next_of("typing").expect("a typing event").json();
    assert_eq!(seen["user"], "bob");
    assert!(seen["expires_in_ms"].as_u64().unwrap() >= 1000, "{seen}");
    // Over WebSocket too, unanswered.
    let mut dan = roomcast_e2e::ws_connect(&server, "/api/v1/rooms/t/ws?user=dan");
    send(&mut dan, json!({ "type": "typing" }));
    assert_eq!(
        cy.next_of("typing").expect("dan's typing").json()["user"],
        "dan"
    );
    // Nobody outside may: a room that does not exist, a name that is not one.
    call(
        "POST",
        &server.url("/api/v1/rooms/nope/typing?user=bob"),
        None,
    )
    .problem(404, "room-not-found");
    // Never replayed: a listener resuming from the start gets messages, not typing.
    say(&server, "t", "bob", "done typing");
    let mut late = SseStream::open(server.addr, "/api/v1/rooms/t/events?user=eve", Some("0"))
        .expect("the stream opens");
    let mut kinds = Vec::new();
    while !kinds.contains(&"message".to_owned()) {
        kinds.push(late.next_event().expect("an event").event);
    }
    assert!(!kinds.contains(&"typing".to_owned()), "{kinds:?}");
}

#[tokio::test(flavor = "current_thread")]
async fn typing_over_grpc() {
    let server = Server::tokio(&["--rate-burst=0"]);
    let mut c = grpc_client(&server).await;
    grpc::create(&mut c, "gt").await;
    let mut stream = grpc::open(&mut c, "cy", "gt", None).await;
    let req = as_user(&mut c, "bob", pb::TypingRequest { room: "gt".into() }).await;
    c.typing(req).await.expect("said");
    loop {
        match grpc::next(&mut stream).await.expect("open") {
            Event::Typing(t) => {
                assert_eq!(t.user, "bob");
                break;
            }
            Event::Presence(_) | Event::Joined(_) | Event::Left(_) => {}
            other @ (Event::Message(_)
            | Event::Gap(_)
            | Event::Closed(_)
            | Event::Edited(_)
            | Event::Deleted(_)
            | Event::Reaction(_)
            | Event::Moderation(_)) => panic!("unexpected {other:?}"),
        }
    }
}
