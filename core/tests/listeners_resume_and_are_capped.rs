//! Listeners resume and are capped.

mod support;

use support::*;

#[test]
fn presence_joins_on_first_listener_and_leaves_on_last() {
    let mut core = core_with_room(unlimited());
    let a1 = open_listener(&mut core, t(2), "ada", "lobby", Resume::Live)
        .unwrap()
        .listener;
    assert_eq!(
        drain(&mut core),
        vec![Event::Joined {
            room: room("lobby"),
            user: user("ada")
        }]
    );
    let a2 = open_listener(&mut core, t(2), "ada", "lobby", Resume::Live)
        .unwrap()
        .listener;
    assert!(
        drain(&mut core).is_empty(),
        "a second tab is not a second join"
    );
    open_listener(&mut core, t(2), "bob", "lobby", Resume::Live).unwrap();
    drain(&mut core);
    let who = presence(&mut core, "cy", "lobby").unwrap();
    assert_eq!(
        who,
        vec![
            PresenceEntry {
                user: user("ada"),
                listeners: 2
            },
            PresenceEntry {
                user: user("bob"),
                listeners: 1
            }
        ]
    );
    assert!(close_listener(&mut core, t(3), a1));
    assert!(drain(&mut core).is_empty());
    assert!(close_listener(&mut core, t(3), a2));
    assert_eq!(
        drain(&mut core),
        vec![Event::Left {
            room: room("lobby"),
            user: user("ada")
        }]
    );
    assert!(
        !close_listener(&mut core, t(3), a2),
        "closing twice is fine"
    );
    assert!(
        !close_listener(&mut core, t(3), ListenerId(999)),
        "closing an unknown listener is fine"
    );
    assert!(drain(&mut core).is_empty());
    assert_eq!(
        presence(&mut core, "cy", "nowhere"),
        Err(Error::RoomNotFound {
            room: room("nowhere")
        })
    );
}

#[test]
fn big_rooms_stop_announcing_joins_and_leaves() {
    let mut config = unlimited();
    config.limits.announce_presence_up_to = 2;
    let mut core = core_with_room(config);
    let open = |core: &mut Core, who: &str| {
        let l = open_listener(core, t(2), who, "lobby", Resume::Live).unwrap();
        (l.listener, drain(core).len())
    };
    let (_, ada) = open(&mut core, "ada");
    let (_, bob) = open(&mut core, "bob");
    let (cy, cy_joined) = open(&mut core, "cy");
    assert_eq!(
        (ada, bob, cy_joined),
        (1, 1, 0),
        "the third user is not announced"
    );
    assert_eq!(
        presence(&mut core, "ada", "lobby").unwrap().len(),
        3,
        "but is present"
    );
    assert!(close_listener(&mut core, t(3), cy));
    assert!(drain(&mut core).is_empty(), "nor is their leaving");
    let (cy, _) = open(&mut core, "cy");
    let (_, _) = open(&mut core, "dee");
    close_listener(&mut core, t(3), cy);
    close_listener(&mut core, t(3), cy);
    assert!(drain(&mut core).is_empty(), "three remain: still quiet");
}

#[test]
fn listeners_per_room_are_capped() {
    let mut core = core_with_room(Config {
        limits: Limits {
            max_listeners_per_room: 2,
            ..Limits::default()
        },
        ..Config::default()
    });
    let l = open_listener(&mut core, t(2), "ada", "lobby", Resume::Live)
        .unwrap()
        .listener;
    open_listener(&mut core, t(2), "bob", "lobby", Resume::Live).unwrap();
    assert_eq!(
        open_listener(&mut core, t(2), "cy", "lobby", Resume::Live),
        Err(Error::TooManyListeners {
            room: room("lobby"),
            max: 2
        })
    );
    close_listener(&mut core, t(3), l);
    assert!(open_listener(&mut core, t(3), "cy", "lobby", Resume::Live).is_ok());
}

