//! Someone typing is announced to the room, at most every two seconds per person, not in big
//! rooms, not for the muted or banned, and never kept.

use roomcast_core::{
    Config, Core, CreateRoom, Event, Kind, Limits, Moderation, OpenListener, Resume, Submit,
    Timestamp, Typing, UserId,
};

fn at(ms: u64) -> Timestamp {
    Timestamp::from_unix_millis(1_000_000 + ms)
}

fn typing(core: &mut Core, now: Timestamp, user: &str) -> Result<bool, roomcast_core::Error> {
    let typing = Typing {
        user: user.into(),
        room: "r".into(),
    };
    core.ask(now, typing)
}

fn announced(core: &mut Core) -> Vec<String> {
    std::iter::from_fn(|| core.poll_event())
        .filter_map(|e| match e {
            Event::Typing { user, .. } => Some(user.to_string()),
            Event::RoomCreated { .. }
            | Event::Read { .. }
            | Event::ReadForgotten { .. }
            | Event::AttachmentsDropped { .. }
            | Event::MemberAdded { .. }
            | Event::MemberRemoved { .. }
            | Event::RoomClosed { .. }
            | Event::ListenerClosed { .. }
            | Event::Published(_)
            | Event::Joined { .. }
            | Event::Left { .. }
            | Event::Gap { .. }
            | Event::Here { .. }
            | Event::Unloaded { .. }
            | Event::Diverged { .. }
            | Event::Fetch { .. } => None,
        })
        .collect()
}

fn open(core: &mut Core, user: &str) {
    let open = OpenListener {
        user: user.into(),
        room: "r".into(),
        resume: Resume::Live,
        create_if_missing: false,
        replacing: None,
    };
    core.ask(at(0), open).unwrap();
}

#[test]
fn typing_is_announced_at_most_every_two_seconds_and_not_in_big_rooms() {
    let mut core = Core::new(Config {
        limits: Limits {
            submit_rate: None,
            announce_presence_up_to: 2,
            ..Limits::default()
        },
        ..Config::default()
    });
    let create = CreateRoom {
        user: "ada".into(),
        room: "r".into(),
        private: false,
    };
    core.ask(at(0), create).unwrap();
    open(&mut core, "ada");
    announced(&mut core);
    assert_eq!(typing(&mut core, at(10), "bob"), Ok(true));
    assert_eq!(
        typing(&mut core, at(1500), "bob"),
        Ok(false),
        "not again so soon"
    );
    assert_eq!(
        typing(&mut core, at(1600), "cy"),
        Ok(true),
        "each person on their own"
    );
    assert_eq!(announced(&mut core), ["bob", "cy"]);
    assert_eq!(
        typing(&mut core, at(2100), "bob"),
        Ok(true),
        "again after two seconds"
    );
    announced(&mut core);

    // Muted or banned: refused.
    for (action, code) in [
        (Moderation::Mute { seconds: 60 }, "muted"),
        (Moderation::Ban, "banned"),
    ] {
        let moderate = Submit::new(
            "ada".into(),
            "r".into(),
            String::new(),
            Kind::Moderate {
                user: UserId::parse("dan", 32).unwrap(),
                action,
            },
        );
        core.ask(at(3000), moderate).unwrap();
        let refused = typing(&mut core, at(3100), "dan").unwrap_err();
        assert_eq!(refused.code(), code);
    }

    // More people present than joins are announced for: nobody is told.
    open(&mut core, "bob");
    open(&mut core, "cy");
    announced(&mut core);
    assert_eq!(typing(&mut core, at(9000), "ada"), Ok(false));
    assert!(announced(&mut core).is_empty());
    // Nothing of it is kept: a store never sees it.
    let typing = Event::Typing {
        room: roomcast_core::RoomId::parse("r", 8).unwrap(),
        user: UserId::parse("ada", 8).unwrap(),
    };
    assert!(!typing.is_durable());
}
