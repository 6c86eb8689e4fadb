//! Operating the server: health, metrics, and a graceful stop on SIGTERM or SIGINT that tells
//! every open stream before exiting 0.

use std::net::TcpStream;

use roomcast_e2e::{PATIENCE, Server, SseStream, create_room, get, post_json, say};
use serde_json::json;
use tungstenite::Message;
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::stream::MaybeTlsStream;

#[test]
fn health_and_metrics_report_what_happens() {
    let server = Server::smol(&[]);
    assert_eq!(get(&server.url("/healthz")).json(), json!({"status": "ok"}));
    create_room(&server, "m");
    let _stream = {
        let mut s = SseStream::open(server.addr, "/api/v1/rooms/m/events?user=bob", None).unwrap();
        s.next_event().unwrap();
        s
    };
    say(&server, "m", "ada", "counted");
    post_json(
        &server.url("/api/v1/rooms/m/messages"),
        &json!({"user": "ada", "text": ""}),
    );
    let metrics = get(&server.url("/metrics"));
    assert_eq!(metrics.status, 200);
    assert!(metrics.content_type.starts_with("text/plain"));
    let text = metrics.body;
    for expected in [
        "roomcast_connections{transport=\"sse\"} 1",
        "roomcast_rooms 1",
        "roomcast_listeners 1",
        "roomcast_messages_accepted_total 1",
        "roomcast_refused_total{reason=\"empty-message\"} 1",
        // Room creation and the message, committed by the store's writer.
        "roomcast_store_records_total 2",
    ] {
        assert!(
            text.contains(expected),
            "metrics lack {expected:?}:\n{text}"
        );
    }
    assert!(
        text.contains("roomcast_deliveries_total{transport=\"sse\"}"),
        "{text}"
    );
}

#[test]
fn sigterm_ends_streams_cleanly_and_exits_zero() {
    let mut server = Server::smol(&[]);
    create_room(&server, "bye");
    let mut sse = SseStream::open(server.addr, "/api/v1/rooms/bye/events?user=bob", None).unwrap();
    sse.next_event().unwrap();
    let mut ws = roomcast_e2e::ws_connect(&server, "/api/v1/rooms/bye/ws?user=cy");
    if let MaybeTlsStream::Plain(tcp) = ws.get_ref() {
        tcp.set_read_timeout(Some(PATIENCE)).unwrap();
    }
    let _ = ws.read().unwrap(); // the presence snapshot: the socket is live

    server.signal("TERM");

    assert_eq!(
        sse.next_of("closed").unwrap().json(),
        json!({"type": "closed", "reason": "shutdown"})
    );
    assert!(sse.next_event().is_none(), "the SSE stream ends");
    let mut saw_closed_event = false;
    let close = loop {
        match ws.read() {
            Ok(Message::Text(t)) => saw_closed_event |= t.contains("\"shutdown\""),
            Ok(Message::Close(frame)) => break frame.map(|f| f.code),
            Ok(_) => {}
            Err(e) => panic!("the socket should close cleanly: {e}"),
        }
    };
    assert!(saw_closed_event, "the WebSocket got the closed event first");
    assert_eq!(close, Some(CloseCode::Away));
    let status = server.wait();
    assert_eq!(status.code(), Some(0), "a clean exit");
    assert!(
        TcpStream::connect(server.addr).is_err(),
        "no longer listening"
    );
}

#[test]
fn sigint_exits_zero_too() {
    let mut server = Server::smol(&[]);
    server.signal("INT");
    assert_eq!(server.wait().code(), Some(0));
}
