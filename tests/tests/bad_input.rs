//! Every kind of bad input gets a 4xx problem naming its cause, never a 500 or a hang, and the
//! server keeps serving everyone else.

use roomcast_e2e::{
    Browser, Server, create_room, get, guest_token, post, post_json, post_with, raw_request, say,
};
use serde_json::json;

#[test]
fn bad_requests_get_problems_that_name_the_cause() {
    let server = Server::smol(&[
        "--max-message-bytes=64",
        "--max-body-bytes=1024",
        "--rate-burst=3",
        "--rate-per-second=1",
    ]);
    create_room(&server, "lobby");
    let messages = server.url("/api/v1/rooms/lobby/messages");

    post(
        &messages,
        "application/json",
        "{\"user\": \"ada\", \"text\": ",
    )
    .problem(400, "malformed-json");
    let shape = post_json(&messages, &json!({"user": "ada"})).problem(422, "invalid-body");
    assert!(
        shape["detail"].as_str().unwrap().contains("text"),
        "{shape}"
    );
    post(&messages, "text/plain", "hello").problem(415, "unsupported-media-type");
    post(
        &messages,
        "application/json",
        &format!("{{\"user\":\"ada\",\"text\":\"{}\"}}", "x".repeat(2000)),
    )
    .problem(413, "body-too-large");
    post_json(&messages, &json!({"user": "ada", "text": "x".repeat(65)}))
        .problem(413, "message-too-large");
    post_json(&messages, &json!({"user": "ada", "text": " \n "})).problem(400, "empty-message");
    post_json(&messages, &json!({"user": "ada", "text": "bell\u{7}"}))
        .problem(400, "control-character");
    post_json(
        &server.url("/api/v1/auth/guest"),
        &json!({"nickname": "ad/a"}),
    )
    .problem(400, "invalid-user-name");
    post_json(
        &server.url("/api/v1/rooms/nowhere/messages"),
        &json!({"user": "ada", "text": "hi"}),
    )
    .problem(404, "room-not-found");
    post_json(&server.url("/api/v1/rooms"), &json!({"room": "../etc"}))
        .problem(400, "invalid-room-id");
    post_json(
        &server.url("/api/v1/rooms"),
        &json!({"room": "x".repeat(65)}),
    )
    .problem(400, "invalid-room-id");
    get(&server.url("/api/v1/rooms/lobby/messages?after=1&before=3")).problem(400, "invalid-query");
    get(&server.url("/api/v1/rooms/lobby/messages?limit=-1")).problem(400, "invalid-query");
    get(&server.url("/api/v1/rooms/lobby/messages?after=99")).problem(409, "resume-ahead");
    get(&server.url("/api/v1/nothing-here")).problem(404, "no-such-route");
    roomcast_e2e::delete(&server.url("/api/v1/rooms")).problem(405, "method-not-allowed");

    // The idempotency key: a retry is answered with the original, a reuse for other text is a conflict.
    let keyed = |text: &str| {
        post_with(
            &messages,
            &[
                ("Content-Type", "application/json"),
                ("Idempotency-Key", "abc-1"),
            ],
            &json!({"user": "bob", "text": text}).to_string(),
        )
    };
    let first = keyed("once");
    assert_eq!(first.status, 201);
    let again = keyed("once");
    assert_eq!(again.status, 200);
    assert_eq!(again.json()["seq"], first.json()["seq"]);
    keyed("something else").problem(409, "idempotency-conflict");

    // The rate limit: three at once, then a 429 that says when to come back.
    for n in 0..3 {
        say(&server, "lobby", "cy", &format!("burst {n}"));
    }
    let limited = post_json(&messages, &json!({"user": "cy", "text": "one too many"}));
    let problem = limited.problem(429, "rate-limited");
    assert!(
        problem["retry_after_ms"]
            .as_u64()
            .is_some_and(|ms| ms > 0 && ms <= 1000),
        "{problem}"
    );
    assert_eq!(limited.header("retry-after"), Some("1"));

    // After all that, everyone else is served as usual.
    assert_eq!(say(&server, "lobby", "dee", "still fine")["user"], "dee");
}

