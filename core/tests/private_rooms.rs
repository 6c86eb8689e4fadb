//! Property: whatever the command sequence, no event of a private room is ever addressed to a
//! non-member, and no non-member can read, listen or post there.
//!
//! The test plays the host: it keeps the listeners core opened (ending them as the events say)
//! and a mirror of every room's membership built from the events alone. Each event is delivered
//! to the host's listeners on its room, and each recipient must be a member. Beside it, an
//! oracle built from the rules (owners manage their private rooms, nobody else; the owner stays)
//! predicts every command's answer, and the events' mirror must agree with it.

mod support;

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;
use support::*;

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

/// What the rules say each room is: its owner and, for a private room, its members.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Expected {
    owner: Option<String>,
    /// `None` for a public room.
    members: Option<BTreeSet<String>>,
}

/// The host's view, built from answers and events only.
#[derive(Default)]
struct Host {
    listeners: BTreeMap<ListenerId, (RoomId, UserId)>,
    /// `None` for a public room, else its members.
    members: BTreeMap<RoomId, Option<BTreeSet<UserId>>>,
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
                // Their listeners were each closed by a ListenerClosed before this.
                assert!(
                    !self
                        .listeners
                        .values()
                        .any(|(r, u)| r == &room && u == user),
                    "{user} was removed from {room} with listeners left open"
                );
                return;
            }
            Event::ListenerClosed {
                listener, reason, ..
            } => {
                assert_eq!(reason, &CloseReason::Removed);
                let (r, user) = self
                    .listeners
                    .remove(listener)
                    .expect("core closes only open listeners");
                assert_eq!(r, room, "the closed listener was on the event's room");
                let still_member = self
                    .members
                    .get(&room)
                    .and_then(Option::as_ref)
                    .is_some_and(|m| m.contains(&user));
                assert!(
                    still_member,
                    "{user} is closed as removed while the mirror still has them"
                );
                return;
            }
            Event::RoomClosed { .. } => {
                self.members.remove(&room);
                self.listeners.retain(|_, (r, _)| r != &room);
                return;
            }
            // Core numbers its own messages here: it never asks a shared log for anything.
            Event::Fetch { .. }
            | Event::Here { .. }
            | Event::Unloaded { .. }
            | Event::Diverged { .. } => {
                panic!("a shared-log request without one")
            }
            Event::Published(_)
            | Event::Joined { .. }
            | Event::Left { .. }
            | Event::Typing { .. }
            | Event::Read { .. }
            | Event::ReadForgotten { .. }
            | Event::AttachmentsDropped { .. }
            | Event::Gap { .. } => {}
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

/// The rooms as the rules say they are; the answer each command must get.
#[derive(Default)]
struct Oracle {
    rooms: BTreeMap<String, Expected>,
}

impl Oracle {
    fn admits(&self, room: &str, user: &str) -> bool {
        self.rooms
            .get(room)
            .is_some_and(|r| r.members.as_ref().is_none_or(|m| m.contains(user)))
    }

    /// Whether `user` may manage the members of `room` (owners of private rooms; no admins here).
    fn manages(&self, room: &str, user: &str) -> bool {
        self.rooms
            .get(room)
            .is_some_and(|r| r.members.is_some() && r.owner.as_deref() == Some(user))
    }

    /// The members of a private room the rules say exists.
    fn members_mut(&mut self, room: &str) -> &mut BTreeSet<String> {
        self.rooms
            .get_mut(room)
            .and_then(|r| r.members.as_mut())
            .expect("a private room")
    }

    fn view(&self) -> BTreeMap<String, Option<BTreeSet<String>>> {
        self.rooms
            .iter()
            .map(|(id, r)| (id.clone(), r.members.clone()))
            .collect()
    }
}

