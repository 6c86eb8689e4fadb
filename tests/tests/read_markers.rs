//! Read markers and unread counts against the real binaries: over REST (kept across a
//! restart), gRPC, and two nodes sharing rooms through Redis.

use roomcast_e2e::grpc::{self, as_user};
use roomcast_e2e::redis::{self, Redis};
use roomcast_e2e::{Server, call, create_room, get, known_token, remember_token, say};
use roomcast_proto::v1 as pb;
use serde_json::{Value, json};

/// What `user`'s room list says is unread in `room` (`None`: no count).
fn unread(server: &Server, user: &str, room: &str) -> Option<u64> {
    let res = get(&server.url(&format!("/api/v1/rooms?user={user}")));
    assert_eq!(res.status, 200, "{}", res.body);
    let rooms = res.json()["rooms"].as_array().expect("rooms").clone();
    let listed = rooms
        .iter()
        .find(|r| r["id"] == room)
        .unwrap_or_else(|| panic!("{room} is listed: {rooms:?}"));
    listed["unread"].as_u64()
}

fn mark(server: &Server, user: &str, room: &str, seq: Value) -> roomcast_e2e::Answer {
    let url = server.url(&format!("/api/v1/rooms/{room}/read?user={user}"));
    call("PUT", &url, Some(&json!({ "seq": seq })))
}

fn react(server: &Server, user: &str, room: &str, seq: u64) {
    let url = server.url(&format!(
        "/api/v1/rooms/{room}/messages/{seq}/reactions/%F0%9F%91%8D?user={user}"
    ));
    let res = call("PUT", &url, None);
    assert_eq!(res.status, 201, "{}", res.body);
}

#[test]
fn unread_counts_messages_after_the_marker_over_rest_and_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let data = format!("--data-dir={}", dir.path().display());
    let mut server = Server::smol(&[&data, "--rate-burst=0"]);
    create_room(&server, "r");
    for text in ["one", "two", "three"] {
        say(&server, "r", "ada", text);
    }
    assert_eq!(unread(&server, "bob", "r"), None, "never read: no count");

    let marked = mark(&server, "bob", "r", json!(2));
    assert_eq!(marked.status, 200, "{}", marked.body);
    assert_eq!(marked.json(), json!({ "up_to": 2, "unread": 1 }));
    react(&server, "ada", "r", 1);
    assert_eq!(
        unread(&server, "bob", "r"),
        Some(1),
        "a reaction is not a message"
    );
    say(&server, "r", "ada", "four");
    assert_eq!(unread(&server, "bob", "r"), Some(2));
    let back = mark(&server, "bob", "r", json!(1));
    assert_eq!(
        back.json(),
        json!({ "up_to": 2, "unread": 2 }),
        "never back"
    );

    // A direct message waits unread for its other person.
    let url = server.url("/api/v1/direct?user=ada");
    let dm = call("POST", &url, Some(&json!({ "user": "bob" })));
    assert!(dm.status == 200 || dm.status == 201, "{}", dm.body);
    let dm = dm.json()["id"].as_str().expect("the room's id").to_owned();
    say(&server, &dm, "ada", "psst");
    assert_eq!(unread(&server, "bob", &dm), Some(1));

    // Bad input is named, and changes nothing.
    mark(&server, "bob", "r", json!("two")).problem(422, "invalid-body");
    mark(&server, "bob", "nowhere", json!(1)).problem(404, "room-not-found");
    mark(&server, "cy", &dm, json!(1)).problem(403, "permission-denied");
    assert_eq!(unread(&server, "bob", "r"), Some(2));

    server.signal("TERM");
    server.wait();
    let server = Server::smol(&[&data, "--rate-burst=0"]);
    assert_eq!(
        unread(&server, "bob", "r"),
        Some(2),
        "kept across a restart"
    );
    assert_eq!(unread(&server, "bob", &dm), Some(1));
    let all = mark(&server, "bob", "r", json!(99));
    assert_eq!(all.json(), json!({ "up_to": 5, "unread": 0 }));
    assert_eq!(unread(&server, "bob", "r"), Some(0));
}

