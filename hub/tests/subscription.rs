//! The hub and its subscriptions, driven through the public API on a plain executor.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use futures_lite::future::block_on;
use roomcast_core::{Config, Cursor, Error, Limits, Resume, Seq, Submit};
use roomcast_hub::identity::IdentityOptions;
use roomcast_hub::{Delivery, Ending, Hub, HubError, HubOptions, Subscription};
use roomcast_store::{Retention, Store};

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

async fn create(hub: &Hub, room: &'static str) {
    hub.with_core(move |core, now| core.create_room(now, "ada", room))
        .await
        .expect("room created");
}

async fn post(hub: &Hub, room: &'static str, text: String) -> Seq {
    let submit = Submit {
        user: "ada".into(),
        room: room.into(),
        text,
        idempotency_key: None,
    };
    hub.with_core(move |core, now| core.submit(now, submit))
        .await
        .expect("accepted")
        .message
        .seq
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
            Delivery::Presence(_) | Delivery::Joined(_) | Delivery::Left(_) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
}

#[test]
fn listeners_receive_presence_then_every_message_in_order() {
    both(100, 64, |hub| async move {
        create(&hub, "lobby").await;
        let mut a = hub
            .subscribe("ada", "lobby", Resume::Live, "test")
            .await
            .unwrap();
        let mut b = hub
            .subscribe("bob", "lobby", Resume::Live, "test")
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
        let mut sub = hub
            .subscribe("bob", "lobby", Resume::After(Seq(10)), "test")
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
        let mut slow = hub
            .subscribe("slow", "lobby", Resume::Live, "test")
            .await
            .unwrap();
        let mut watcher = hub
            .subscribe("watcher", "lobby", Resume::Live, "test")
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
                other => panic!("the watcher saw {other:?}"),
            }
        }
    });
}

#[test]
fn a_listener_further_behind_than_history_is_told_of_the_gap() {
    block_on(async {
        let hub = hub(10, 4, None);
        create(&hub, "lobby").await;
        let mut slow = hub
            .subscribe("slow", "lobby", Resume::Live, "test")
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
                _ => {}
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
        let mut slow = hub
            .subscribe("slow", "lobby", Resume::Live, "test")
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
                _ => {}
            }
        }
    });
}

