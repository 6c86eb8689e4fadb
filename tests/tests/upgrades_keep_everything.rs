//! A data dir an earlier roomcast wrote (schema 6: users named by their bare names) upgraded in
//! place: every room, member, role, marker and message stays, accounts keep signing in and
//! keep what they own, a guest who held a name still holds it, and the names compare as
//! people read them from then on.

use roomcast_e2e::{Server, post_json, request_with};
use rusqlite::{Connection, params};
use serde_json::{Value, json};

const SECRET: &str = "an application's shared secret, 32+ bytes long";

/// Milliseconds since the Unix epoch, now.
fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// An argon2id hash of `password`, as roomcast stores one.
fn hash(password: &str) -> String {
    use argon2::password_hash::{PasswordHasher, SaltString};
    let salt = SaltString::encode_b64(b"sixteen byte slt").unwrap();
    argon2::Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .unwrap()
        .to_string()
}

/// A token as the earlier roomcast signed one: `sub` the bare name, with a session.
fn legacy_token(sub: &str, sid: &str, guest: bool, exp_ms: i64) -> String {
    use jsonwebtoken::{Algorithm, EncodingKey, Header};
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &json!({"sub": sub, "exp": exp_ms / 1000, "sid": sid, "guest": guest}),
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap()
}

/// A data dir as the earlier roomcast left it: ada's account owns a private room with guest
/// bob in it and public "hall", where bob moderates and cy is banned; messages, a reaction, read
/// markers, and bob's live guest session.
fn old_data_dir(dir: &std::path::Path) -> (String, String) {
    let mut conn = Connection::open(dir.join("roomcast.db")).unwrap();
    conn.execute_batch("PRAGMA journal_mode = WAL;").unwrap();
    // The schema as roomcast wrote it before user ids (its migrations 1 to 6, as released).
    roomcast_store::migrate_to(&mut conn, 6).unwrap();
    let now = now_ms();
    let exp = now + 3_600_000;
    conn.execute_batch(
        "INSERT INTO rooms (key, id, created_at, latest, owner, private, posts) VALUES
            (1, 'secret', 1000, 2, 'ada', 1, 2), (2, 'hall', 1000, 3, 'ada', 0, 2);
         INSERT INTO members (room, user) VALUES (1, 'ada'), (1, 'bob');
         INSERT INTO moderation (room, user, role, until) VALUES (2, 'bob', 'moderator', NULL),
            (2, 'cy', 'banned', NULL);
         INSERT INTO read_markers (room, user, seq, posts) VALUES (1, 'bob', 1, 1);
         UPDATE counters SET value = 10 WHERE name = 'next_message_id';",
    )
    .unwrap();
    let message = |id: i64,
                   room: i64,
                   seq: i64,
                   user: &str,
                   text: &str,
                   kind: Option<&str>,
                   of: Option<i64>| {
        conn.execute(
            "INSERT INTO messages (id, room, seq, user, text, sent_at, kind, of) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            params![id, room, seq, user, text, 2000 + id, kind, of],
        )
        .unwrap();
    };
    message(1, 1, 1, "ada", "only for bob", None, None);
    message(2, 1, 2, "bob", "understood", None, None);
    message(3, 2, 1, "ada", "welcome to the hall", None, None);
    message(4, 2, 2, "cy", "hello", None, None);
    message(
        5,
        2,
        3,
        "bob",
        "",
        Some(r#"{"kind":"react","of":1,"emoji":"👍","added":true}"#),
        Some(1),
    );
    conn.execute(
        "INSERT INTO reactions (room, seq, emoji, user) VALUES (2, 1, '👍', 'bob')",
        [],
    )
    .unwrap();
    conn.execute(
        "INSERT INTO accounts (name, password_hash, created_at) VALUES ('ada', ?1, 500)",
        [hash("ada's password")],
    )
    .unwrap();
    conn.execute(
        "INSERT INTO guest_names (name, held_until) VALUES ('bob', ?1)",
        [exp + 3_600_000],
    )
    .unwrap();
    conn.execute(
        "INSERT INTO sessions (id, user, expires_at) VALUES ('bobs-session', 'bob', ?1)",
        [exp],
    )
    .unwrap();
    drop(conn);
    (
        legacy_token("bob", "bobs-session", true, exp),
        legacy_token("ada", "adas-old-session", false, exp),
    )
}

fn get(server: &Server, path: &str, token: &str) -> Value {
    let res = request_with(
        "GET",
        &server.url(path),
        &[("Authorization", &format!("Bearer {token}"))],
        None,
    );
    assert_eq!(res.status, 200, "{path}: {}", res.body);
    res.json()
}

#[test]
fn a_data_dir_from_before_user_ids_keeps_everything() {
    let dir = tempfile::tempdir().unwrap();
    let (bob, _) = old_data_dir(dir.path());
    let data = dir.path().to_str().unwrap();
    let server = Server::smol(&["--data-dir", data, "--jwt-secret", SECRET]);
    server.wait_for_log("migrated to version 7");

    // ada's account signs in as before, and is the ada who owns the rooms.
    let ada = post_json(
        &server.url("/api/v1/auth/sign-in"),
        &json!({"name": "ada", "password": "ada's password"}),
    );
    assert_eq!(ada.status, 200, "{}", ada.body);
    assert_eq!(
        ada.json()["user_id"],
        "ada",
        "an account from before keeps its name as its id"
    );
    let ada = ada.json()["token"].as_str().unwrap().to_owned();
    let secret = get(&server, "/api/v1/rooms/secret", &ada);
    assert_eq!(
        (secret["owner"].as_str(), secret["private"].as_bool()),
        (Some("ada"), Some(true))
    );
    assert_eq!(secret["members"], json!(["ada", "bob"]));
    let history = get(&server, "/api/v1/rooms/secret/messages", &ada);
    let texts: Vec<&str> = history["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["text"].as_str())
        .collect();
    assert_eq!(texts, ["only for bob", "understood"]);
    let hall = get(&server, "/api/v1/rooms/hall/messages", &ada);
    assert_eq!(hall["messages"][0]["reactions"][0]["users"], json!(["bob"]));

    // bob, a guest then, still is: his session lives, he reads the room, he moderates the hall.
    let me = get(&server, "/api/v1/auth/me", &bob);
    assert_eq!(
        (me["user"].as_str(), me["user_id"].as_str()),
        (Some("bob"), Some("bob"))
    );
    get(&server, "/api/v1/rooms/secret/messages", &bob);
    let rooms = get(&server, "/api/v1/rooms", &bob);
    let secret = rooms["rooms"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == "secret")
        .unwrap();
    assert_eq!(secret["unread"], 1, "his read marker stayed");
    // His name is still his: nobody else, however they write it, takes it.
    post_json(
        &server.url("/api/v1/auth/guest"),
        &json!({"nickname": "BOB"}),
    )
    .problem(409, "name-taken");
    // cy's name was never held (cy was a guest who left): a new cy is someone else, not banned.
    let cy = post_json(
        &server.url("/api/v1/auth/guest"),
        &json!({"nickname": "cy"}),
    );
    assert_eq!(cy.status, 201, "{}", cy.body);
    let cy = cy.json()["token"].as_str().unwrap().to_owned();
    get(&server, "/api/v1/rooms/hall/messages", &cy);
    // bob moderates the hall still.
    let auth = format!("Bearer {bob}");
    let mute = request_with(
        "POST",
        &server.url("/api/v1/rooms/hall/moderation"),
        &[
            ("Authorization", &auth),
            ("Content-Type", "application/json"),
        ],
        Some(&json!({"target": "cy", "action": "mute"}).to_string()),
    );
    assert_eq!(mute.status, 201, "{}", mute.body);
    // New accounts look-alike to old ones are refused.
    post_json(
        &server.url("/api/v1/auth/register"),
        &json!({"name": "Ada", "password": "a long password"}),
    )
    .problem(409, "name-taken");
}

#[test]
fn redis_data_from_before_user_ids_keeps_everyone() {
    use roomcast_e2e::redis::{self, Redis};
    if !redis::available() {
        return;
    }
    let redis = Redis::start(&[]);
    // Identity as the earlier roomcast kept it in Redis: accounts by name, guests' holds as `1`.
    redis.cmd(&format!(
        "HSET rc:{{id}}:accounts ada {}",
        hash("ada's password")
    ));
    redis.cmd("SET rc:{id}:guest:bob 1 PX 3600000");
    let url = redis.url();
    let node = Server::smol(&redis::node_args(&url, &[]));
    node.wait_for_log("accounts moved to user ids");

    let ada = post_json(
        &node.url("/api/v1/auth/sign-in"),
        &json!({"name": "ada", "password": "ada's password"}),
    );
    assert_eq!(ada.status, 200, "{}", ada.body);
    assert_eq!(ada.json()["user_id"], "ada");
    let ada = ada.json()["token"].as_str().unwrap().to_owned();
    let auth = format!("Bearer {ada}");
    let headers = [
        ("Authorization", auth.as_str()),
        ("Content-Type", "application/json"),
    ];
    let created = request_with(
        "POST",
        &node.url("/api/v1/rooms"),
        &headers,
        Some(r#"{"room":"secret","private":true}"#),
    );
    assert_eq!(created.status, 201, "{}", created.body);
    // bob, who held his name as a guest then, is someone to invite: the name is his.
    let invited = request_with(
        "POST",
        &node.url("/api/v1/rooms/secret/members"),
        &headers,
        Some(r#"{"user":"bob"}"#),
    );
    assert_eq!(invited.status, 204, "{}", invited.body);
    assert_eq!(
        get(&node, "/api/v1/rooms/secret", &ada)["member_ids"],
        json!(["ada", "bob"])
    );
    for taken in ["BOB", "Ada"] {
        post_json(&node.url("/api/v1/auth/guest"), &json!({"nickname": taken}))
            .problem(409, "name-taken");
    }
    post_json(
        &node.url("/api/v1/auth/register"),
        &json!({"name": "ADA", "password": "a long password"}),
    )
    .problem(409, "name-taken");
    assert_eq!(
        redis.cmd("EXISTS rc:{id}:accounts"),
        ":0",
        "the old hash is gone once moved"
    );
}
