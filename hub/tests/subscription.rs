//! The hub and its subscriptions, driven through the public API on a plain executor.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use futures_lite::future::block_on;
use roomcast_core::{
    ChangeMember, CloseReason, Config, CreateRoom, Cursor, DeleteRoom, Error, History, Limits,
    MemberChange, OpenListener, Resume, Seq, Submit, ViewRoom,
};
use roomcast_hub::identity::IdentityOptions;
use roomcast_hub::{Delivery, Hub, HubError, HubOptions, Subscription, Wire};
use roomcast_store::{Retention, Store};

/// The longest any wait here may take before the test fails (a bound, not a timing).
const PATIENCE: Duration = Duration::from_secs(20);

/// A hub without rate limits; with a store in `dir`, if given.
fn hub(history_len: usize, room_buffer: usize, dir: Option<&Path>) -> Hub {
    let config = Config {
        history_len,
        limits: Limits {
            submit_rate: None,
            ..Limits::default()
        },
        ..Config::default()
    };
    let store = dir.map(|dir| (Arc::new(Store::open(dir).unwrap()), Retention::default()));
    Hub::start(
        config,
        HubOptions {
            room_buffer,
            ..HubOptions::default()
        },
        store,
        IdentityOptions::default(),
    )
    .expect("hub thread starts")
}

/// Runs `case` on an in-memory hub, then on one that commits everything to a store first.
fn both<F, Fut>(history_len: usize, room_buffer: usize, case: F)
where
    F: Fn(Hub) -> Fut,
    Fut: Future<Output = ()>,
{
    block_on(case(hub(history_len, room_buffer, None)));
    let dir = tempfile::tempdir().unwrap();
    block_on(case(hub(history_len, room_buffer, Some(dir.path()))));
}

fn listen(user: &str, room: &str, resume: Resume) -> OpenListener {
    OpenListener {
        user: user.into(),
        room: room.into(),
        resume,
        create_if_missing: false,
        replacing: None,
    }
}

fn history(cursor: Cursor, limit: usize) -> History {
    History {
        user: "ada".into(),
        room: "lobby".into(),
        cursor,
        limit: Some(limit),
    }
}

fn create_room(user: &str, room: &str, private: bool) -> CreateRoom {
    CreateRoom {
        user: user.into(),
        room: room.into(),
        private,
    }
}

fn view(user: &str, room: &str) -> ViewRoom {
    ViewRoom {
        user: user.into(),
        room: room.into(),
    }
}

/// Ada (the owner) adds or removes a member.
fn member(room: &str, member: &str, change: MemberChange) -> ChangeMember {
    ChangeMember {
        user: "ada".into(),
        room: room.into(),
        member: member.into(),
        change,
    }
}

async fn create(hub: &Hub, room: &'static str) {
    hub.ask(create_room("ada", room, false))
        .await
        .expect("room created");
}

async fn post(hub: &Hub, room: &'static str, text: String) -> Seq {
    let submit = Submit {
        user: "ada".into(),
        room: room.into(),
        text,
        idempotency_key: None,
        create_if_missing: false,
        kind: Default::default(),
        recalled: None,
    };
    hub.ask(submit).await.expect("accepted").message.seq
}

/// Creates `room` and posts `n` messages to it.
async fn fill(hub: &Hub, room: &'static str, n: u64) {
    create(hub, room).await;
    for i in 1..=n {
        assert_eq!(post(hub, room, format!("m{i}")).await, Seq(i));
    }
}

/// The next delivery that is a message, skipping presence.
async fn next_message(sub: &mut Subscription) -> Option<Seq> {
    loop {
        match sub.next().await? {
            Delivery::Message(m) => return Some(m.seq),
            Delivery::Presence(_)
            | Delivery::Joined(_)
            | Delivery::Left(_)
            | Delivery::Typing(_) => {}
            other @ (Delivery::Gap(_) | Delivery::Closed(_)) => panic!("unexpected {other:?}"),
        }
    }
}

