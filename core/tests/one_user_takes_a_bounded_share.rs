//! One user (a guest above all) takes a bounded share of what the server holds: rooms owned,
//! listeners open, read markers, uploads; each with its own pace; the last part of each global
//! cap kept for those who hold little; and what a guest leaves goes when the guest does.

mod support;

use std::time::Duration;

use roomcast_core::{Depart, Departed, MarkRead, Pace, Paced, RESERVE_HOLDS, Upload};
use support::*;

/// Generous limits but for the one under test.
fn with(limits: impl FnOnce(&mut Limits)) -> Config {
    let mut config = unlimited();
    limits(&mut config.limits);
    config
}

const GUEST: &str = "zoe~g1";
const ACCOUNT: &str = "ada~u1";

#[test]
fn rooms_owned_are_capped_per_user_a_guest_at_their_share() {
    let mut core = Core::new(with(|l| {
        l.max_rooms_per_user = 8;
        l.guest_share = 25;
    }));
    for i in 0..8 {
        create_room(&mut core, t(0), ACCOUNT, &format!("a{i}")).unwrap();
    }
    assert_eq!(
        create_room(&mut core, t(0), ACCOUNT, "a8"),
        Err(Error::TooManyOwnedRooms { max: 8 })
    );
    for i in 0..2 {
        create_room(&mut core, t(0), GUEST, &format!("g{i}")).unwrap();
    }
    assert_eq!(
        create_room(&mut core, t(0), GUEST, "g2"),
        Err(Error::TooManyOwnedRooms { max: 2 }),
        "a guest owns a quarter"
    );
    // Creating an existing room is no creation.
    assert!(create_room(&mut core, t(0), GUEST, "a0").is_ok());
    delete_room(&mut core, t(0), GUEST, "g0").unwrap();
    assert!(
        create_room(&mut core, t(0), GUEST, "g2").is_ok(),
        "a deleted room frees its place"
    );
}

#[test]
fn creating_rooms_has_a_pace_of_its_own() {
    let mut core = Core::new(with(|l| {
        l.room_pace = Some(Pace::new(2, Duration::from_secs(60)));
    }));
    create_room(&mut core, t(0), ACCOUNT, "one").unwrap();
    open_direct(&mut core, t(0), ACCOUNT, "bob").unwrap();
    assert_eq!(
        create_room(&mut core, t(0), ACCOUNT, "three"),
        Err(Error::Paced {
            what: Paced::Rooms,
            retry_after: Duration::from_secs(30)
        }),
        "a direct message's room counts"
    );
    assert!(
        open_direct(&mut core, t(0), ACCOUNT, "bob").is_ok(),
        "finding one does not"
    );
    assert!(create_room(&mut core, t(30_000), ACCOUNT, "three").is_ok());
    // A guest's bucket is their share (at least one).
    assert!(create_room(&mut core, t(0), GUEST, "g").is_ok());
    assert!(matches!(
        create_room(&mut core, t(0), GUEST, "g2"),
        Err(Error::Paced { .. })
    ));
}

#[test]
fn the_last_rooms_are_kept_for_those_who_own_few() {
    let mut core = Core::new(with(|l| l.max_rooms = 20));
    for i in 0..18 {
        create_room(&mut core, t(0), ACCOUNT, &format!("r{i}")).unwrap();
    }
    assert_eq!(
        create_room(&mut core, t(0), ACCOUNT, "r18"),
        Err(Error::TooManyRooms { max: 20 }),
        "ada owns many: the reserve is not hers"
    );
    for i in 0..2 {
        create_room(&mut core, t(0), "bob", &format!("b{i}")).unwrap();
    }
    assert!(matches!(
        create_room(&mut core, t(0), "cy", "c"),
        Err(Error::TooManyRooms { .. })
    ));
}

#[test]
fn listeners_are_capped_per_user_across_rooms_and_the_reserve_is_kept() {
    let mut core = Core::new(with(|l| {
        l.max_user_listeners = 8;
        l.max_listeners = 40;
    }));
    for room in ["a", "b", "c"] {
        create_room(&mut core, t(0), "owner", room).unwrap();
    }
    for i in 0..8 {
        let room = ["a", "b", "c"][i % 3];
        open_listener(&mut core, t(0), ACCOUNT, room, Resume::Live).unwrap();
    }
    assert_eq!(
        open_listener(&mut core, t(0), ACCOUNT, "a", Resume::Live).map(|o| o.listener),
        Err(Error::TooManyOwnListeners { max: 8 })
    );
    for i in 0..2 {
        open_listener(&mut core, t(0), GUEST, ["a", "b"][i], Resume::Live).unwrap();
    }
    assert!(matches!(
        open_listener(&mut core, t(0), GUEST, "c", Resume::Live),
        Err(Error::TooManyOwnListeners { max: 2 })
    ));
    // Fill the server up to its reserve with users of 4 listeners each.
    for u in 0..6 {
        for _ in 0..RESERVE_HOLDS {
            open_listener(&mut core, t(0), &format!("u{u}"), "a", Resume::Live).unwrap();
        }
    }
    for _ in 0..2 {
        open_listener(&mut core, t(0), "u6", "c", Resume::Live).unwrap();
    }
    assert_eq!(core.stats().listeners, 36, "all but the reserve");
    assert!(
        matches!(
            open_listener(&mut core, t(0), "u0", "a", Resume::Live),
            Err(Error::ServerFull { .. })
        ),
        "in the reserve, those holding many get none"
    );
    for _ in 0..RESERVE_HOLDS {
        open_listener(&mut core, t(0), "victim", "b", Resume::Live).unwrap();
    }
    assert!(matches!(
        open_listener(&mut core, t(0), "late", "b", Resume::Live),
        Err(Error::ServerFull { max: 40 })
    ));
}

