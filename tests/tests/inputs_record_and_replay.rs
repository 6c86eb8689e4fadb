//! `--record-inputs` writes every input the core got and what it answered; `roomcast-replay`
//! feeds the recording to a fresh core and finds the same outputs, step by step. Both hosts
//! record through the hub, so both are tried, and a restart's restored rooms replay too.

use std::path::Path;
use std::process::Command;

use roomcast_e2e::grpc::{self, Client};
use roomcast_e2e::{Browser, Server, SseStream, binary, create_room, delete, post_json, say};
use roomcast_proto::v1 as pb;
use serde_json::json;

/// Runs `roomcast-replay` on a recording: its exit code and what it printed.
fn replay(path: &Path) -> (i32, String) {
    let out = Command::new(binary("roomcast-hub", "roomcast-replay"))
        .arg(path)
        .output()
        .expect("roomcast-replay runs");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code().unwrap_or(-1), text)
}

/// The number in "N steps replayed".
fn steps(output: &str) -> usize {
    output
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no step count in {output:?}"))
}

fn stop(mut server: Server) {
    server.signal("TERM");
    assert!(server.wait().success(), "a clean stop");
}

#[test]
fn a_recorded_smol_server_replays_identically_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data_dir = format!("--data-dir={}", data.display());
    let first = dir.path().join("first.jsonl");
    let server = Server::smol(&[&data_dir, &format!("--record-inputs={}", first.display())]);
    create_room(&server, "lobby");
    let mut stream = SseStream::open(server.addr, "/api/v1/rooms/lobby/events", None).unwrap();
    for text in ["one", "two", "three"] {
        say(&server, "lobby", "ada", text);
    }
    assert_eq!(stream.message_seqs(3), [1, 2, 3]);
    drop(stream);
    // Refusals are inputs too.
    let missing = post_json(
        &server.url("/api/v1/rooms/nowhere/messages"),
        &json!({"text": "x"}),
    );
    assert_eq!(missing.status, 404);
    // A private room, a member added and removed, the page's look at a room that is not there.
    let den = post_json(
        &server.url("/api/v1/rooms?user=ada"),
        &json!({"room": "den", "private": true}),
    );
    assert_eq!(den.status, 201, "{}", den.body);
    roomcast_e2e::guest_token(server.addr, "bob").expect("bob holds his name");
    let invite = post_json(
        &server.url("/api/v1/rooms/den/members?user=ada"),
        &json!({"user": "bob"}),
    );
    assert_eq!(invite.status, 204, "{}", invite.body);
    assert_eq!(
        delete(&server.url("/api/v1/rooms/den/members/bob?user=ada")).status,
        204
    );
    let mut zoe = Browser::guest(&server, "zoe");
    assert_eq!(zoe.get("/room/not-yet").status, 404);
    create_room(&server, "doomed");
    assert_eq!(delete(&server.url("/api/v1/rooms/doomed")).status, 204);
    stop(server);

    let (code, output) = replay(&first);
    assert_eq!(code, 0, "{output}");
    assert!(steps(&output) >= 12, "{output}");

    // After a restart the recording starts with the rooms restored from the store.
    let second = dir.path().join("second.jsonl");
    let server = Server::smol(&[&data_dir, &format!("--record-inputs={}", second.display())]);
    say(&server, "lobby", "ada", "four");
    stop(server);
    let text = std::fs::read_to_string(&second).unwrap();
    assert!(text.contains("RestoreRoom"), "restored rooms are recorded");
    let (code, output) = replay(&second);
    assert_eq!(code, 0, "{output}");

    // The checker can fail: a recording whose outputs were changed is caught at that step.
    assert!(
        text.contains("seq: Seq(4)"),
        "the new message is the fourth"
    );
    let tampered = dir.path().join("tampered.jsonl");
    std::fs::write(&tampered, text.replace("seq: Seq(4)", "seq: Seq(5)")).unwrap();
    let (code, output) = replay(&tampered);
    assert_eq!(code, 1, "{output}");
    assert!(output.contains("gave"), "{output}");
}

#[tokio::test]
async fn a_recorded_grpc_server_replays_identically() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("grpc.jsonl");
    let server = Server::tokio(&[&format!("--record-inputs={}", path.display())]);
    let mut c: Client = grpc::client(&server).await;
    grpc::create(&mut c, "lobby").await;
    let mut stream = grpc::open(&mut c, "ada", "lobby", None).await;
    grpc::submit(&mut c, "ada", "lobby", "over gRPC").await;
    assert_eq!(grpc::next_seq(&mut stream).await, 1);
    drop(stream);
    let ask = pb::HistoryRequest {
        room: "nowhere".into(),
        cursor: None,
        limit: 0,
    };
    let ask = grpc::as_user(&mut c, "ada", ask).await;
    let refused = c.history(ask).await;
    assert_eq!(refused.unwrap_err().code(), tonic::Code::NotFound);
    // The server stops once its clients have gone; their connections close on this runtime.
    drop(c);
    tokio::task::spawn_blocking(move || stop(server))
        .await
        .unwrap();
    let (code, output) = replay(&path);
    assert_eq!(code, 0, "{output}");
    assert!(steps(&output) >= 4, "{output}");
}

/// With `--redis` a node takes message ids from Redis a block at a time, and asks for the next
/// block halfway through one: that is an input to core too, recorded, so the recording of a
/// node that moved through several blocks replays to its end.
#[test]
fn a_recorded_redis_node_replays_across_its_id_blocks() {
    use roomcast_e2e::redis::{self, Redis, node_args};
    if !redis::available() {
        return;
    }
    let redis = Redis::start(&[]);
    let url = redis.url();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("node.jsonl");
    let record = format!("--record-inputs={}", path.display());
    let server = Server::smol(&node_args(&url, &[&record, "--redis-id-block=4"]));
    let ada = roomcast_e2e::guest_token(server.addr, "ada").expect("a guest token");
    let auth = format!("Bearer {ada}");
    let post = |path: &str, body: serde_json::Value| {
        roomcast_e2e::call_with("POST", &server.url(path), Some(&auth), Some(&body))
    };
    let created = post("/api/v1/rooms", json!({ "room": "blocks" }));
    assert_eq!(created.status, 201, "{}", created.body);
    let mut ids = Vec::new();
    for n in 0..10 {
        let said = post(
            "/api/v1/rooms/blocks/messages",
            json!({ "text": n.to_string() }),
        );
        assert_eq!(said.status, 201, "{}", said.body);
        ids.push(said.json()["id"].as_str().expect("an id").to_owned());
    }
    stop(server);
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(
        text.matches("RestoreMessageIds").count() >= 3,
        "each new block is recorded: {ids:?}"
    );
    let (code, output) = replay(&path);
    assert_eq!(code, 0, "{output}");
    assert!(steps(&output) >= 12, "{output}");
}
