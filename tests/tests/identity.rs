//! Who is who, through the real binaries: accounts, guests, tokens minted elsewhere, sign-out,
//! private rooms, member removal, direct messages and password guessing, over REST, SSE and
//! gRPC.

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use roomcast_e2e::grpc::{client, next, with_token};
use roomcast_e2e::{Answer, Server, SseStream, get_unauthenticated, request_with};
use roomcast_proto::v1 as pb;
use roomcast_proto::v1::stream_event::Event;
use serde_json::{Value, json};
use tonic::Code;

const SECRET: &str = "an application's shared secret, 32+ bytes long";

/// `method path` with a bearer token (`None`: no credentials) and, for POST, a JSON body.
fn call(
    server: &Server,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> Answer {
    let auth = token.map(|t| format!("Bearer {t}"));
    let mut headers = vec![("Content-Type", "application/json")];
    if let Some(auth) = &auth {
        headers.push(("Authorization", auth.as_str()));
    }
    let body = (method == "POST").then(|| body.unwrap_or(json!({})).to_string());
    request_with(method, &server.url(path), &headers, body.as_deref())
}

fn token_of(answer: &Answer) -> String {
    answer.json()["token"].as_str().expect("a token").to_owned()
}

fn register(server: &Server, name: &str, password: &str) -> String {
    let res = call(
        server,
        "POST",
        "/api/v1/auth/register",
        None,
        Some(json!({"name": name, "password": password})),
    );
    assert_eq!(res.status, 201, "{}", res.body);
    token_of(&res)
}

fn guest(server: &Server, nickname: &str) -> String {
    let res = call(
        server,
        "POST",
        "/api/v1/auth/guest",
        None,
        Some(json!({"nickname": nickname})),
    );
    assert_eq!(res.status, 201, "{}", res.body);
    token_of(&res)
}

/// A token minted the way another application would: HS256 with the shared secret.
fn minted(sub: &str, exp_from_now: i64, secret: &str) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &json!({"sub": sub, "exp": now + exp_from_now}),
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

fn tampered(token: &str) -> String {
    let mut t = token.to_owned();
    let last = t.pop().unwrap();
    t.push(if last == 'A' { 'B' } else { 'A' });
    t
}

#[test]
fn accounts_register_sign_in_and_post_as_themselves() {
    let server = Server::smol(&[]);
    let ada = register(&server, "ada", "correct horse");
    let me = call(&server, "GET", "/api/v1/auth/me", Some(&ada), None).json();
    let id = me["user_id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("ada~u"), "an account's id: {id}");
    assert_eq!(me, json!({"user": "ada", "user_id": id, "guest": false}));
    call(
        &server,
        "POST",
        "/api/v1/auth/register",
        None,
        Some(json!({"name": "ada", "password": "another one"})),
    )
    .problem(409, "name-taken");
    call(
        &server,
        "POST",
        "/api/v1/auth/register",
        None,
        Some(json!({"name": "bo", "password": "short"})),
    )
    .problem(400, "bad-password");
    call(
        &server,
        "POST",
        "/api/v1/auth/guest",
        None,
        Some(json!({"nickname": "ada"})),
    )
    .problem(409, "name-taken");
    call(
        &server,
        "POST",
        "/api/v1/auth/sign-in",
        None,
        Some(json!({"name": "ada", "password": "wrong one"})),
    )
    .problem(401, "bad-credentials");
    let again = call(
        &server,
        "POST",
        "/api/v1/auth/sign-in",
        None,
        Some(json!({"name": "ada", "password": "correct horse"})),
    );
    assert_eq!(again.status, 200);
    let ada2 = token_of(&again);
    call(
        &server,
        "POST",
        "/api/v1/rooms",
        Some(&ada2),
        Some(json!({"room": "hall"})),
    );
    let posted = call(
        &server,
        "POST",
        "/api/v1/rooms/hall/messages",
        Some(&ada2),
        Some(json!({"text": "hi"})),
    );
    assert_eq!(posted.json()["user"], "ada");
    // Signing out revokes that session for real; the other one lives on.
    assert_eq!(
        call(&server, "POST", "/api/v1/auth/sign-out", Some(&ada2), None).status,
        204
    );
    call(&server, "GET", "/api/v1/auth/me", Some(&ada2), None).problem(401, "token-revoked");
    assert_eq!(
        call(&server, "GET", "/api/v1/auth/me", Some(&ada), None).status,
        200
    );
}

#[test]
fn tokens_from_another_application_work_until_they_expire_and_forgeries_never() {
    let flag = format!("--jwt-secret={SECRET}");
    let server = Server::smol(&[&flag]);
    let app_user = minted("app-user", 300, SECRET);
    call(
        &server,
        "POST",
        "/api/v1/rooms",
        Some(&app_user),
        Some(json!({"room": "app"})),
    );
    let posted = call(
        &server,
        "POST",
        "/api/v1/rooms/app/messages",
        Some(&app_user),
        Some(json!({"text": "from the app"})),
    );
    assert_eq!(posted.status, 201, "{}", posted.body);
    assert_eq!(posted.json()["user"], "app-user");
    for (token, code) in [
        (minted("app-user", -300, SECRET), "token-expired"),
        (tampered(&app_user), "invalid-token"),
        (
            minted("app-user", 300, "some other key entirely, also long"),
            "invalid-token",
        ),
    ] {
        call(
            &server,
            "POST",
            "/api/v1/rooms/app/messages",
            Some(&token),
            Some(json!({"text": "x"})),
        )
        .problem(401, code);
        let sse = SseStream::open_with_token(server.addr, "/api/v1/rooms/app/events", &token);
        assert_eq!(sse.err().map(|r| r.status), Some(401));
    }
    // The same rules over gRPC, with the same secret.
    let grpc = Server::tokio(&[&flag]);
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let mut c = client(&grpc).await;
        let create = |token: &str| {
            with_token(
                token,
                pb::CreateRoomRequest {
                    room: "app".into(),
                    private: false,
                },
            )
        };
        let made = c
            .create_room(create(&app_user))
            .await
            .expect("minted tokens work");
        assert_eq!(made.into_inner().room.unwrap().owner, "app-user");
        for token in [
            minted("app-user", -300, SECRET),
            tampered(&app_user),
            minted("app-user", 300, "some other key entirely, also long"),
        ] {
            let refused = c.create_room(create(&token)).await.unwrap_err();
            assert_eq!(refused.code(), Code::Unauthenticated, "{refused:?}");
        }
        let bare = c
            .create_room(pb::CreateRoomRequest {
                room: "x".into(),
                private: false,
            })
            .await
            .unwrap_err();
        assert_eq!(bare.code(), Code::Unauthenticated);
    });
}