#[test]
fn listeners_receive_presence_then_every_message_in_order() {
    both(100, 64, |hub| async move {
        create(&hub, "lobby").await;
        let mut a = Subscription::open(&hub, listen("ada", "lobby", Resume::Live), Wire::Sse)
            .await
            .unwrap();
        let mut b = Subscription::open(&hub, listen("bob", "lobby", Resume::Live), Wire::Sse)
            .await
            .unwrap();
        match b.next().await {
            Some(Delivery::Presence(p)) => {
                let names: Vec<_> = p.iter().map(|e| e.user.to_string()).collect();
                assert_eq!(names, ["ada", "bob"], "bob sees himself in the snapshot");
            }
            other => panic!("expected presence first, got {other:?}"),
        }
        for n in 1..=20 {
            post(&hub, "lobby", format!("m{n}")).await;
        }
        assert!(matches!(a.next().await, Some(Delivery::Presence(_))));
        match a.next().await {
            Some(Delivery::Joined(user)) => assert_eq!(user.as_str(), "bob"),
            other => panic!("expected bob's join, got {other:?}"),
        }
        for n in 1..=20 {
            assert_eq!(next_message(&mut a).await, Some(Seq(n)));
            assert_eq!(next_message(&mut b).await, Some(Seq(n)));
        }
    });
}

#[test]
fn resume_hands_over_from_backlog_to_live_while_others_post() {
    both(1000, 1024, |hub| async move {
        create(&hub, "lobby").await;
        for n in 1..=50 {
            post(&hub, "lobby", format!("early {n}")).await;
        }
        let poster = {
            let hub = hub.clone();
            std::thread::spawn(move || {
                block_on(async {
                    for n in 1..=200 {
                        post(&hub, "lobby", format!("late {n}")).await;
                    }
                })
            })
        };
        let mut sub = Subscription::open(
            &hub,
            listen("bob", "lobby", Resume::After(Seq(10))),
            Wire::Sse,
        )
        .await
        .unwrap();
        let mut seen = Vec::new();
        while seen.len() < 240 {
            seen.push(next_message(&mut sub).await.expect("stream open").0);
        }
        poster.join().unwrap();
        assert_eq!(seen, (11..=250).collect::<Vec<_>>(), "no gap, no duplicate");
    });
}

#[test]
fn a_slow_listener_is_resynced_from_history_without_holding_the_room() {
    both(1000, 4, |hub| async move {
        create(&hub, "lobby").await;
        let mut slow = Subscription::open(&hub, listen("slow", "lobby", Resume::Live), Wire::Sse)
            .await
            .unwrap();
        let mut watcher =
            Subscription::open(&hub, listen("watcher", "lobby", Resume::Live), Wire::Sse)
                .await
                .unwrap();
        // Far more than the room buffer, while the slow listener reads nothing: posting never waits.
        for n in 1..=100 {
            post(&hub, "lobby", format!("m{n}")).await;
        }
        let mut seen = Vec::new();
        while seen.len() < 100 {
            seen.push(next_message(&mut slow).await.expect("open").0);
        }
        assert_eq!(
            seen,
            (1..=100).collect::<Vec<_>>(),
            "caught up from history, in order, once each"
        );
        assert_eq!(slow.last_seq(), Seq(100));
        // The resyncs (the watcher fell behind too) did not make anyone leave and rejoin.
        post(&hub, "lobby", "after".into()).await;
        loop {
            match watcher.next().await.expect("open") {
                Delivery::Message(m) if m.seq == Seq(101) => break,
                Delivery::Message(_) => {}
                Delivery::Presence(p) => assert_eq!(p.len(), 2, "both stay present"),
                other @ (Delivery::Gap(_)
                | Delivery::Joined(_)
                | Delivery::Left(_)
                | Delivery::Typing(_)
                | Delivery::Closed(_)) => panic!("the watcher saw {other:?}"),
            }
        }
    });
}

