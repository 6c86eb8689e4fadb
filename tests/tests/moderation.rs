//! Moderation against the real binaries: moderators appointed, mutes, kicks and bans over
//! REST with SSE, WebSocket and gRPC, kept across a restart; every refusal named.

use roomcast_e2e::grpc::{self, as_user};
use roomcast_e2e::sse::SseStream;
use roomcast_e2e::{Server, call, get, say};
use roomcast_proto::v1 as pb;
use roomcast_proto::v1::stream_event::Event;
use serde_json::{Value, json};
use tonic::Code;

fn create_owned(server: &Server, room: &str, owner: &str) {
    let url = server.url(&format!("/api/v1/rooms?user={owner}"));
    let res = call("POST", &url, Some(&json!({ "room": room })));
    assert_eq!(res.status, 201, "{}", res.body);
}

fn moderate(server: &Server, room: &str, by: &str, body: Value) -> roomcast_e2e::Answer {
    let url = server.url(&format!("/api/v1/rooms/{room}/moderation?user={by}"));
    call("POST", &url, Some(&body))
}

fn post(server: &Server, room: &str, user: &str, text: &str) -> roomcast_e2e::Answer {
    let url = server.url(&format!("/api/v1/rooms/{room}/messages?user={user}"));
    call("POST", &url, Some(&json!({ "text": text })))
}

fn listen(server: &Server, room: &str, user: &str) -> SseStream {
    let path = format!("/api/v1/rooms/{room}/events?user={user}");
    SseStream::open(server.addr, &path, None).expect("the stream opens")
}

/// The stream's `closed` event, skipping the rest (its `by_id`, which names whoever `by` is,
/// checked and left out).
fn closed(stream: &mut SseStream) -> Value {
    let mut closed = stream.next_of("closed").expect("a closed event").json();
    if let Some(id) = closed.as_object_mut().and_then(|c| c.remove("by_id")) {
        let by = closed["by"].as_str().unwrap_or_default();
        assert!(
            id.as_str()
                .unwrap_or_default()
                .starts_with(&format!("{by}~")),
            "{id}"
        );
    }
    closed
}

