//! Who a user is, tried as a stranger would: a name released by a guest who left, a name
//! nobody holds, a name that looks like someone's, an admin's name, a CSRF field of one's own
//! making. Nobody becomes someone else through any of them, over REST, the pages and gRPC.

use roomcast_e2e::grpc::{client, with_token};
use roomcast_e2e::{Browser, Server, User, call_as, ok, post_json, request_with};
use roomcast_proto::v1 as pb;
use serde_json::json;
use tonic::Code;

#[test]
fn a_guest_who_takes_a_released_name_inherits_nothing() {
    // No grace: the name is free the moment its guest signs out.
    let server = Server::smol(&["--guest-name-grace=0s", "--rate-burst=0"]);
    let zoe = User::guest(&server, "zoe");
    let bob = User::guest(&server, "bob");
    let cy = User::guest(&server, "cy");
    assert!(
        zoe.id.starts_with("zoe~"),
        "an id is the name and a tag: {}",
        zoe.id
    );

    // Everything a user can be given or hold.
    let den = json!({"room": "zoes-den", "private": true});
    ok(call_as(&server, "POST", "/api/v1/rooms", &zoe, Some(den)));
    ok(call_as(
        &server,
        "POST",
        "/api/v1/rooms/zoes-den/messages",
        &zoe,
        Some(json!({"text": "the den's secret"})),
    ));
    let dm = ok(call_as(
        &server,
        "POST",
        "/api/v1/direct",
        &zoe,
        Some(json!({"user": "bob"})),
    ));
    let dm = dm["id"].as_str().unwrap().to_owned();
    let path = format!("/api/v1/rooms/{dm}/messages");
    ok(call_as(
        &server,
        "POST",
        &path,
        &bob,
        Some(json!({"text": "for zoe only"})),
    ));
    ok(call_as(
        &server,
        "POST",
        "/api/v1/rooms",
        &bob,
        Some(json!({"room": "bobs-place"})),
    ));
    let appoint = json!({"target": "zoe", "action": "appoint"});
    ok(call_as(
        &server,
        "POST",
        "/api/v1/rooms/bobs-place/moderation",
        &bob,
        Some(appoint),
    ));
    ok(call_as(
        &server,
        "PUT",
        "/api/v1/rooms/zoes-den/read",
        &zoe,
        Some(json!({"seq": 1})),
    ));
    let upload = request_with(
        "POST",
        &server.url("/api/v1/rooms/bobs-place/attachments?name=note.txt"),
        &[
            ("Authorization", &format!("Bearer {}", zoe.token)),
            ("Content-Type", "text/plain"),
        ],
        Some("zoe's pending upload"),
    );
    let upload = ok(upload)["id"].as_str().unwrap().to_owned();

    ok(call_as(
        &server,
        "POST",
        "/api/v1/auth/sign-out",
        &zoe,
        None,
    ));
    let next = User::guest(&server, "zoe");
    assert_ne!(next.id, zoe.id, "the next zoe is someone else");
    let me = ok(call_as(&server, "GET", "/api/v1/auth/me", &next, None));
    assert_eq!(
        (me["user"].as_str(), me["user_id"].as_str()),
        (Some("zoe"), Some(next.id.as_str()))
    );

    // Not the private room, its history, its deletion, or its read marker.
    call_as(&server, "GET", "/api/v1/rooms/zoes-den", &next, None)
        .problem(403, "permission-denied");
    call_as(
        &server,
        "GET",
        "/api/v1/rooms/zoes-den/messages",
        &next,
        None,
    )
    .problem(403, "permission-denied");
    call_as(&server, "DELETE", "/api/v1/rooms/zoes-den", &next, None)
        .problem(403, "permission-denied");
    // Not the direct messages: writing to bob opens a room of their own.
    call_as(&server, "GET", &path, &next, None).problem(403, "permission-denied");
    let theirs = call_as(
        &server,
        "POST",
        "/api/v1/direct",
        &next,
        Some(json!({"user": "bob"})),
    );
    assert_eq!(theirs.status, 201, "a new room, not zoe's: {}", theirs.body);
    assert_ne!(theirs.json()["id"], dm);
    // Not the moderator's role.
    let mute = json!({"target": "cy", "action": "mute"});
    call_as(
        &server,
        "POST",
        "/api/v1/rooms/bobs-place/moderation",
        &next,
        Some(mute),
    )
    .problem(403, "permission-denied");
    // Not the pending upload.
    let post = json!({"text": "", "attachments": [upload]});
    let posted = call_as(
        &server,
        "POST",
        "/api/v1/rooms/bobs-place/messages",
        &next,
        Some(post),
    );
    posted.problem(404, "attachment-not-found");
    // The listing shows none of it.
    let rooms = ok(call_as(&server, "GET", "/api/v1/rooms", &next, None));
    let ids: Vec<&str> = rooms["rooms"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["id"].as_str())
        .collect();
    assert!(
        !ids.contains(&"zoes-den") && !ids.contains(&dm.as_str()),
        "{ids:?}"
    );
    // And the old zoe's messages still say who wrote them, by id.
    let history = ok(call_as(&server, "GET", &path, &bob, None));
    assert_eq!(history["messages"][0]["user"], "bob");
    let cys = ok(call_as(
        &server,
        "GET",
        "/api/v1/rooms/bobs-place",
        &cy,
        None,
    ));
    assert_eq!(cys["owner"], "bob");
}