#[test]
fn a_listener_further_behind_than_history_is_told_of_the_gap() {
    block_on(async {
        let hub = hub(10, 4, None);
        create(&hub, "lobby").await;
        let mut slow = Subscription::open(&hub, listen("slow", "lobby", Resume::Live), Wire::Sse)
            .await
            .unwrap();
        for n in 1..=30 {
            post(&hub, "lobby", format!("m{n}")).await;
        }
        let mut got = Vec::new();
        while got.len() < 11 {
            match slow.next().await.expect("open") {
                Delivery::Gap(gap) => got.push(format!("gap {}..{}", gap.after, gap.first_held)),
                Delivery::Message(m) => got.push(m.seq.to_string()),
                Delivery::Presence(_)
                | Delivery::Joined(_)
                | Delivery::Left(_)
                | Delivery::Typing(_)
                | Delivery::Closed(_) => {}
            }
        }
        // Read from the ring (1..=4 were buffered), then the gap, then what history holds.
        let first_gap = got
            .iter()
            .position(|s| s.starts_with("gap"))
            .expect("a gap is announced");
        let after_gap: Vec<u64> = got[first_gap + 1..]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        assert!(after_gap.windows(2).all(|w| w[1] == w[0] + 1));
        assert_eq!(after_gap.last(), Some(&(21 + after_gap.len() as u64 - 1)));
        assert_eq!(got[first_gap], format!("gap {}..21", first_gap));
    });
}

#[test]
fn draining_without_waiting_never_skips_past_an_overflow() {
    block_on(async {
        let hub = hub(10, 4, None);
        create(&hub, "lobby").await;
        let mut slow = Subscription::open(&hub, listen("slow", "lobby", Resume::Live), Wire::Sse)
            .await
            .unwrap();
        for n in 1..=30 {
            post(&hub, "lobby", format!("m{n}")).await;
        }
        // A writer gathers what is ready with `try_next` (asking again, as one does after a
        // wait was cut short), and waits with `next` only when nothing is; every message it
        // hands out follows the last one or an announced gap.
        let mut expected = 1;
        while expected <= 30 {
            let delivery = match slow.try_next().or_else(|| slow.try_next()) {
                Some(delivery) => delivery,
                None => slow.next().await.expect("open"),
            };
            match delivery {
                Delivery::Gap(gap) => {
                    assert_eq!(
                        gap.after,
                        Seq(expected - 1),
                        "the gap starts where delivery stopped"
                    );
                    expected = gap.first_held.0;
                }
                Delivery::Message(m) => {
                    assert_eq!(m.seq, Seq(expected), "in order, nothing skipped silently");
                    expected += 1;
                }
                Delivery::Presence(_)
                | Delivery::Joined(_)
                | Delivery::Left(_)
                | Delivery::Typing(_)
                | Delivery::Closed(_) => {}
            }
        }
    });
}

#[test]
fn deleting_a_room_ends_its_streams_and_dropping_a_listener_leaves() {
    both(100, 64, |hub| async move {
        create(&hub, "lobby").await;
        let mut watcher =
            Subscription::open(&hub, listen("watcher", "lobby", Resume::Live), Wire::Sse)
                .await
                .unwrap();
        let bob = Subscription::open(&hub, listen("bob", "lobby", Resume::Live), Wire::Sse)
            .await
            .unwrap();
        drop(bob);
        assert!(matches!(watcher.next().await, Some(Delivery::Presence(_))));
        assert!(matches!(watcher.next().await, Some(Delivery::Joined(u)) if u.as_str() == "bob"));
        assert!(matches!(watcher.next().await, Some(Delivery::Left(u)) if u.as_str() == "bob"));
        hub.ask(DeleteRoom {
            user: "ada".into(),
            room: "lobby".into(),
        })
        .await
        .unwrap();
        match watcher.next().await {
            Some(Delivery::Closed(CloseReason::Deleted { by })) => {
                assert_eq!(by.unwrap().as_str(), "ada")
            }
            other => panic!("expected the end, got {other:?}"),
        }
        assert_eq!(watcher.next().await, None);
        let gone = Subscription::open(&hub, listen("bob", "lobby", Resume::Live), Wire::Sse).await;
        assert!(matches!(
            gone,
            Err(HubError::Refused(Error::RoomNotFound { .. }))
        ));
    });
}