#[test]
fn private_rooms_are_closed_to_non_members_and_removal_ends_streams() {
    let server = Server::smol(&[]);
    let (ada, bob, eve) = (
        guest(&server, "ada"),
        guest(&server, "bob"),
        guest(&server, "eve"),
    );
    let den = call(
        &server,
        "POST",
        "/api/v1/rooms",
        Some(&ada),
        Some(json!({"room": "den", "private": true})),
    );
    assert_eq!(den.status, 201);
    assert_eq!(den.json()["private"], true);
    call(
        &server,
        "POST",
        "/api/v1/rooms/den/messages",
        Some(&ada),
        Some(json!({"text": "secret"})),
    );
    // Eve sees nothing and can do nothing.
    for path in [
        "/api/v1/rooms/den",
        "/api/v1/rooms/den/messages",
        "/api/v1/rooms/den/presence",
    ] {
        call(&server, "GET", path, Some(&eve), None).problem(403, "permission-denied");
    }
    call(
        &server,
        "POST",
        "/api/v1/rooms/den/messages",
        Some(&eve),
        Some(json!({"text": "let me in"})),
    )
    .problem(403, "permission-denied");
    call(
        &server,
        "POST",
        "/api/v1/rooms",
        Some(&eve),
        Some(json!({"room": "den"})),
    )
    .problem(403, "permission-denied");
    let refused = SseStream::open_with_token(server.addr, "/api/v1/rooms/den/events", &eve)
        .err()
        .unwrap();
    assert_eq!(refused.status, 403);
    let listing = call(&server, "GET", "/api/v1/rooms", Some(&eve), None).json();
    assert!(listing["rooms"].as_array().unwrap().is_empty(), "{listing}");
    call(
        &server,
        "POST",
        "/api/v1/rooms/den/members",
        Some(&bob),
        Some(json!({"user": "bob"})),
    )
    .problem(403, "permission-denied");

    // Bob is invited, listens, is removed: his stream ends at once, and he is out.
    assert_eq!(
        call(
            &server,
            "POST",
            "/api/v1/rooms/den/members",
            Some(&ada),
            Some(json!({"user": "bob"}))
        )
        .status,
        204
    );
    let mut stream =
        SseStream::open_with_token(server.addr, "/api/v1/rooms/den/events?since=0", &bob).unwrap();
    assert_eq!(stream.message_seqs(1), [1]);
    assert_eq!(
        call(
            &server,
            "DELETE",
            "/api/v1/rooms/den/members/bob",
            Some(&ada),
            None
        )
        .status,
        204
    );
    let closed = stream.next_of("closed").expect("told why");
    assert_eq!(closed.json()["reason"], "removed");
    assert!(stream.next_event().is_none(), "the stream ends");
    call(
        &server,
        "POST",
        "/api/v1/rooms/den/messages",
        Some(&bob),
        Some(json!({"text": "still here?"})),
    )
    .problem(403, "permission-denied");
    call(
        &server,
        "DELETE",
        "/api/v1/rooms/den/members/ada",
        Some(&ada),
        None,
    )
    .problem(409, "membership");
}

