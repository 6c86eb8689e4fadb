//! A hostile client with a guest token, or none, cannot take someone's name, lock someone out,
//! exhaust the server with password hashing, or slip in a token that is not valid yet.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicUsize, Ordering};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use roomcast_e2e::grpc::{client, with_token};
use roomcast_e2e::raw::{RawConn, RawResponse};
use roomcast_e2e::{Answer, Server, post_json, request_with};
use roomcast_proto::v1 as pb;
use serde_json::{Value, json};
use tonic::Code;

const SECRET: &str = "an application's shared secret, 32+ bytes long";

/// A loopback address of its own: the server sees each as another client.
fn address(n: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 1, n))
}

/// `POST path` with a JSON body from `from`, on a connection of its own.
fn post_from(server: &Server, from: IpAddr, path: &str, body: &Value) -> RawResponse {
    let body = body.to_string();
    let mut conn = RawConn::connect_from(from, server.addr);
    conn.send(
        format!(
            "POST {path} HTTP/1.1\r\nHost: roomcast\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    )
    .expect("send");
    conn.response().expect("an answer")
}

fn call(server: &Server, method: &str, path: &str, token: &str, body: Option<Value>) -> Answer {
    let auth = format!("Bearer {token}");
    let headers = [
        ("Content-Type", "application/json"),
        ("Authorization", auth.as_str()),
    ];
    let body = body.map(|b| b.to_string());
    request_with(method, &server.url(path), &headers, body.as_deref())
}

fn guest(server: &Server, nickname: &str) -> RawResponse {
    post_from(
        server,
        address(1),
        "/api/v1/auth/guest",
        &json!({ "nickname": nickname }),
    )
}

#[test]
fn a_guest_name_belongs_to_one_guest_while_its_session_lives_and_a_while_after() {
    let server = Server::smol(&[]);
    let first = guest(&server, "zed");
    assert_eq!(first.status(), 201, "{first:?}");
    let zed = first.json()["token"].as_str().unwrap().to_owned();
    assert_eq!(
        call(
            &server,
            "POST",
            "/api/v1/rooms",
            &zed,
            Some(json!({"room": "zeds-den", "private": true}))
        )
        .status,
        201
    );

    // A second guest asking for the same name is refused, from any address.
    guest(&server, "zed").problem(409, "name-taken");
    post_from(
        &server,
        address(2),
        "/api/v1/auth/guest",
        &json!({"nickname": "zed"}),
    )
    .problem(409, "name-taken");
    // The first zed still reads its private room; nobody else got in.
    assert_eq!(
        call(&server, "GET", "/api/v1/rooms/zeds-den", &zed, None).status,
        200
    );

    // Signing out ends the session, but the name stays held for a while after.
    assert_eq!(
        call(
            &server,
            "POST",
            "/api/v1/auth/sign-out",
            &zed,
            Some(json!({}))
        )
        .status,
        204
    );
    guest(&server, "zed").problem(409, "name-taken");
}

#[test]
fn a_guest_name_stays_held_across_a_restart() {
    let data = tempfile::tempdir().unwrap();
    let dir = format!("--data-dir={}", data.path().display());
    let server = Server::smol(&[&dir]);
    assert_eq!(guest(&server, "zed").status(), 201);
    drop(server);
    let server = Server::smol(&[&dir]);
    guest(&server, "zed").problem(409, "name-taken");
}

#[test]
fn guest_sign_ups_are_limited_per_address() {
    let server = Server::smol(&["--sign-up-burst=5", "--sign-up-interval=1h"]);
    let from = address(3);
    for n in 0..5 {
        let res = post_from(
            &server,
            from,
            "/api/v1/auth/guest",
            &json!({"nickname": format!("g{n}")}),
        );
        assert_eq!(res.status(), 201, "{res:?}");
    }
    let limited = post_from(
        &server,
        from,
        "/api/v1/auth/guest",
        &json!({"nickname": "g5"}),
    );
    let problem = limited.problem(429, "too-many-sign-ups");
    assert!(problem["retry_after_ms"].as_u64().is_some_and(|ms| ms > 0));
    assert!(limited.header("retry-after").is_some());
    // Registering is a sign-up too.
    post_from(
        &server,
        from,
        "/api/v1/auth/register",
        &json!({"name": "reg", "password": "a long password"}),
    )
    .problem(429, "too-many-sign-ups");
    // Another address is not held up.
    assert_eq!(
        post_from(
            &server,
            address(4),
            "/api/v1/auth/guest",
            &json!({"nickname": "g6"})
        )
        .status(),
        201
    );
}

#[test]
fn a_registration_flood_hashes_a_few_at_a_time_in_bounded_memory() {
    let server = Server::smol(&[]);
    let before = server.rss_kib();
    let answered = AtomicUsize::new(0);
    let created = AtomicUsize::new(0);
    let peak = AtomicUsize::new(0);
    // 400 registrations, 200 at a time, each from an address of its own (so the per-address
    // limit does not turn them away before they reach the hashing).
    std::thread::scope(|s| {
        for worker in 0..200u32 {
            let (server, answered, created, peak) = (&server, &answered, &created, &peak);
            s.spawn(move || {
                for round in 0..2u32 {
                    let n = worker * 2 + round;
                    let from =
                        IpAddr::V4(Ipv4Addr::new(127, 2, (n / 250) as u8, (n % 250) as u8 + 1));
                    let res = post_from(
                        server,
                        from,
                        "/api/v1/auth/register",
                        &json!({"name": format!("flood{n}"), "password": "a long password"}),
                    );
                    match res.status() {
                        201 => {
                            created.fetch_add(1, Ordering::SeqCst);
                        }
                        503 => {
                            res.problem(503, "busy");
                            assert!(res.header("retry-after").is_some(), "{res:?}");
                        }
                        other => panic!("unexpected {other}: {res:?}"),
                    }
                    answered.fetch_add(1, Ordering::SeqCst);
                    let rss = server.rss_kib() as usize;
                    peak.fetch_max(rss, Ordering::SeqCst);
                }
            });
        }
    });
    assert_eq!(
        answered.load(Ordering::SeqCst),
        400,
        "every request answered"
    );
    assert!(created.load(Ordering::SeqCst) > 0, "some got through");
    let growth_mib = (peak.load(Ordering::SeqCst) as u64).saturating_sub(before) / 1024;
    // Two cores hash at most a couple at a time at 19 MiB each; the rest wait or are turned
    // away. Unbounded, this flood took gigabytes.
    assert!(growth_mib < 300, "RSS grew by {growth_mib} MiB");
}

fn sign_in_from(server: &Server, from: IpAddr, name: &str, password: &str) -> RawResponse {
    post_from(
        server,
        from,
        "/api/v1/auth/sign-in",
        &json!({"name": name, "password": password}),
    )
}

#[test]
fn wrong_passwords_from_elsewhere_do_not_lock_the_owner_out() {
    let server = Server::smol(&[]);
    let res = post_from(
        &server,
        address(10),
        "/api/v1/auth/register",
        &json!({"name": "ada", "password": "correct horse"}),
    );
    assert_eq!(res.status(), 201, "{res:?}");
    let attacker = address(11);
    for _ in 0..5 {
        sign_in_from(&server, attacker, "ada", "guess").problem(401, "bad-credentials");
    }
    sign_in_from(&server, attacker, "ada", "guess").problem(429, "too-many-attempts");
    // The owner, from their own address, with the right password, gets in.
    let owner = sign_in_from(&server, address(10), "ada", "correct horse");
    assert_eq!(owner.status(), 200, "{owner:?}");
    // And the attacker's address is limited across accounts too: guessing many names from one
    // address runs dry.
    let mut limited = false;
    for n in 0..40 {
        let res = sign_in_from(&server, attacker, &format!("someone{n}"), "guess");
        if res.status() == 429 {
            res.problem(429, "too-many-attempts");
            limited = true;
            break;
        }
        res.problem(401, "bad-credentials");
    }
    assert!(limited, "one address cannot guess without end");
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn mint(claims: &Value) -> String {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap()
}

#[test]
fn every_registered_claim_is_checked() {
    let server = Server::smol(&[
        &format!("--jwt-secret={SECRET}"),
        "--jwt-issuer=https://id.example",
        "--jwt-audience=roomcast",
    ]);
    let me = |token: &str| call(&server, "GET", "/api/v1/auth/me", token, None);
    let ok = json!({"sub": "app-user", "exp": now() + 600, "iss": "https://id.example", "aud": "roomcast"});
    assert_eq!(me(&mint(&ok)).status, 200, "a valid token is accepted");
    let with = |key: &str, value: Value| {
        let mut claims = ok.clone();
        claims[key] = value;
        mint(&claims)
    };
    let without = |key: &str| {
        let mut claims = ok.clone();
        claims.as_object_mut().unwrap().remove(key);
        mint(&claims)
    };
    me(&with("nbf", json!(now() + 600))).problem(401, "token-not-yet-valid");
    assert_eq!(
        me(&with("nbf", json!(now() - 600))).status,
        200,
        "nbf in the past"
    );
    me(&with("exp", json!(now() - 600))).problem(401, "token-expired");
    me(&without("exp")).problem(401, "invalid-token");
    me(&without("sub")).problem(401, "invalid-token");
    me(&with("iss", json!("https://evil.example"))).problem(401, "invalid-token");
    me(&without("iss")).problem(401, "invalid-token");
    me(&with("aud", json!("another-service"))).problem(401, "invalid-token");
    me(&without("aud")).problem(401, "invalid-token");

    // roomcast's own tokens carry the issuer and audience it checks.
    let issued = post_from(
        &server,
        address(20),
        "/api/v1/auth/guest",
        &json!({"nickname": "own"}),
    );
    let token = issued.json()["token"].as_str().unwrap().to_owned();
    assert_eq!(me(&token).status, 200);

    // Without a configured audience, a token meant for some audience is not for us.
    let plain = Server::smol(&[&format!("--jwt-secret={SECRET}")]);
    let plain_me = |token: &str| call(&plain, "GET", "/api/v1/auth/me", token, None);
    assert_eq!(
        plain_me(&mint(&json!({"sub": "u", "exp": now() + 600}))).status,
        200
    );
    plain_me(&mint(
        &json!({"sub": "u", "exp": now() + 600, "aud": "another-service"}),
    ))
    .problem(401, "invalid-token");
    plain_me(&mint(
        &json!({"sub": "u", "exp": now() + 600, "nbf": now() + 600}),
    ))
    .problem(401, "token-not-yet-valid");
}

#[tokio::test]
async fn grpc_refuses_a_token_that_is_not_valid_yet() {
    let server = Server::tokio(&[&format!("--jwt-secret={SECRET}")]);
    let mut c = client(&server).await;
    let early = mint(&json!({"sub": "app-user", "exp": now() + 600, "nbf": now() + 600}));
    let refused = c
        .list_rooms(with_token(&early, pb::ListRoomsRequest::default()))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated, "{refused:?}");
    assert!(refused.message().contains("not valid yet"), "{refused:?}");
    let valid = mint(&json!({"sub": "app-user", "exp": now() + 600}));
    assert!(
        c.list_rooms(with_token(&valid, pb::ListRoomsRequest::default()))
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn grpc_guest_names_are_exclusive_too() {
    let server = Server::tokio(&[]);
    let mut c = client(&server).await;
    let guest = |nickname: &str| pb::GuestRequest {
        nickname: nickname.into(),
    };
    assert!(c.guest(guest("zed")).await.is_ok());
    let again = c.guest(guest("zed")).await.unwrap_err();
    assert_eq!(again.code(), Code::AlreadyExists, "{again:?}");
    // Each call has its access line, with its outcome.
    let line = server.wait_for_log("method=/roomcast.v1.Chat/Guest status=AlreadyExists");
    assert!(line.contains("client=127.0.0.1"), "{line}");
}

#[test]
fn a_guest_cannot_take_an_admins_name() {
    // Admins are named by --admins; a guest is anyone who types a nickname. Were the nickname
    // free, a stranger would be an admin.
    let server = Server::smol(&["--admins=root"]);
    let guest = post_json(
        &server.url("/api/v1/auth/guest"),
        &json!({"nickname": "root"}),
    );
    guest.problem(409, "name-taken");
    // Nor can a stranger register it: the operator made the admin's account (the harness does
    // it with `--set-password` as an operator would), which signs in.
    let account = post_json(
        &server.url("/api/v1/auth/register"),
        &json!({"name": "root", "password": "a long password"}),
    );
    account.problem(409, "name-taken");
    let operator = post_json(
        &server.url("/api/v1/auth/sign-in"),
        &json!({"name": "root", "password": "harness password"}),
    );
    assert_eq!(operator.status, 200, "{}", operator.body);
}

#[test]
fn one_account_holds_a_bounded_number_of_sessions() {
    // Each sign-in opens a session the server keeps until it expires; signing in again and
    // again (from many addresses, past the per-address limits) must not keep them all. Past
    // the most, a new one ends the account's oldest, and its open streams.
    let server = Server::smol(&["--max-sessions-per-user=4"]);
    let registered = post_from(
        &server,
        address(10),
        "/api/v1/auth/register",
        &json!({"name": "ada", "password": "a long password"}),
    );
    assert_eq!(registered.status(), 201);
    let token = |res: &RawResponse| res.json()["token"].as_str().unwrap().to_owned();
    let first = token(&registered);
    let path = "/api/v1/rooms";
    call(&server, "POST", path, &first, Some(json!({"room": "hall"})));
    let mut stream =
        roomcast_e2e::SseStream::open_with_token(server.addr, "/api/v1/rooms/hall/events", &first)
            .expect("a stream");
    let mut tokens = vec![first];
    for n in 0..5u8 {
        let signed_in = sign_in_from(&server, address(11 + n), "ada", "a long password");
        assert_eq!(signed_in.status(), 200);
        tokens.push(token(&signed_in));
    }
    let me = |token: &str| call(&server, "GET", "/api/v1/auth/me", token, None).status;
    // Six sessions opened: the oldest two are over, the first one's stream with it.
    for old in &tokens[..2] {
        assert_eq!(me(old), 401, "an old session ends");
    }
    for kept in &tokens[2..] {
        assert_eq!(me(kept), 200, "the newest four live");
    }
    let closed = stream.next_of("closed").expect("the stream is told");
    assert_eq!(closed.json()["reason"], "signed-out");
}