#[test]
fn shutdown_ends_every_stream_and_refuses_new_calls() {
    both(100, 64, |hub| async move {
        create(&hub, "lobby").await;
        create(&hub, "dev").await;
        let mut a = Subscription::open(&hub, listen("ada", "lobby", Resume::Live), Wire::Sse)
            .await
            .unwrap();
        let mut b = Subscription::open(&hub, listen("bob", "dev", Resume::Live), Wire::Sse)
            .await
            .unwrap();
        hub.shutdown().await;
        for sub in [&mut a, &mut b] {
            assert!(matches!(sub.next().await, Some(Delivery::Presence(_))));
            assert_eq!(
                sub.next().await,
                Some(Delivery::Closed(CloseReason::ShuttingDown))
            );
            assert_eq!(sub.next().await, None);
        }
        let refused = hub.ask(create_room("ada", "x", false)).await;
        assert_eq!(refused.map(|_| ()), Err(HubError::Stopped));
        // Health checks read the counters: a stopping hub says it is stopping.
        assert_eq!(hub.stats().await.map(|_| ()), Err(HubError::Stopped));
    });
}

#[test]
fn idle_rooms_expire_on_the_hub_timer() {
    block_on(async {
        let config = Config {
            room_idle_expiry: Some(Duration::from_millis(50)),
            ..Config::default()
        };
        let hub = Hub::start(
            config,
            HubOptions::default(),
            None,
            IdentityOptions::default(),
        )
        .unwrap();
        create(&hub, "brief").await;
        let mut rooms = 1;
        let deadline = std::time::Instant::now() + PATIENCE;
        while std::time::Instant::now() < deadline {
            rooms = hub.stats().await.unwrap().rooms;
            if rooms == 0 {
                break;
            }
            async_io::Timer::after(Duration::from_millis(10)).await;
        }
        assert_eq!(
            rooms, 0,
            "the hub honoured the core's deadline without any request"
        );
    });
}

#[test]
fn a_subscribe_abandoned_mid_request_leaves_no_listener_behind() {
    both(100, 64, |hub| async move {
        create(&hub, "lobby").await;
        let mut abandoned = 0;
        for _ in 0..20 {
            // Send the request, then drop it before the answer is read (a client hanging up).
            // Rarely the hub answers within the first poll; that subscription is dropped too.
            let pending =
                Subscription::open(&hub, listen("ghost", "lobby", Resume::Live), Wire::Sse);
            if futures_lite::future::poll_once(Box::pin(pending))
                .await
                .is_none()
            {
                abandoned += 1;
            }
        }
        assert!(abandoned > 0, "some requests were abandoned mid-flight");
        let mut listeners = usize::MAX;
        let deadline = std::time::Instant::now() + PATIENCE;
        while std::time::Instant::now() < deadline {
            listeners = hub.stats().await.unwrap().listeners;
            if listeners == 0 {
                break;
            }
            async_io::Timer::after(Duration::from_millis(5)).await;
        }
        assert_eq!(listeners, 0, "every abandoned listener was closed");
        let who = hub.ask(view("ada", "lobby")).await.unwrap().presence;
        assert!(who.is_empty(), "no ghost is present: {who:?}");
    });
}

