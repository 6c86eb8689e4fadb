//! Server-Sent Events against the real binary: delivery, order, resume, gaps, deletion,
//! presence, heartbeats and a client that stops reading.

use std::thread;

use roomcast_e2e::{Server, SseStream, create_room, delete, ids_checked, post_json, say};
use serde_json::json;

fn events_path(room: &str, user: &str) -> String {
    format!("/api/v1/rooms/{room}/events?user={user}")
}

#[test]
fn a_post_arrives_as_a_message_event_with_its_sequence_number() {
    let server = Server::smol(&[]);
    create_room(&server, "lobby");
    let mut stream = SseStream::open(server.addr, &events_path("lobby", "bob"), None).unwrap();
    let presence = stream.next_event().unwrap();
    assert_eq!(presence.event, "presence");
    assert_eq!(
        ids_checked(presence.json()),
        json!({"type": "presence", "kind": "snapshot", "users": [{"user": "bob", "listeners": 1}]})
    );
    assert_eq!(stream.retry, Some(2000), "a retry hint comes first");

    let posted = say(&server, "lobby", "ada", "hello 👋 — ünïcödé\nsecond line");
    let event = stream.next_of("message").unwrap();
    assert_eq!(event.last_event_id, "1");
    let message = event.json();
    assert_eq!(message["type"], "message");
    assert_eq!(message["seq"], 1);
    assert_eq!(message["text"], "hello 👋 — ünïcödé\nsecond line");
    assert_eq!(message["id"], posted["id"]);
    assert_eq!(message["user"], "ada");
}

#[test]
fn many_listeners_all_receive_every_message_in_order() {
    // Forty-odd users from one address: over the default sign-ups per address.
    let server = Server::smol(&["--rate-burst=0", "--sign-up-burst=0"]);
    create_room(&server, "crowd");
    let listeners: Vec<SseStream> = (0..40)
        .map(|i| {
            let mut s = SseStream::open(server.addr, &events_path("crowd", &format!("u{i}")), None)
                .unwrap();
            s.next_of("presence").unwrap();
            s
        })
        .collect();
    let posters: Vec<_> = (0..4)
        .map(|p| {
            let addr = server.url("/api/v1/rooms/crowd/messages");
            thread::spawn(move || {
                for n in 0..50 {
                    let res = post_json(
                        &addr,
                        &json!({"user": format!("poster{p}"), "text": format!("{p}:{n}")}),
                    );
                    assert_eq!(res.status, 201, "{}", res.body);
                }
            })
        })
        .collect();
    for p in posters {
        p.join().unwrap();
    }
    let expected: Vec<u64> = (1..=200).collect();
    let readers: Vec<_> = listeners
        .into_iter()
        .map(|mut s| thread::spawn(move || s.message_seqs(200)))
        .collect();
    for r in readers {
        assert_eq!(r.join().unwrap(), expected);
    }
}

#[test]
fn last_event_id_resumes_exactly_where_the_client_left_off() {
    let server = Server::smol(&["--rate-burst=0"]);
    create_room(&server, "resume");
    for n in 1..=5 {
        say(&server, "resume", "ada", &format!("m{n}"));
    }
    let mut first =
        SseStream::open(server.addr, "/api/v1/rooms/resume/events?since=0", None).unwrap();
    assert_eq!(first.message_seqs(3), [1, 2, 3]);
    let last_id = first.last_event_id().to_owned();
    drop(first);
    for n in 6..=8 {
        say(&server, "resume", "ada", &format!("m{n}"));
    }
    // A browser reconnects to the same URL (still saying since=0) with Last-Event-ID, which wins.
    let mut again = SseStream::open(
        server.addr,
        "/api/v1/rooms/resume/events?since=0",
        Some(&last_id),
    )
    .unwrap();
    assert_eq!(again.message_seqs(5), [4, 5, 6, 7, 8]);
    say(&server, "resume", "ada", "live");
    assert_eq!(again.message_seqs(1), [9]);

    let mut by_query =
        SseStream::open(server.addr, "/api/v1/rooms/resume/events?since=7", None).unwrap();
    assert_eq!(by_query.message_seqs(2), [8, 9]);
}

#[test]
fn resuming_from_before_history_says_what_was_missed() {
    // In memory, history is the ring alone (with a store, older messages come from disk).
    let server = Server::smol(&["--in-memory", "--rate-burst=0", "--history-len=5"]);
    create_room(&server, "short");
    for n in 1..=12 {
        say(&server, "short", "ada", &format!("m{n}"));
    }
    let mut stream = SseStream::open(server.addr, "/api/v1/rooms/short/events", Some("2")).unwrap();
    let gap = stream.next_of("gap").unwrap();
    assert_eq!(
        gap.json(),
        json!({"type": "gap", "after": 2, "first_held": 8})
    );
    assert_eq!(
        gap.last_event_id, "7",
        "a reconnect after the gap does not ask for it again"
    );
    assert_eq!(stream.message_seqs(5), [8, 9, 10, 11, 12]);
    let metrics = roomcast_e2e::get(&server.url("/metrics")).body;
    let gaps = roomcast_e2e::metric(&metrics, "roomcast_gaps_total{transport=\"sse\"}");
    assert_eq!(gaps, Some(1.0), "{metrics}");
}

