//! The hub and its subscriptions, driven through the public API on a plain executor.

use std::time::Duration;

use futures_lite::future::block_on;
use roomcast_core::{Config, Error, Limits, Resume, Seq, Submit};
use roomcast_hub::{Delivery, Ending, Hub, HubError, HubOptions, Subscription};

fn hub(history_len: usize, room_buffer: usize) -> Hub {
    let config = Config {
        history_len,
        limits: Limits {
            submit_rate: None,
            ..Limits::default()
        },
        ..Config::default()
    };
    Hub::start(
        config,
        HubOptions {
            room_buffer,
            ..HubOptions::default()
        },
    )
    .expect("hub thread starts")
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
    block_on(async {
        let hub = hub(100, 64);
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
    block_on(async {
        let hub = hub(1000, 1024);
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
    block_on(async {
        let hub = hub(1000, 4);
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
        let hub = hub(10, 4);
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
fn deleting_a_room_ends_its_streams_and_dropping_a_listener_leaves() {
    block_on(async {
        let hub = hub(100, 64);
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
    block_on(async {
        let hub = hub(100, 64);
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
        let hub = Hub::start(config, HubOptions::default()).unwrap();
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
    block_on(async {
        let hub = hub(100, 64);
        create(&hub, "lobby").await;
        for _ in 0..20 {
            // Send the request, then drop it before the answer is read (a client hanging up).
            let pending = hub.subscribe("ghost", "lobby", Resume::Live, "test");
            assert!(
                futures_lite::future::poll_once(Box::pin(pending))
                    .await
                    .is_none()
            );
        }
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