#[test]
fn owners_appoint_moderators_who_mute_kick_and_ban() {
    let dir = tempfile::tempdir().unwrap();
    let data = format!("--data-dir={}", dir.path().display());
    let mut server = Server::smol(&[&data, "--rate-burst=0"]);
    create_owned(&server, "mod", "ada");
    // Whom the moderators name holds their name (a name nobody holds is nobody to moderate).
    for user in ["bob", "cy", "dan"] {
        roomcast_e2e::guest_token(server.addr, user).expect("a guest");
    }
    let mut watching = listen(&server, "mod", "eve");

    // Only the owner appoints; cy becomes a moderator, and everyone sees it.
    moderate(
        &server,
        "mod",
        "bob",
        json!({ "target": "cy", "action": "appoint" }),
    )
    .problem(403, "permission-denied");
    let appointed = moderate(
        &server,
        "mod",
        "ada",
        json!({ "target": "cy", "action": "appoint" }),
    );
    assert_eq!(appointed.status, 201, "{}", appointed.body);
    let seen = watching
        .next_of("moderation")
        .expect("the appointment")
        .json();
    assert_eq!(
        (
            seen["user"].as_str(),
            seen["target"].as_str(),
            seen["action"].as_str()
        ),
        (Some("ada"), Some("cy"), Some("appoint"))
    );

    // A mute: bob's posts and reactions are refused, saying for how long; his own message he
    // may still delete.
    let mine = say(&server, "mod", "bob", "before the mute")["seq"]
        .as_u64()
        .unwrap();
    let muted = moderate(
        &server,
        "mod",
        "cy",
        json!({ "target": "bob", "action": "mute", "seconds": 120 }),
    );
    assert_eq!(muted.status, 201, "{}", muted.body);
    assert!(muted.json()["until"].is_string());
    let refused = post(&server, "mod", "bob", "let me speak");
    let problem = refused.problem(403, "muted");
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("muted in this room for another")
    );
    assert!(
        refused.header("retry-after").is_some(),
        "a mute says when it ends"
    );
    let react = server.url(&format!(
        "/api/v1/rooms/mod/messages/{mine}/reactions/%F0%9F%91%8D?user=bob"
    ));
    call("PUT", &react, None).problem(403, "muted");
    let delete = server.url(&format!("/api/v1/rooms/mod/messages/{mine}?user=bob"));
    assert_eq!(
        call("DELETE", &delete, None).status,
        201,
        "a muted user may delete their own"
    );
    let unmuted = moderate(
        &server,
        "mod",
        "cy",
        json!({ "target": "bob", "action": "unmute" }),
    );
    assert_eq!(unmuted.status, 201);
    assert_eq!(post(&server, "mod", "bob", "thanks").status, 201);

    // A kick ends bob's stream; he may come back.
    let mut bobs = listen(&server, "mod", "bob");
    assert_eq!(
        moderate(
            &server,
            "mod",
            "cy",
            json!({ "target": "bob", "action": "kick" })
        )
        .status,
        201
    );
    assert_eq!(
        closed(&mut bobs),
        json!({ "type": "closed", "reason": "kicked", "by": "cy" })
    );
    let mut bobs = listen(&server, "mod", "bob");

    // A ban ends it and keeps him out: no stream, no history, no posts, no moderating.
    assert_eq!(
        moderate(
            &server,
            "mod",
            "cy",
            json!({ "target": "bob", "action": "ban" })
        )
        .status,
        201
    );
    assert_eq!(
        closed(&mut bobs),
        json!({ "type": "closed", "reason": "banned", "by": "cy" })
    );
    let path = "/api/v1/rooms/mod/events?user=bob";
    let refused = SseStream::open(server.addr, path, None)
        .err()
        .expect("refused");
    assert_eq!(
        (refused.status, refused.body["code"].as_str()),
        (403, Some("banned"))
    );
    get(&server.url("/api/v1/rooms/mod/messages?user=bob")).problem(403, "banned");
    post(&server, "mod", "bob", "hello?").problem(403, "banned");
    moderate(
        &server,
        "mod",
        "bob",
        json!({ "target": "eve", "action": "kick" }),
    )
    .problem(403, "banned");

    // What nobody may do, and what is no moderation at all.
    for (by, body, status, code) in [
        (
            "cy",
            json!({ "target": "ada", "action": "ban" }),
            409,
            "moderation",
        ),
        (
            "cy",
            json!({ "target": "cy", "action": "mute" }),
            409,
            "moderation",
        ),
        (
            "eve",
            json!({ "target": "dan", "action": "kick" }),
            403,
            "permission-denied",
        ),
        (
            "cy",
            json!({ "target": "dan", "action": "shout" }),
            400,
            "moderation",
        ),
        (
            "cy",
            json!({ "target": "dan", "action": "mute", "seconds": 0 }),
            400,
            "moderation",
        ),
        (
            "cy",
            json!({ "target": "no such name!", "action": "ban" }),
            400,
            "invalid-user-name",
        ),
    ] {
        moderate(&server, "mod", by, body).problem(status, code);
    }
    // A moderator may not ban another; the owner may dismiss one.
    assert_eq!(
        moderate(
            &server,
            "mod",
            "ada",
            json!({ "target": "dan", "action": "appoint" })
        )
        .status,
        201
    );
    moderate(
        &server,
        "mod",
        "cy",
        json!({ "target": "dan", "action": "ban" }),
    )
    .problem(403, "permission-denied");
    // A moderator deletes anyone's message.
    let dans = say(&server, "mod", "eve", "spam")["seq"].as_u64().unwrap();
    let delete = server.url(&format!("/api/v1/rooms/mod/messages/{dans}?user=cy"));
    assert_eq!(call("DELETE", &delete, None).status, 201);

    // Kept across a restart: bob still banned, cy still a moderator.
    drop(watching);
    server.signal("TERM");
    server.wait();
    let server = Server::smol(&[&data, "--rate-burst=0"]);
    post(&server, "mod", "bob", "after the restart").problem(403, "banned");
    assert_eq!(
        moderate(
            &server,
            "mod",
            "cy",
            json!({ "target": "bob", "action": "unban" })
        )
        .status,
        201
    );
    assert_eq!(post(&server, "mod", "bob", "back").status, 201);
    let history = get(&server.url("/api/v1/rooms/mod/messages?after=0&limit=100&user=eve")).json();
    let actions: Vec<&str> = history["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["action"].as_str())
        .collect();
    assert_eq!(
        actions,
        [
            "appoint", "mute", "unmute", "kick", "ban", "appoint", "unban"
        ]
    );
}

