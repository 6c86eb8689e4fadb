//! Rooms are created listed and deleted.

mod support;

use std::collections::BTreeSet;

use support::*;

#[test]
fn create_is_idempotent_and_announced_once() {
    let mut core = Core::new(Config::default());
    let first = create_room(&mut core, t(1), "ada", "lobby").unwrap();
    assert!(first.created);
    assert_eq!(first.room.latest, Seq::ZERO);
    assert_eq!(
        drain(&mut core),
        vec![Event::RoomCreated {
            room: room("lobby"),
            created_at: t(1),
            owner: Some(user("ada")),
            private: false,
        }]
    );
    let again = create_room(&mut core, t(2), "bob", "lobby").unwrap();
    assert!(!again.created);
    assert_eq!(again.room.created_at, t(1));
    assert!(drain(&mut core).is_empty());
}

#[test]
fn create_refusals_name_the_rule() {
    let mut core = Core::new(Config {
        limits: Limits {
            max_rooms: 1,
            room_id_max_len: 8,
            ..Limits::default()
        },
        ..Config::default()
    });
    assert_eq!(
        create_room(&mut core, t(1), "ada", "a/b"),
        Err(Error::InvalidRoomId(NameError::BadCharacter { ch: '/' }))
    );
    assert_eq!(
        create_room(&mut core, t(1), "ada", "much-too-long"),
        Err(Error::InvalidRoomId(NameError::TooLong { len: 13, max: 8 }))
    );
    assert_eq!(
        create_room(&mut core, t(1), "", "lobby"),
        Err(Error::InvalidUserName(NameError::Empty))
    );
    create_room(&mut core, t(1), "ada", "one").unwrap();
    assert_eq!(
        create_room(&mut core, t(1), "ada", "two"),
        Err(Error::TooManyRooms { max: 1 })
    );
    // An existing room is still returned at the limit.
    assert!(!create_room(&mut core, t(1), "ada", "one").unwrap().created);
    assert_eq!(core.stats().refused.get("too-many-rooms"), Some(&1));
    assert_eq!(core.stats().refused.get("invalid-room-id"), Some(&2));
}

#[test]
fn policy_is_consulted_for_create_and_delete() {
    let policy = Policy {
        admins: BTreeSet::from(["root".to_owned()]),
        create_rooms: Who::Admins,
        delete_rooms: Who::Admins,
        ..Policy::default()
    };
    let mut core = Core::new(Config {
        policy,
        ..Config::default()
    });
    assert_eq!(
        create_room(&mut core, t(1), "ada", "lobby"),
        Err(Error::PermissionDenied {
            action: Action::CreateRoom
        })
    );
    create_room(&mut core, t(1), "root", "lobby").unwrap();
    assert_eq!(
        delete_room(&mut core, t(1), "ada", "lobby"),
        Err(Error::PermissionDenied {
            action: Action::DeleteRoom
        })
    );
    assert!(post(&mut core, 2, "ada", "anyone may post").is_ok());
    delete_room(&mut core, t(3), "root", "lobby").unwrap();
}

#[test]
fn delete_ends_listeners_and_forgets_everything() {
    let mut core = core_with_room(unlimited());
    let l = open_listener(&mut core, t(2), "bob", "lobby", Resume::Live)
        .unwrap()
        .listener;
    let first = post(&mut core, 3, "ada", "hello").unwrap().message;
    drain(&mut core);
    delete_room(&mut core, t(4), "ada", "lobby").unwrap();
    assert_eq!(
        drain(&mut core),
        vec![Event::RoomClosed {
            room: room("lobby"),
            reason: RoomEnd::Deleted {
                by: Some(user("ada"))
            }
        }]
    );
    assert_eq!(core.stats().listeners, 0);
    assert!(
        !close_listener(&mut core, t(5), l),
        "the listener ended with its room"
    );
    assert!(drain(&mut core).is_empty(), "no Left for a deleted room");
    assert_eq!(
        delete_room(&mut core, t(5), "ada", "lobby"),
        Err(Error::RoomNotFound {
            room: room("lobby")
        })
    );
    // A re-created room starts again at 1, but message ids never repeat.
    create_room(&mut core, t(6), "ada", "lobby").unwrap();
    let again = post(&mut core, 7, "ada", "hello again").unwrap().message;
    assert_eq!(again.seq, Seq(1));
    assert!(again.id > first.id);
    assert_eq!(
        history(&mut core, "ada", "lobby", Cursor::Newest, 10)
            .unwrap()
            .messages,
        vec![again]
    );
}

