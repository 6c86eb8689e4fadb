//! Messages are sequenced once.

mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use support::*;

#[test]
fn messages_get_contiguous_sequence_numbers_and_are_published_once() {
    let mut core = core_with_room(unlimited());
    for (i, listener_user) in ["bob", "cy", "cy"].iter().enumerate() {
        open_listener(&mut core, t(2), listener_user, "lobby", Resume::Live).unwrap();
        assert!(i == 2 || !drain(&mut core).is_empty());
    }
    drain(&mut core);
    let mut ids = BTreeSet::new();
    for n in 1..=5 {
        let done = post(&mut core, 10 + n, "ada", &format!("message {n}")).unwrap();
        assert!(!done.duplicate);
        let m = &done.message;
        assert_eq!(
            (m.seq, m.sent_at, m.room.as_str(), m.user.as_str()),
            (Seq(n), t(10 + n), "lobby", "ada")
        );
        assert!(ids.insert(m.id));
        assert_eq!(
            drain(&mut core),
            vec![Event::Published(m.clone())],
            "one event however many listen"
        );
    }
    assert_eq!(core.stats().messages_accepted, 5);
}

#[test]
fn submit_refusals_name_the_rule() {
    let mut core = core_with_room(Config {
        limits: Limits {
            message_max_bytes: 8,
            submit_rate: None,
            ..Limits::default()
        },
        ..Config::default()
    });
    assert_eq!(
        post(&mut core, 2, "ada", "123456789"),
        Err(Error::Message(MessageError::TooLarge { len: 9, max: 8 }))
    );
    assert_eq!(
        post(&mut core, 2, "ada", "  \n "),
        Err(Error::Message(MessageError::Empty))
    );
    assert_eq!(
        post(&mut core, 2, "ada", "a\u{0}b"),
        Err(Error::Message(MessageError::ControlCharacter {
            ch: '\0',
            offset: 1
        }))
    );
    assert_eq!(
        post(&mut core, 2, "ada!", "hi"),
        Err(Error::InvalidUserName(NameError::BadCharacter { ch: '!' }))
    );
    let nowhere = Submit {
        user: "ada".into(),
        room: "nowhere".into(),
        text: "hi".into(),
        idempotency_key: None,
        create_if_missing: false,
        kind: Default::default(),
        recalled: None,
    };
    assert_eq!(
        submit(&mut core, t(2), nowhere),
        Err(Error::RoomNotFound {
            room: room("nowhere")
        })
    );
    assert_eq!(
        post_keyed(&mut core, "ada", "hi", "has space"),
        Err(Error::InvalidIdempotencyKey(NameError::BadCharacter {
            ch: ' '
        }))
    );
    assert!(drain(&mut core).is_empty(), "refusals publish nothing");
    assert_eq!(
        history(&mut core, "ada", "lobby", Cursor::Newest, 10)
            .unwrap()
            .latest,
        Seq::ZERO,
        "and use no sequence number"
    );
    assert_eq!(
        post(&mut core, 2, "ada", "8 bytes!").unwrap().message.seq,
        Seq(1)
    );
}

#[test]
fn rate_limit_is_per_user_on_injected_time() {
    let config = Config {
        limits: Limits {
            submit_rate: Some(Rate {
                burst: 2,
                per_second: 1,
            }),
            // Only the submit rate here.
            room_pace: None,
            ..Limits::default()
        },
        ..Config::default()
    };
    let mut core = core_with_room(config);
    assert!(post(&mut core, 1000, "ada", "one").is_ok());
    assert!(post(&mut core, 1000, "ada", "two").is_ok());
    assert_eq!(
        post(&mut core, 1000, "ada", "three"),
        Err(Error::RateLimited {
            retry_after: Duration::from_secs(1)
        })
    );
    assert!(
        post(&mut core, 1000, "bob", "mine").is_ok(),
        "another user has their own bucket"
    );
    assert_eq!(core.poll_timeout(), Some(t(2000)), "the refill deadline");
    assert!(post(&mut core, 2000, "ada", "three").is_ok());
    assert_eq!(core.stats().refused.get("rate-limited"), Some(&1));
    core.handle_timeout(t(10_000));
    assert_eq!(
        core.stats().rate_limited_users,
        0,
        "refilled buckets are forgotten"
    );
    assert_eq!(
        core.poll_timeout(),
        Some(t(2000 + 600_000)),
        "only the idle room's unloading is left"
    );
}

