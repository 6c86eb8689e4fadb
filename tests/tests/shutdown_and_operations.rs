//! Operating the server: health, metrics, logs an operator can read (and that give nothing
//! away), a data dir only its owner can read, and a graceful stop on SIGTERM or SIGINT that
//! tells every open stream before exiting 0.

use std::net::TcpStream;

use roomcast_e2e::{PATIENCE, Server, SseStream, create_room, get, metric, post_json, say};
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
    for (series, value) in [
        ("roomcast_connections{transport=\"sse\"}", 1.0),
        ("roomcast_rooms", 1.0),
        ("roomcast_listeners", 1.0),
        ("roomcast_messages_accepted_total", 1.0),
        ("roomcast_refused_total{reason=\"empty-message\"}", 1.0),
        // Room creation and the message, committed by the store's writer.
        ("roomcast_store_records_total", 2.0),
    ] {
        assert_eq!(metric(&text, series), Some(value), "{series} in:\n{text}");
    }
    // The presence snapshot and the message, at least, went out on the stream.
    let deliveries = metric(&text, "roomcast_deliveries_total{transport=\"sse\"}");
    assert!(
        deliveries.is_some_and(|n| n >= 2.0),
        "{deliveries:?} in:\n{text}"
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

fn mode(path: &std::path::Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

#[test]
fn the_data_dir_and_its_files_are_readable_by_their_owner_only() {
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("fresh");
    let server = Server::smol(&[&format!("--data-dir={}", dir.display())]);
    create_room(&server, "m");
    say(&server, "m", "ada", "a private word");
    assert_eq!(mode(&dir), 0o700, "the data dir");
    for file in [
        "roomcast.db",
        "roomcast.db-wal",
        "roomcast.db-shm",
        "jwt-secret",
        "roomcast.lock",
    ] {
        assert_eq!(mode(&dir.join(file)), 0o600, "{file}");
    }
    drop(server);
    // A data dir left readable by an older roomcast is closed up at start.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(
        dir.join("roomcast.db"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    let server = Server::smol(&[&format!("--data-dir={}", dir.display())]);
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(&dir.join("roomcast.db")), 0o600);
    drop(server);
}

#[test]
fn requests_sign_ins_and_refusals_are_logged_without_secrets_or_colours() {
    let server = Server::smol(&[]);
    let password = "correct horse battery";
    let registered = post_json(
        &server.url("/api/v1/auth/register"),
        &json!({"name": "ada", "password": password}),
    );
    assert_eq!(registered.status, 201, "{}", registered.body);
    let token = registered.json()["token"].as_str().unwrap().to_owned();
    let auth = format!("Bearer {token}");
    let headers = [
        ("Content-Type", "application/json"),
        ("Authorization", auth.as_str()),
    ];
    let post = |path: &str, body: &str| {
        roomcast_e2e::request_with("POST", &server.url(path), &headers, Some(body))
    };
    assert_eq!(post("/api/v1/rooms", r#"{"room":"logged"}"#).status, 201);
    assert_eq!(
        post("/api/v1/rooms/logged/messages", r#"{"text":""}"#).status,
        400
    );
    let wrong = post_json(
        &server.url("/api/v1/auth/sign-in"),
        &json!({"name": "ada", "password": "wrong guess"}),
    );
    assert_eq!(wrong.status, 401);
    assert_eq!(
        roomcast_e2e::request_with(
            "DELETE",
            &server.url("/api/v1/rooms/logged"),
            &headers,
            None
        )
        .status,
        204
    );

    // One access line per request: method, route (the pattern, not the path), status, user.
    let access = server.wait_for_log("route=/api/v1/rooms/:room/messages");
    for field in ["method=POST", "status=400", "user=ada", "duration_ms="] {
        assert!(access.contains(field), "{field} missing from {access}");
    }
    // Security events, by reason.
    let refused = server.wait_for_log("sign-in refused");
    assert!(
        refused.contains("ada") && refused.contains("bad-credentials"),
        "{refused}"
    );
    let deleted = server.wait_for_log("room deleted");
    assert!(
        deleted.contains("room=logged") && deleted.contains("by=ada"),
        "{deleted}"
    );
    let refusal = server.wait_for_log("refused");
    assert!(!refusal.is_empty());
    // Nothing secret, and no colour codes on a pipe.
    let everything = server.log_lines_containing("");
    for line in &everything {
        assert!(!line.contains(&token), "a token in the log: {line}");
        assert!(!line.contains(password), "a password in the log: {line}");
        assert!(
            !line.contains('\u{1b}'),
            "colour codes in the log: {line:?}"
        );
    }
}
