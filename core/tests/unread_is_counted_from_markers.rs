//! A read marker says how far someone has read a room; what is unread is the room's messages
//! after it (not the edits, reactions or moderations among its entries), kept across a restart.

use std::collections::BTreeMap;

use roomcast_core::{
    Config, Core, CreateRoom, Emoji, Event, Kind, Limits, ListRooms, MarkRead, OpenDirect, Seq,
    StoredRoom, Submit, Timestamp, Unread,
};

fn at(ms: u64) -> Timestamp {
    Timestamp::from_unix_millis(1_000_000 + ms)
}

fn config(history_len: usize) -> Config {
    Config {
        history_len,
        limits: Limits {
            submit_rate: None,
            ..Limits::default()
        },
        ..Config::default()
    }
}

/// A core keeping `history_len` entries per room, with ada's public room `r` of three messages.
fn room_of_three(history_len: usize) -> Core {
    let mut core = Core::new(config(history_len));
    let create = CreateRoom {
        user: "ada".into(),
        room: "r".into(),
        private: false,
    };
    core.ask(at(0), create).unwrap();
    for _ in 0..3 {
        post(&mut core, "ada", "r", plain());
    }
    core
}

fn post(core: &mut Core, user: &str, room: &str, kind: Kind) -> Seq {
    let submit = Submit::new(user.into(), room.into(), "hello".into(), kind);
    core.ask(at(1), submit).unwrap().message.seq
}

fn plain() -> Kind {
    Kind::default()
}

fn mark(core: &mut Core, user: &str, room: &str, seq: u64) -> Unread {
    let mark = MarkRead {
        user: user.into(),
        room: room.into(),
        seq: Seq(seq),
    };
    core.ask(at(2), mark).unwrap()
}

/// What `user`'s listing says is unread, by room.
fn listed(core: &mut Core, user: &str) -> BTreeMap<String, Option<u64>> {
    let list = ListRooms {
        user: user.into(),
        after: None,
        limit: None,
    };
    let page = core.ask(at(3), list).unwrap();
    page.rooms
        .into_iter()
        .map(|r| (r.id.to_string(), r.unread))
        .collect()
}

#[test]
fn unread_counts_messages_after_the_marker_and_survives_a_restart() {
    let mut core = room_of_three(64);
    let mut stored = BTreeMap::new();
    assert_eq!(
        listed(&mut core, "bob")["r"],
        None,
        "a public room never read has no count"
    );
    assert_eq!(
        mark(&mut core, "bob", "r", 2),
        Unread {
            up_to: Seq(2),
            count: 1
        }
    );
    // A reaction and an edit are entries, not messages.
    let smile = Emoji::parse("🙂").unwrap();
    post(
        &mut core,
        "ada",
        "r",
        Kind::React {
            of: Seq(1),
            emoji: smile,
            added: true,
        },
    );
    post(&mut core, "ada", "r", Kind::Edit { of: Seq(3) });
    assert_eq!(listed(&mut core, "bob")["r"], Some(1));
    post(&mut core, "ada", "r", plain());
    assert_eq!(listed(&mut core, "bob")["r"], Some(2));
    assert_eq!(
        mark(&mut core, "bob", "r", 1),
        Unread {
            up_to: Seq(2),
            count: 2
        },
        "a marker never goes back"
    );
    assert_eq!(
        mark(&mut core, "bob", "r", 99),
        Unread {
            up_to: Seq(6),
            count: 0
        },
        "past the newest reads up to the newest"
    );
    assert_eq!(mark(&mut core, "bob", "r", 6).count, 0);
    post(&mut core, "ada", "r", plain());

    // A direct message is unread for both until marked.
    let direct = OpenDirect {
        user: "ada".into(),
        other: "bob".into(),
    };
    let dm = core.ask(at(4), direct).unwrap().room.id.to_string();
    post(&mut core, "ada", &dm, plain());
    assert_eq!(listed(&mut core, "bob")[&dm], Some(1));

    // What a store keeps (the fold of the durable events) gives the same counts back.
    for event in std::iter::from_fn(|| core.poll_event()) {
        StoredRoom::apply(&mut stored, &event);
        assert!(
            !matches!(&event, Event::Read { .. }) || event.is_durable(),
            "markers are kept"
        );
    }
    let mut restarted = Core::new(config(64));
    for room in stored.into_values() {
        restarted.restore_room(at(5), room);
    }
    assert_eq!(listed(&mut restarted, "bob")["r"], Some(1));
    assert_eq!(listed(&mut restarted, "bob")[&dm], Some(1));
    assert_eq!(listed(&mut restarted, "ada")["r"], None);
}

#[test]
fn a_marker_older_than_the_history_never_hides_a_message() {
    let mut core = room_of_three(3);
    let thumbs = Emoji::parse("👍").unwrap();
    for of in 1..=3 {
        let react = Kind::React {
            of: Seq(of),
            emoji: thumbs.clone(),
            added: true,
        };
        post(&mut core, "ada", "r", react);
    }
    // Entries 2 and 3 are messages out of the ring: counted as such; 4 to 6 are reactions.
    assert_eq!(mark(&mut core, "bob", "r", 1).count, 2);
    // Within the ring the count is exact.
    assert_eq!(mark(&mut core, "cy", "r", 4).count, 0);
}
