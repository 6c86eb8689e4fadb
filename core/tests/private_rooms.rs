//! Property: whatever the command sequence, no event of a private room is ever addressed to a
//! non-member, and no non-member can read, listen or post there.
//!
//! The test plays the host: it keeps the listeners core opened (ending them as the events say)
//! and a mirror of every room's membership built from the events alone. Each event is delivered
//! to the host's listeners on its room, and each recipient must be a member.

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;
use roomcast_core::{
    Config, Core, Cursor, Event, Limits, ListenerId, Resume, RoomId, Submit, Timestamp, UserName,
};

const USERS: [&str; 4] = ["ada", "bob", "cy", "dee"];
const ROOMS: [&str; 2] = ["p", "q"];

#[derive(Debug, Clone)]
enum Op {
    CreatePublic(usize, usize),
    CreatePrivate(usize, usize),
    Invite(usize, usize, usize),
    Remove(usize, usize, usize),
    Direct(usize, usize),
    Open(usize, usize),
    Close(usize),
    Post(usize, usize),
    Read(usize, usize),
    Delete(usize, usize),
}

fn op() -> impl Strategy<Value = Op> {
    let u = || 0..USERS.len();
    // Rooms: the two named ones, and the direct rooms found so far (indices past them).
    let r = || 0..5usize;
    prop_oneof![
        1 => (u(), r()).prop_map(|(a, b)| Op::CreatePublic(a, b)),
        2 => (u(), r()).prop_map(|(a, b)| Op::CreatePrivate(a, b)),
        3 => (u(), r(), u()).prop_map(|(a, b, c)| Op::Invite(a, b, c)),
        3 => (u(), r(), u()).prop_map(|(a, b, c)| Op::Remove(a, b, c)),
        1 => (u(), u()).prop_map(|(a, b)| Op::Direct(a, b)),
        4 => (u(), r()).prop_map(|(a, b)| Op::Open(a, b)),
        2 => any::<usize>().prop_map(Op::Close),
        4 => (u(), r()).prop_map(|(a, b)| Op::Post(a, b)),
        1 => (u(), r()).prop_map(|(a, b)| Op::Read(a, b)),
        1 => (u(), r()).prop_map(|(a, b)| Op::Delete(a, b)),
    ]
}

/// The host's view, built from answers and events only.
#[derive(Default)]
struct Host {
    listeners: BTreeMap<ListenerId, (RoomId, UserName)>,
    /// `None` for a public room, else its members.
    members: BTreeMap<RoomId, Option<BTreeSet<UserName>>>,
    /// Direct rooms seen so far, in order.
    directs: Vec<String>,
}

impl Host {
    fn room_name(&self, i: usize) -> String {
        match ROOMS.get(i) {
            Some(r) => (*r).to_owned(),
            None => self
                .directs
                .get(i - ROOMS.len())
                .cloned()
                .unwrap_or_else(|| "nowhere".to_owned()),
        }
    }

    /// Whether `user` may see `room` as the events told it (unknown rooms: no).
    fn admits(&self, room: &str, user: &str) -> bool {
        self.members.iter().any(|(id, m)| {
            id.as_str() == room
                && m.as_ref()
                    .is_none_or(|m| m.iter().any(|u| u.as_str() == user))
        })
    }

