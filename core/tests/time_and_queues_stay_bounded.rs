//! Time and queues stay bounded.

mod support;

use std::time::Duration;

use support::*;

#[test]
fn empty_rooms_expire_after_the_idle_time() {
    let mut core = Core::new(Config {
        room_idle_expiry: Some(Duration::from_secs(60)),
        ..unlimited()
    });
    assert_eq!(core.poll_timeout(), None);
    create_room(&mut core, t(0), "ada", "quiet").unwrap();
    create_room(&mut core, t(0), "ada", "busy").unwrap();
    drain(&mut core);
    assert_eq!(core.poll_timeout(), Some(t(60_000)));
    let l = open_listener(&mut core, t(10_000), "bob", "busy", Resume::Live)
        .unwrap()
        .listener;
    let posted = Submit {
        user: "ada".into(),
        room: "quiet".into(),
        text: "anyone?".into(),
        idempotency_key: None,
        create_if_missing: false,
        kind: Default::default(),
        recalled: None,
    };
    submit(&mut core, t(30_000), posted).unwrap();
    drain(&mut core);
    assert_eq!(
        core.poll_timeout(),
        Some(t(90_000)),
        "a post in an empty room counts as activity"
    );
    core.handle_timeout(t(89_999));
    assert!(drain(&mut core).is_empty());
    core.handle_timeout(t(90_000));
    assert_eq!(
        drain(&mut core),
        vec![Event::RoomClosed {
            room: room("quiet"),
            reason: RoomEnd::Expired
        }]
    );
    assert_eq!(
        core.poll_timeout(),
        None,
        "a room with a listener never expires"
    );
    core.handle_timeout(t(1_000_000));
    assert!(drain(&mut core).is_empty());
    close_listener(&mut core, t(1_000_000), l);
    drain(&mut core);
    assert_eq!(core.poll_timeout(), Some(t(1_060_000)));
    core.handle_timeout(t(1_060_000));
    assert_eq!(
        drain(&mut core),
        vec![Event::RoomClosed {
            room: room("busy"),
            reason: RoomEnd::Expired
        }]
    );
    assert_eq!(core.stats().rooms, 0);
}

#[test]
fn expiry_is_batched_so_no_call_floods_the_queue() {
    let rooms = EXPIRE_BATCH + 10;
    let mut core = Core::new(Config {
        room_idle_expiry: Some(Duration::from_secs(1)),
        limits: Limits {
            // Below the cap's reserve, which one owner of many rooms does not get.
            max_rooms: rooms * 2,
            max_rooms_per_user: rooms,
            room_pace: None,
            ..Limits::default()
        },
        ..Config::default()
    });
    for i in 0..rooms {
        create_room(&mut core, t(0), "ada", &format!("room{i}")).unwrap();
    }
    drain(&mut core);
    core.handle_timeout(t(1000));
    assert_eq!(drain(&mut core).len(), EXPIRE_BATCH);
    assert!(
        core.poll_timeout().is_some_and(|at| at <= t(1000)),
        "the rest is still due"
    );
    core.handle_timeout(t(1000));
    assert_eq!(drain(&mut core).len(), 10);
    assert_eq!(core.poll_timeout(), None);
}

#[test]
fn time_never_runs_backwards() {
    let mut core = core_with_room(unlimited());
    post(&mut core, 5000, "ada", "later").unwrap();
    let earlier = post(&mut core, 4000, "ada", "clock stepped back").unwrap();
    assert_eq!(earlier.message.sent_at, t(5000));
}

#[test]
fn undrained_events_are_capped_and_counted() {
    let mut core = core_with_room(unlimited());
    for n in 0..MAX_QUEUED_EVENTS as u64 + 3 {
        post(&mut core, n, "ada", "x").unwrap();
    }
    assert_eq!(core.stats().events_dropped, 3);
    assert_eq!(drain(&mut core).len(), MAX_QUEUED_EVENTS);
}

#[test]
fn handle_dispatches_every_command() {
    let mut core = Core::new(unlimited());
    let user = || "ada".to_string();
    let lobby = || "lobby".to_string();
    let run = |core: &mut Core, c: Command| core.handle(t(1), c).unwrap();
    let create = CreateRoom {
        user: user(),
        room: lobby(),
        private: false,
    };
    assert!(matches!(run(&mut core, create.into()), Reply::CreateRoom(c) if c.created));
    let open = OpenListener {
        user: user(),
        room: lobby(),
        resume: Resume::Live,
        create_if_missing: false,
        replacing: None,
    };
    let Reply::OpenListener(opened) = run(&mut core, open.into()) else {
        panic!("wrong reply")
    };
    let submit = submit_to("lobby", "ada", "hi", None);
    assert!(matches!(run(&mut core, submit.into()), Reply::Submit(s) if s.message.seq == Seq(1)));
    let history = History {
        user: user(),
        room: lobby(),
        cursor: Cursor::Newest,
        limit: None,
    };
    assert!(
        matches!(run(&mut core, history.into()), Reply::History(p) if p.messages.len() == 1 && p.limit == 50)
    );
    let view = ViewRoom {
        user: user(),
        room: lobby(),
    };
    assert!(matches!(
        run(&mut core, view.into()),
        Reply::ViewRoom(v) if v.room.latest == Seq(1) && v.room.listeners == 1 && v.presence.len() == 1 && v.may_delete
    ));
    let list = ListRooms {
        user: user(),
        after: None,
        limit: None,
    };
    assert!(matches!(run(&mut core, list.into()), Reply::ListRooms(r) if r.rooms.len() == 1));
    let direct = OpenDirect {
        user: user(),
        other: "bob".into(),
    };
    let Reply::OpenDirect(dm) = run(&mut core, direct.into()) else {
        panic!("wrong reply")
    };
    let change = ChangeMember {
        user: user(),
        room: dm.room.id.to_string(),
        member: "cy".into(),
        change: MemberChange::Add,
    };
    assert_eq!(
        core.handle(t(1), change.into()),
        Err(Error::PermissionDenied {
            action: Action::ManageMembers
        })
    );
    let close = CloseListener {
        listener: opened.listener,
    };
    assert_eq!(run(&mut core, close.into()), Reply::CloseListener(true));
    let delete = || DeleteRoom {
        user: user(),
        room: lobby(),
    };
    assert_eq!(run(&mut core, delete().into()), Reply::DeleteRoom(()));
    assert_eq!(
        core.handle(t(1), delete().into()),
        Err(Error::RoomNotFound {
            room: room("lobby")
        })
    );
    assert_eq!(
        core.stats().refused.values().sum::<u64>(),
        2,
        "each refusal is counted once"
    );
}