#[tokio::test(flavor = "current_thread")]
async fn unread_over_grpc() {
    let server = Server::tokio(&["--rate-burst=0"]);
    let mut c = grpc::client(&server).await;
    grpc::create(&mut c, "g").await;
    for text in ["a", "b", "c"] {
        grpc::submit(&mut c, "ada", "g", text).await;
    }
    let req = as_user(
        &mut c,
        "bob",
        pb::MarkReadRequest {
            room: "g".into(),
            seq: 1,
        },
    )
    .await;
    let marked = c.mark_read(req).await.expect("marked").into_inner();
    assert_eq!((marked.up_to, marked.unread), (1, 2));
    let req = as_user(&mut c, "bob", pb::ListRoomsRequest::default()).await;
    let rooms = c.list_rooms(req).await.expect("listed").into_inner().rooms;
    let g = rooms.iter().find(|r| r.id == "g").expect("g is listed");
    assert_eq!(g.unread, Some(2));
    let req = as_user(&mut c, "cy", pb::ListRoomsRequest::default()).await;
    let rooms = c.list_rooms(req).await.expect("listed").into_inner().rooms;
    let g = rooms.iter().find(|r| r.id == "g").expect("g is listed");
    assert_eq!(g.unread, None, "cy never read it");
    let req = as_user(
        &mut c,
        "bob",
        pb::MarkReadRequest {
            room: "nowhere".into(),
            seq: 1,
        },
    )
    .await;
    assert_eq!(
        c.mark_read(req).await.unwrap_err().code(),
        tonic::Code::NotFound
    );
}

#[test]
fn unread_is_one_count_across_nodes() {
    if !redis::available() {
        eprintln!("redis-server is not installed: skipping");
        return;
    }
    let redis = Redis::start(&[]);
    let url = redis.url();
    let args = redis::node_args(&url, &[]);
    let a = Server::smol(&args);
    let b = Server::smol(&args);
    create_room(&a, "r");
    say(&a, "r", "ada", "from a");
    assert_eq!(unread(&a, "bob", "r"), None);
    // Tokens are good on every node.
    for user in ["ada", "bob"] {
        let token = known_token(a.addr, user).expect("a token from node a");
        remember_token(b.addr, user, &token);
    }
    say(&b, "r", "ada", "from b");
    react(&a, "ada", "r", 1);
    let marked = mark(&b, "bob", "r", json!(1));
    assert_eq!(marked.json(), json!({ "up_to": 1, "unread": 1 }));
    say(&a, "r", "ada", "again from a");
    for node in [&a, &b] {
        assert_eq!(unread(node, "bob", "r"), Some(2), "every node counts alike");
    }
    let marked = mark(&a, "bob", "r", json!(4));
    assert_eq!(marked.json(), json!({ "up_to": 4, "unread": 0 }));
    assert_eq!(unread(&b, "bob", "r"), Some(0));
}

#[test]
fn a_websocket_client_marks_what_it_has_shown() {
    use tungstenite::Message;
    let server = Server::smol(&["--rate-burst=0"]);
    create_room(&server, "w");
    for text in ["one", "two"] {
        say(&server, "w", "ada", text);
    }
    let mut bob = roomcast_e2e::ws_connect(&server, "/api/v1/rooms/w/ws?user=bob");
    let mut answer = |frame: Value| {
        bob.send(Message::text(frame.to_string())).expect("send");
        loop {
            if let Message::Text(text) = bob.read().expect("a frame") {
                let frame: Value = serde_json::from_str(&text).expect("JSON");
                if frame["type"] == "read" || frame["type"] == "error" {
                    return frame;
                }
            }
        }
    };
    let read = answer(json!({ "type": "read", "seq": 1, "ref": "r1" }));
    assert_eq!(
        read,
        json!({ "type": "read", "ref": "r1", "up_to": 1, "unread": 1 })
    );
    let bad = answer(json!({ "type": "read", "seq": "x" }));
    assert_eq!(bad["code"], "invalid-body", "{bad}");
    assert_eq!(unread(&server, "bob", "w"), Some(1));
}