    fn deliver(&mut self, event: Event) {
        let room = event.room().clone();
        match &event {
            Event::RoomCreated { private, .. } => {
                self.members
                    .insert(room.clone(), private.then(BTreeSet::new));
                if room.as_str().starts_with("dm-") && !self.directs.contains(&room.to_string()) {
                    self.directs.push(room.to_string());
                }
                return;
            }
            Event::MemberAdded { user, .. } => {
                if let Some(Some(m)) = self.members.get_mut(&room) {
                    m.insert(user.clone());
                }
                return;
            }
            Event::MemberRemoved { user, .. } => {
                if let Some(Some(m)) = self.members.get_mut(&room) {
                    m.remove(user);
                }
                // The contract: their listeners on the room are closed; end those streams.
                self.listeners
                    .retain(|_, (r, u)| !(r == &room && u == user));
                return;
            }
            Event::RoomClosed { .. } => {
                self.members.remove(&room);
                self.listeners.retain(|_, (r, _)| r != &room);
                return;
            }
            _ => {}
        }
        let Some(Some(members)) = self.members.get(&room) else {
            return; // Public: anyone may hear it.
        };
        for (id, (r, user)) in &self.listeners {
            if r == &room {
                assert!(
                    members.contains(user),
                    "{event:?} of private {room} reached {user} (listener {id:?}), not a member of {members:?}"
                );
            }
        }
    }
}

fn run(ops: Vec<Op>) {
    let mut core = Core::new(Config {
        limits: Limits {
            submit_rate: None,
            ..Limits::default()
        },
        ..Config::default()
    });
    let mut host = Host::default();
    for (step, op) in ops.into_iter().enumerate() {
        let now = Timestamp::from_unix_millis(step as u64 + 1);
        let user_of = |i: usize| USERS[i];
        match op {
            Op::CreatePublic(u, r) => {
                let _ = core.create_room(now, user_of(u), &host.room_name(r));
            }
            Op::CreatePrivate(u, r) => {
                let _ = core.create_private_room(now, user_of(u), &host.room_name(r));
            }
            Op::Invite(u, r, m) => {
                let _ = core.invite(now, user_of(u), &host.room_name(r), user_of(m));
            }
            Op::Remove(u, r, m) => {
                let _ = core.remove_member(now, user_of(u), &host.room_name(r), user_of(m));
            }
            Op::Direct(u, o) => {
                let _ = core.open_direct(now, user_of(u), user_of(o));
            }
            Op::Open(u, r) => {
                let room = host.room_name(r);
                let admitted = host.admits(&room, user_of(u));
                let opened =
                    core.open_listener(now, user_of(u), &room, Resume::After(Default::default()));
                assert_eq!(
                    opened.is_ok(),
                    admitted,
                    "open {room} by {}: {opened:?}",
                    user_of(u)
                );
                if let Ok(opened) = opened {
                    let user = UserName::parse(user_of(u), 32).unwrap();
                    host.listeners.insert(opened.listener, (opened.room, user));
                }
            }
            Op::Close(i) => {
                if !host.listeners.is_empty() {
                    let id = *host.listeners.keys().nth(i % host.listeners.len()).unwrap();
                    host.listeners.remove(&id);
                    assert!(core.close_listener(now, id), "an open listener closes");
                }
            }
            Op::Post(u, r) => {
                let room = host.room_name(r);
                let admitted = host.admits(&room, user_of(u));
                let posted = core.submit(
                    now,
                    Submit {
                        user: user_of(u).into(),
                        room: room.clone(),
                        text: "x".into(),
                        idempotency_key: None,
                    },
                );
                assert_eq!(
                    posted.is_ok(),
                    admitted,
                    "post to {room} by {}: {posted:?}",
                    user_of(u)
                );
            }
            Op::Read(u, r) => {
                let room = host.room_name(r);
                let admitted = host.admits(&room, user_of(u));
                let history = core.history(user_of(u), &room, Cursor::Newest, 10);
                let presence = core.presence(user_of(u), &room);
                assert_eq!((history.is_ok(), presence.is_ok()), (admitted, admitted));
            }
            Op::Delete(u, r) => {
                let _ = core.delete_room(now, user_of(u), &host.room_name(r));
            }
        }
        while let Some(event) = core.poll_event() {
            host.deliver(event);
        }
        assert_eq!(
            core.stats().listeners,
            host.listeners.len(),
            "core closed exactly the listeners the events ended"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]
    #[test]
    fn no_event_of_a_private_room_reaches_a_non_member(ops in proptest::collection::vec(op(), 1..120)) {
        run(ops);
    }
}