/// Every delivery until `n` messages arrived, as text: `gap A..B` or the sequence number.
async fn messages_and_gaps(sub: &mut Subscription, n: usize) -> Vec<String> {
    let mut got = Vec::new();
    while got
        .iter()
        .filter(|s: &&String| !s.starts_with("gap"))
        .count()
        < n
    {
        match sub.next().await.expect("open") {
            Delivery::Gap(gap) => got.push(format!("gap {}..{}", gap.after, gap.first_held)),
            Delivery::Message(m) => got.push(m.seq.to_string()),
            Delivery::Presence(_)
            | Delivery::Joined(_)
            | Delivery::Left(_)
            | Delivery::Typing(_)
            | Delivery::Closed(_) => {}
        }
    }
    got
}

#[test]
fn with_a_store_a_resume_older_than_the_ring_is_served_from_disk() {
    let dir = tempfile::tempdir().unwrap();
    block_on(async {
        let hub = hub(10, 4, Some(dir.path()));
        fill(&hub, "lobby", 1200).await;
        // More than one store chunk, then the ring, then live: no gap at all.
        let mut sub = Subscription::open(
            &hub,
            listen("late", "lobby", Resume::After(Seq(3))),
            Wire::Sse,
        )
        .await
        .unwrap();
        post(&hub, "lobby", "live".into()).await;
        let got = messages_and_gaps(&mut sub, 1198).await;
        let want: Vec<String> = (4..=1201).map(|n| n.to_string()).collect();
        assert_eq!(got, want);

        // History pages cross from the ring into the store both ways.
        let page = hub
            .history(history(Cursor::Before(Seq(1195)), 20))
            .await
            .unwrap();
        let seqs: Vec<u64> = page.messages.iter().map(|m| m.seq.0).collect();
        assert_eq!(seqs, (1175..=1194).collect::<Vec<_>>());
        assert_eq!(
            page.first_held,
            Seq(1),
            "the page says how far back history goes"
        );
        let page = hub
            .history(history(Cursor::After(Seq(0)), 3))
            .await
            .unwrap();
        let seqs: Vec<u64> = page.messages.iter().map(|m| m.seq.0).collect();
        assert_eq!((seqs, page.gap), (vec![1, 2, 3], None));
        let page = hub.history(history(Cursor::Newest, 15)).await.unwrap();
        let seqs: Vec<u64> = page.messages.iter().map(|m| m.seq.0).collect();
        assert_eq!(seqs, (1187..=1201).collect::<Vec<_>>());
        hub.shutdown().await;
    });
}

fn keyed_submit() -> Submit {
    Submit {
        user: "ada".into(),
        room: "lobby".into(),
        text: "once".into(),
        idempotency_key: Some("k1".into()),
        create_if_missing: false,
        kind: Default::default(),
        recalled: None,
    }
}

#[test]
fn a_restarted_hub_continues_numbering_and_resumes_exactly() {
    let dir = tempfile::tempdir().unwrap();
    block_on(async {
        let hub = hub(5, 64, Some(dir.path()));
        fill(&hub, "lobby", 11).await;
        let keyed = keyed_submit();
        let first = hub.ask(keyed).await.unwrap();
        assert_eq!(first.message.seq, Seq(12));
        hub.shutdown().await;
    });
    block_on(async {
        let hub = hub(5, 64, Some(dir.path()));
        let mut sub = Subscription::open(
            &hub,
            listen("bob", "lobby", Resume::After(Seq(9))),
            Wire::Sse,
        )
        .await
        .unwrap();
        // A retry finds its message again across the restart.
        let keyed = keyed_submit();
        let retry = hub.ask(keyed).await.unwrap();
        assert!(retry.duplicate);
        assert_eq!(retry.message.seq, Seq(12));
        assert_eq!(post(&hub, "lobby", "after restart".into()).await, Seq(13));
        assert_eq!(
            messages_and_gaps(&mut sub, 4).await,
            ["10", "11", "12", "13"]
        );
        let summary = hub.ask(view("ada", "lobby")).await.unwrap().room;
        assert_eq!((summary.latest, summary.first_held), (Seq(13), Seq(9)));
        let mut from_start = Subscription::open(
            &hub,
            listen("cy", "lobby", Resume::After(Seq::ZERO)),
            Wire::Sse,
        )
        .await
        .unwrap();
        let got = messages_and_gaps(&mut from_start, 13).await;
        assert_eq!(got, (1..=13).map(|n| n.to_string()).collect::<Vec<_>>());
        hub.shutdown().await;
    });
    // A second hub on the same dir while one runs is refused.
    let _running = Store::open(dir.path()).unwrap();
    assert!(Store::open(dir.path()).is_err());
}