#[test]
fn direct_messages_are_between_two_people_only() {
    let server = Server::smol(&[]);
    let (ada, bob, cy) = (
        guest(&server, "ada"),
        guest(&server, "bob"),
        guest(&server, "cy"),
    );
    let opened = call(
        &server,
        "POST",
        "/api/v1/direct",
        Some(&ada),
        Some(json!({"user": "bob"})),
    );
    assert_eq!(opened.status, 201);
    let room = opened.json()["id"].as_str().unwrap().to_owned();
    let found = call(
        &server,
        "POST",
        "/api/v1/direct",
        Some(&bob),
        Some(json!({"user": "ada"})),
    );
    assert_eq!(
        (found.status, found.json()["id"].as_str()),
        (200, Some(room.as_str()))
    );
    let messages = format!("/api/v1/rooms/{room}/messages");
    call(
        &server,
        "POST",
        &messages,
        Some(&ada),
        Some(json!({"text": "psst, bob"})),
    );
    let read = call(&server, "GET", &messages, Some(&bob), None).json();
    assert_eq!(read["messages"][0]["text"], "psst, bob");
    call(&server, "GET", &messages, Some(&cy), None).problem(403, "permission-denied");
    let listing = call(&server, "GET", "/api/v1/rooms", Some(&cy), None).json();
    assert!(listing["rooms"].as_array().unwrap().is_empty());
    call(
        &server,
        "POST",
        "/api/v1/direct",
        Some(&ada),
        Some(json!({"user": "ada"})),
    )
    .problem(409, "membership");
}

#[test]
fn guests_can_be_turned_off() {
    let server = Server::smol(&["--guests=false"]);
    call(
        &server,
        "POST",
        "/api/v1/auth/guest",
        None,
        Some(json!({"nickname": "drifter"})),
    )
    .problem(403, "guests-off");
    register(&server, "member", "a long password");
    get_unauthenticated(&server.url("/api/v1/rooms")).problem(401, "unauthenticated");
}

#[test]
fn password_guessing_is_rate_limited() {
    let server = Server::smol(&[]);
    register(&server, "ada", "correct horse");
    let attempt = |password: &str| {
        call(
            &server,
            "POST",
            "/api/v1/auth/sign-in",
            None,
            Some(json!({"name": "ada", "password": password})),
        )
    };
    for _ in 0..5 {
        attempt("guess").problem(401, "bad-credentials");
    }
    let limited = attempt("correct horse");
    limited.problem(429, "too-many-attempts");
    assert!(limited.body.contains("try again"));
}