#[test]
fn naming_someone_nobody_is_is_refused() {
    let server = Server::smol(&["--guest-name-grace=0s"]);
    let ada = User::guest(&server, "ada");
    ok(call_as(
        &server,
        "POST",
        "/api/v1/rooms",
        &ada,
        Some(json!({"room": "plans", "private": true})),
    ));
    ok(call_as(
        &server,
        "POST",
        "/api/v1/rooms/plans/messages",
        &ada,
        Some(json!({"text": "the plan"})),
    ));

    // A typo is not a member waiting for whoever picks the name.
    let invite = json!({"user": "nobody-here"});
    call_as(
        &server,
        "POST",
        "/api/v1/rooms/plans/members",
        &ada,
        Some(invite),
    )
    .problem(404, "user-not-found");
    call_as(
        &server,
        "POST",
        "/api/v1/direct",
        &ada,
        Some(json!({"user": "nobody-here"})),
    )
    .problem(404, "user-not-found");
    let appoint = json!({"target": "nobody-here", "action": "appoint"});
    call_as(
        &server,
        "POST",
        "/api/v1/rooms/plans/moderation",
        &ada,
        Some(appoint),
    )
    .problem(404, "user-not-found");
    let room = ok(call_as(&server, "GET", "/api/v1/rooms/plans", &ada, None));
    assert_eq!(room["members"], json!(["ada"]));
    let stranger = User::guest(&server, "nobody-here");
    call_as(
        &server,
        "GET",
        "/api/v1/rooms/plans/messages",
        &stranger,
        None,
    )
    .problem(403, "permission-denied");

    // Someone who holds the name is invited, by name or by id, and shown by name.
    let bob = User::guest(&server, "bob");
    ok(call_as(
        &server,
        "POST",
        "/api/v1/rooms/plans/members",
        &ada,
        Some(json!({"user": "BOB"})),
    ));
    let room = ok(call_as(&server, "GET", "/api/v1/rooms/plans", &ada, None));
    assert_eq!(room["members"], json!(["ada", "bob"]));
    assert_eq!(room["member_ids"][1], bob.id.as_str());
    // Once bob left, his id names nobody to invite, but what he was given is taken back.
    ok(call_as(
        &server,
        "POST",
        "/api/v1/auth/sign-out",
        &bob,
        None,
    ));
    call_as(
        &server,
        "POST",
        "/api/v1/direct",
        &ada,
        Some(json!({"user": bob.id})),
    )
    .problem(404, "user-not-found");
    let remove = format!("/api/v1/rooms/plans/members/{}", bob.id.replace('~', "%7E"));
    ok(call_as(&server, "DELETE", &remove, &ada, None));
    let room = ok(call_as(&server, "GET", "/api/v1/rooms/plans", &ada, None));
    assert_eq!(room["members"], json!(["ada"]));
}

