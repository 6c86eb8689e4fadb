//! The client library (`/assets/roomcast.js`) in headless Chromium against the real server:
//! resuming exactly across a restart over SSE and WebSocket, gaps and ends said, posts made
//! safe to retry, and use from a page on another origin only where the server allows it.

use fantoccini::Client;
use roomcast_e2e::chromium::{Driver, available, run, wait_for};
use roomcast_e2e::{Server, create_room, delete, guest_token, post_with, say};
use serde_json::{Value, json};

/// Loads the library into a page of `origin` (the library's own URL: a document of that origin
/// with no page policy of ours) and records everything a connection reports in `window.seen`.
async fn with_library(client: &Client, origin: &Server) {
    client
        .goto(&origin.url("/assets/roomcast.js"))
        .await
        .expect("loads");
    let loaded = client
        .execute_async(
            "const done = arguments[arguments.length - 1];
             import('/assets/roomcast.js').then((lib) => {
               window.lib = lib;
               window.listen = (options) => {
                 window.seen = [];
                 const note = (...e) => window.seen.push(e);
                 window.room = lib.connect({ ...options, on: {
                   message: (m) => note('message', m.seq, m.text),
                   gap: (g) => note('gap', g.after, g.first_held),
                   status: (s) => note('status', s),
                   restarting: () => note('restarting'),
                   reconnected: (r) => note('reconnected', r.after),
                   reset: () => note('reset'),
                   closed: (c) => note('closed', c.reason, c.status ?? null),
                 }});
               };
               done(true);
             }, (e) => done(String(e)));",
            vec![],
        )
        .await
        .expect("the import runs");
    assert_eq!(loaded, json!(true), "the library loads as a module");
}

/// `window.listen(options)`: a new connection, its reports in `window.seen`.
async fn open(client: &Client, options: Value) {
    run(
        client,
        "window.listen(arguments[0]); return true;",
        vec![options],
    )
    .await;
}

/// What the connection reported, once `script` (over `seen`) holds.
async fn seen_when(client: &Client, what: &str, condition: &str) -> Value {
    let script = format!("const seen = window.seen; return ({condition}) ? seen : null;");
    wait_for(client, what, &script).await
}

/// The sequence numbers delivered, in order.
fn seqs(seen: &Value) -> Vec<u64> {
    seen.as_array()
        .unwrap()
        .iter()
        .filter(|e| e[0] == "message")
        .map(|e| e[1].as_u64().unwrap())
        .collect()
}

#[tokio::test(flavor = "current_thread")]
async fn it_resumes_exactly_across_a_restart_over_sse_and_websocket() {
    if !available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let data = format!("--data-dir={}", dir.path().display());
    let mut server = Server::smol(&[&data]);
    let token = guest_token(server.addr, "ada").unwrap();
    let driver = Driver::start();
    let client = driver.browser("library").await;
    for transport in ["sse", "websocket"] {
        create_room(&server, transport);
        say(&server, transport, "cy", "one");
        say(&server, transport, "cy", "two");
        with_library(&client, &server).await;
        open(
            &client,
            json!({ "room": transport, "token": token, "transport": transport, "since": 0 }),
        )
        .await;
        seen_when(
            &client,
            "two messages",
            "seen.filter((e) => e[0] === 'message').length === 2",
        )
        .await;

        let addr = server.addr;
        server.signal("TERM");
        server.wait();
        seen_when(
            &client,
            "the restart",
            "seen.some((e) => e[0] === 'restarting')",
        )
        .await;
        server = Server::smol_on(addr, &[&data]);
        say(&server, transport, "cy", "three");
        say(&server, transport, "cy", "four");
        let seen = seen_when(
            &client,
            "four messages",
            "seen.filter((e) => e[0] === 'message').length >= 4",
        )
        .await;
        assert_eq!(
            seqs(&seen),
            [1, 2, 3, 4],
            "{transport}: each once, in order: {seen}"
        );
        assert!(
            seen.as_array()
                .unwrap()
                .contains(&json!(["reconnected", 2])),
            "{transport}: the drop was bridged after 2: {seen}"
        );
        run(&client, "window.room.close(); return true;", vec![]).await;
    }
    client.close().await.unwrap();
}

