//! What core's behaviour tests share: time, configs, and one short function per command that
//! builds it and sends it through [`Core::ask`], the typed form of [`Core::handle`].
#![allow(dead_code, reason = "each test file uses some of these")]

use std::collections::BTreeMap;
use std::sync::Arc;

pub use roomcast_core::*;

pub fn t(ms: u64) -> Timestamp {
    Timestamp::from_unix_millis(ms)
}

/// Default limits without the submit rate, so tests post as fast as they like.
pub fn unlimited() -> Config {
    Config {
        limits: Limits {
            submit_rate: None,
            room_pace: None,
            upload_pace: None,
            read_pace: None,
            ..Limits::default()
        },
        ..Config::default()
    }
}

/// A core with the public room `lobby`, owned by ada, its events drained.
pub fn core_with_room(config: Config) -> Core {
    let mut core = Core::new(config);
    create_room(&mut core, t(1), "ada", "lobby").unwrap();
    drain(&mut core);
    core
}

/// Every event queued, oldest first.
pub fn drain(core: &mut Core) -> Vec<Event> {
    std::iter::from_fn(|| core.poll_event()).collect()
}

pub fn post(core: &mut Core, now: u64, user: &str, text: &str) -> Result<Submitted, Error> {
    submit(core, t(now), submit_to("lobby", user, text, None))
}

pub fn post_keyed(core: &mut Core, user: &str, text: &str, key: &str) -> Result<Submitted, Error> {
    submit(core, t(5), submit_to("lobby", user, text, Some(key)))
}

pub fn submit_to(room: &str, user: &str, text: &str, key: Option<&str>) -> Submit {
    Submit {
        user: user.into(),
        room: room.into(),
        text: text.into(),
        idempotency_key: key.map(Into::into),
        create_if_missing: false,
        kind: Default::default(),
        recalled: None,
    }
}

pub fn seqs(messages: &[Arc<Message>]) -> Vec<u64> {
    messages.iter().map(|m| m.seq.0).collect()
}

pub fn room(id: &str) -> RoomId {
    RoomId::parse(id, 64).unwrap()
}

pub fn user(name: &str) -> UserId {
    UserId::parse(name, 32).unwrap()
}

fn create(
    core: &mut Core,
    now: Timestamp,
    (user, room): (&str, &str),
    private: bool,
) -> Result<Created, Error> {
    let (user, room) = (user.into(), room.into());
    core.ask(
        now,
        CreateRoom {
            user,
            room,
            private,
        },
    )
}

pub fn create_room(
    core: &mut Core,
    now: Timestamp,
    user: &str,
    room: &str,
) -> Result<Created, Error> {
    create(core, now, (user, room), false)
}

pub fn create_private_room(
    core: &mut Core,
    now: Timestamp,
    user: &str,
    room: &str,
) -> Result<Created, Error> {
    create(core, now, (user, room), true)
}

pub fn open_direct(
    core: &mut Core,
    now: Timestamp,
    user: &str,
    other: &str,
) -> Result<Created, Error> {
    let (user, other) = (user.into(), other.into());
    core.ask(now, OpenDirect { user, other })
}

fn change(
    core: &mut Core,
    now: Timestamp,
    (user, room, member): (&str, &str, &str),
    change: MemberChange,
) -> Result<bool, Error> {
    let (user, room, member) = (user.into(), room.into(), member.into());
    core.ask(
        now,
        ChangeMember {
            user,
            room,
            member,
            change,
        },
    )
}

pub fn invite(
    core: &mut Core,
    now: Timestamp,
    user: &str,
    room: &str,
    member: &str,
) -> Result<bool, Error> {
    change(core, now, (user, room, member), MemberChange::Add)
}

pub fn remove_member(
    core: &mut Core,
    now: Timestamp,
    user: &str,
    room: &str,
    member: &str,
) -> Result<bool, Error> {
    change(core, now, (user, room, member), MemberChange::Remove)
}

pub fn delete_room(core: &mut Core, now: Timestamp, user: &str, room: &str) -> Result<(), Error> {
    let (user, room) = (user.into(), room.into());
    core.ask(now, DeleteRoom { user, room })
}

pub fn rooms(
    core: &mut Core,
    user: &str,
    after: Option<&str>,
    limit: usize,
) -> Result<RoomPage, Error> {
    let (user, after) = (user.into(), after.map(Into::into));
    core.ask(
        t(0),
        ListRooms {
            user,
            after,
            limit: Some(limit),
        },
    )
}

fn view(core: &mut Core, user: &str, room: &str) -> Result<RoomView, Error> {
    let (user, room) = (user.into(), room.into());
    core.ask(t(0), ViewRoom { user, room })
}

pub fn room_summary(core: &mut Core, user: &str, room: &str) -> Result<RoomSummary, Error> {
    view(core, user, room).map(|v| v.room)
}

pub fn presence(core: &mut Core, user: &str, room: &str) -> Result<Vec<PresenceEntry>, Error> {
    view(core, user, room).map(|v| v.presence)
}

pub fn open_listener(
    core: &mut Core,
    now: Timestamp,
    user: &str,
    room: &str,
    resume: Resume,
) -> Result<Opened, Error> {
    let (user, room) = (user.into(), room.into());
    core.ask(
        now,
        OpenListener {
            user,
            room,
            resume,
            create_if_missing: false,
            replacing: None,
        },
    )
}

pub fn close_listener(core: &mut Core, now: Timestamp, listener: ListenerId) -> bool {
    core.ask(now, CloseListener { listener })
        .expect("closing never fails")
}

pub fn submit(core: &mut Core, now: Timestamp, submit: Submit) -> Result<Submitted, Error> {
    core.ask(now, submit)
}

pub fn history(
    core: &mut Core,
    user: &str,
    room: &str,
    cursor: Cursor,
    limit: usize,
) -> Result<HistoryPage, Error> {
    let (user, room) = (user.into(), room.into());
    core.ask(
        t(0),
        History {
            user,
            room,
            cursor,
            limit: Some(limit),
        },
    )
}

/// A core rebuilt as a durable host would after a restart: the durable events folded into
/// stored rooms (as the store keeps them), the newest `history_len_stored` messages of each.
pub fn restored_from(events: &[Event], config: Config, history_len_stored: usize) -> Core {
    let mut stored: BTreeMap<RoomId, StoredRoom> = BTreeMap::new();
    let mut next_id = MessageId(1);
    for event in events {
        StoredRoom::apply(&mut stored, event);
        if let Event::Published(m) = event {
            next_id = MessageId(m.id.0 + 1);
        }
    }
    let mut core = Core::new(config);
    for (_, mut room) in stored {
        let keep = room.recent.len().saturating_sub(history_len_stored);
        room.recent.drain(..keep);
        core.restore_room(t(100), room);
    }
    core.restore_message_ids(next_id);
    assert!(drain(&mut core).is_empty(), "restoring announces nothing");
    core
}