#[test]
fn moderation_over_websocket() {
    let server = Server::smol(&["--rate-burst=0"]);
    create_owned(&server, "wsm", "ada");
    let mut ada = roomcast_e2e::ws_connect(&server, "/api/v1/rooms/wsm/ws?user=ada");
    let mut bob = roomcast_e2e::ws_connect(&server, "/api/v1/rooms/wsm/ws?user=bob");
    let send = |socket: &mut roomcast_e2e::WsSocket, frame: Value| {
        socket
            .send(tungstenite::Message::text(frame.to_string()))
            .expect("send");
    };
    let next_of = |socket: &mut roomcast_e2e::WsSocket, kind: &str| loop {
        if let tungstenite::Message::Text(text) = socket.read().expect("a frame") {
            let frame: Value = serde_json::from_str(&text).expect("JSON");
            if frame["type"] == kind {
                return frame;
            }
        }
    };
    send(
        &mut ada,
        json!({ "type": "moderate", "user": "bob", "action": "mute", "seconds": 30, "ref": "m" }),
    );
    let ack = next_of(&mut ada, "ack");
    assert_eq!(
        (ack["ref"].as_str(), ack["message"]["action"].as_str()),
        (Some("m"), Some("mute"))
    );
    send(
        &mut bob,
        json!({ "type": "submit", "text": "hi", "ref": "s" }),
    );
    assert_eq!(next_of(&mut bob, "error")["code"], "muted");
    send(
        &mut ada,
        json!({ "type": "moderate", "user": "bob", "action": "nonsense", "ref": "x" }),
    );
    assert_eq!(next_of(&mut ada, "error")["code"], "moderation");
    send(
        &mut ada,
        json!({ "type": "moderate", "user": "bob", "action": "ban", "ref": "b" }),
    );
    let closed = next_of(&mut bob, "closed");
    assert_eq!(
        (closed["reason"].as_str(), closed["by"].as_str()),
        (Some("banned"), Some("ada"))
    );
}

#[tokio::test(flavor = "current_thread")]
async fn moderation_over_grpc() {
    let server = Server::tokio(&["--rate-burst=0"]);
    let mut c = grpc::client(&server).await;
    grpc::create(&mut c, "g").await;
    let room_owner = "owner".to_owned(); // who `grpc::create` creates rooms as
    let mut stream = grpc::open(&mut c, "bob", "g", None).await;
    grpc::guest(&mut c, "cy").await;
    let moderate = |user: &str, action: &str, seconds: u64| pb::ModerateRequest {
        room: "g".into(),
        user: user.into(),
        action: action.into(),
        seconds,
    };
    let req = as_user(&mut c, &room_owner, moderate("bob", "mute", 60)).await;
    let muted = c.moderate(req).await.expect("muted").into_inner();
    assert_eq!(muted.message.expect("entry").action, "mute");
    let req = as_user(
        &mut c,
        "bob",
        pb::SubmitRequest {
            room: "g".into(),
            text: "hi".into(),
            idempotency_key: String::new(),
            reply_to: 0,
            attachments: Vec::new(),
        },
    )
    .await;
    let refused = c.submit(req).await.unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied);
    assert!(refused.message().contains("muted"), "{}", refused.message());
    let req = as_user(&mut c, "bob", moderate("cy", "kick", 0)).await;
    assert_eq!(
        c.moderate(req).await.unwrap_err().code(),
        Code::PermissionDenied
    );
    let req = as_user(&mut c, &room_owner, moderate(&room_owner, "ban", 0)).await;
    assert_eq!(
        c.moderate(req).await.unwrap_err().code(),
        Code::FailedPrecondition
    );
    let req = as_user(&mut c, &room_owner, moderate("bob", "exile", 0)).await;
    assert_eq!(
        c.moderate(req).await.unwrap_err().code(),
        Code::InvalidArgument
    );
    let req = as_user(&mut c, &room_owner, moderate("bob", "ban", 0)).await;
    c.moderate(req).await.expect("banned");
    let mut actions = Vec::new();
    loop {
        match grpc::next(&mut stream).await {
            Some(Event::Moderation(m)) => actions.push(m.action),
            Some(Event::Closed(closed)) => {
                assert_eq!(
                    (closed.reason.as_str(), closed.by.as_str()),
                    ("banned", room_owner.as_str())
                );
                break;
            }
            Some(_) => {}
            None => panic!("the stream ended without saying why"),
        }
    }
    assert_eq!(actions, ["mute", "ban"]);
}