#[tokio::test(flavor = "current_thread")]
async fn gaps_deletions_and_sign_outs_are_said() {
    if !available() {
        return;
    }
    // Nothing on disk and a short ring: early messages are gone for good.
    let server = Server::smol(&["--in-memory", "--history-len=3", "--rate-burst=0"]);
    let token = guest_token(server.addr, "ada").unwrap();
    create_room(&server, "short");
    for n in 1..=10 {
        say(&server, "short", "cy", &format!("m{n}"));
    }
    let driver = Driver::start();
    let client = driver.browser("library").await;
    with_library(&client, &server).await;
    open(
        &client,
        json!({ "room": "short", "token": token, "since": 2 }),
    )
    .await;
    let seen = seen_when(
        &client,
        "the held messages",
        "seen.filter((e) => e[0] === 'message').length === 3",
    )
    .await;
    assert!(
        seen.as_array().unwrap().contains(&json!(["gap", 2, 8])),
        "{seen}"
    );
    assert_eq!(seqs(&seen), [8, 9, 10]);

    assert_eq!(delete(&server.url("/api/v1/rooms/short")).status, 204);
    let seen = seen_when(&client, "the end", "seen.some((e) => e[0] === 'closed')").await;
    assert!(
        seen.as_array()
            .unwrap()
            .contains(&json!(["closed", "deleted", null])),
        "{seen}"
    );
    assert!(
        seen.as_array()
            .unwrap()
            .contains(&json!(["status", "closed"])),
        "{seen}"
    );

    // Signing out ends the stream; the token then gets 401, which is final, not retried.
    create_room(&server, "again");
    for transport in ["sse", "websocket"] {
        let token = guest_token(server.addr, &format!("bob-{transport}")).unwrap();
        open(
            &client,
            json!({ "room": "again", "token": token, "transport": transport }),
        )
        .await;
        seen_when(&client, "live", "seen.some((e) => e[1] === 'live')").await;
        let out = post_with(
            &server.url("/api/v1/auth/sign-out"),
            &[
                ("Content-Type", "application/json"),
                ("Authorization", &format!("Bearer {token}")),
            ],
            "{}",
        );
        assert_eq!(out.status, 204);
        let seen = seen_when(&client, "signed out", "seen.some((e) => e[0] === 'closed')").await;
        assert!(
            seen.as_array()
                .unwrap()
                .contains(&json!(["closed", "signed-out", null])),
            "{transport}: {seen}"
        );
        open(
            &client,
            json!({ "room": "again", "token": token, "transport": transport }),
        )
        .await;
        let seen = seen_when(&client, "refused", "seen.some((e) => e[0] === 'closed')").await;
        let closed = seen
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e[0] == "closed")
            .unwrap();
        assert_eq!(closed[2], 401, "{transport}: {seen}");
    }
    client.close().await.unwrap();
}