#[test]
fn rooms_are_listed_by_id_and_paged() {
    let mut core = Core::new(Config {
        limits: Limits {
            max_page_len: 2,
            ..Limits::default()
        },
        ..Config::default()
    });
    for id in ["c", "a", "b"] {
        create_room(&mut core, t(1), "ada", id).unwrap();
    }
    let ids = |page: RoomPage| {
        page.rooms
            .into_iter()
            .map(|r| r.id.to_string())
            .collect::<Vec<_>>()
    };
    let next = |page: RoomPage| page.next_after.map(|id| id.to_string());
    assert_eq!(
        next(rooms(&mut core, "ada", None, 100).unwrap()).as_deref(),
        Some("b"),
        "capped pages still point on"
    );
    assert_eq!(
        next(rooms(&mut core, "ada", None, 1).unwrap()).as_deref(),
        Some("a")
    );
    assert_eq!(
        next(rooms(&mut core, "ada", Some("a"), 100).unwrap()),
        None,
        "the last page says so"
    );
    assert_eq!(
        ids(rooms(&mut core, "ada", None, 100).unwrap()),
        ["a", "b"],
        "capped at the page limit"
    );
    assert_eq!(
        ids(rooms(&mut core, "ada", Some("a"), 100).unwrap()),
        ["b", "c"]
    );
    assert_eq!(
        ids(rooms(&mut core, "ada", Some("c"), 100).unwrap()),
        Vec::<String>::new()
    );
    assert_eq!(ids(rooms(&mut core, "ada", None, 1).unwrap()), ["a"]);
}

#[test]
fn a_direct_room_is_found_by_either_side_and_closed_to_others() {
    let mut core = Core::new(unlimited());
    let first = open_direct(&mut core, t(1), "ada", "bob").unwrap();
    assert!(first.created && first.room.private && first.room.owner.is_none());
    let id = first.room.id.clone();
    assert!(id.as_str().starts_with("dm-"));
    let events = drain(&mut core);
    assert_eq!(events.len(), 3, "created, then both members: {events:?}");
    let again = open_direct(&mut core, t(2), "bob", "ada").unwrap();
    assert_eq!((again.created, again.room.id), (false, id.clone()));
    assert!(open_listener(&mut core, t(3), "bob", id.as_str(), Resume::Live).is_ok());
    assert!(history(&mut core, "cy", id.as_str(), Cursor::Newest, 5).is_err());
    assert!(matches!(
        open_direct(&mut core, t(3), "ada", "ada"),
        Err(Error::Membership(_))
    ));
    assert!(matches!(
        invite(&mut core, t(3), "ada", id.as_str(), "cy"),
        Err(Error::PermissionDenied { .. })
    ));
    // Another pair gets another room.
    let other = open_direct(&mut core, t(4), "ada", "cy").unwrap();
    assert_ne!(other.room.id, id);
}

#[test]
fn only_owners_and_admins_delete() {
    let mut core = Core::new(Config {
        policy: Policy {
            admins: BTreeSet::from(["root".to_owned()]),
            ..Policy::default()
        },
        ..unlimited()
    });
    create_room(&mut core, t(1), "ada", "a").unwrap();
    create_room(&mut core, t(1), "ada", "b").unwrap();
    assert_eq!(
        delete_room(&mut core, t(2), "bob", "a"),
        Err(Error::PermissionDenied {
            action: Action::DeleteRoom
        })
    );
    assert_eq!(delete_room(&mut core, t(2), "ada", "a"), Ok(()));
    assert_eq!(delete_room(&mut core, t(2), "root", "b"), Ok(()));
}