#[tokio::test]
async fn the_grpc_host_signs_in_and_guards_private_rooms() {
    let server = Server::tokio(&[]);
    let mut c = client(&server).await;
    let token = |t: pb::Token| t.token;
    let ada = token(
        c.register(pb::Credentials {
            name: "ada".into(),
            password: "correct horse".into(),
        })
        .await
        .unwrap()
        .into_inner(),
    );
    let again = c
        .register(pb::Credentials {
            name: "ada".into(),
            password: "correct horse".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(again.code(), Code::AlreadyExists);
    let bob = token(
        c.guest(pb::GuestRequest {
            nickname: "bob".into(),
        })
        .await
        .unwrap()
        .into_inner(),
    );
    let eve = token(
        c.guest(pb::GuestRequest {
            nickname: "eve".into(),
        })
        .await
        .unwrap()
        .into_inner(),
    );

    c.create_room(with_token(
        &ada,
        pb::CreateRoomRequest {
            room: "den".into(),
            private: true,
        },
    ))
    .await
    .unwrap();
    let submit = |t: &str, text: &str| {
        with_token(
            t,
            pb::SubmitRequest {
                room: "den".into(),
                text: text.into(),
                idempotency_key: String::new(),
                reply_to: 0,
                attachments: Vec::new(),
            },
        )
    };
    assert_eq!(
        c.submit(submit(&eve, "hi")).await.unwrap_err().code(),
        Code::PermissionDenied
    );
    let history = with_token(
        &eve,
        pb::HistoryRequest {
            room: "den".into(),
            cursor: None,
            limit: 0,
        },
    );
    assert_eq!(
        c.history(history).await.unwrap_err().code(),
        Code::PermissionDenied
    );
    let presence = with_token(&eve, pb::PresenceRequest { room: "den".into() });
    assert_eq!(
        c.presence(presence).await.unwrap_err().code(),
        Code::PermissionDenied
    );
    let stream = with_token(
        &eve,
        pb::StreamRequest {
            room: "den".into(),
            resume_after: None,
        },
    );
    assert_eq!(
        c.stream(stream).await.unwrap_err().code(),
        Code::PermissionDenied
    );
    // Impersonation through the old metadata is refused.
    let mut claim = submit(&ada, "as bob?");
    claim
        .metadata_mut()
        .insert("roomcast-user", "bob".parse().unwrap());
    assert_eq!(
        c.submit(claim).await.unwrap_err().code(),
        Code::PermissionDenied
    );

    let invite = with_token(
        &ada,
        pb::MemberRequest {
            room: "den".into(),
            user: "bob".into(),
        },
    );
    assert!(c.invite(invite).await.unwrap().into_inner().changed);
    let listen = with_token(
        &bob,
        pb::StreamRequest {
            room: "den".into(),
            resume_after: None,
        },
    );
    let mut s = c.stream(listen).await.unwrap().into_inner();
    assert!(matches!(next(&mut s).await, Some(Event::Presence(_))));
    c.submit(submit(&bob, "thanks")).await.unwrap();
    assert!(matches!(next(&mut s).await, Some(Event::Message(m)) if m.user == "bob"));
    let remove = with_token(
        &ada,
        pb::MemberRequest {
            room: "den".into(),
            user: "bob".into(),
        },
    );
    c.remove_member(remove).await.unwrap();
    loop {
        match next(&mut s).await {
            Some(Event::Closed(closed)) => {
                assert_eq!(closed.reason, "removed");
                break;
            }
            Some(Event::Left(_)) => {}
            other => panic!("expected the end, got {other:?}"),
        }
    }
    assert_eq!(next(&mut s).await, None, "the stream ends");

    // Direct messages: both find the same room; a third cannot read it.
    let dm = |t: &str, other: &str| with_token(t, pb::OpenDirectRequest { user: other.into() });
    let one = c
        .open_direct(dm(&ada, "bob"))
        .await
        .unwrap()
        .into_inner()
        .room
        .unwrap();
    let two = c
        .open_direct(dm(&bob, "ada"))
        .await
        .unwrap()
        .into_inner()
        .room
        .unwrap();
    assert_eq!(one.id, two.id);
    let peek = with_token(
        &eve,
        pb::HistoryRequest {
            room: one.id.clone(),
            cursor: None,
            limit: 0,
        },
    );
    assert_eq!(
        c.history(peek).await.unwrap_err().code(),
        Code::PermissionDenied
    );

    // Sign-out revokes; guessing is limited.
    c.sign_out(with_token(&bob, pb::SignOutRequest {}))
        .await
        .unwrap();
    assert_eq!(
        c.submit(submit(&bob, "x")).await.unwrap_err().code(),
        Code::Unauthenticated
    );
    for _ in 0..5 {
        let wrong = pb::Credentials {
            name: "ada".into(),
            password: "guess".into(),
        };
        assert_eq!(
            c.sign_in(wrong).await.unwrap_err().code(),
            Code::Unauthenticated
        );
    }
    let right = pb::Credentials {
        name: "ada".into(),
        password: "correct horse".into(),
    };
    assert_eq!(
        c.sign_in(right).await.unwrap_err().code(),
        Code::ResourceExhausted
    );

    let closed = Server::tokio(&["--guests=false"]);
    let mut c = client(&closed).await;
    let refused = c
        .guest(pb::GuestRequest {
            nickname: "bob".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied);
}

/// A stream is opened with a session; when that session signs out (say, in another tab), the
/// stream ends with `signed-out` instead of going on receiving the room. Other sessions stay.
#[test]
fn signing_out_ends_that_sessions_open_streams() {
    use tungstenite::Message;
    use tungstenite::client::IntoClientRequest;
    let server = Server::smol(&[]);
    let ada = guest(&server, "ada");
    let bob = guest(&server, "bob");
    call(
        &server,
        "POST",
        "/api/v1/rooms",
        Some(&ada),
        Some(json!({"room": "den"})),
    );
    let path = "/api/v1/rooms/den/events";
    let mut sse = SseStream::open_with_token(server.addr, path, &ada).expect("ada's stream");
    let mut bobs = SseStream::open_with_token(server.addr, path, &bob).expect("bob's stream");
    let mut request = server
        .ws_url("/api/v1/rooms/den/ws")
        .into_client_request()
        .unwrap();
    request
        .headers_mut()
        .insert("Authorization", format!("Bearer {ada}").parse().unwrap());
    let (mut ws, _) = tungstenite::connect(request).expect("ada's socket");
    if let tungstenite::stream::MaybeTlsStream::Plain(tcp) = ws.get_ref() {
        tcp.set_read_timeout(Some(roomcast_e2e::PATIENCE)).unwrap();
    }

    assert_eq!(
        call(&server, "POST", "/api/v1/auth/sign-out", Some(&ada), None).status,
        204
    );
    let closed = sse.next_of("closed").expect("the SSE stream is told");
    assert_eq!(closed.json()["reason"], "signed-out");
    assert!(sse.next_event().is_none(), "and it ends");
    let closed = loop {
        match ws.read().expect("a frame") {
            Message::Text(text) => {
                let frame: Value = serde_json::from_str(&text).unwrap();
                if frame["type"] == "closed" {
                    break frame;
                }
            }
            Message::Close(_) => panic!("closed without saying why"),
            Message::Binary(_) | Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => {}
        }
    };
    assert_eq!(closed["reason"], "signed-out");
    // Bob's session is untouched.
    call(
        &server,
        "POST",
        "/api/v1/rooms/den/messages",
        Some(&bob),
        Some(json!({"text": "still here"})),
    );
    assert_eq!(
        bobs.next_of("message").unwrap().json()["text"],
        "still here"
    );
}

#[tokio::test]
async fn a_grpc_stream_ends_when_its_session_signs_out() {
    let server = Server::tokio(&[]);
    let mut c = client(&server).await;
    let bob = roomcast_e2e::grpc::guest(&mut c, "bob").await;
    c.create_room(with_token(
        &bob,
        pb::CreateRoomRequest {
            room: "den".into(),
            private: false,
        },
    ))
    .await
    .unwrap();
    let open = pb::StreamRequest {
        room: "den".into(),
        resume_after: None,
    };
    let mut stream = c.stream(with_token(&bob, open)).await.unwrap().into_inner();
    assert!(matches!(next(&mut stream).await, Some(Event::Presence(_))));
    c.sign_out(with_token(&bob, pb::SignOutRequest {}))
        .await
        .unwrap();
    match next(&mut stream).await {
        Some(Event::Closed(closed)) => assert_eq!(closed.reason, "signed-out"),
        other => panic!("expected the stream to close, got {other:?}"),
    }
    assert!(next(&mut stream).await.is_none(), "and it ends");
}

/// A token is good until its `exp`; a stream opened with it ends then (at its next delivery or
/// heartbeat), instead of running on.
#[test]
fn a_stream_ends_when_its_token_expires() {
    let flag = format!("--jwt-secret={SECRET}");
    let server = Server::smol(&[&flag, "--heartbeat=1s"]);
    let lasting = minted("app-admin", 300, SECRET);
    call(
        &server,
        "POST",
        "/api/v1/rooms",
        Some(&lasting),
        Some(json!({"room": "brief"})),
    );
    let short = minted("app-user", 3, SECRET);
    let path = "/api/v1/rooms/brief/events";
    let mut stream =
        SseStream::open_with_token(server.addr, path, &short).expect("the stream opens");
    let mut other =
        SseStream::open_with_token(server.addr, path, &lasting).expect("the stream opens");
    let closed = stream.next_of("closed").expect("the stream is told");
    assert_eq!(closed.json()["reason"], "session-expired");
    assert!(stream.next_event().is_none(), "and it ends");
    call(
        &server,
        "POST",
        "/api/v1/rooms/brief/messages",
        Some(&lasting),
        Some(json!({"text": "still on"})),
    );
    assert_eq!(other.next_of("message").unwrap().json()["text"], "still on");
}