#[tokio::test]
async fn grpc_refuses_naming_someone_nobody_is() {
    let server = Server::tokio(&[]);
    let mut c = client(&server).await;
    let ada = c
        .guest(pb::GuestRequest {
            nickname: "ada".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(ada.user_id.starts_with("ada~"), "{ada:?}");
    let token = ada.token.clone();
    let create = pb::CreateRoomRequest {
        room: "plans".into(),
        private: true,
    };
    c.create_room(with_token(&token, create)).await.unwrap();
    let member = pb::MemberRequest {
        room: "plans".into(),
        user: "nobody-here".into(),
    };
    let refused = c.invite(with_token(&token, member)).await.unwrap_err();
    assert_eq!(refused.code(), Code::NotFound, "{refused:?}");
    let direct = pb::OpenDirectRequest {
        user: "nobody-here".into(),
    };
    assert_eq!(
        c.open_direct(with_token(&token, direct))
            .await
            .unwrap_err()
            .code(),
        Code::NotFound
    );
    let moderate = pb::ModerateRequest {
        room: "plans".into(),
        user: "nobody-here".into(),
        action: "appoint".into(),
        seconds: 0,
    };
    assert_eq!(
        c.moderate(with_token(&token, moderate))
            .await
            .unwrap_err()
            .code(),
        Code::NotFound
    );
}

#[test]
fn look_alike_names_are_taken_but_shown_as_typed() {
    let server = Server::smol(&["--admins=root"]);
    let alice = post_json(
        &server.url("/api/v1/auth/register"),
        &json!({"name": "alice", "password": "correct horse"}),
    );
    assert_eq!(alice.status, 201, "{}", alice.body);
    for look_alike in [
        "Alice",
        "ALICE",
        "\u{430}lice",
        "\u{ff41}\u{ff4c}\u{ff49}\u{ff43}\u{ff45}",
        "al\u{131}ce",
        "a l i c e",
    ] {
        let res = post_json(
            &server.url("/api/v1/auth/guest"),
            &json!({"nickname": look_alike}),
        );
        res.problem(409, "name-taken");
        let res = post_json(
            &server.url("/api/v1/auth/register"),
            &json!({"name": look_alike, "password": "correct horse"}),
        );
        res.problem(409, "name-taken");
    }
    for look_alike in ["Root", "ROOT", "r\u{43e}ot"] {
        let res = post_json(
            &server.url("/api/v1/auth/guest"),
            &json!({"nickname": look_alike}),
        );
        res.problem(409, "name-taken");
    }
    // Shown as its holder typed it.
    let zoe = post_json(
        &server.url("/api/v1/auth/guest"),
        &json!({"nickname": "Zoë Ann"}),
    );
    assert_eq!(zoe.status, 201, "{}", zoe.body);
    assert_eq!(zoe.json()["user"], "Zoë Ann");
    // Signing in works however the name is written.
    let again = post_json(
        &server.url("/api/v1/auth/sign-in"),
        &json!({"name": "ALICE", "password": "correct horse"}),
    );
    assert_eq!(again.status, 200, "{}", again.body);
    assert_eq!(again.json()["user_id"], alice.json()["user_id"]);
}

#[test]
fn an_admin_without_an_account_is_nobody_and_said_so() {
    // Named in the configuration file, which the harness does not read: no account is made.
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("roomcast.toml");
    std::fs::write(&config, "admins = [\"ops\"]\n").unwrap();
    let server = Server::smol(&["--config", config.to_str().unwrap()]);
    let said = server.wait_for_log("no account holds this admin's name");
    assert!(said.contains("--set-password ops"), "{said}");
    for name in ["ops", "Ops", "0ps"] {
        let stranger = post_json(
            &server.url("/api/v1/auth/register"),
            &json!({"name": name, "password": "a long password"}),
        );
        stranger.problem(409, "name-taken");
    }
}

#[test]
fn first_come_never_makes_an_admin() {
    // The operator's admin, made before the start as the harness does (`--set-password`).
    let server = Server::smol(&["--admins=root"]);
    let ada = User::guest(&server, "ada");
    ok(call_as(
        &server,
        "POST",
        "/api/v1/rooms",
        &ada,
        Some(json!({"room": "adas"})),
    ));
    for name in ["root", "Root"] {
        let stranger = post_json(
            &server.url("/api/v1/auth/register"),
            &json!({"name": name, "password": "a long password"}),
        );
        stranger.problem(409, "name-taken");
    }
    let root = post_json(
        &server.url("/api/v1/auth/sign-in"),
        &json!({"name": "root", "password": "harness password"}),
    );
    assert_eq!(
        root.status, 200,
        "the operator's account signs in: {}",
        root.body
    );
    let root = User::from_answer(&root);
    // The admin deletes anyone's room.
    ok(call_as(
        &server,
        "DELETE",
        "/api/v1/rooms/adas",
        &root,
        None,
    ));
}

#[tokio::test]
async fn first_come_never_makes_an_admin_over_grpc() {
    let server = Server::tokio(&["--admins=root"]);
    let mut c = client(&server).await;
    let stranger = pb::Credentials {
        name: "root".into(),
        password: "a long password".into(),
    };
    let refused = c.register(stranger).await.unwrap_err();
    assert_eq!(refused.code(), Code::AlreadyExists, "{refused:?}");
    let root = pb::Credentials {
        name: "root".into(),
        password: "harness password".into(),
    };
    assert!(c.sign_in(root).await.is_ok());
}

#[test]
fn a_csrf_field_of_ones_own_making_is_refused() {
    let server = Server::smol(&[]);
    let mut page = Browser::guest(&server, "ada");
    assert_eq!(page.post_form("/rooms", &[("room", "plain")]).status, 303);
    // A cookie and a field that agree, but that the server never issued.
    page.cookies_insert("roomcast_csrf", "z");
    let forged = page.post_form("/room/plain", &[("text", "forged"), ("csrf", "z")]);
    assert_eq!(forged.status, 403, "{}", forged.body);
    let ada = roomcast_e2e::known_token(server.addr, "ada").unwrap();
    let history = request_with(
        "GET",
        &server.url("/api/v1/rooms/plain/messages"),
        &[("Authorization", &format!("Bearer {ada}"))],
        None,
    );
    assert_eq!(history.json()["messages"], json!([]), "nothing was posted");
}