#[test]
fn listeners_per_user_are_capped_in_each_room() {
    let mut core = core_with_room(Config {
        limits: Limits {
            max_listeners_per_user: 2,
            ..Limits::default()
        },
        ..Config::default()
    });
    let first = open_listener(&mut core, t(2), "ada", "lobby", Resume::Live)
        .unwrap()
        .listener;
    open_listener(&mut core, t(2), "ada", "lobby", Resume::Live).unwrap();
    assert_eq!(
        open_listener(&mut core, t(2), "ada", "lobby", Resume::Live),
        Err(Error::TooManyUserListeners {
            room: room("lobby"),
            max: 2
        })
    );
    assert!(
        open_listener(&mut core, t(2), "bob", "lobby", Resume::Live).is_ok(),
        "others are not held up"
    );
    close_listener(&mut core, t(3), first);
    assert!(open_listener(&mut core, t(3), "ada", "lobby", Resume::Live).is_ok());
}

#[test]
fn listeners_on_the_whole_server_are_capped() {
    let mut core = core_with_room(Config {
        limits: Limits {
            max_listeners: 2,
            ..Limits::default()
        },
        ..Config::default()
    });
    create_room(&mut core, t(1), "ada", "other").unwrap();
    let first = open_listener(&mut core, t(2), "ada", "lobby", Resume::Live)
        .unwrap()
        .listener;
    open_listener(&mut core, t(2), "bob", "other", Resume::Live).unwrap();
    assert_eq!(
        open_listener(&mut core, t(2), "cy", "other", Resume::Live),
        Err(Error::ServerFull { max: 2 })
    );
    close_listener(&mut core, t(3), first);
    assert!(open_listener(&mut core, t(3), "cy", "other", Resume::Live).is_ok());
}

#[test]
fn resume_yields_exactly_what_was_missed_or_a_gap() {
    let mut core = core_with_room(Config {
        history_len: 5,
        ..unlimited()
    });
    for n in 1..=8 {
        post(&mut core, n, "ada", &format!("m{n}")).unwrap();
    }
    let open = |core: &mut Core, resume| open_listener(core, t(20), "bob", "lobby", resume);
    let live = open(&mut core, Resume::Live).unwrap();
    assert_eq!(
        (live.backlog.len(), live.gap, live.latest),
        (0, None, Seq(8))
    );
    let caught_up = open(&mut core, Resume::After(Seq(8))).unwrap();
    assert_eq!((seqs(&caught_up.backlog), caught_up.gap), (vec![], None));
    let behind = open(&mut core, Resume::After(Seq(5))).unwrap();
    assert_eq!((seqs(&behind.backlog), behind.gap), (vec![6, 7, 8], None));
    let edge = open(&mut core, Resume::After(Seq(3))).unwrap();
    assert_eq!((seqs(&edge.backlog), edge.gap), (vec![4, 5, 6, 7, 8], None));
    let too_old = open(&mut core, Resume::After(Seq(1))).unwrap();
    assert_eq!(seqs(&too_old.backlog), vec![4, 5, 6, 7, 8]);
    assert_eq!(
        too_old.gap,
        Some(Gap {
            after: Seq(1),
            first_held: Seq(4)
        })
    );
    let from_start = open(&mut core, Resume::After(Seq::ZERO)).unwrap();
    assert_eq!(
        from_start.gap,
        Some(Gap {
            after: Seq::ZERO,
            first_held: Seq(4)
        })
    );
    assert_eq!(
        open(&mut core, Resume::After(Seq(9))),
        Err(Error::ResumeAhead {
            after: Seq(9),
            latest: Seq(8)
        })
    );
    // Backlog then live: the next published message is latest + 1.
    drain(&mut core);
    let next = post(&mut core, 21, "ada", "live").unwrap().message;
    assert_eq!(next.seq, behind.latest.next());
}