#[tokio::test(flavor = "current_thread")]
async fn posts_carry_an_idempotency_key_and_are_retried_when_asked_to_wait() {
    if !available() {
        return;
    }
    let server = Server::smol(&["--rate-burst=1", "--rate-per-second=2"]);
    let token = guest_token(server.addr, "ada").unwrap();
    create_room(&server, "posts");
    let driver = Driver::start();
    let client = driver.browser("library").await;
    with_library(&client, &server).await;
    open(&client, json!({ "room": "posts", "token": token })).await;
    let posted = client
        .execute_async(
            "const done = arguments[arguments.length - 1];
             (async () => {
               const a = await window.room.post('once', { idempotencyKey: 'k-1' });
               const b = await window.room.post('once', { idempotencyKey: 'k-1' });
               // Back to back past the rate limit: each waits as told, then goes through.
               const rest = await Promise.all(['x', 'y', 'z'].map((t) => window.room.post(t)));
               let refused = null;
               try { await window.room.post(''); } catch (e) { refused = [e.status, e.code]; }
               return [a.id === b.id, a.seq, rest.map((m) => m.text), refused];
             })().then(done, (e) => done(String(e)));",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(
        posted,
        json!([true, 1, ["x", "y", "z"], [400, "empty-message"]])
    );
    // Reconnects back off exponentially with full jitter: spread out, and capped.
    let script =
        "return [0, 3, 12].map((n) => Array.from({ length: 200 }, () => window.lib.backoff(n)));";
    let delays = run(&client, script, vec![]).await;
    for (i, cap) in [500.0, 4000.0, 15000.0].into_iter().enumerate() {
        let all: Vec<f64> = delays[i]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d.as_f64().unwrap())
            .collect();
        assert!(
            all.iter().all(|&d| (0.0..cap).contains(&d)),
            "under {cap}: {all:?}"
        );
        let (low, high) = all
            .iter()
            .fold((f64::MAX, f64::MIN), |(l, h), &d| (l.min(d), h.max(d)));
        assert!(high - low > cap / 2.0, "jittered across 0..{cap}: {all:?}");
    }
    let seen = seen_when(
        &client,
        "four messages",
        "seen.filter((e) => e[0] === 'message').length === 4",
    )
    .await;
    assert_eq!(seqs(&seen), [1, 2, 3, 4], "the retry posted nothing new");
    client.close().await.unwrap();
}

#[tokio::test(flavor = "current_thread")]
async fn pages_on_other_origins_use_it_only_where_allowed() {
    if !available() {
        return;
    }
    let page = Server::smol(&[]);
    let allowed = format!("--allowed-origins=http://{}", page.addr);
    let chat = Server::smol(&[&allowed]);
    let closed = Server::smol(&[]);
    let driver = Driver::start();
    let client = driver.browser("library").await;
    for transport in ["sse", "websocket"] {
        let room = format!("shared-{transport}");
        create_room(&chat, &room);
        create_room(&closed, &room);
        let token = guest_token(chat.addr, "ada").unwrap();
        with_library(&client, &page).await;
        open(
            &client,
            json!({ "server": chat.url(""), "room": room, "token": token, "transport": transport }),
        )
        .await;
        seen_when(
            &client,
            "live across origins",
            "seen.some((e) => e[1] === 'live')",
        )
        .await;
        say(&chat, &room, "cy", "hello, other origin");
        let seen = seen_when(
            &client,
            "the message",
            "seen.some((e) => e[0] === 'message')",
        )
        .await;
        assert_eq!(seqs(&seen), [1], "{transport}");
        let posted = client
            .execute_async(
                "const done = arguments[arguments.length - 1];
                 window.room.post('from the page').then((m) => done(m.user), (e) => done(String(e)));",
                vec![],
            )
            .await
            .unwrap();
        assert_eq!(posted, json!("ada"), "{transport}");
        run(&client, "window.room.close(); return true;", vec![]).await;

        // A server that did not list the page's origin gives it nothing.
        let token = guest_token(closed.addr, "ada").unwrap();
        open(&client, json!({ "server": closed.url(""), "room": room, "token": token, "transport": transport })).await;
        say(&closed, &room, "cy", "not for that page");
        seen_when(
            &client,
            "a failed attempt",
            "seen.some((e) => e[1] === 'reconnecting')",
        )
        .await;
        let seen = run(&client, "return window.seen;", vec![]).await;
        assert!(
            !seen
                .as_array()
                .unwrap()
                .iter()
                .any(|e| e[1] == "live" || e[0] == "message"),
            "{transport}: {seen}"
        );
        run(&client, "window.room.close(); return true;", vec![]).await;
    }
    client.close().await.unwrap();
}
