//! WebSocket against the real binary: events out, submits in, refusals as frames, resume,
//! deletion and oversized frames.

use std::net::TcpStream;

use roomcast_e2e::{PATIENCE, Server, create_room, delete, get, guest_token, ids_checked, say};
use serde_json::{Value, json};
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::stream::MaybeTlsStream;
use tungstenite::{Message, WebSocket};

type Socket = WebSocket<MaybeTlsStream<TcpStream>>;

fn connect(server: &Server, path: &str) -> Socket {
    roomcast_e2e::ws_connect(server, path)
}

/// The next JSON text frame (pings do not count, and do not extend the wait).
fn next(socket: &mut Socket) -> Value {
    let deadline = std::time::Instant::now() + PATIENCE;
    loop {
        assert!(
            std::time::Instant::now() < deadline,
            "no frame within the patience"
        );
        match socket.read().expect("a frame") {
            Message::Text(text) => return serde_json::from_str(&text).expect("JSON frame"),
            Message::Ping(_) | Message::Pong(_) => {}
            other @ (Message::Binary(_) | Message::Close(_) | Message::Frame(_)) => {
                panic!("unexpected frame {other:?}")
            }
        }
    }
}

fn next_of(socket: &mut Socket, kind: &str) -> Value {
    loop {
        let frame = next(socket);
        if frame["type"] == kind {
            return frame;
        }
    }
}

fn send(socket: &mut Socket, frame: Value) {
    socket.send(Message::text(frame.to_string())).expect("send");
}

#[test]
fn events_flow_out_and_submits_flow_in() {
    let server = Server::smol(&[]);
    create_room(&server, "ws");
    let mut ada = connect(&server, "/api/v1/rooms/ws/ws?user=ada");
    assert_eq!(
        ids_checked(next(&mut ada)),
        json!({"type": "presence", "kind": "snapshot", "users": [{"user": "ada", "listeners": 1}]})
    );
    let mut bob = connect(&server, "/api/v1/rooms/ws/ws?user=bob");
    next_of(&mut bob, "presence");
    assert_eq!(
        ids_checked(next(&mut ada)),
        json!({"type": "presence", "kind": "joined", "user": "bob"})
    );

    send(
        &mut ada,
        json!({"type": "submit", "text": "hi from a socket 🧦", "ref": "r1"}),
    );
    // The poster hears its own message too; the ack and the message may come in either order.
    let (first, second) = (next(&mut ada), next(&mut ada));
    let (ack, own) = if first["type"] == "ack" {
        (first, second)
    } else {
        (second, first)
    };
    assert_eq!(
        (ack["type"].as_str(), own["type"].as_str()),
        (Some("ack"), Some("message"))
    );
    assert_eq!(own["seq"], 1);
    assert_eq!(ack["ref"], "r1");
    assert_eq!(ack["duplicate"], false);
    assert_eq!(ack["message"]["seq"], 1);
    assert_eq!(ack["message"]["user"], "ada", "the socket's user posts");
    let message = next_of(&mut bob, "message");
    assert_eq!(
        (message["seq"].clone(), message["text"].clone()),
        (json!(1), json!("hi from a socket 🧦"))
    );

    // A retry with the same key is answered with the original.
    send(
        &mut ada,
        json!({"type": "submit", "text": "once", "idempotency_key": "k-1", "ref": "a"}),
    );
    send(
        &mut ada,
        json!({"type": "submit", "text": "once", "idempotency_key": "k-1", "ref": "b"}),
    );
    let (a, b) = (next_of(&mut ada, "ack"), next_of(&mut ada, "ack"));
    assert_eq!(a["message"]["seq"], b["message"]["seq"]);
    assert_eq!(
        (a["duplicate"].clone(), b["duplicate"].clone()),
        (json!(false), json!(true))
    );
}

#[test]
fn bad_frames_are_answered_and_the_connection_stays_open() {
    let server = Server::smol(&["--max-message-bytes=16"]);
    create_room(&server, "strict");
    let mut ws = connect(&server, "/api/v1/rooms/strict/ws?user=ada");
    next(&mut ws);
    socket_text(&mut ws, "{not json");
    assert_eq!(next_of(&mut ws, "error")["code"], "malformed-json");
    send(&mut ws, json!({"type": "shout", "text": "?"}));
    assert_eq!(next_of(&mut ws, "error")["code"], "invalid-body");
    send(&mut ws, json!({"type": "submit", "text": "   ", "ref": 7}));
    assert_eq!(
        next_of(&mut ws, "error")["code"],
        "invalid-body",
        "ref must be a string"
    );
    send(
        &mut ws,
        json!({"type": "submit", "text": "   ", "ref": "e"}),
    );
    let empty = next_of(&mut ws, "error");
    assert_eq!(
        (empty["code"].as_str(), empty["ref"].as_str()),
        (Some("empty-message"), Some("e"))
    );
    send(
        &mut ws,
        json!({"type": "submit", "text": "far more than sixteen bytes"}),
    );
    let large = next_of(&mut ws, "error");
    assert_eq!(large["code"], "message-too-large");
    assert!(large["detail"].as_str().unwrap().contains("16"), "{large}");
    ws.send(Message::binary(vec![1, 2, 3])).unwrap();
    assert_eq!(next_of(&mut ws, "error")["code"], "binary-frame");
    send(&mut ws, json!({"type": "submit", "text": "still here"}));
    assert_eq!(next_of(&mut ws, "ack")["message"]["text"], "still here");
}