#[test]
fn a_restored_core_continues_numbering_history_and_keys() {
    let config = Config {
        history_len: 3,
        ..unlimited()
    };
    let mut core = core_with_room(config.clone());
    let mut events = vec![Event::RoomCreated {
        room: room("lobby"),
        created_at: t(1),
        owner: Some(user("ada")),
        private: false,
    }];
    create_room(&mut core, t(2), "ada", "gone").unwrap();
    submit(
        &mut core,
        t(2),
        Submit {
            user: "ada".into(),
            room: "gone".into(),
            text: "x".into(),
            idempotency_key: None,
            create_if_missing: false,
            kind: Default::default(),
            recalled: None,
        },
    )
    .unwrap();
    delete_room(&mut core, t(2), "ada", "gone").unwrap();
    for n in 0..4 {
        post(&mut core, 3, "ada", &format!("m{n}")).unwrap();
    }
    post_keyed(&mut core, "ada", "keyed", "k1").unwrap();
    events.extend(drain(&mut core));

    let mut restored = restored_from(&events, config, 2);
    let summary = room_summary(&mut restored, "ada", "lobby").unwrap();
    assert_eq!((summary.latest, summary.first_held), (Seq(5), Seq(4)));
    assert_eq!(summary.created_at, t(1));
    assert!(
        room_summary(&mut restored, "ada", "gone").is_err(),
        "deleted rooms stay deleted"
    );
    // The retry finds the key again; the next message continues both numberings.
    let retry = post_keyed(&mut restored, "ada", "keyed", "k1").unwrap();
    assert!(retry.duplicate);
    let next = post(&mut restored, 200, "bob", "after restart").unwrap();
    assert_eq!(next.message.seq, Seq(6));
    assert_eq!(next.message.id, core.next_message_id());
    // Resume across the restart: exactly what follows, or a gap for what the ring lacks.
    let opened =
        open_listener(&mut restored, t(201), "cy", "lobby", Resume::After(Seq(4))).unwrap();
    assert_eq!(seqs(&opened.backlog), [5, 6]);
    let opened =
        open_listener(&mut restored, t(201), "cy", "lobby", Resume::After(Seq(1))).unwrap();
    assert_eq!(
        opened.gap,
        Some(Gap {
            after: Seq(1),
            first_held: Seq(4)
        })
    );
}

#[test]
fn a_retried_submit_returns_the_original() {
    let mut core = core_with_room(Config {
        history_len: 2,
        ..unlimited()
    });
    let first = post_keyed(&mut core, "ada", "hello", "k1").unwrap();
    drain(&mut core);
    let retry = post_keyed(&mut core, "ada", "hello", "k1").unwrap();
    assert!(retry.duplicate);
    assert_eq!(retry.message, first.message);
    assert!(drain(&mut core).is_empty(), "a duplicate publishes nothing");
    assert_eq!(
        post_keyed(&mut core, "ada", "other text", "k1"),
        Err(Error::IdempotencyConflict {
            key: IdempotencyKey::parse("k1").unwrap(),
            seq: Seq(1)
        })
    );
    // Keys belong to their user.
    assert_eq!(
        post_keyed(&mut core, "bob", "hello", "k1")
            .unwrap()
            .message
            .seq,
        Seq(2)
    );
    // Once the message leaves history, its key is forgotten.
    post(&mut core, 6, "ada", "push it out").unwrap();
    let late = post_keyed(&mut core, "ada", "hello", "k1").unwrap();
    assert!(!late.duplicate);
    assert_eq!(late.message.seq, Seq(4));
    assert_eq!(core.stats().duplicates, 1);
}

#[test]
fn history_pages_forward_and_back() {
    let mut core = core_with_room(Config {
        history_len: 6,
        limits: Limits {
            max_page_len: 3,
            submit_rate: None,
            ..Limits::default()
        },
        ..Config::default()
    });
    for n in 1..=10 {
        post(&mut core, n, "ada", &format!("m{n}")).unwrap();
    }
    let page = |cursor, limit| history(&mut core.clone(), "bob", "lobby", cursor, limit).unwrap();
    let newest = page(Cursor::Newest, 100);
    assert_eq!(
        (seqs(&newest.messages), newest.first_held, newest.latest),
        (vec![8, 9, 10], Seq(5), Seq(10))
    );
    assert_eq!(seqs(&page(Cursor::Before(Seq(8)), 2).messages), vec![6, 7]);
    assert_eq!(seqs(&page(Cursor::Before(Seq(6)), 3).messages), vec![5]);
    assert_eq!(
        seqs(&page(Cursor::After(Seq(6)), 3).messages),
        vec![7, 8, 9]
    );
    let gap = page(Cursor::After(Seq(2)), 3);
    assert_eq!(
        (seqs(&gap.messages), gap.gap),
        (
            vec![5, 6, 7],
            Some(Gap {
                after: Seq(2),
                first_held: Seq(5)
            })
        )
    );
    assert_eq!(
        history(&mut core, "bob", "lobby", Cursor::After(Seq(11)), 3),
        Err(Error::ResumeAhead {
            after: Seq(11),
            latest: Seq(10)
        })
    );
}

#[test]
fn an_idle_rooms_messages_leave_memory_and_its_numbering_goes_on() {
    let mut core = core_with_room(unlimited());
    post(&mut core, 1000, "ada", "one").unwrap();
    post(&mut core, 1000, "ada", "two").unwrap();
    drain(&mut core);
    let idle = core.config().unload_after.unwrap().as_millis() as u64;
    core.handle_timeout(t(1000 + idle));
    let events: Vec<Event> = std::iter::from_fn(|| core.poll_event()).collect();
    assert_eq!(
        events,
        vec![Event::Unloaded {
            room: RoomId::parse("lobby", 64).unwrap()
        }]
    );
    // Nothing is held; the page says where the store must take over, and numbering goes on.
    let page = core
        .ask(
            t(2000 + idle),
            History {
                user: "ada".into(),
                room: "lobby".into(),
                cursor: Cursor::Newest,
                limit: None,
            },
        )
        .unwrap();
    assert!(page.messages.is_empty());
    assert_eq!((page.first_held, page.latest), (Seq(3), Seq(2)));
    let three = post(&mut core, 2000 + idle, "ada", "three").unwrap();
    assert_eq!(three.message.seq, Seq(3));
}