fn run(ops: Vec<Op>) {
    let mut core = Core::new(unlimited());
    let mut host = Host::default();
    let mut oracle = Oracle::default();
    for (step, op) in ops.into_iter().enumerate() {
        let now = t(step as u64 + 1);
        let user_of = |i: usize| USERS[i];
        match op {
            Op::CreatePublic(u, r) | Op::CreatePrivate(u, r) => {
                let (user, room) = (user_of(u), host.room_name(r));
                let private = matches!(op, Op::CreatePrivate(..));
                let created = if private {
                    create_private_room(&mut core, now, user, &room)
                } else {
                    create_room(&mut core, now, user, &room)
                };
                match oracle.rooms.get(&room) {
                    None => {
                        assert!(created.as_ref().is_ok_and(|c| c.created), "{created:?}");
                        let members = private.then(|| BTreeSet::from([user.to_owned()]));
                        let owner = Some(user.to_owned());
                        oracle.rooms.insert(room, Expected { owner, members });
                    }
                    Some(_) => assert_eq!(
                        created.as_ref().map(|c| c.created).ok(),
                        oracle.admits(&room, user).then_some(false),
                        "create {room} again by {user}: {created:?}"
                    ),
                }
            }
            Op::Invite(u, r, m) => {
                let (user, room, member) = (user_of(u), host.room_name(r), user_of(m));
                let invited = invite(&mut core, now, user, &room, member);
                if oracle.manages(&room, user) {
                    let members = oracle.members_mut(&room);
                    assert_eq!(
                        invited,
                        Ok(members.insert(member.to_owned())),
                        "invite {member} to {room}"
                    );
                } else {
                    assert!(
                        invited.is_err(),
                        "{user} may not invite to {room}: {invited:?}"
                    );
                }
            }
            Op::Remove(u, r, m) => {
                let (user, room, member) = (user_of(u), host.room_name(r), user_of(m));
                let removed = remove_member(&mut core, now, user, &room, member);
                if oracle.manages(&room, user) && member != user {
                    let members = oracle.members_mut(&room);
                    assert_eq!(
                        removed,
                        Ok(members.remove(member)),
                        "remove {member} from {room}"
                    );
                } else {
                    assert!(
                        removed.is_err(),
                        "{user} may not remove {member} from {room}: {removed:?}"
                    );
                }
            }
            Op::Direct(u, o) => {
                let (user, other) = (user_of(u), user_of(o));
                let direct = open_direct(&mut core, now, user, other);
                assert_eq!(direct.is_ok(), user != other, "{direct:?}");
                if let Ok(created) = direct {
                    let members = Some(BTreeSet::from([user.to_owned(), other.to_owned()]));
                    let expected = Expected {
                        owner: None,
                        members,
                    };
                    let id = created.room.id.to_string();
                    assert_eq!(created.created, !oracle.rooms.contains_key(&id));
                    assert_eq!(
                        oracle
                            .rooms
                            .insert(id, expected.clone())
                            .unwrap_or(expected.clone()),
                        expected
                    );
                }
            }
            Op::Open(u, r) => {
                let room = host.room_name(r);
                let admitted = oracle.admits(&room, user_of(u));
                let opened =
                    open_listener(&mut core, now, user_of(u), &room, Resume::After(Seq::ZERO));
                assert_eq!(
                    opened.is_ok(),
                    admitted,
                    "open {room} by {}: {opened:?}",
                    user_of(u)
                );
                if let Ok(opened) = opened {
                    host.listeners
                        .insert(opened.listener, (opened.room, user(user_of(u))));
                }
            }
            Op::Close(i) => {
                if !host.listeners.is_empty() {
                    let id = *host.listeners.keys().nth(i % host.listeners.len()).unwrap();
                    host.listeners.remove(&id);
                    assert!(
                        close_listener(&mut core, now, id),
                        "an open listener closes"
                    );
                }
            }
            Op::Post(u, r) => {
                let room = host.room_name(r);
                let admitted = oracle.admits(&room, user_of(u));
                let posted = submit(&mut core, now, submit_to(&room, user_of(u), "x", None));
                assert_eq!(
                    posted.is_ok(),
                    admitted,
                    "post to {room} by {}: {posted:?}",
                    user_of(u)
                );
            }
            Op::Read(u, r) => {
                let room = host.room_name(r);
                let admitted = oracle.admits(&room, user_of(u));
                let history = history(&mut core, user_of(u), &room, Cursor::Newest, 10);
                let presence = presence(&mut core, user_of(u), &room);
                assert_eq!((history.is_ok(), presence.is_ok()), (admitted, admitted));
            }
            Op::Delete(u, r) => {
                let (user, room) = (user_of(u), host.room_name(r));
                let owns = oracle
                    .rooms
                    .get(&room)
                    .is_some_and(|r| r.owner.as_deref() == Some(user));
                let deleted = delete_room(&mut core, now, user, &room);
                assert_eq!(
                    deleted.is_ok(),
                    owns,
                    "delete {room} by {user}: {deleted:?}"
                );
                if owns {
                    oracle.rooms.remove(&room);
                }
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
        let mirrored: BTreeMap<String, Option<BTreeSet<String>>> = host
            .members
            .iter()
            .map(|(id, m)| {
                (
                    id.to_string(),
                    m.as_ref()
                        .map(|m| m.iter().map(ToString::to_string).collect()),
                )
            })
            .collect();
        assert_eq!(
            mirrored,
            oracle.view(),
            "the events tell the rooms the rules made"
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