fn socket_text(ws: &mut Socket, text: &str) {
    ws.send(Message::text(text)).unwrap();
}

#[test]
fn an_oversized_frame_closes_the_connection_with_1009() {
    let server = Server::smol(&[]);
    create_room(&server, "big");
    let mut ws = connect(&server, "/api/v1/rooms/big/ws?user=ada");
    next(&mut ws);
    socket_text(&mut ws, &"x".repeat(100 * 1024));
    // The answer is a close frame with 1009, not just a dropped connection.
    let code = loop {
        match ws.read() {
            Ok(Message::Close(frame)) => break frame.map(|f| f.code),
            Ok(Message::Text(_) | Message::Ping(_) | Message::Pong(_)) => continue,
            other => panic!("expected a close frame, got {other:?}"),
        }
    };
    assert_eq!(code, Some(CloseCode::Size), "closed for size");
    // Nobody else is affected.
    say(&server, "big", "bob", "fine");
}

#[test]
fn since_resumes_and_deletion_closes_the_socket() {
    let server = Server::smol(&["--rate-burst=0", "--admins=ada"]);
    create_room(&server, "wsr");
    for n in 1..=4 {
        say(&server, "wsr", "ada", &format!("m{n}"));
    }
    let mut ws = connect(&server, "/api/v1/rooms/wsr/ws?user=bob&since=2");
    assert_eq!(next_of(&mut ws, "message")["seq"], 3);
    assert_eq!(next_of(&mut ws, "message")["seq"], 4);
    assert_eq!(
        delete(&server.url("/api/v1/rooms/wsr?user=ada")).status,
        204
    );
    let mut closed = next_of(&mut ws, "closed");
    let by_id = closed.as_object_mut().unwrap().remove("by_id").unwrap();
    assert!(by_id.as_str().unwrap().starts_with("ada~"), "{by_id}");
    assert_eq!(
        closed,
        json!({"type": "closed", "reason": "deleted", "by": "ada"})
    );
    match ws.read() {
        Ok(Message::Close(Some(frame))) => assert_eq!(frame.code, CloseCode::Normal),
        other => panic!("expected a close frame, got {other:?}"),
    }
}

#[test]
fn a_plain_get_or_a_bad_room_is_a_problem_not_an_upgrade() {
    let server = Server::smol(&[]);
    create_room(&server, "plain");
    get(&server.url("/api/v1/rooms/plain/ws")).problem(426, "websocket-required");
    // With credentials in the handshake, a refusal is an HTTP answer.
    use tungstenite::client::IntoClientRequest;
    let mut request = server
        .ws_url("/api/v1/rooms/missing/ws")
        .into_client_request()
        .unwrap();
    let token = guest_token(server.addr, "ada").unwrap();
    request
        .headers_mut()
        .insert("Authorization", format!("Bearer {token}").parse().unwrap());
    match tungstenite::connect(request) {
        Err(tungstenite::Error::Http(res)) => assert_eq!(res.status(), 404),
        other => panic!(
            "expected a 404 refusal, got {:?}",
            other.map(|(_, r)| r.status())
        ),
    }
}

/// Opens a socket with no credentials at all: the first frame must sign in.
fn bare(server: &Server, path: &str) -> Socket {
    let (socket, _) = tungstenite::connect(server.ws_url(path)).expect("the upgrade succeeds");
    if let MaybeTlsStream::Plain(tcp) = socket.get_ref() {
        tcp.set_read_timeout(Some(PATIENCE)).unwrap();
    }
    socket
}

#[test]
fn a_token_in_the_first_frame_signs_the_socket_in() {
    let server = Server::smol(&[]);
    create_room(&server, "door");
    let token = guest_token(server.addr, "ada").unwrap();
    let mut ws = bare(&server, "/api/v1/rooms/door/ws");
    send(&mut ws, json!({"type": "auth", "token": token}));
    assert_eq!(next(&mut ws)["type"], "presence");
    send(
        &mut ws,
        json!({"type": "submit", "text": "hello", "ref": "1"}),
    );
    assert_eq!(next_of(&mut ws, "ack")["message"]["user"], "ada");

    // Anything else first (or a bad token) is refused, and the socket closed as a policy breach.
    for first in [
        json!({"type": "submit", "text": "sneaky"}),
        json!({"type": "auth", "token": "forged.token.here"}),
    ] {
        let mut ws = bare(&server, "/api/v1/rooms/door/ws");
        send(&mut ws, first);
        let refused = next(&mut ws);
        assert_eq!(refused["type"], "error");
        assert!(
            ["unauthenticated", "invalid-token"].contains(&refused["code"].as_str().unwrap()),
            "{refused}"
        );
        match ws.read() {
            Ok(Message::Close(Some(frame))) => assert_eq!(frame.code, CloseCode::Policy),
            other => panic!("expected a close frame, got {other:?}"),
        }
    }
    // A valid token for a room that does not exist: the reason, then the close.
    let mut ws = bare(&server, "/api/v1/rooms/nowhere/ws");
    send(&mut ws, json!({"type": "auth", "token": token}));
    assert_eq!(next(&mut ws)["code"], "room-not-found");
    let messages = get(&server.url("/api/v1/rooms/door/messages")).json();
    assert_eq!(
        messages["messages"].as_array().unwrap().len(),
        1,
        "only ada's message"
    );
}