#[test]
fn deleting_a_room_ends_its_streams_and_dropping_a_listener_leaves() {
    both(100, 64, |hub| async move {
        create(&hub, "lobby").await;
        let mut watcher = hub
            .subscribe("watcher", "lobby", Resume::Live, "test")
            .await
            .unwrap();
        let bob = hub
            .subscribe("bob", "lobby", Resume::Live, "test")
            .await
            .unwrap();
        drop(bob);
        assert!(matches!(watcher.next().await, Some(Delivery::Presence(_))));
        assert!(matches!(watcher.next().await, Some(Delivery::Joined(u)) if u.as_str() == "bob"));
        assert!(matches!(watcher.next().await, Some(Delivery::Left(u)) if u.as_str() == "bob"));
        hub.with_core(|core, now| core.delete_room(now, "ada", "lobby"))
            .await
            .unwrap();
        match watcher.next().await {
            Some(Delivery::Closed(Ending::Deleted { by })) => {
                assert_eq!(by.unwrap().as_str(), "ada")
            }
            other => panic!("expected the end, got {other:?}"),
        }
        assert_eq!(watcher.next().await, None);
        let gone = hub.subscribe("bob", "lobby", Resume::Live, "test").await;
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
        let mut a = hub
            .subscribe("ada", "lobby", Resume::Live, "test")
            .await
            .unwrap();
        let mut b = hub
            .subscribe("bob", "dev", Resume::Live, "test")
            .await
            .unwrap();
        hub.shutdown().await;
        for sub in [&mut a, &mut b] {
            assert!(matches!(sub.next().await, Some(Delivery::Presence(_))));
            assert_eq!(
                sub.next().await,
                Some(Delivery::Closed(Ending::ShuttingDown))
            );
            assert_eq!(sub.next().await, None);
        }
        let refused = hub
            .with_core(|core, now| core.create_room(now, "ada", "x"))
            .await;
        assert_eq!(refused.map(|_| ()), Err(HubError::Stopped));
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
        for _ in 0..200 {
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
            let pending = hub.subscribe("ghost", "lobby", Resume::Live, "test");
            if futures_lite::future::poll_once(Box::pin(pending))
                .await
                .is_none()
            {
                abandoned += 1;
            }
        }
        assert!(abandoned > 0, "some requests were abandoned mid-flight");
        let mut listeners = usize::MAX;
        for _ in 0..200 {
            listeners = hub.stats().await.unwrap().listeners;
            if listeners == 0 {
                break;
            }
            async_io::Timer::after(Duration::from_millis(5)).await;
        }
        assert_eq!(listeners, 0, "every abandoned listener was closed");
        let who = hub
            .with_core(|core, _| core.presence("ada", "lobby"))
            .await
            .unwrap();
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
            _ => {}
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
        let mut sub = hub
            .subscribe("late", "lobby", Resume::After(Seq(3)), "test")
            .await
            .unwrap();
        post(&hub, "lobby", "live".into()).await;
        let got = messages_and_gaps(&mut sub, 1198).await;
        let want: Vec<String> = (4..=1201).map(|n| n.to_string()).collect();
        assert_eq!(got, want);

        // History pages cross from the ring into the store both ways.
        let page = hub
            .history("ada".into(), "lobby".into(), Cursor::Before(Seq(1195)), 20)
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
            .history("ada".into(), "lobby".into(), Cursor::After(Seq(0)), 3)
            .await
            .unwrap();
        let seqs: Vec<u64> = page.messages.iter().map(|m| m.seq.0).collect();
        assert_eq!((seqs, page.gap), (vec![1, 2, 3], None));
        let page = hub
            .history("ada".into(), "lobby".into(), Cursor::Newest, 15)
            .await
            .unwrap();
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
    }
}

#[test]
fn a_restarted_hub_continues_numbering_and_resumes_exactly() {
    let dir = tempfile::tempdir().unwrap();
    block_on(async {
        let hub = hub(5, 64, Some(dir.path()));
        fill(&hub, "lobby", 11).await;
        let keyed = keyed_submit();
        let first = hub
            .with_core(move |core, now| core.submit(now, keyed))
            .await
            .unwrap();
        assert_eq!(first.message.seq, Seq(12));
        hub.shutdown().await;
    });
    block_on(async {
        let hub = hub(5, 64, Some(dir.path()));
        let mut sub = hub
            .subscribe("bob", "lobby", Resume::After(Seq(9)), "test")
            .await
            .unwrap();
        // A retry finds its message again across the restart.
        let keyed = keyed_submit();
        let retry = hub
            .with_core(move |core, now| core.submit(now, keyed))
            .await
            .unwrap();
        assert!(retry.duplicate);
        assert_eq!(retry.message.seq, Seq(12));
        assert_eq!(post(&hub, "lobby", "after restart".into()).await, Seq(13));
        assert_eq!(
            messages_and_gaps(&mut sub, 4).await,
            ["10", "11", "12", "13"]
        );
        let summary = hub
            .with_core(|core, _| core.room("ada", "lobby"))
            .await
            .unwrap();
        assert_eq!((summary.latest, summary.first_held), (Seq(13), Seq(9)));
        let mut from_start = hub
            .subscribe("cy", "lobby", Resume::After(Seq::ZERO), "test")
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
        hub.with_core(|core, now| core.create_private_room(now, "ada", "den"))
            .await
            .unwrap();
        hub.with_core(|core, now| core.invite(now, "ada", "den", "bob"))
            .await
            .unwrap();
        let mut bob = hub
            .subscribe("bob", "den", Resume::Live, "test")
            .await
            .unwrap();
        let mut ada = hub
            .subscribe("ada", "den", Resume::Live, "test")
            .await
            .unwrap();
        let outsider = hub.subscribe("cy", "den", Resume::Live, "test").await;
        assert!(matches!(
            outsider,
            Err(HubError::Refused(Error::PermissionDenied { .. }))
        ));
        hub.with_core(|core, now| core.remove_member(now, "ada", "den", "bob"))
            .await
            .unwrap();
        assert!(matches!(bob.next().await, Some(Delivery::Presence(_))));
        assert!(matches!(bob.next().await, Some(Delivery::Joined(_))));
        assert!(matches!(bob.next().await, Some(Delivery::Left(_))));
        assert_eq!(bob.next().await, Some(Delivery::Closed(Ending::Removed)));
        assert_eq!(bob.next().await, None);
        // The owner's stream goes on and sees bob leave; it is not ended.
        assert!(matches!(ada.next().await, Some(Delivery::Presence(_))));
        assert!(matches!(ada.next().await, Some(Delivery::Left(u)) if u.as_str() == "bob"));
        let submit = Submit {
            user: "ada".into(),
            room: "den".into(),
            text: "still here".into(),
            idempotency_key: None,
        };
        hub.with_core(move |core, now| core.submit(now, submit))
            .await
            .unwrap();
        assert!(matches!(ada.next().await, Some(Delivery::Message(_))));
    });
}