#[test]
fn a_body_larger_than_the_limit_is_refused_before_it_is_sent() {
    let server = Server::smol(&["--max-body-bytes=1024"]);
    create_room(&server, "lobby");
    // Announce a gigabyte and send none of it: the answer must come from the header alone.
    let token = guest_token(server.addr, "ada").unwrap();
    let request = format!(
        "POST /api/v1/rooms/lobby/messages HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
         Authorization: Bearer {token}\r\nContent-Length: 1073741824\r\n\r\n"
    );
    let (status, body) = raw_request(server.addr, request.as_bytes());
    assert_eq!(status, 413, "{body}");
    assert!(body.contains("body-too-large"), "{body}");
    // A chunked body with no length is cut off at the limit.
    let mut chunked = format!(
        "POST /api/v1/rooms/lobby/messages HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
         Authorization: Bearer {token}\r\nTransfer-Encoding: chunked\r\n\r\n",
    );
    for _ in 0..4 {
        chunked.push_str(&format!("400\r\n{}\r\n", "y".repeat(1024)));
    }
    chunked.push_str("0\r\n\r\n");
    let (status, body) = raw_request(server.addr, chunked.as_bytes());
    assert_eq!(status, 413, "{body}");
    say(&server, "lobby", "ada", "the server is fine");
}

#[test]
fn forms_are_checked_too() {
    let server = Server::smol(&[]);
    post(&server.url("/rooms"), "application/json", "{}").problem(415, "unsupported-media-type");
    post(
        &server.url("/rooms"),
        "application/x-www-form-urlencoded",
        "nothing=here",
    )
    .problem(400, "invalid-form");
    let mut ada = Browser::guest(&server, "ada");
    let refused = ada.post_form("/rooms", &[("room", "bad/name")]);
    assert_eq!(refused.status, 400);
    assert!(
        refused.content_type.starts_with("text/html"),
        "a person gets the page back with the reason"
    );
    assert!(refused.body.contains("not allowed"), "{}", refused.body);
}

#[test]
fn requests_without_a_valid_identity_are_refused_and_impersonation_fails() {
    let server = Server::smol(&[]);
    create_room(&server, "lobby");
    let messages = server.url("/api/v1/rooms/lobby/messages");
    let none = roomcast_e2e::get_unauthenticated(&messages).problem(401, "unauthenticated");
    assert!(
        none["detail"]
            .as_str()
            .unwrap()
            .contains("Authorization: Bearer")
    );
    let bad = |auth: &str| {
        post_with(
            &messages,
            &[
                ("Content-Type", "application/json"),
                ("Authorization", auth),
            ],
            &json!({"text": "hi"}).to_string(),
        )
    };
    bad("Bearer not-a-token").problem(401, "invalid-token");
    bad("Basic YWRhOmFkYQ==").problem(401, "unauthenticated");
    // A token in the URL is never looked at.
    let token = guest_token(server.addr, "ada").unwrap();
    roomcast_e2e::get_unauthenticated(&format!("{messages}?token={token}&access_token={token}"))
        .problem(401, "unauthenticated");
    // Signed in as ada, the body or the query naming bob is refused; naming ada is fine.
    let as_ada = |url: &str, body: serde_json::Value| {
        post_with(
            url,
            &[
                ("Content-Type", "application/json"),
                ("Authorization", &format!("Bearer {token}")),
            ],
            &body.to_string(),
        )
    };
    as_ada(&messages, json!({"user": "bob", "text": "it's me, bob"})).problem(403, "impersonation");
    as_ada(&format!("{messages}?user=bob"), json!({"text": "hi"})).problem(403, "impersonation");
    assert_eq!(
        as_ada(&messages, json!({"user": "ada", "text": "hi"})).status,
        201
    );
    let history = get(&messages).json();
    let posters: Vec<&str> = history["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["user"].as_str().unwrap())
        .collect();
    assert_eq!(posters, ["ada"]);
}
