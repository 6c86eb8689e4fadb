//! Which pages may use the API from a browser: the server's own, and what `--allowed-origins`
//! lists. Others are refused before any handler runs, the WebSocket handshake included (a
//! browser does not hold it to CORS, and it carries the visitor's cookie).

use roomcast_e2e::{Server, create_room, get, guest_token, refused_start, request_with};
use tungstenite::client::IntoClientRequest;

const APP: &str = "https://app.example.com";

#[test]
fn listed_origins_get_cors_answers_and_others_a_refusal() {
    let flag = format!("--allowed-origins={APP},http://localhost:3000");
    let server = Server::smol(&[&flag]);
    create_room(&server, "hall");
    let url = server.url("/api/v1/rooms/hall/messages");
    let bearer = format!("Bearer {}", guest_token(server.addr, "ada").unwrap());
    let bearer = bearer.as_str();

    let preflight = request_with(
        "OPTIONS",
        &url,
        &[
            ("Origin", APP),
            ("Access-Control-Request-Method", "POST"),
            (
                "Access-Control-Request-Headers",
                "authorization, content-type",
            ),
        ],
        None,
    );
    assert_eq!(preflight.status, 204, "{}", preflight.body);
    assert_eq!(preflight.header("access-control-allow-origin"), Some(APP));
    let allowed = preflight.header("access-control-allow-headers").unwrap();
    assert!(allowed.contains("authorization") && allowed.contains("content-type"));
    assert!(
        preflight
            .header("access-control-allow-credentials")
            .is_none(),
        "tokens, not cookies"
    );

    let read = request_with(
        "GET",
        &url,
        &[("Origin", APP), ("Authorization", bearer)],
        None,
    );
    assert_eq!(read.status, 200);
    assert_eq!(read.header("access-control-allow-origin"), Some(APP));
    assert_eq!(read.header("vary"), Some("Origin"));

    for evil in [
        "https://evil.example",
        "null",
        "https://app.example.com.evil.example",
    ] {
        let refused = request_with(
            "GET",
            &url,
            &[("Origin", evil), ("Authorization", bearer)],
            None,
        );
        refused.problem(403, "origin-not-allowed");
        assert!(refused.header("access-control-allow-origin").is_none());
        let preflight = request_with(
            "OPTIONS",
            &url,
            &[("Origin", evil), ("Access-Control-Request-Method", "POST")],
            None,
        );
        preflight.problem(403, "origin-not-allowed");
    }
    // The server's own pages, and clients that are not browsers, are not asked.
    let own = format!("http://{}", server.addr);
    let mine = request_with(
        "GET",
        &url,
        &[("Origin", &own), ("Authorization", bearer)],
        None,
    );
    assert_eq!(mine.status, 200);
    assert!(mine.header("access-control-allow-origin").is_none());
    assert_eq!(get(&url).status, 200);
}

#[test]
fn by_default_only_the_servers_own_pages_may_open_a_websocket() {
    let server = Server::smol(&[]);
    create_room(&server, "hall");
    let token = guest_token(server.addr, "ada").unwrap();
    let handshake = |origin: &str| {
        let mut request = server
            .ws_url("/api/v1/rooms/hall/ws")
            .into_client_request()
            .unwrap();
        let headers = request.headers_mut();
        headers.insert("Origin", origin.parse().unwrap());
        headers.insert("Authorization", format!("Bearer {token}").parse().unwrap());
        match tungstenite::connect(request) {
            Ok((_, response)) => response.status().as_u16(),
            Err(tungstenite::Error::Http(response)) => response.status().as_u16(),
            Err(e) => panic!("the handshake failed: {e}"),
        }
    };
    assert_eq!(
        handshake("https://evil.example"),
        403,
        "another site's page"
    );
    assert_eq!(handshake(APP), 403, "not listed");
    assert_eq!(
        handshake(&format!("http://{}", server.addr)),
        101,
        "its own page"
    );
}

#[test]
fn an_allowed_origin_must_be_an_origin() {
    for bad in [
        "https://app.example.com/chat",
        "app.example.com",
        "ftp://files.example",
    ] {
        let flag = format!("--allowed-origins={bad}");
        let (status, stderr) =
            refused_start("roomcast-smol", "roomcast-smol", &["--in-memory", &flag]);
        assert!(!status.success(), "{bad} was accepted");
        assert!(stderr.contains("--allowed-origins"), "{bad}: {stderr}");
    }
}
