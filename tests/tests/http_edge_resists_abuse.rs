//! The HTTP edge against a hostile client over raw sockets: heads are bounded while they are
//! read, pipelined and early-answered requests are all served in order, ambiguous framing is
//! refused and the connection closed, HTTP/1.0 is served, bodies cannot trickle forever, a
//! WebSocket client that never reads cannot pile up pongs, and redirects go only to this site.

use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use roomcast_e2e::raw::{RawConn, get_request};
use roomcast_e2e::{Browser, PATIENCE, Server, guest_token};

/// Keeps writing `chunk` until the server stops taking it; returns how much it took.
fn write_until_refused(stream: &mut TcpStream, chunk: &[u8], most: usize) -> usize {
    stream
        .set_write_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut sent = 0;
    while sent < most {
        match stream.write(chunk) {
            Ok(n) => sent += n,
            Err(_) => break,
        }
    }
    sent
}

#[test]
fn a_head_without_an_end_is_cut_off_at_the_limit_in_bounded_memory() {
    let server = Server::smol(&[]);
    let before = server.rss_kib();
    let chunk = vec![b'a'; 64 * 1024];
    std::thread::scope(|s| {
        for _ in 0..4 {
            let server = &server;
            let chunk = &chunk;
            s.spawn(move || {
                let mut conn = RawConn::connect(server.addr);
                conn.send(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Long: ")
                    .unwrap();
                let mut stream = conn.stream().try_clone().unwrap();
                // Unbounded, the server took all 256 MB; bounded, it refuses after a few KiB
                // (what the kernel buffers on the way counts too).
                let sent = write_until_refused(&mut stream, chunk, 256 << 20);
                assert!(
                    sent < 32 << 20,
                    "the server took {sent} bytes of one header"
                );
                match conn.response() {
                    Ok(res) => {
                        res.problem(431, "head-too-large");
                    }
                    // The close may reset the connection before the answer is read.
                    Err(e) => eprintln!("no answer read: {e}"),
                }
            });
        }
    });
    let growth = server.rss_kib().saturating_sub(before);
    assert!(growth < 64 * 1024, "RSS grew by {growth} KiB");
    // Too many header lines, and one line too long, are the same refusal.
    let mut conn = RawConn::connect(server.addr);
    let many: String = (0..200).map(|i| format!("X-{i}: y\r\n")).collect();
    conn.send(format!("GET /healthz HTTP/1.1\r\nHost: x\r\n{many}\r\n").as_bytes())
        .unwrap();
    conn.response().unwrap().problem(431, "head-too-large");
    assert!(conn.closes_within(PATIENCE));
}

#[test]
fn pipelined_requests_are_all_answered_in_order() {
    let server = Server::smol(&[]);
    let mut conn = RawConn::connect(server.addr);
    let three = format!(
        "{}{}{}",
        get_request("/healthz"),
        get_request("/api/v1/nothing-here"),
        get_request("/healthz")
    );
    conn.send(three.as_bytes()).unwrap();
    assert_eq!(conn.response().unwrap().status(), 200);
    conn.response().unwrap().problem(404, "no-such-route");
    assert_eq!(conn.response().unwrap().status(), 200);
    // And the connection is still usable.
    conn.send(get_request("/healthz").as_bytes()).unwrap();
    assert_eq!(conn.response().unwrap().status(), 200);
}

#[test]
fn a_request_after_an_early_answer_is_not_swallowed() {
    let server = Server::smol(&[]);
    let token = guest_token(server.addr, "ada").unwrap();
    let body = r#"{"room":"lobby"}"#;
    // Each of these is answered before its body is read: 405, 401, 415.
    let early = [
        (
            format!(
                "DELETE /api/v1/rooms HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            ),
            405,
            "method-not-allowed",
        ),
        (
            format!(
                "POST /api/v1/rooms HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            ),
            401,
            "unauthenticated",
        ),
        (
            format!(
                "POST /api/v1/rooms HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            ),
            415,
            "unsupported-media-type",
        ),
    ];
    for (request, status, code) in early {
        let mut conn = RawConn::connect(server.addr);
        conn.send(format!("{request}{}", get_request("/healthz")).as_bytes())
            .unwrap();
        let res = conn.response().unwrap();
        res.problem(status, code);
        if status == 405 {
            // RFC 9110: a 405 says what the path does take.
            assert_eq!(res.header("allow"), Some("GET, HEAD, POST"), "{res:?}");
        }
        let next = conn.response().expect("the next request is answered");
        assert_eq!(next.status(), 200, "after {status}: {next:?}");
    }
}

/// Sends `request` and expects a 400 problem and a closed connection; nothing smuggled in the
/// body is answered.
fn refused_and_closed(server: &Server, request: &str, code: &str) {
    let mut conn = RawConn::connect(server.addr);
    conn.send(request.as_bytes()).unwrap();
    let res = conn.response().expect("an answer");
    res.problem(400, code);
    assert_eq!(res.header("connection"), Some("close"), "{res:?}");
    assert!(conn.closes_within(PATIENCE), "the connection is closed");
}

#[test]
fn ambiguous_framing_is_refused_and_the_connection_closed() {
    let server = Server::smol(&[]);
    let smuggled = get_request("/api/v1/nothing-here");
    refused_and_closed(
        &server,
        &format!(
            "POST /api/v1/rooms HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n{smuggled}"
        ),
        "bad-framing",
    );
    refused_and_closed(
        &server,
        &format!(
            "POST /api/v1/rooms HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n0\r\n\r\n{smuggled}"
        ),
        "bad-framing",
    );
    refused_and_closed(
        &server,
        &format!(
            "POST /api/v1/rooms HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nContent-Length: 40\r\n\r\n{smuggled}"
        ),
        "bad-framing",
    );
    refused_and_closed(
        &server,
        &format!("POST /api/v1/rooms HTTP/1.1\r\nHost: x\r\nContent-Length: +19\r\n\r\n{smuggled}"),
        "bad-framing",
    );
    refused_and_closed(
        &server,
        &format!(
            "POST /api/v1/rooms HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{smuggled}"
        ),
        "bad-framing",
    );
    // Bare LF line ends, a space before the colon, and a missing Host are refused too.
    refused_and_closed(
        &server,
        "GET /healthz HTTP/1.1\nHost: x\n\n",
        "malformed-request",
    );
    refused_and_closed(
        &server,
        "GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length : 3\r\n\r\nabc",
        "malformed-request",
    );
    refused_and_closed(&server, "GET /healthz HTTP/1.1\r\n\r\n", "missing-host");
    // A matching duplicate Content-Length is what RFC 9110 allows: served.
    let mut conn = RawConn::connect(server.addr);
    conn.send(
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nContent-Length: 0\r\n\r\n",
    )
    .unwrap();
    assert_eq!(conn.response().unwrap().status(), 200);
}

#[test]
fn http_1_0_is_served_and_bad_requests_get_problems() {
    let server = Server::smol(&[]);
    let mut conn = RawConn::connect(server.addr);
    conn.send(b"GET /healthz HTTP/1.0\r\n\r\n").unwrap();
    let res = conn.response().unwrap();
    assert_eq!(res.status(), 200, "{res:?}");
    assert_eq!(res.json()["status"], "ok");
    assert_eq!(res.header("connection"), Some("close"));
    assert!(conn.closes_within(PATIENCE));

    // A method nothing here knows: a path that exists says what it takes; one that does not,
    // that it does not.
    let mut conn = RawConn::connect(server.addr);
    conn.send(b"FROB /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let res = conn.response().unwrap();
    res.problem(405, "method-not-allowed");
    assert_eq!(res.header("allow"), Some("GET, HEAD"));
    let mut conn = RawConn::connect(server.addr);
    conn.send(b"QUERY /nowhere HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    conn.response().unwrap().problem(404, "no-such-route");

    let mut conn = RawConn::connect(server.addr);
    conn.send(b"GET /healthz HTTP/2.0\r\nHost: x\r\n\r\n")
        .unwrap();
    conn.response()
        .unwrap()
        .problem(505, "http-version-not-supported");

    let mut conn = RawConn::connect(server.addr);
    conn.send(b"GET /healthz\r\n\r\n").unwrap();
    conn.response().unwrap().problem(400, "malformed-request");

    let mut conn = RawConn::connect(server.addr);
    let long = "x".repeat(20 * 1024);
    conn.send(format!("GET /healthz?{long} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
        .unwrap();
    conn.response().unwrap().problem(431, "head-too-large");
}

#[test]
fn a_trickled_body_times_out() {
    let server = Server::smol(&["--request-timeout=2s"]);
    let token = guest_token(server.addr, "ada").unwrap();
    let mut conn = RawConn::connect(server.addr);
    conn.send(
        format!(
            "POST /api/v1/rooms HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\
             Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{"
        )
        .as_bytes(),
    )
    .unwrap();
    let started = Instant::now();
    let mut stream = conn.stream().try_clone().unwrap();
    // One byte a second: never done, never idle for long.
    let trickle = std::thread::spawn(move || {
        for _ in 0..30 {
            std::thread::sleep(Duration::from_secs(1));
            if stream.write_all(b" ").is_err() {
                return;
            }
        }
    });
    let res = conn.response().expect("an answer");
    res.problem(408, "request-timeout");
    assert!(started.elapsed() < Duration::from_secs(15));
    assert!(conn.closes_within(PATIENCE));
    drop(conn);
    let _ = trickle.join();
    // A head that trickles in is cut off the same way.
    let mut conn = RawConn::connect(server.addr);
    conn.send(b"GET /healthz HTTP/1.1\r\n").unwrap();
    conn.response().unwrap().problem(408, "request-timeout");
}

#[test]
fn a_websocket_ping_flood_from_a_client_that_never_reads_stays_bounded() {
    let server = Server::smol(&[]);
    roomcast_e2e::create_room(&server, "lobby");
    let token = guest_token(server.addr, "ada").unwrap();
    let mut conn = RawConn::connect(server.addr);
    conn.send(
        format!(
            "GET /api/v1/rooms/lobby/ws HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\
             Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
        )
        .as_bytes(),
    )
    .unwrap();
    let res = conn.response().unwrap();
    assert_eq!(res.status(), 101);
    let before = server.rss_kib();
    // Masked ping frames with 125-byte payloads, written as fast as the server takes them and
    // never reading a pong.
    let mut ping = vec![0x89u8, 0x80 | 125, 1, 2, 3, 4];
    ping.extend((0..125u8).map(|i| i ^ [1, 2, 3, 4][usize::from(i % 4)]));
    let burst: Vec<u8> = ping
        .iter()
        .copied()
        .cycle()
        .take(ping.len() * 512)
        .collect();
    let mut stream = conn.stream().try_clone().unwrap();
    let sent = write_until_refused(&mut stream, &burst, 400 << 20);
    let growth = server.rss_kib().saturating_sub(before);
    assert!(
        growth < 32 * 1024,
        "RSS grew by {growth} KiB after {sent} bytes of pings"
    );
    assert!(
        sent < 400 << 20,
        "the server kept reading pings it cannot answer"
    );
}

#[test]
fn sign_in_redirects_go_only_to_paths_on_this_site() {
    let server = Server::smol(&[]);
    let hostile = [
        "/\r\nSet-Cookie: roomcast_session=stolen",
        "/\n/evil.example",
        "/\t/evil.example",
        "/\0/evil.example",
        "//evil.example",
        "/\\evil.example",
        "https://evil.example/",
        "javascript:alert(1)",
        "/ok\u{7f}",
    ];
    // Names are held once a guest used them: one per case.
    for (i, next) in hostile.iter().enumerate() {
        let mut browser = Browser::new(&server);
        assert_eq!(browser.get("/sign-in").status, 200);
        let nickname = format!("vic{i}");
        let res = browser.post_form("/guest", &[("nickname", &nickname), ("next", next)]);
        assert_eq!(res.status, 303, "{next:?}: {}", res.body);
        assert_eq!(res.header("location"), Some("/"), "next={next:?}");
        assert!(
            !res.headers
                .iter()
                .any(|(n, v)| n == "set-cookie" && v.contains("stolen")),
            "{:?}",
            res.headers
        );
    }
    // The sign-in page does not carry a hostile `next` into its form either.
    let mut browser = Browser::new(&server);
    let page = browser.get("/sign-in?next=%2F%0D%0ASet-Cookie%3A%20x%3Dy");
    assert_eq!(page.status, 200);
    assert!(!page.body.contains("Set-Cookie"), "{}", page.body);
    // A plain local path is followed.
    let mut browser = Browser::new(&server);
    assert_eq!(browser.get("/sign-in").status, 200);
    let res = browser.post_form(
        "/guest",
        &[("nickname", "local"), ("next", "/room/lobby?x=1")],
    );
    assert_eq!(res.header("location"), Some("/room/lobby?x=1"));
}

#[test]
fn head_requests_get_heads_and_open_nothing() {
    let server = Server::smol(&[]);
    roomcast_e2e::create_room(&server, "lobby");
    let token = guest_token(server.addr, "ada").unwrap();
    let mut conn = RawConn::connect(server.addr);
    conn.send(b"HEAD /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    // A HEAD answer has the GET answer's length and no body: the next bytes are the next answer.
    let head =
        roomcast_e2e::sse::read_head(&mut std::io::BufReader::new(conn.stream())).expect("a head");
    assert_eq!(head.status, 200);
    assert!(head.header("content-length").is_some_and(|l| l != "0"));
    // HEAD on an event stream: the head, and the connection closes rather than streaming.
    let mut conn = RawConn::connect(server.addr);
    conn.send(
        format!(
            "HEAD /api/v1/rooms/lobby/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\r\n"
        )
        .as_bytes(),
    )
    .unwrap();
    assert!(conn.closes_within(PATIENCE));
    // The listener the handler opened is closed again (closes are asynchronous: wait for it).
    let deadline = Instant::now() + PATIENCE;
    loop {
        let presence = roomcast_e2e::get(&server.url("/api/v1/rooms/lobby/presence?user=bob"));
        if presence.json()["users"] == serde_json::json!([]) {
            break;
        }
        assert!(Instant::now() < deadline, "a HEAD left a listener open");
        std::thread::sleep(Duration::from_millis(20));
    }
}