#[test]
fn a_read_marker_is_kept_only_when_it_moves_and_moving_it_has_a_pace() {
    let mut core = Core::new(with(|l| {
        l.read_pace = Some(Pace::new(2, Duration::from_secs(60)));
    }));
    create_room(&mut core, t(0), "owner", "empty").unwrap();
    drain(&mut core);
    let mark = |core: &mut Core, room: &str, seq: u64| {
        core.ask(
            t(0),
            MarkRead {
                user: ACCOUNT.into(),
                room: room.into(),
                seq: Seq(seq),
            },
        )
    };
    for _ in 0..5 {
        mark(&mut core, "empty", 0).unwrap();
        mark(&mut core, "empty", 9).unwrap();
    }
    assert!(
        drain(&mut core).is_empty(),
        "nothing to mark in an empty room"
    );
    core_with_messages(&mut core);
    mark(&mut core, "lobby", 1).unwrap();
    mark(&mut core, "lobby", 1).unwrap();
    mark(&mut core, "lobby", 2).unwrap();
    let kept = drain(&mut core)
        .into_iter()
        .filter(|e| matches!(e, Event::Read { .. }))
        .count();
    assert_eq!(kept, 2, "only markers that moved");
    assert!(matches!(
        mark(&mut core, "lobby", 3),
        Err(Error::Paced {
            what: Paced::ReadMarkers,
            ..
        })
    ));
}

/// Makes the room `lobby` with three messages.
fn core_with_messages(core: &mut Core) {
    create_room(core, t(0), "owner", "lobby").unwrap();
    for i in 0..3 {
        submit(
            core,
            t(0),
            submit_to("lobby", "owner", &format!("m{i}"), None),
        )
        .unwrap();
    }
    drain(core);
}

#[test]
fn uploads_have_a_pace_of_their_own() {
    let mut core = Core::new(with(|l| {
        l.upload_pace = Some(Pace::new(1, Duration::from_secs(60)));
    }));
    create_room(&mut core, t(0), "owner", "lobby").unwrap();
    let upload = || Upload {
        user: ACCOUNT.into(),
        room: "lobby".into(),
        size: Some(10),
    };
    core.ask(t(0), upload()).unwrap();
    assert!(matches!(
        core.ask(t(0), upload()),
        Err(Error::Paced {
            what: Paced::Uploads,
            ..
        })
    ));
    assert!(
        submit(&mut core, t(0), submit_to("lobby", ACCOUNT, "words", None)).is_ok(),
        "posting is paced apart"
    );
}

#[test]
fn a_departed_guest_leaves_no_empty_room_and_no_read_marker() {
    let mut core = Core::new(unlimited());
    core_with_messages(&mut core);
    create_room(&mut core, t(0), GUEST, "empty").unwrap();
    create_room(&mut core, t(0), GUEST, "spoken").unwrap();
    submit(&mut core, t(0), submit_to("spoken", "owner", "hi", None)).unwrap();
    let listener = open_listener(&mut core, t(0), "owner", "empty", Resume::Live)
        .unwrap()
        .listener;
    for user in [GUEST, ACCOUNT] {
        core.ask(
            t(0),
            MarkRead {
                user: user.into(),
                room: "lobby".into(),
                seq: Seq(2),
            },
        )
        .unwrap();
    }
    drain(&mut core);
    let departed = core.ask(t(0), Depart { user: GUEST.into() }).unwrap();
    assert_eq!(
        departed,
        Departed {
            rooms: vec![room("empty")],
            markers: 1
        }
    );
    let events = drain(&mut core);
    assert!(events.contains(&Event::RoomClosed {
        room: room("empty"),
        reason: RoomEnd::Deleted { by: None }
    }));
    assert!(events.contains(&Event::ReadForgotten {
        room: room("lobby"),
        user: user(GUEST)
    }));
    assert!(
        !close_listener(&mut core, t(0), listener),
        "closed with its room"
    );
    assert!(
        room_summary(&mut core, "owner", "spoken").is_ok(),
        "a room with words stays"
    );
    let ada = core.room_view(ACCOUNT, "lobby").unwrap().room;
    assert_eq!(ada.unread, Some(1), "an account's marker stays");
    assert_eq!(
        core.ask(t(0), Depart { user: GUEST.into() }),
        Ok(Departed::default()),
        "departing again reclaims nothing"
    );
}