#[test]
fn removing_a_member_ends_their_streams_at_once() {
    both(100, 64, |hub| async move {
        hub.ask(create_room("ada", "den", true)).await.unwrap();
        hub.ask(member("den", "bob", MemberChange::Add))
            .await
            .unwrap();
        let mut bob = Subscription::open(&hub, listen("bob", "den", Resume::Live), Wire::Sse)
            .await
            .unwrap();
        let mut ada = Subscription::open(&hub, listen("ada", "den", Resume::Live), Wire::Sse)
            .await
            .unwrap();
        let outsider = Subscription::open(&hub, listen("cy", "den", Resume::Live), Wire::Sse).await;
        assert!(matches!(
            outsider,
            Err(HubError::Refused(Error::PermissionDenied { .. }))
        ));
        hub.ask(member("den", "bob", MemberChange::Remove))
            .await
            .unwrap();
        assert!(matches!(bob.next().await, Some(Delivery::Presence(_))));
        assert!(matches!(bob.next().await, Some(Delivery::Joined(_))));
        // Core closes bob's listener before it announces his leaving to the others.
        assert_eq!(
            bob.next().await,
            Some(Delivery::Closed(CloseReason::Removed))
        );
        assert_eq!(bob.next().await, None);
        // The owner's stream goes on and sees bob leave; it is not ended.
        assert!(matches!(ada.next().await, Some(Delivery::Presence(_))));
        assert!(matches!(ada.next().await, Some(Delivery::Left(u)) if u.as_str() == "bob"));
        let submit = Submit {
            user: "ada".into(),
            room: "den".into(),
            text: "still here".into(),
            idempotency_key: None,
            create_if_missing: false,
            kind: Default::default(),
            recalled: None,
        };
        hub.ask(submit).await.unwrap();
        assert!(matches!(ada.next().await, Some(Delivery::Message(_))));
    });
}

#[test]
fn a_listener_that_missed_its_room_being_remade_is_told_it_was_deleted() {
    block_on(async {
        let hub = hub(10, 4, None);
        create(&hub, "lobby").await;
        let mut slow = Subscription::open(&hub, listen("slow", "lobby", Resume::Live), Wire::Sse)
            .await
            .unwrap();
        for n in 1..=3 {
            post(&hub, "lobby", format!("m{n}")).await;
        }
        assert_eq!(next_message(&mut slow).await, Some(Seq(1)));
        assert_eq!(next_message(&mut slow).await, Some(Seq(2)));
        // It falls behind, the room is deleted and made again with fewer messages than it has
        // seen: its resync finds the room behind its own last message. That is a deletion, and
        // the stream says so (it said "shutdown" before).
        for n in 4..=12 {
            post(&hub, "lobby", format!("m{n}")).await;
        }
        let delete = DeleteRoom {
            user: "ada".into(),
            room: "lobby".into(),
        };
        hub.ask(delete).await.unwrap();
        create(&hub, "lobby").await;
        post(&hub, "lobby", "new".into()).await;
        let ending = async {
            let mut last = None;
            while let Some(delivery) = slow.next().await {
                last = Some(delivery);
            }
            last
        };
        let timeout = async {
            async_io::Timer::after(PATIENCE).await;
            panic!("the stream did not end within the patience")
        };
        assert_eq!(
            futures_lite::future::or(ending, timeout).await,
            Some(Delivery::Closed(CloseReason::Deleted { by: None }))
        );
    });
}
