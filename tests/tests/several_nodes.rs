//! Several nodes sharing rooms through a real Redis (`--redis`): roomcast-smol and
//! roomcast-tokio nodes side by side, each test with its own `redis-server`.

use std::collections::BTreeMap;
use std::thread;

use roomcast_e2e::grpc::{self, client, next};
use roomcast_e2e::redis::{self, Redis, node_args};
use roomcast_e2e::sse::SseStream;
use roomcast_e2e::{Server, create_room, post_json, post_with, say};
use roomcast_proto::v1::stream_event::Event;
use serde_json::json;

/// A `redis-server` and two roomcast-smol nodes on it; `None` where redis-server is missing
/// (outside CI, where the test then passes saying so).
fn two_nodes() -> Option<(Redis, Server, Server)> {
    if !redis::available() {
        return None;
    }
    let redis = Redis::start(&[]);
    let url = redis.url();
    let a = Server::smol(&node_args(&url, &[]));
    let b = Server::smol(&node_args(&url, &[]));
    Some((redis, a, b))
}

/// The next `n` messages of an SSE stream, as (seq, text).
fn sse_messages(stream: &mut SseStream, n: usize) -> Vec<(u64, String)> {
    (0..n)
        .map(|_| {
            let m = stream.next_of("message").expect("a message").json();
            (
                m["seq"].as_u64().expect("seq"),
                m["text"].as_str().expect("text").to_owned(),
            )
        })
        .collect()
}

