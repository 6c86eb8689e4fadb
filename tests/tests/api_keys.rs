//! Server-side publishing: an application's API key acts as its system user, which creates
//! rooms and posts into any room over REST and gRPC; nobody else can be that user; a wrong or
//! missing key is refused.

use roomcast_e2e::grpc;
use roomcast_e2e::{Server, call, post_with, refused_start};
use roomcast_proto::v1 as pb;
use serde_json::json;
use tonic::Code;

const KEY: &str = "0123456789abcdef0123456789abcdef-deploy";

fn as_app(key: &str) -> Vec<(&str, &str)> {
    vec![("Content-Type", "application/json"), ("x-api-key", key)]
}

#[test]
fn an_api_key_creates_rooms_and_posts_anywhere_as_its_system_user() {
    let key_flag = format!("deploybot={KEY}");
    let server = Server::smol(&[
        "--api-key",
        &key_flag,
        "--admin-only-create",
        "--admins=root",
    ]);
    let created = post_with(
        &server.url("/api/v1/rooms"),
        &as_app(KEY),
        &json!({ "room": "deploys" }).to_string(),
    );
    assert_eq!(
        created.status, 201,
        "rooms are created even when only admins may: {}",
        created.body
    );
    assert_eq!(created.json()["owner"], "deploybot");

    // Ada's private room (made by an admin for her): the bot posts there too.
    let url = server.url("/api/v1/rooms?user=root");
    let den = call(
        "POST",
        &url,
        Some(&json!({ "room": "den", "private": true })),
    );
    assert_eq!(den.status, 201, "{}", den.body);
    let posted = post_with(
        &server.url("/api/v1/rooms/den/messages"),
        &as_app(KEY),
        &json!({ "text": "build 42 is out" }).to_string(),
    );
    assert_eq!(posted.status, 201, "{}", posted.body);
    assert_eq!(posted.json()["user"], "deploybot");
    let read = call(
        "GET",
        &server.url("/api/v1/rooms/den/messages?user=root"),
        None,
    );
    assert_eq!(read.json()["messages"][0]["text"], "build 42 is out");

    // Nothing more than that.
    let delete = roomcast_e2e::request_with(
        "DELETE",
        &server.url("/api/v1/rooms/den"),
        &[("x-api-key", KEY)],
        None,
    );
    delete.problem(403, "permission-denied");
    // It speaks only as itself.
    post_with(
        &server.url("/api/v1/rooms/den/messages"),
        &as_app(KEY),
        &json!({ "user": "root", "text": "sudo" }).to_string(),
    )
    .problem(403, "impersonation");
    // A wrong key, or none, is refused.
    let wrong = "0123456789abcdef0123456789abcdef-wrong!";
    post_with(
        &server.url("/api/v1/rooms/den/messages"),
        &as_app(wrong),
        &json!({ "text": "hi" }).to_string(),
    )
    .problem(401, "invalid-token");
    roomcast_e2e::request_with(
        "POST",
        &server.url("/api/v1/rooms/den/messages"),
        &[("Content-Type", "application/json")],
        Some(&json!({ "text": "hi" }).to_string()),
    )
    .problem(401, "unauthenticated");
    // Nobody becomes the system user by signing up or in.
    post_with(
        &server.url("/api/v1/auth/register"),
        &[("Content-Type", "application/json")],
        &json!({ "name": "deploybot", "password": "a long enough password" }).to_string(),
    )
    .problem(409, "name-taken");
    post_with(
        &server.url("/api/v1/auth/guest"),
        &[("Content-Type", "application/json")],
        &json!({ "nickname": "deploybot" }).to_string(),
    )
    .problem(409, "name-taken");
}

#[tokio::test(flavor = "current_thread")]
async fn an_api_key_posts_over_grpc() {
    let key_flag = format!("deploybot={KEY}");
    let server = Server::tokio(&["--api-key", &key_flag]);
    let mut c = grpc::client(&server).await;
    let with_key = |key: &str, room: &str| {
        let mut req = tonic::Request::new(pb::SubmitRequest {
            room: room.into(),
            text: "from the backend".into(),
            idempotency_key: String::new(),
            reply_to: 0,
            attachments: Vec::new(),
        });
        req.metadata_mut()
            .insert("x-api-key", key.parse().expect("ASCII"));
        req
    };
    let mut create = tonic::Request::new(pb::CreateRoomRequest {
        room: "g".into(),
        ..Default::default()
    });
    create
        .metadata_mut()
        .insert("x-api-key", KEY.parse().unwrap());
    c.create_room(create).await.expect("created by the key");
    let posted = c
        .submit(with_key(KEY, "g"))
        .await
        .expect("posted")
        .into_inner();
    assert_eq!(posted.message.expect("the message").user, "deploybot");
    let refused = c
        .submit(with_key("0123456789abcdef0123456789abcdef-wrong!", "g"))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated);
}

#[test]
fn a_short_or_malformed_key_stops_the_start() {
    let (status, stderr) = refused_start(
        "roomcast-smol",
        "roomcast-smol",
        &["--in-memory", "--api-key", "bot=short"],
    );
    assert!(!status.success());
    assert!(stderr.contains("use at least 32 random ones"), "{stderr}");
    let (status, stderr) = refused_start(
        "roomcast-smol",
        "roomcast-smol",
        &["--in-memory", "--api-key", "no-equals-sign"],
    );
    assert!(!status.success());
    assert!(stderr.contains("NAME=KEY"), "{stderr}");
}