#[test]
fn resuming_beyond_the_newest_message_is_refused() {
    let server = Server::smol(&[]);
    create_room(&server, "young");
    say(&server, "young", "ada", "only one");
    let refused = SseStream::open(server.addr, "/api/v1/rooms/young/events", Some("9"))
        .err()
        .expect("refused");
    assert_eq!(refused.status, 409);
    assert_eq!(refused.body["code"], "resume-ahead");
    let refused = SseStream::open(server.addr, "/api/v1/rooms/young/events?since=abc", None)
        .err()
        .expect("refused");
    assert_eq!(
        (refused.status, refused.body["code"].as_str()),
        (400, Some("invalid-resume-point"))
    );
    let refused = SseStream::open(server.addr, "/api/v1/rooms/nowhere/events", None)
        .err()
        .expect("refused");
    assert_eq!(
        (refused.status, refused.body["code"].as_str()),
        (404, Some("room-not-found"))
    );
}

#[test]
fn deleting_a_room_ends_every_stream_with_a_reason() {
    let server = Server::smol(&["--admins=ada"]);
    create_room(&server, "doomed");
    let mut streams: Vec<SseStream> = (0..3)
        .map(|i| {
            SseStream::open(server.addr, &events_path("doomed", &format!("u{i}")), None).unwrap()
        })
        .collect();
    assert_eq!(
        delete(&server.url("/api/v1/rooms/doomed?user=ada")).status,
        204
    );
    for s in &mut streams {
        let mut closed = s.next_of("closed").unwrap().json();
        let by_id = closed.as_object_mut().unwrap().remove("by_id").unwrap();
        assert!(by_id.as_str().unwrap().starts_with("ada~"), "{by_id}");
        assert_eq!(
            closed,
            json!({"type": "closed", "reason": "deleted", "by": "ada"})
        );
        assert!(
            s.next_event().is_none(),
            "the stream ends after the closed event"
        );
    }
}

#[test]
fn presence_follows_listeners_coming_and_going() {
    let server = Server::smol(&[]);
    create_room(&server, "hall");
    let mut ada = SseStream::open(server.addr, &events_path("hall", "ada"), None).unwrap();
    assert_eq!(
        ids_checked(ada.next_event().unwrap().json()["users"].clone()),
        json!([{"user": "ada", "listeners": 1}])
    );
    let bob = SseStream::open(server.addr, &events_path("hall", "bob"), None).unwrap();
    assert_eq!(
        ids_checked(ada.next_event().unwrap().json()),
        json!({"type": "presence", "kind": "joined", "user": "bob"})
    );
    let listed = roomcast_e2e::get(&server.url("/api/v1/rooms/hall/presence")).json();
    assert_eq!(
        ids_checked(listed["users"].clone()),
        json!([{"user": "ada", "listeners": 1}, {"user": "bob", "listeners": 1}])
    );
    drop(bob);
    assert_eq!(
        ids_checked(ada.next_event().unwrap().json()),
        json!({"type": "presence", "kind": "left", "user": "bob"})
    );
}

#[test]
fn idle_streams_carry_heartbeats() {
    let server = Server::smol(&["--heartbeat=100ms"]);
    create_room(&server, "quiet");
    let mut stream = SseStream::open(server.addr, &events_path("quiet", "bob"), None).unwrap();
    stream.next_event().unwrap();
    say(&server, "quiet", "ada", "after a while");
    assert_eq!(stream.message_seqs(1), [1]);
    // While idle, heartbeats keep coming (two, so it is a beat and not a one-off).
    let before = stream.comments;
    stream.wait_for_comments(before + 2);
    // Comments are not events; the next message still comes through after them.
    say(&server, "quiet", "ada", "again");
    assert_eq!(stream.message_seqs(1), [2]);
}

#[test]
fn a_client_that_stops_reading_holds_up_nobody() {
    // In memory, so that history cannot cover what the stalled client misses.
    let server = Server::smol(&[
        "--in-memory",
        "--rate-burst=0",
        "--room-buffer=16",
        "--max-message-bytes=8192",
    ]);
    create_room(&server, "firehose");
    let mut stalled =
        SseStream::open(server.addr, &events_path("firehose", "stalled"), None).unwrap();
    stalled.next_event().unwrap();
    let mut reader =
        SseStream::open(server.addr, &events_path("firehose", "reader"), None).unwrap();
    reader.next_event().unwrap();
    let total = 3000u64;
    let reading = thread::spawn(move || reader.message_seqs(total as usize));
    // Large messages, so the stalled client's socket and buffers fill long before the end.
    let text = "x".repeat(8000);
    for _ in 0..total {
        say(&server, "firehose", "ada", &text);
    }
    assert_eq!(
        reading.join().unwrap(),
        (1..=total).collect::<Vec<_>>(),
        "the reading client got everything"
    );
    // The stalled client now reads. The server may have cut it off (its socket took nothing
    // for the write timeout); then it resumes after the last message it got, as a browser
    // does. Either way, what it gets is in order, each once, and anything it can no longer
    // get is announced as a gap.
    let mut expected_next = 1;
    let mut gaps = 0;
    let mut resumes = 0;
    while expected_next <= total {
        let Some(event) = stalled.next_event() else {
            resumes += 1;
            assert!(resumes <= 3, "resuming keeps working");
            let after = (expected_next - 1).to_string();
            stalled = SseStream::open(
                server.addr,
                &events_path("firehose", "stalled"),
                Some(&after),
            )
            .unwrap();
            continue;
        };
        match event.event.as_str() {
            "message" => {
                assert_eq!(event.json()["seq"], expected_next, "in order, no duplicate");
                expected_next += 1;
            }
            "gap" => {
                let gap = event.json();
                assert_eq!(
                    gap["after"],
                    expected_next - 1,
                    "the gap starts where delivery stopped"
                );
                expected_next = gap["first_held"].as_u64().unwrap();
                gaps += 1;
            }
            _ => {}
        }
    }
    assert!(
        gaps >= 1,
        "3000 large messages overflowed the stalled client's buffers and history"
    );
}