/// Checks that `got` is 1..=n in order with no hole or repeat.
fn assert_contiguous(who: &str, got: &[(u64, String)], n: usize) {
    let seqs: Vec<u64> = got.iter().map(|(s, _)| *s).collect();
    let expected: Vec<u64> = (1..=n as u64).collect();
    assert_eq!(seqs, expected, "{who} saw a hole, a repeat or a reorder");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_agree_on_each_rooms_one_order() {
    if !redis::available() {
        return;
    }
    let redis = Redis::start(&[]);
    three_nodes_agree(&redis.url(), &[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_agree_on_a_redis_cluster() {
    if !redis::available() {
        return;
    }
    let cluster = roomcast_e2e::redis::RedisCluster::start(3);
    three_nodes_agree(&cluster.url(), &["--redis-cluster"]).await;
    // The keys really are spread over the shards (a room's under one hash tag, identity's
    // under another, the node registry apart).
    let holding = cluster
        .nodes
        .iter()
        .filter(|n| n.cmd("DBSIZE") != ":0")
        .count();
    assert!(holding >= 2, "every key landed on one shard");
}

/// Two smol nodes and a tokio node on `url`, posting on all three at once: every listener on
/// every node sees the room's messages in one order, contiguous, none lost or repeated.
async fn three_nodes_agree(url: &str, extra: &[&str]) {
    let url = url.to_owned();
    let a = Server::smol(&node_args(&url, extra));
    let b = Server::smol(&node_args(&url, extra));
    let c = Server::tokio(&node_args(&url, extra));
    create_room(&a, "hall");

    // A listener on every node: SSE on the two smol nodes, a gRPC stream on the tokio node.
    let mut on_a =
        SseStream::open(a.addr, "/api/v1/rooms/hall/events?user=ann", None).expect("SSE on node a");
    let mut on_b =
        SseStream::open(b.addr, "/api/v1/rooms/hall/events?user=ben", None).expect("SSE on node b");
    let mut grpc_c = client(&c).await;
    let mut on_c = grpc::open(&mut grpc_c, "cat", "hall", None).await;

    // Posts on all three nodes at once.
    const EACH: usize = 40;
    let total = 3 * EACH;
    let posting: Vec<_> = [(&a, "ann"), (&b, "ben")]
        .into_iter()
        .map(|(server, user)| {
            let url = server.url("/api/v1/rooms/hall/messages");
            let user = user.to_owned();
            thread::spawn(move || {
                for i in 0..EACH {
                    let res = post_json(
                        &url,
                        &json!({ "user": user, "text": format!("{user} {i}") }),
                    );
                    assert_eq!(res.status, 201, "{}", res.body);
                }
            })
        })
        .collect();
    let mut poster_c = client(&c).await;
    let grpc_posts = tokio::spawn(async move {
        for i in 0..EACH {
            grpc::submit(&mut poster_c, "cat", "hall", &format!("cat {i}")).await;
        }
    });
    let read_a = thread::spawn(move || sse_messages(&mut on_a, total));
    let read_b = thread::spawn(move || sse_messages(&mut on_b, total));
    let mut seen_c = Vec::new();
    while seen_c.len() < total {
        match next(&mut on_c).await.expect("the gRPC stream stays open") {
            Event::Message(m) => seen_c.push((m.seq, m.text)),
            Event::Presence(_) | Event::Joined(_) | Event::Left(_) | Event::Typing(_) => {}
            other @ (Event::Gap(_)
            | Event::Closed(_)
            | Event::Edited(_)
            | Event::Deleted(_)
            | Event::Reaction(_)
            | Event::Moderation(_)) => panic!("unexpected {other:?}"),
        }
    }
    for p in posting {
        p.join().expect("posting on a smol node");
    }
    grpc_posts.await.expect("posting on the tokio node");
    let seen_a = read_a.join().expect("reading on node a");
    let seen_b = read_b.join().expect("reading on node b");

    assert_contiguous("node a", &seen_a, total);
    assert_contiguous("node b", &seen_b, total);
    assert_contiguous("node c", &seen_c, total);
    assert_eq!(seen_a, seen_b, "nodes a and b disagree on the order");
    assert_eq!(seen_a, seen_c, "nodes a and c disagree on the order");
    // Every message posted anywhere is there exactly once.
    let mut texts: Vec<&str> = seen_a.iter().map(|(_, t)| t.as_str()).collect();
    texts.sort_unstable();
    texts.dedup();
    assert_eq!(texts.len(), total);

    // A node that joins later loads the room from Redis with the same history.
    let d = Server::smol(&node_args(&url, extra));
    let page = roomcast_e2e::get(&d.url("/api/v1/rooms/hall/messages?user=dan&limit=500"));
    assert_eq!(page.status, 200, "{}", page.body);
    let history: Vec<(u64, String)> = page.json()["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .map(|m| {
            (
                m["seq"].as_u64().expect("seq"),
                m["text"].as_str().expect("text").to_owned(),
            )
        })
        .collect();
    assert_eq!(history, seen_a, "a fresh node's history differs");
}

#[test]
fn a_retry_on_another_node_gets_the_original_number() {
    let Some((_redis, a, b)) = two_nodes() else {
        return;
    };
    create_room(&a, "retry");
    say(&a, "retry", "eve", "first");
    let body = json!({ "text": "only once" }).to_string();
    let token = format!(
        "Bearer {}",
        roomcast_e2e::guest_token(a.addr, "eve").expect("eve")
    );
    let key = [
        ("Idempotency-Key", "k-123"),
        ("Content-Type", "application/json"),
        ("Authorization", token.as_str()),
    ];
    let original = post_with(&a.url("/api/v1/rooms/retry/messages"), &key, &body);
    assert_eq!(original.status, 201, "{}", original.body);
    // The node that took the post dies; the client retries on another.
    drop(a);
    let retried = post_with(&b.url("/api/v1/rooms/retry/messages"), &key, &body);
    assert!(
        retried.status == 200 || retried.status == 201,
        "{}",
        retried.body
    );
    assert_eq!(retried.json()["seq"], original.json()["seq"]);
    assert_eq!(retried.json()["id"], original.json()["id"]);
    let next = post_with(
        &b.url("/api/v1/rooms/retry/messages"),
        &key[1..],
        &json!({ "text": "second" }).to_string(),
    );
    assert_eq!(next.json()["seq"], 3, "the retry posted nothing new");
}

#[test]
fn a_resume_past_what_redis_keeps_gets_an_explicit_gap() {
    if !redis::available() {
        return;
    }
    let redis = Redis::start(&[]);
    let url = redis.url();
    let a = Server::smol(&node_args(&url, &["--redis-history", "10"]));
    create_room(&a, "long");
    for i in 0..300 {
        say(&a, "long", "fay", &format!("m{i}"));
    }
    let kept: u64 = redis
        .cmd("XLEN rc:{long}:log")
        .trim_start_matches(':')
        .parse()
        .expect("a length");
    assert!(kept < 300, "Redis trimmed nothing ({kept} kept)");
    // A node that never served the room resumes a client from message 1.
    let b = Server::smol(&node_args(&url, &["--redis-history", "10"]));
    let mut stream = SseStream::open(b.addr, "/api/v1/rooms/long/events?user=gus", Some("1"))
        .expect("SSE on node b");
    let gap = stream.next_of("gap").expect("a gap").json();
    assert_eq!(gap["after"], 1);
    let first_held = gap["first_held"].as_u64().expect("first_held");
    assert!(first_held > 2 && first_held <= 300, "{gap}");
    let first = stream.next_of("message").expect("a message").json();
    assert_eq!(
        first["seq"].as_u64(),
        Some(first_held),
        "messages follow the gap"
    );
}

#[test]
fn a_lost_pubsub_connection_is_backfilled_without_a_hole() {
    if !redis::available() {
        return;
    }
    let redis = Redis::start(&[]);
    let url = redis.url();
    let a = Server::smol(&node_args(&url, &[]));
    let b = Server::smol(&node_args(&url, &["--node-id", "beta"]));
    create_room(&a, "flaky");
    let mut on_b = SseStream::open(b.addr, "/api/v1/rooms/flaky/events?user=hal", None)
        .expect("SSE on node b");
    let total = 200;
    let poster = {
        let url = a.url("/api/v1/rooms/flaky/messages");
        thread::spawn(move || {
            for i in 0..total {
                let res = post_json(&url, &json!({ "user": "ida", "text": format!("m{i}") }));
                assert_eq!(res.status, 201, "{}", res.body);
            }
        })
    };
    // Cut every subscriber off, twice, while messages flow.
    for _ in 0..2 {
        thread::sleep(std::time::Duration::from_millis(150));
        let killed = redis.cmd("CLIENT KILL TYPE pubsub");
        assert!(killed.starts_with(':'), "{killed}");
    }
    poster.join().expect("posting");
    let seen = sse_messages(&mut on_b, total);
    assert_contiguous("node b", &seen, total);
    let by_seq: BTreeMap<u64, &str> = seen.iter().map(|(s, t)| (*s, t.as_str())).collect();
    assert_eq!(by_seq.len(), total);
    // The node says who it is, in /healthz, metrics and every log line.
    let health = roomcast_e2e::get(&b.url("/healthz"));
    assert_eq!(health.json()["node"], "beta", "{}", health.body);
    let listening = b.wait_for_log("listening on");
    assert!(listening.starts_with("node=beta "), "{listening}");
    let metrics = roomcast_e2e::get(&b.url("/metrics")).body;
    assert_eq!(
        roomcast_e2e::metric(&metrics, "roomcast_node_info{node=\"beta\"}"),
        Some(1.0),
        "{metrics}"
    );
    assert!(
        roomcast_e2e::metric(&metrics, "roomcast_log_fetches_total").is_some(),
        "{metrics}"
    );
}

#[test]
fn a_redis_that_lost_its_data_resets_listeners_plainly() {
    if !redis::available() {
        return;
    }
    // No persistence: a restart loses every room's history.
    let mut redis = Redis::start(&["--appendonly", "no"]);
    let url = redis.url();
    let a = Server::smol(&node_args(&url, &[]));
    create_room(&a, "fragile");
    say(&a, "fragile", "jo", "before");
    let mut stream =
        SseStream::open(a.addr, "/api/v1/rooms/fragile/events?user=kim", Some("0")).expect("SSE");
    assert_eq!(
        stream.next_of("message").expect("a message").json()["seq"],
        1
    );
    redis.kill_and_restart();
    // The node finds the room gone from Redis (not deleted: no tombstone), recreates it under
    // a new epoch, and closes its listeners with `reset` rather than going on silently.
    let closed = stream.next_of("closed").expect("a close").json();
    assert_eq!(closed["reason"], "reset", "{closed}");
    // Numbering starts again, and posting works.
    let after = say(&a, "fragile", "jo", "after");
    assert_eq!(after["seq"], 1);
}

/// A POST of JSON with exactly this bearer token (or none).
fn post_as(url: &str, token: Option<&str>, body: &serde_json::Value) -> roomcast_e2e::Answer {
    let auth = token.map(|t| format!("Bearer {t}"));
    let mut headers = vec![("Content-Type", "application/json")];
    if let Some(auth) = &auth {
        headers.push(("Authorization", auth.as_str()));
    }
    post_with(url, &headers, &body.to_string())
}

#[test]
fn who_someone_is_holds_on_every_node() {
    let Some((_redis, a, b)) = two_nodes() else {
        return;
    };
    create_room(&a, "town");

    // A guest's name is theirs on every node: nobody takes it on another.
    let guest = post_as(
        &a.url("/api/v1/auth/guest"),
        None,
        &json!({ "nickname": "lena" }),
    );
    assert_eq!(guest.status, 201, "{}", guest.body);
    let token = guest.json()["token"].as_str().expect("a token").to_owned();
    let impostor = post_as(
        &b.url("/api/v1/auth/guest"),
        None,
        &json!({ "nickname": "lena" }),
    );
    impostor.problem(409, "name-taken");
    let squatter = post_as(
        &b.url("/api/v1/auth/register"),
        None,
        &json!({ "name": "lena", "password": "a long enough password" }),
    );
    squatter.problem(409, "name-taken");

    // Their token works on the other node.
    let posted = post_as(
        &b.url("/api/v1/rooms/town/messages"),
        Some(&token),
        &json!({ "text": "hello from b" }),
    );
    assert_eq!(posted.status, 201, "{}", posted.body);
    assert_eq!(posted.json()["user"], "lena");

    // Signing out on one node ends the session on every node.
    let out = post_as(&a.url("/api/v1/auth/sign-out"), Some(&token), &json!({}));
    assert!(out.status == 204 || out.status == 200, "{}", out.body);
    let mut refused = None;
    for _ in 0..100 {
        let res = post_as(
            &b.url("/api/v1/rooms/town/messages"),
            Some(&token),
            &json!({ "text": "still me?" }),
        );
        if res.status == 401 {
            refused = Some(res);
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    refused
        .expect("node b still takes a signed-out token")
        .problem(401, "token-revoked");

    // An account made on one node signs in on another.
    let account = json!({ "name": "mona", "password": "a long enough password" });
    let made = post_as(&a.url("/api/v1/auth/register"), None, &account);
    assert_eq!(made.status, 201, "{}", made.body);
    let signed_in = post_as(&b.url("/api/v1/auth/sign-in"), None, &account);
    assert_eq!(signed_in.status, 200, "{}", signed_in.body);
    let wrong = post_as(
        &b.url("/api/v1/auth/sign-in"),
        None,
        &json!({ "name": "mona", "password": "not the password at all" }),
    );
    wrong.problem(401, "bad-credentials");
}

#[test]
fn a_node_with_another_secret_refuses_to_start() {
    if !redis::available() {
        return;
    }
    let redis = Redis::start(&[]);
    let url = redis.url();
    let _a = Server::smol(&node_args(&url, &[]));
    let (status, stderr) = roomcast_e2e::refused_start(
        "roomcast-smol",
        "roomcast-smol",
        &[
            "--redis",
            &url,
            "--in-memory",
            "--jwt-secret",
            "another secret, at least thirty-two bytes long",
        ],
    );
    assert!(!status.success());
    assert!(stderr.contains("--jwt-secret"), "{stderr}");
    // Without a secret of its own, a node takes the cluster's... unless the cluster's came
    // from a flag, which this node was not given.
    let (status, stderr) = roomcast_e2e::refused_start(
        "roomcast-tokio",
        "roomcast-tokio",
        &["--redis", &url, "--in-memory"],
    );
    assert!(!status.success());
    assert!(stderr.contains("--jwt-secret"), "{stderr}");
}

#[test]
fn a_posters_rate_holds_across_nodes() {
    if !redis::available() {
        return;
    }
    let redis = Redis::start(&[]);
    let url = redis.url();
    let limited = [
        "--redis",
        &url,
        "--jwt-secret",
        redis::CLUSTER_SECRET,
        "--rate-burst=3",
        "--rate-per-second=1",
    ];
    let a = Server::smol(&limited);
    let b = Server::smol(&limited);
    create_room(&a, "calm");
    for i in 0..3 {
        say(&a, "calm", "ned", &format!("m{i}"));
    }
    // Another node would have a full bucket of its own; the rate is the poster's, everywhere.
    let token = roomcast_e2e::guest_token(a.addr, "ned").expect("ned's token");
    let res = post_as(
        &b.url("/api/v1/rooms/calm/messages"),
        Some(&token),
        &json!({ "text": "one more, elsewhere" }),
    );
    let problem = res.problem(429, "rate-limited");
    assert!(
        problem["retry_after_ms"].as_u64().is_some_and(|ms| ms > 0),
        "{problem}"
    );
}

#[test]
fn a_member_removed_on_one_node_is_cut_off_on_every_node() {
    let Some((_redis, a, b)) = two_nodes() else {
        return;
    };
    let owner = roomcast_e2e::guest_token(a.addr, "olga").expect("olga");
    let made = post_as(
        &a.url("/api/v1/rooms"),
        Some(&owner),
        &json!({ "room": "club", "private": true }),
    );
    assert_eq!(made.status, 201, "{}", made.body);
    let pete = roomcast_e2e::guest_token(a.addr, "pete").expect("pete");
    let invited = post_as(
        &a.url("/api/v1/rooms/club/members"),
        Some(&owner),
        &json!({ "user": "pete" }),
    );
    assert_eq!(invited.status, 204, "{}", invited.body);
    // Pete listens on the other node, which loads the room with him as a member.
    let mut stream = SseStream::open_with_token(b.addr, "/api/v1/rooms/club/events", &pete)
        .expect("a member listens on node b");
    stream.next_of("presence").expect("a snapshot");
    // The owner removes him on node a: node b closes his stream and refuses him from then on.
    let removed = roomcast_e2e::request_with(
        "DELETE",
        &a.url("/api/v1/rooms/club/members/pete"),
        &[("Authorization", &format!("Bearer {owner}"))],
        None,
    );
    assert!(
        removed.status == 200 || removed.status == 204,
        "{}",
        removed.body
    );
    let closed = stream.next_of("closed").expect("closed").json();
    assert_eq!(closed["reason"], "removed", "{closed}");
    let read = roomcast_e2e::request_with(
        "GET",
        &b.url("/api/v1/rooms/club/messages"),
        &[("Authorization", &format!("Bearer {pete}"))],
        None,
    );
    read.problem(403, "permission-denied");
}

/// The next presence event of `kind` (`snapshot`, `joined`, `left`) on an SSE stream.
fn presence(stream: &mut SseStream, kind: &str) -> serde_json::Value {
    loop {
        let event = stream.next_of("presence").expect("a presence event").json();
        if event["kind"] == kind {
            return event;
        }
    }
}

#[test]
fn presence_is_one_per_user_across_nodes_and_a_dead_nodes_users_leave() {
    let Some((_redis, a, mut b)) = two_nodes() else {
        return;
    };
    create_room(&a, "plaza");
    let token = |user: &str| roomcast_e2e::guest_token(a.addr, user).expect("a token");
    let (quin, rita, sam) = (token("quin"), token("rita"), token("sam"));
    let path = "/api/v1/rooms/plaza/events";
    let mut watcher = SseStream::open_with_token(a.addr, path, &quin).expect("quin on a");
    presence(&mut watcher, "snapshot");

    // Sam listens on both nodes: present once, announced once.
    let _sam_a = SseStream::open_with_token(a.addr, path, &sam).expect("sam on a");
    assert_eq!(presence(&mut watcher, "joined")["user"], "sam");
    let _sam_b = SseStream::open_with_token(b.addr, path, &sam).expect("sam on b");
    // Rita listens on node b only; node a's listeners hear of her.
    let mut rita_b = SseStream::open_with_token(b.addr, path, &rita).expect("rita on b");
    // Node b sees who is on node a: in its snapshot, or announced right after (presence
    // travels between nodes in milliseconds, not in the same step).
    let snapshot = presence(&mut rita_b, "snapshot");
    let mut seen: std::collections::BTreeSet<String> = snapshot["users"]
        .as_array()
        .expect("users")
        .iter()
        .filter_map(|u| u["user"].as_str().map(str::to_owned))
        .collect();
    while !seen.contains("quin") {
        seen.insert(
            presence(&mut rita_b, "joined")["user"]
                .as_str()
                .expect("a user")
                .to_owned(),
        );
    }
    assert!(seen.contains("sam"), "{seen:?}");
    assert_eq!(
        presence(&mut watcher, "joined")["user"],
        "rita",
        "sam's second listener was announced as a second join"
    );

    // Node b dies. Within 10 s its users leave on node a, except sam, who is still on a.
    let killed = std::time::Instant::now();
    b.signal("KILL");
    let _ = b.wait();
    let left = presence(&mut watcher, "left");
    assert_eq!(left["user"], "rita", "{left}");
    assert!(
        killed.elapsed() < std::time::Duration::from_secs(12),
        "reaped after {:?}",
        killed.elapsed()
    );
    let now = roomcast_e2e::get(&a.url("/api/v1/rooms/plaza/presence?user=quin")).json();
    let present: Vec<&str> = now["users"]
        .as_array()
        .expect("users")
        .iter()
        .filter_map(|u| u["user"].as_str())
        .collect();
    assert!(
        present.contains(&"sam") && !present.contains(&"rita"),
        "{now}"
    );
}

/// Posts `text` with an idempotency key as the holder of `token`; `None` if the node could not
/// be reached or did not answer (it died), else the status and body.
fn try_post(
    addr: std::net::SocketAddr,
    room: &str,
    token: &str,
    key: &str,
    text: &str,
) -> Option<(u16, serde_json::Value)> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(std::time::Duration::from_secs(10)))
        .http_status_as_error(false)
        .build()
        .into();
    let mut res = agent
        .post(&format!("http://{addr}/api/v1/rooms/{room}/messages"))
        .header("Authorization", &format!("Bearer {token}"))
        .header("Idempotency-Key", key)
        .header("Content-Type", "application/json")
        .send(json!({ "text": text }).to_string())
        .ok()?;
    let status = res.status().as_u16();
    let body = res.body_mut().read_to_string().ok()?;
    Some((status, serde_json::from_str(&body).unwrap_or_default()))
}

/// Reads an SSE stream's messages into `into` until it ends.
fn collect(mut stream: SseStream, into: std::sync::Arc<std::sync::Mutex<Vec<(u64, String)>>>) {
    while let Some(event) = stream.next_event() {
        if event.event == "message" {
            let m = event.json();
            let seen = (
                m["seq"].as_u64().expect("seq"),
                m["text"].as_str().expect("text").to_owned(),
            );
            into.lock().expect("not poisoned").push(seen);
        }
    }
}

#[test]
fn a_node_killed_under_load_loses_nothing_acknowledged() {
    if !redis::available() {
        return;
    }
    let redis = Redis::start(&["--appendonly", "yes", "--appendfsync", "everysec"]);
    let url = redis.url();
    let mut a = Server::smol(&node_args(&url, &[]));
    let b = Server::smol(&node_args(&url, &[]));
    create_room(&a, "busy");
    let poster = roomcast_e2e::guest_token(a.addr, "vera").expect("vera");
    let listener = roomcast_e2e::guest_token(a.addr, "walt").expect("walt");
    let on_a = SseStream::open_with_token(a.addr, "/api/v1/rooms/busy/events", &listener.clone())
        .expect("walt on a");
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let reader = {
        let seen = seen.clone();
        thread::spawn(move || collect(on_a, seen))
    };

    // Vera posts through node a, retrying on node b with the same key when a fails her.
    const POSTS: usize = 150;
    let acked = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let posting = {
        let (a_addr, b_addr, acked) = (a.addr, b.addr, acked.clone());
        thread::spawn(move || {
            let mut seqs = BTreeMap::new();
            let mut via_b = false;
            for i in 0..POSTS {
                let (key, text) = (format!("k{i}"), format!("m{i}"));
                let mut answer = None;
                if !via_b {
                    answer = try_post(a_addr, "busy", &poster, &key, &text);
                    via_b = answer.as_ref().is_none_or(|(status, _)| *status >= 500);
                }
                if via_b {
                    answer = try_post(b_addr, "busy", &poster, &key, &text);
                }
                let (status, body) = answer.expect("node b answers");
                assert!(status == 201 || status == 200, "{status} {body}");
                seqs.insert(i, body["seq"].as_u64().expect("seq"));
                acked.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
            seqs
        })
    };
    while acked.load(std::sync::atomic::Ordering::SeqCst) < POSTS / 3 {
        thread::sleep(std::time::Duration::from_millis(5));
    }
    a.signal("KILL");
    let _ = a.wait();
    let seqs = posting.join().expect("posting");
    reader.join().expect("reading on node a");

    // Walt resumes on node b after the last message node a gave him.
    let before: Vec<(u64, String)> = seen.lock().expect("not poisoned").clone();
    let last = before.last().map_or(0, |(seq, _)| *seq);
    let mut on_b = SseStream::resume_with_token(
        b.addr,
        "/api/v1/rooms/busy/events",
        &listener,
        &last.to_string(),
    )
    .expect("walt resumes on b");
    let latest = *seqs.values().max().expect("posts");
    let after = sse_messages(&mut on_b, usize::try_from(latest - last).expect("small"));
    let all: Vec<(u64, String)> = before.into_iter().chain(after).collect();
    assert_contiguous("walt", &all, usize::try_from(latest).expect("small"));

    // Every acknowledged post is there once, with the number it was acknowledged with: a retry
    // of one node a had committed got its original number.
    let by_text: BTreeMap<&str, u64> = all.iter().map(|(s, t)| (t.as_str(), *s)).collect();
    assert_eq!(
        by_text.len(),
        POSTS,
        "a post is missing or was posted twice"
    );
    for (i, seq) in &seqs {
        assert_eq!(by_text.get(format!("m{i}").as_str()), Some(seq), "post {i}");
    }
}

#[test]
fn a_paused_redis_is_backfilled_without_a_hole() {
    if !redis::available() {
        return;
    }
    let redis = Redis::start(&["--enable-debug-command", "local"]);
    let url = redis.url();
    let a = Server::smol(&node_args(&url, &[]));
    let b = Server::smol(&node_args(&url, &[]));
    create_room(&a, "pause");
    let mut on_b = SseStream::open(b.addr, "/api/v1/rooms/pause/events?user=xena", None)
        .expect("SSE on node b");
    let total = 150;
    let poster = {
        let url = a.url("/api/v1/rooms/pause/messages");
        thread::spawn(move || {
            for i in 0..total {
                let res = post_json(&url, &json!({ "user": "yuri", "text": format!("m{i}") }));
                assert_eq!(res.status, 201, "{}", res.body);
            }
        })
    };
    thread::sleep(std::time::Duration::from_millis(100));
    assert_eq!(redis.cmd("DEBUG SLEEP 2"), "+OK");
    // Pub/sub and every node's connections were stalled meanwhile; and again, cut off.
    let killed = redis.cmd("CLIENT KILL TYPE pubsub");
    assert!(killed.starts_with(':'), "{killed}");
    poster.join().expect("posting");
    let seen = sse_messages(&mut on_b, total);
    assert_contiguous("node b", &seen, total);
}

#[test]
fn with_appendfsync_always_a_redis_crash_loses_nothing_acknowledged() {
    if !redis::available() {
        return;
    }
    let mut redis = Redis::start(&["--appendonly", "yes", "--appendfsync", "always"]);
    let url = redis.url();
    let a = Server::smol(&node_args(&url, &[]));
    create_room(&a, "safe");
    let mut stream =
        SseStream::open(a.addr, "/api/v1/rooms/safe/events?user=zed", None).expect("SSE");
    for i in 0..50 {
        say(&a, "safe", "amy", &format!("m{i}"));
    }
    redis.kill_and_restart();
    // The node reconnects; numbering goes on, nobody is reset, nothing is missing.
    let mut next = None;
    for _ in 0..100 {
        let res = post_json(
            &a.url("/api/v1/rooms/safe/messages"),
            &json!({ "user": "amy", "text": "after" }),
        );
        if res.status == 201 {
            next = Some(res.json());
            break;
        }
        thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(next.expect("posting works again")["seq"], 51);
    let seen = sse_messages(&mut stream, 51);
    assert_contiguous("the listener", &seen, 51);
    let fresh = Server::smol(&node_args(&url, &[]));
    let page = roomcast_e2e::get(&fresh.url("/api/v1/rooms/safe/messages?user=bo&limit=100"));
    assert_eq!(
        page.json()["messages"].as_array().map(Vec::len),
        Some(51),
        "{}",
        page.body
    );
}

#[test]
fn a_direct_message_is_one_room_on_every_node() {
    let Some((_redis, a, b)) = two_nodes() else {
        return;
    };
    let (cleo, dirk) = (
        roomcast_e2e::guest_token(a.addr, "cleo").expect("cleo"),
        roomcast_e2e::guest_token(a.addr, "dirk").expect("dirk"),
    );
    let opened = post_as(
        &a.url("/api/v1/direct"),
        Some(&cleo),
        &json!({ "user": "dirk" }),
    );
    assert!(
        opened.status == 200 || opened.status == 201,
        "{}",
        opened.body
    );
    let room = opened.json()["id"].as_str().expect("the room").to_owned();
    let said = post_as(
        &a.url(&format!("/api/v1/rooms/{room}/messages")),
        Some(&cleo),
        &json!({ "text": "psst" }),
    );
    assert_eq!(said.status, 201, "{}", said.body);
    // Dirk opens the same conversation on the other node and finds it, with its message.
    let theirs = post_as(
        &b.url("/api/v1/direct"),
        Some(&dirk),
        &json!({ "user": "cleo" }),
    );
    assert_eq!(theirs.json()["id"], room.as_str(), "{}", theirs.body);
    let page = roomcast_e2e::request_with(
        "GET",
        &b.url(&format!("/api/v1/rooms/{room}/messages")),
        &[("Authorization", &format!("Bearer {dirk}"))],
        None,
    );
    assert_eq!(page.json()["messages"][0]["text"], "psst", "{}", page.body);
}

#[test]
fn idle_expiry_is_refused_with_shared_rooms() {
    if !redis::available() {
        return;
    }
    let redis = Redis::start(&[]);
    let (status, stderr) = roomcast_e2e::refused_start(
        "roomcast-smol",
        "roomcast-smol",
        &[
            "--redis",
            &redis.url(),
            "--in-memory",
            "--room-idle-expiry",
            "1h",
        ],
    );
    assert!(!status.success());
    assert!(stderr.contains("--room-idle-expiry"), "{stderr}");
}

#[test]
fn a_wedged_subscriber_is_found_replaced_and_backfilled_and_healthz_says_so() {
    if !redis::available() {
        return;
    }
    let redis = Redis::start(&[]);
    let proxy = roomcast_e2e::redis::Proxy::start(redis.addr);
    let a = Server::smol(&node_args(&redis.url(), &[]));
    // Node b reaches Redis through the proxy: its first connection carries commands, its
    // second pub/sub.
    let b = Server::smol(&node_args(&proxy.url(), &["--node-id", "wedged"]));
    create_room(&a, "quiet");
    let mut on_b = SseStream::open(b.addr, "/api/v1/rooms/quiet/events?user=gil", None)
        .expect("SSE on node b");
    presence(&mut on_b, "snapshot");
    assert_eq!(roomcast_e2e::get(&b.url("/healthz")).status, 200);

    // Pub/sub goes silent (and so does any new connection, for now); publishing still works.
    proxy.freeze(1, true);
    for i in 0..20 {
        say(&a, "quiet", "hal", &format!("m{i}"));
    }
    let degraded = (0..200).find_map(|_| {
        let health = roomcast_e2e::get(&b.url("/healthz"));
        if health.status == 503 {
            return Some(health.json());
        }
        thread::sleep(std::time::Duration::from_millis(50));
        None
    });
    let degraded = degraded.expect("/healthz never said the subscriber was wedged");
    assert_eq!(degraded["pubsub"], "reconnecting", "{degraded}");

    // Connections work again: the node replaces its subscriber and reads what it missed.
    proxy.thaw_new();
    let healthy = (0..400).any(|_| {
        if roomcast_e2e::get(&b.url("/healthz")).status == 200 {
            return true;
        }
        thread::sleep(std::time::Duration::from_millis(50));
        false
    });
    assert!(healthy, "the node did not recover");
    let seen = sse_messages(&mut on_b, 20);
    assert_contiguous("node b", &seen, 20);
    let metrics = roomcast_e2e::get(&b.url("/metrics")).body;
    assert!(
        roomcast_e2e::metric(&metrics, "roomcast_pubsub_wedged_total").is_some_and(|n| n >= 1.0),
        "{metrics}"
    );
}

#[test]
fn history_and_resumes_older_than_the_ring_come_from_redis() {
    if !redis::available() {
        return;
    }
    let redis = Redis::start(&[]);
    let url = redis.url();
    // A ring of 5: everything older is read from the room's stream in Redis.
    let a = Server::smol(&node_args(&url, &["--history-len", "5"]));
    let b = Server::smol(&node_args(&url, &["--history-len", "5"]));
    create_room(&a, "deep");
    for i in 1..=20 {
        say(&a, "deep", "ian", &format!("m{i}"));
    }
    let page = roomcast_e2e::get(&b.url("/api/v1/rooms/deep/messages?user=jan&limit=20")).json();
    let seqs: Vec<u64> = page["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .filter_map(|m| m["seq"].as_u64())
        .collect();
    assert_eq!(seqs, (1..=20).collect::<Vec<u64>>(), "{page}");
    let mut stream = SseStream::open(b.addr, "/api/v1/rooms/deep/events?user=jan", Some("2"))
        .expect("a resume on node b");
    let seen = sse_messages(&mut stream, 18);
    assert_eq!(
        seen.iter().map(|(s, _)| *s).collect::<Vec<_>>(),
        (3..=20).collect::<Vec<u64>>(),
        "a resume older than the ring came without a gap"
    );
}

#[test]
fn a_log_that_goes_back_resets_listeners_instead_of_diverging() {
    let Some((redis, a, _b)) = two_nodes() else {
        return;
    };
    create_room(&a, "lag");
    for i in 1..=6 {
        say(&a, "lag", "kai", &format!("m{i}"));
    }
    let mut stream =
        SseStream::open(a.addr, "/api/v1/rooms/lag/events?user=lou", Some("0")).expect("SSE");
    assert_eq!(stream.message_seqs(6), (1..=6).collect::<Vec<u64>>());
    // What a failover to a replica that was two messages behind leaves: the same epoch, the
    // counter at 4, messages 5 and 6 gone.
    assert_eq!(redis.cmd("HSET rc:{lag} s 4"), ":0");
    assert_eq!(redis.cmd("XDEL rc:{lag}:log 5-0 6-0"), ":2");
    assert_eq!(redis.cmd("XSETID rc:{lag}:log 4-0"), "+OK");
    // The next message takes number 5 again: the node sees its 5 replaced, starts a new
    // epoch, and closes its listeners with `reset` rather than show another message as 5.
    say(&a, "lag", "kai", "after the failover");
    let closed = stream.next_of("closed").expect("a close").json();
    assert_eq!(closed["reason"], "reset", "{closed}");
    let metrics = roomcast_e2e::get(&a.url("/metrics")).body;
    assert_eq!(
        roomcast_e2e::metric(&metrics, "roomcast_log_resets_total"),
        Some(1.0),
        "{metrics}"
    );
}

#[test]
fn a_counter_behind_its_stream_is_repaired_under_a_new_epoch() {
    let Some((redis, a, _b)) = two_nodes() else {
        return;
    };
    create_room(&a, "ahead");
    for i in 1..=6 {
        say(&a, "ahead", "kai", &format!("m{i}"));
    }
    let mut stream =
        SseStream::open(a.addr, "/api/v1/rooms/ahead/events?user=lou", Some("0")).expect("SSE");
    assert_eq!(stream.message_seqs(6), (1..=6).collect::<Vec<u64>>());
    // The room's counter went back while its stream kept 5 and 6.
    assert_eq!(redis.cmd("HSET rc:{ahead} s 4"), ":0");
    let refused = post_json(
        &a.url("/api/v1/rooms/ahead/messages"),
        &json!({ "user": "kai", "text": "lost?" }),
    );
    let problem = refused.problem(503, "unavailable");
    assert!(
        problem["detail"]
            .as_str()
            .is_some_and(|d| d.contains("post again")),
        "{problem}"
    );
    let closed = stream.next_of("closed").expect("a close").json();
    assert_eq!(closed["reason"], "reset", "{closed}");
    // Numbering goes on after the stream's newest, never reusing a number listeners saw.
    assert_eq!(say(&a, "ahead", "kai", "again")["seq"], 7);
}

#[test]
fn every_node_lists_every_room_its_asker_may_see() {
    let Some((_redis, a, b)) = two_nodes() else {
        return;
    };
    create_room(&a, "open-1");
    create_room(&a, "open-2");
    let owner = roomcast_e2e::guest_token(a.addr, "meg").expect("meg");
    let made = post_as(
        &a.url("/api/v1/rooms"),
        Some(&owner),
        &json!({ "room": "secret", "private": true }),
    );
    assert_eq!(made.status, 201, "{}", made.body);
    // Node b never served these rooms; its lobby shows them all the same.
    let ids = |user: &str| -> Vec<String> {
        let token = roomcast_e2e::guest_token(a.addr, user).expect("a token from node a");
        let page = roomcast_e2e::request_with(
            "GET",
            &b.url("/api/v1/rooms"),
            &[("Authorization", &format!("Bearer {token}"))],
            None,
        )
        .json();
        page["rooms"]
            .as_array()
            .unwrap_or_else(|| panic!("{page}"))
            .iter()
            .filter_map(|r| r["id"].as_str().map(str::to_owned))
            .collect()
    };
    assert_eq!(
        ids("ned"),
        ["open-1", "open-2"],
        "a private room is listed to its members only"
    );
    assert_eq!(ids("meg"), ["open-1", "open-2", "secret"]);
    // Deleted on a: gone from b's list too.
    let deleted = roomcast_e2e::request_with(
        "DELETE",
        &a.url("/api/v1/rooms/open-2"),
        &[(
            "Authorization",
            &format!(
                "Bearer {}",
                roomcast_e2e::guest_token(a.addr, "anonymous").expect("the creator")
            ),
        )],
        None,
    );
    assert!(
        deleted.status == 204 || deleted.status == 200,
        "{}",
        deleted.body
    );
    assert_eq!(ids("ned"), ["open-1"]);
}

#[test]
fn sign_in_attempts_are_counted_across_nodes() {
    let Some((_redis, a, b)) = two_nodes() else {
        return;
    };
    let account = json!({ "name": "nina", "password": "the right password" });
    let made = post_as(&a.url("/api/v1/auth/register"), None, &account);
    assert_eq!(made.status, 201, "{}", made.body);
    let wrong = json!({ "name": "nina", "password": "a wrong password" });
    // Five tries per account and address, wherever they land.
    for i in 0..5 {
        let node = if i % 2 == 0 { &a } else { &b };
        post_as(&node.url("/api/v1/auth/sign-in"), None, &wrong).problem(401, "bad-credentials");
    }
    let sixth = post_as(&b.url("/api/v1/auth/sign-in"), None, &wrong);
    let problem = sixth.problem(429, "too-many-attempts");
    assert!(
        problem["retry_after_ms"].as_u64().is_some_and(|ms| ms > 0),
        "{problem}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tokio_nodes_grpc_health_says_when_its_subscriber_is_wedged() {
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::health_client::HealthClient;
    if !redis::available() {
        return;
    }
    let redis = Redis::start(&[]);
    let proxy = roomcast_e2e::redis::Proxy::start(redis.addr);
    let node = Server::tokio(&node_args(&proxy.url(), &[]));
    let channel = tonic::transport::Channel::from_shared(node.url(""))
        .expect("a URL")
        .connect()
        .await
        .expect("connects");
    let health = HealthClient::new(channel);
    let status = || {
        let mut health = health.clone();
        async move {
            let request = tonic_health::pb::HealthCheckRequest {
                service: "roomcast.v1.Chat".into(),
            };
            health
                .check(request)
                .await
                .expect("health answers")
                .into_inner()
                .status
        }
    };
    assert_eq!(status().await, ServingStatus::Serving as i32);
    proxy.freeze(1, true);
    let mut seen = Vec::new();
    for _ in 0..200 {
        let now = status().await;
        if seen.last() != Some(&now) {
            seen.push(now);
        }
        if now == ServingStatus::NotServing as i32 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(
        seen.last(),
        Some(&(ServingStatus::NotServing as i32)),
        "{seen:?}"
    );
    proxy.thaw_new();
    let mut back = false;
    for _ in 0..400 {
        if status().await == ServingStatus::Serving as i32 {
            back = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(
        back,
        "health did not come back after the subscriber was replaced"
    );
}

#[test]
fn the_room_limit_holds_for_the_cluster_not_per_node() {
    if !redis::available() {
        return;
    }
    let redis = Redis::start(&[]);
    let url = redis.url();
    let limited = node_args(&url, &["--max-rooms", "3", "--room-unload-after", "1s"]);
    let a = Server::smol(&limited);
    let b = Server::smol(&limited);
    for room in ["r1", "r2", "r3"] {
        create_room(&a, room);
    }
    // Node a has let them go from memory; the cluster still holds three rooms, and neither
    // node makes a fourth.
    thread::sleep(std::time::Duration::from_millis(4500));
    let token = roomcast_e2e::guest_token(a.addr, "anonymous").expect("the creator's token");
    for node in [&a, &b] {
        let res = post_as(
            &node.url("/api/v1/rooms"),
            Some(&token),
            &json!({ "room": "r4" }),
        );
        res.problem(503, "too-many-rooms");
    }
}

/// Edits, reactions and deletions made on either node reach both in the room's one order; a
/// deleted text is not handed out again, by a node holding the room or by a read of Redis's
/// stream past what a node holds, and a node that loads the room later shows each message as
/// it now is.
#[test]
fn changes_to_messages_hold_across_nodes() {
    if !redis::available() {
        return;
    }
    let redis = Redis::start(&[]);
    let url = redis.url();
    // A short ring, so resumes and pages read Redis's stream (but long enough that each change
    // names a message the nodes hold: a change to an older one is refused with shared rooms).
    let a = Server::smol(&node_args(&url, &["--history-len=3"]));
    let b = Server::smol(&node_args(&url, &["--history-len=3"]));
    let token = |user: &str| {
        let t = roomcast_e2e::guest_token(a.addr, user).expect("a guest token");
        format!("Bearer {t}")
    };
    let (ada, bob, cy) = (token("ada"), token("bob"), token("cy"));
    let call =
        |node: &Server, method: &str, path: &str, auth: &str, body: Option<serde_json::Value>| {
            roomcast_e2e::call_with(method, &node.url(path), Some(auth), body.as_ref())
        };
    let created = call(
        &a,
        "POST",
        "/api/v1/rooms",
        &ada,
        Some(json!({ "room": "shared" })),
    );
    assert_eq!(created.status, 201, "{}", created.body);
    let bare = |auth: &str| auth.trim_start_matches("Bearer ").to_owned();
    let mut live =
        SseStream::open_with_token(b.addr, "/api/v1/rooms/shared/events?since=0", &bare(&cy))
            .expect("a stream on b");
    let posts = "/api/v1/rooms/shared/messages";
    assert_eq!(
        call(&a, "POST", posts, &ada, Some(json!({ "text": "hello" }))).status,
        201
    );
    assert_eq!(
        call(
            &b,
            "POST",
            posts,
            &bob,
            Some(json!({ "text": "code 4711" }))
        )
        .status,
        201
    );
    let edited = call(
        &a,
        "PATCH",
        &format!("{posts}/2"),
        &bob,
        Some(json!({ "text": "code 4711!" })),
    );
    assert_eq!(edited.status, 201, "{}", edited.body);
    let reacted = call(
        &b,
        "PUT",
        &format!("{posts}/1/reactions/%F0%9F%8E%89"),
        &cy,
        None,
    );
    assert_eq!(reacted.status, 201, "{}", reacted.body);
    let deleted = call(&b, "DELETE", &format!("{posts}/2"), &ada, None);
    assert_eq!(
        deleted.status, 201,
        "the owner deletes on the other node: {}",
        deleted.body
    );

    let mut kinds = Vec::new();
    while kinds.len() < 5 {
        let event = live.next_event().expect("the stream stays open");
        if ["message", "edited", "reaction", "deleted"].contains(&event.event.as_str()) {
            kinds.push((event.event.clone(), event.json()["seq"].as_u64().unwrap()));
        }
    }
    let want: Vec<(String, u64)> = ["message", "message", "edited", "reaction", "deleted"]
        .iter()
        .zip(1..)
        .map(|(k, s)| ((*k).to_owned(), s))
        .collect();
    assert_eq!(kinds, want);

    for node in [&a, &b] {
        // A page and a resume reach past the ring into Redis's stream.
        let page = call(node, "GET", &format!("{posts}?after=0"), &cy, None);
        assert_eq!(page.status, 200, "{}", page.body);
        assert!(
            !page.body.contains("4711"),
            "deleted text in a page: {}",
            page.body
        );
        let mut resumed = SseStream::open_with_token(
            node.addr,
            "/api/v1/rooms/shared/events?since=0",
            &bare(&cy),
        )
        .expect("a resumed stream");
        let mut seen = Vec::new();
        while seen.len() < 5 {
            let event = resumed.next_event().expect("the stream stays open");
            if ["message", "edited", "reaction", "deleted"].contains(&event.event.as_str()) {
                seen.push(event.data.clone());
            }
        }
        assert!(
            !seen.iter().any(|d| d.contains("4711")),
            "deleted text resumed: {seen:?}"
        );
    }
    // A node that starts now loads the room from Redis: as it is, with the whole ring.
    let c = Server::smol(&node_args(&url, &[]));
    let page = call(&c, "GET", &format!("{posts}?after=0"), &cy, None).json();
    let messages = page["messages"].as_array().expect("messages");
    assert_eq!(messages.len(), 5, "{page}");
    assert_eq!(
        messages[0]["reactions"][0]["users"],
        json!(["cy"]),
        "{page}"
    );
    assert!(
        messages[1]["deleted"] == true && messages[2]["text"] == "",
        "{page}"
    );
}

/// A moderation is an entry of the room's log: made on one node, it holds on every node, for
/// listeners already open there and for a node that loads the room later.
#[test]
fn moderation_holds_on_every_node() {
    if !redis::available() {
        return;
    }
    let redis = Redis::start(&[]);
    let url = redis.url();
    let a = Server::smol(&node_args(&url, &[]));
    let b = Server::smol(&node_args(&url, &[]));
    let token = |user: &str| roomcast_e2e::guest_token(a.addr, user).expect("a guest token");
    let (ada, bob) = (token("ada"), token("bob"));
    let call = |node: &Server, path: &str, auth: &str, body: serde_json::Value| {
        let auth = format!("Bearer {auth}");
        roomcast_e2e::call_with("POST", &node.url(path), Some(&auth), Some(&body))
    };
    let created = call(&a, "/api/v1/rooms", &ada, json!({ "room": "modded" }));
    assert_eq!(created.status, 201, "{}", created.body);
    let moderation = "/api/v1/rooms/modded/moderation";
    let posts = "/api/v1/rooms/modded/messages";
    // Muted on b, refused on a.
    let muted = call(
        &b,
        moderation,
        &ada,
        json!({ "target": "bob", "action": "mute", "seconds": 60 }),
    );
    assert_eq!(muted.status, 201, "{}", muted.body);
    call(&a, posts, &bob, json!({ "text": "hi" })).problem(403, "muted");
    let unmuted = call(
        &a,
        moderation,
        &ada,
        json!({ "target": "bob", "action": "unmute" }),
    );
    assert_eq!(unmuted.status, 201);
    assert_eq!(call(&b, posts, &bob, json!({ "text": "hi" })).status, 201);
    // Banned on a: bob's stream on b ends, and b keeps him out.
    let mut on_b = SseStream::open_with_token(b.addr, "/api/v1/rooms/modded/events", &bob)
        .expect("bob listens on b");
    let banned = call(
        &a,
        moderation,
        &ada,
        json!({ "target": "bob", "action": "ban" }),
    );
    assert_eq!(banned.status, 201, "{}", banned.body);
    let closed = on_b.next_of("closed").expect("closed on b").json();
    assert_eq!(
        (closed["reason"].as_str(), closed["by"].as_str()),
        (Some("banned"), Some("ada"))
    );
    call(&b, posts, &bob, json!({ "text": "let me in" })).problem(403, "banned");
    // A node that starts now reads the room's moderation from Redis, though the ban is older
    // than the entries it loads.
    for text in ["one", "two", "three"] {
        assert_eq!(call(&a, posts, &ada, json!({ "text": text })).status, 201);
    }
    let c = Server::smol(&node_args(&url, &["--history-len=2"]));
    call(&c, posts, &bob, json!({ "text": "or here" })).problem(403, "banned");
}

/// A node behind the log never answers against an entry acknowledged before the request came
/// (a refusal on what it has applied is decided again once it caught up; an append checks the
/// poster's standing in Redis itself). Node b reaches Redis through a link that holds every
/// byte for 300 ms, so it hears of a's moderations late; bob's requests on b follow them at once.
#[test]
fn a_node_behind_the_log_decides_as_the_log_stands() {
    if !redis::available() {
        return;
    }
    let redis = Redis::start(&[]);
    let lag =
        roomcast_e2e::redis::Proxy::lagging(redis.addr, std::time::Duration::from_millis(300));
    let (url, lagging) = (redis.url(), lag.url());
    let a = Server::smol(&node_args(&url, &[]));
    let b = Server::smol(&node_args(&lagging, &[]));
    let token = |user: &str| roomcast_e2e::guest_token(a.addr, user).expect("a guest token");
    let (ada, bob) = (token("ada"), token("bob"));
    let call = |method: &str, node: &Server, path: &str, auth: &str, body: serde_json::Value| {
        let auth = format!("Bearer {auth}");
        roomcast_e2e::call_with(method, &node.url(path), Some(&auth), Some(&body))
    };
    let created = call(
        "POST",
        &a,
        "/api/v1/rooms",
        &ada,
        json!({ "room": "steady" }),
    );
    assert_eq!(created.status, 201, "{}", created.body);
    let (moderation, posts) = (
        "/api/v1/rooms/steady/moderation",
        "/api/v1/rooms/steady/messages",
    );
    let moderate = |action: serde_json::Value| {
        let done = call("POST", &a, moderation, &ada, action);
        assert_eq!(done.status, 201, "{}", done.body);
    };
    // b serves the room, and ada watches it there.
    let hello = call("POST", &b, posts, &bob, json!({ "text": "hello" }));
    assert_eq!(hello.status, 201, "{}", hello.body);
    let mut on_b = SseStream::open_with_token(b.addr, "/api/v1/rooms/steady/events", &ada)
        .expect("ada listens on b");

    // Muted on a: b has not heard, but Redis refuses the append.
    moderate(json!({ "target": "bob", "action": "mute", "seconds": 600 }));
    call(
        "POST",
        &b,
        posts,
        &bob,
        json!({ "text": "not yet muted here?" }),
    )
    .problem(403, "muted");
    let muted = on_b
        .next_of("moderation")
        .expect("the mute reaches b")
        .json();
    assert_eq!(muted["action"], "mute", "{muted}");
    // Unmuted on a: b would refuse on what it has, so it catches up and decides again.
    moderate(json!({ "target": "bob", "action": "unmute" }));
    let spoken = call(
        "POST",
        &b,
        posts,
        &bob,
        json!({ "text": "unmuted everywhere" }),
    );
    assert_eq!(spoken.status, 201, "{}", spoken.body);

    // Bob's own write on a, changed on b at once: b reads it before deciding.
    let posted = call("POST", &a, posts, &bob, json!({ "text": "frist" }));
    assert_eq!(posted.status, 201, "{}", posted.body);
    let seq = posted.json()["seq"].as_u64().expect("a seq");
    let edited = call(
        "PATCH",
        &b,
        &format!("{posts}/{seq}"),
        &bob,
        json!({ "text": "first" }),
    );
    assert_eq!(edited.status, 201, "{}", edited.body);

    // Banned on a: refused on b at once.
    moderate(json!({ "target": "bob", "action": "ban" }));
    call("POST", &b, posts, &bob, json!({ "text": "still here?" })).problem(403, "banned");
}

/// Someone typing on one node is shown to listeners on another (through the room's channel),
/// once per announcement.
#[test]
fn typing_reaches_listeners_on_every_node() {
    let Some((_redis, a, b)) = two_nodes() else {
        return;
    };
    let token = |user: &str| roomcast_e2e::guest_token(a.addr, user).expect("a guest token");
    let (ada, bob) = (token("ada"), token("bob"));
    let post = |node: &Server, path: &str, auth: &str, body: Option<serde_json::Value>| {
        let auth = format!("Bearer {auth}");
        roomcast_e2e::call_with("POST", &node.url(path), Some(&auth), body.as_ref())
    };
    let created = post(&a, "/api/v1/rooms", &ada, Some(json!({ "room": "typed" })));
    assert_eq!(created.status, 201, "{}", created.body);
    let mut on_b = SseStream::open_with_token(b.addr, "/api/v1/rooms/typed/events", &ada)
        .expect("ada listens on b");
    let mut on_a = SseStream::open_with_token(a.addr, "/api/v1/rooms/typed/events", &ada)
        .expect("ada listens on a");
    assert_eq!(
        post(&a, "/api/v1/rooms/typed/typing", &bob, None).status,
        204
    );
    for stream in [&mut on_b, &mut on_a] {
        assert_eq!(
            stream.next_of("typing").expect("typing").json()["user"],
            "bob"
        );
    }
    // Each node shows it once: the next thing after it on a is bob's message, not a repeat.
    assert_eq!(
        post(
            &b,
            "/api/v1/rooms/typed/messages",
            &bob,
            Some(json!({ "text": "hi" }))
        )
        .status,
        201
    );
    loop {
        let event = on_a.next_event().expect("an event");
        assert_ne!(event.event, "typing", "typing shown twice on one node");
        if event.event == "message" {
            break;
        }
    }
}
