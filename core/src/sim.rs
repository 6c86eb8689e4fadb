//! Simulation harness: random operation sequences run against [`Core`] and a small, obviously
//! correct reference model, with the invariants checked after every step.
//!
//! Shared by the property tests (below) and the fuzz target (`fuzz/`), which is a three-line shim
//! over [`run_fuzz_input`]. `cargo test` also replays the committed fuzz corpus through it.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use arbitrary::{Arbitrary, Unstructured};

use crate::command::{
    Ask, CloseListener, CreateRoom, Cursor, DeleteRoom, History, ListRooms, OpenListener, Resume,
    Submit, ViewRoom,
};
use crate::engine::{Config, Core};
use crate::error::Error;
use crate::event::{CloseReason, Event, RoomEnd};
use crate::ids::{ListenerId, MessageId, RoomId, Seq, UserId};
use crate::limits::{Limits, Rate};
use crate::message::{Emoji, Kind, Message, Moderation, State};
use crate::policy::Policy;
use crate::time::Timestamp;

/// User names the operations pick from; the last breaks the rules.
pub const USERS: [&str; 4] = ["ada", "bob", "Zoë", "bad name!"];
/// Room ids the operations pick from; the last breaks the rules.
pub const ROOMS: [&str; 5] = ["r0", "r1", "r2", "r3", "-bad"];
/// Texts the operations pick from, each with the refusal it must get (at 16 bytes maximum).
pub const TEXTS: [(&str, Option<&str>); 8] = [
    ("hi", None),
    ("hello 👋", None),
    ("a\r\nb", None),
    ("<b>x</b>", None),
    (" \t ", Some("empty-message")),
    ("", Some("empty-message")),
    ("ring\u{7}", Some("control-character")),
    ("seventeen bytes!!", Some("message-too-large")),
];
/// Idempotency keys the operations pick from; the last breaks the rules.
pub const KEYS: [&str; 3] = ["k1", "k2", "bad key"];
/// Reactions the operations pick from: the second and third are one emoji in two spellings.
pub const EMOJI: [&str; 4] = ["👍", "❤", "❤\u{fe0f}", "🎉"];
/// How long posters may change their messages in the simulation (so runs reach its end).
const EDIT_WINDOW: Duration = Duration::from_secs(20);
/// How long the simulation's mutes last.
const MUTE_SECONDS: u64 = 5;

/// Joins and leaves are announced while at most this many users are present.
const ANNOUNCE_UP_TO: usize = 2;

/// The configuration the simulation runs: small limits so every one is reached often.
pub fn sim_config() -> Config {
    Config {
        limits: Limits {
            room_id_max_len: 8,
            user_name_max_chars: 16,
            message_max_bytes: 16,
            max_rooms: 3,
            max_listeners_per_room: 3,
            max_listeners_per_user: 2,
            max_listeners: 5,
            submit_rate: Some(Rate {
                burst: 3,
                per_second: 2,
            }),
            max_page_len: 3,
            rooms_page_len: 2,
            history_page_len: 2,
            announce_presence_up_to: ANNOUNCE_UP_TO,
            max_reactions_per_message: 2,
            max_attachment_bytes: 1024,
            max_attachments_per_message: 2,
            // Per-user limits and paces the model does not reach: unit tests and the end-to-end
            // tests hold them.
            max_rooms_per_user: 100,
            max_user_listeners: 100,
            room_pace: None,
            upload_pace: None,
            read_pace: None,
            ..Limits::default()
        },
        history_len: 4,
        room_idle_expiry: Some(Duration::from_secs(5)),
        policy: Policy {
            edit_window: EDIT_WINDOW,
            ..Policy::default()
        },
        ..Config::default()
    }
}

/// One step. Small integers index the pools above (modulo their length).
#[derive(Debug, Clone, PartialEq, Eq, Arbitrary)]
pub enum Op {
    /// Move time forward.
    Advance {
        /// By this many milliseconds.
        ms: u16,
    },
    /// Create a room.
    Create {
        /// Index into [`USERS`].
        user: u8,
        /// Index into [`ROOMS`].
        room: u8,
    },
    /// Delete a room.
    Delete {
        /// Index into [`USERS`].
        user: u8,
        /// Index into [`ROOMS`].
        room: u8,
    },
    /// Open a listener.
    Open {
        /// Index into [`USERS`].
        user: u8,
        /// Index into [`ROOMS`].
        room: u8,
        /// `None` for live only; otherwise resume after this sequence number.
        after: Option<u8>,
        /// Create the room first if it is missing.
        create: bool,
    },
    /// Replace a listener with a new one of its user on its room (a resync).
    Reopen {
        /// Index into the listeners opened so far (open or not).
        listener: u8,
        /// `None` for live only; otherwise resume after this sequence number.
        after: Option<u8>,
    },
    /// Close a listener.
    Close {
        /// Index into the listeners opened so far (open or not).
        listener: u8,
    },
    /// Post a message.
    Submit {
        /// Index into [`USERS`].
        user: u8,
        /// Index into [`ROOMS`].
        room: u8,
        /// Index into [`TEXTS`].
        text: u8,
        /// Index into [`KEYS`], if any.
        key: Option<u8>,
        /// Create the room first if it is missing.
        create: bool,
    },
    /// Read a page of history.
    History {
        /// Index into [`ROOMS`].
        room: u8,
        /// 0: newest, 1: after `at`, 2: before `at`.
        cursor: u8,
        /// The cursor's sequence number.
        at: u8,
        /// Page size asked for (0: the default).
        limit: u8,
    },
    /// Read presence.
    Presence {
        /// Index into [`ROOMS`].
        room: u8,
    },
    /// List rooms.
    List {
        /// Index into [`ROOMS`] to list after, if any.
        after: Option<u8>,
    },
    /// Add or remove a member. The simulation's rooms are public, so this is always refused;
    /// the model checks it is refused for the right reason, in core's order.
    Member {
        /// Index into [`USERS`]: who asks.
        user: u8,
        /// Index into [`ROOMS`].
        room: u8,
        /// Index into [`USERS`]: whom it is about.
        member: u8,
        /// Add (else remove).
        add: bool,
    },
    /// Honour the deadline if it is due.
    Timeout,
    /// Change a message, or reply to it.
    Change {
        /// Index into [`USERS`].
        user: u8,
        /// Index into [`ROOMS`].
        room: u8,
        /// The message's sequence number.
        of: u8,
        /// 0: edit it, 1: delete it, 2: add a reaction, 3: take one back, 4: reply to it;
        /// someone (`arg` into [`USERS`]) 5: banned, 6: unbanned, 7: muted, 8: unmuted,
        /// 9: kicked.
        what: u8,
        /// Index into [`TEXTS`] (edit, reply), [`EMOJI`] (reactions) or [`USERS`].
        arg: u8,
    },
}

fn pick<T: Copy>(pool: &[T], i: u8) -> T {
    pool[usize::from(i) % pool.len()]
}

/// An entry as the model remembers it, with what later entries did to it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ModelMessage {
    user: String,
    /// Its text now: empty once deleted, the newest edit's once edited.
    text: String,
    key: Option<String>,
    kind: Kind,
    sent_at: u64,
    edited: bool,
    deleted: bool,
    /// Each emoji (canonical) with who added it, in order.
    reactions: Vec<(String, Vec<String>)>,
}

impl ModelMessage {
    fn new(user: &str, text: String, key: Option<&str>, kind: Kind, sent_at: u64) -> Self {
        ModelMessage {
            user: user.to_owned(),
            text,
            key: key.map(str::to_owned),
            kind,
            sent_at,
            edited: false,
            deleted: false,
            reactions: Vec::new(),
        }
    }

    /// Whether `m`, as core holds or hands it out, is this entry as it is now.
    fn matches(&self, m: &Message) -> bool {
        let reactions: Vec<(String, Vec<String>)> = m
            .state
            .reactions
            .iter()
            .map(|r| {
                let users = r.users.iter().map(ToString::to_string).collect();
                (r.emoji.to_string(), users)
            })
            .collect();
        m.user.as_str() == self.user
            && m.text == self.text
            && m.kind == self.kind
            && m.state.deleted == self.deleted
            && m.state.edited_at.is_some() == self.edited
            && reactions == self.reactions
    }
}

#[derive(Debug, Clone, Default)]
struct ModelRoom {
    /// Who created it: the only one (no admins here) who may delete it.
    owner: String,
    /// Every accepted message; seq is index + 1.
    messages: Vec<ModelMessage>,
    last_active: u64,
    /// Who is banned.
    banned: BTreeSet<String>,
    /// Who is muted, until when (ms).
    muted: BTreeMap<String, u64>,
}

impl ModelRoom {
    /// The refusal a room command by `user` gets from who they are here (after the room is
    /// found): banned users get nothing.
    fn barred(&self, user: &str) -> Option<&'static str> {
        self.banned.contains(user).then_some("banned")
    }
}

impl ModelRoom {
    /// Where the ring's run of every entry starts: the longest run of the newest entries that
    /// holds at most `history_len` messages and at most `history_len` other entries.
    fn first_held(&self, history_len: usize) -> u64 {
        let (mut posts, mut others) = (0, 0);
        let mut first = self.messages.len() + 1;
        for (i, m) in self.messages.iter().enumerate().rev() {
            match m.kind {
                Kind::Post { .. } => posts += 1,
                Kind::Edit { .. }
                | Kind::Delete { .. }
                | Kind::React { .. }
                | Kind::Moderate { .. } => {
                    others += 1;
                }
            }
            if posts > history_len || others > history_len {
                break;
            }
            first = i + 1;
        }
        first as u64
    }

    /// Whether entry `seq` is held: in that run, or one of the newest `history_len` messages.
    fn held(&self, seq: u64, history_len: usize) -> bool {
        if seq >= self.first_held(history_len) {
            return seq <= self.messages.len() as u64;
        }
        let newer_posts = self
            .messages
            .iter()
            .skip(seq as usize - 1)
            .filter(|m| matches!(m.kind, Kind::Post { .. }))
            .count();
        matches!(self.messages[seq as usize - 1].kind, Kind::Post { .. })
            && newer_posts <= history_len
    }

    /// The oldest entry held at all.
    fn oldest_held(&self, history_len: usize) -> u64 {
        (1..=self.messages.len() as u64)
            .find(|s| self.held(*s, history_len))
            .unwrap_or(self.messages.len() as u64 + 1)
    }
}

/// The reference model: everything kept forever, in plain vectors and maps.
#[derive(Debug, Clone, Default)]
struct Model {
    rooms: BTreeMap<String, ModelRoom>,
    /// Open listeners: room and user.
    listeners: BTreeMap<ListenerId, (String, String)>,
    /// Each poster's token bucket: thousandths of a token, and when it was last filled up.
    buckets: BTreeMap<String, (u64, u64)>,
}

impl Model {
    fn listeners_of<'a>(
        &'a self,
        room: &'a str,
    ) -> impl Iterator<Item = (&'a ListenerId, &'a String)> + 'a {
        self.listeners
            .iter()
            .filter(move |(_, (r, _))| r == room)
            .map(|(id, (_, u))| (id, u))
    }

    /// Takes a token of `user`'s bucket at `now` (ms): `None` if there was one, else how many
    /// milliseconds until there is. Buckets start full and refill at the configured rate.
    fn take_token(&mut self, user: &str, now: u64, config: &Config) -> Option<u64> {
        let rate = config.limits.submit_rate?;
        let full = u64::from(rate.burst) * 1000;
        let per_ms = u64::from(rate.per_second);
        let (tokens, updated) = self.buckets.entry(user.to_owned()).or_insert((full, now));
        *tokens = full.min(*tokens + (now - *updated) * per_ms);
        *updated = now;
        if *tokens < 1000 {
            return Some((1000 - *tokens).div_ceil(per_ms));
        }
        *tokens -= 1000;
        None
    }

    fn presence(&self, room: &str) -> BTreeMap<String, usize> {
        let mut counts = BTreeMap::new();
        for (_, user) in self.listeners_of(room) {
            *counts.entry(user.clone()).or_insert(0) += 1;
        }
        counts
    }
}

/// A core and its reference model, stepped together.
#[derive(Debug)]
pub struct Harness {
    core: Core,
    config: Config,
    model: Model,
    now: u64,
    /// Every listener ever opened, so `Close` can name stale ones too.
    opened: Vec<ListenerId>,
    /// Sequence numbers each open listener has been handed (backlog, then live events).
    received: BTreeMap<ListenerId, Vec<u64>>,
}

impl Default for Harness {
    fn default() -> Self {
        Harness::new(sim_config())
    }
}

fn code<T>(r: &Result<T, Error>) -> Option<&'static str> {
    r.as_ref().err().map(Error::code)
}

impl Harness {
    /// A fresh core and model with this configuration.
    pub fn new(config: Config) -> Self {
        Harness {
            core: Core::new(config.clone()),
            config,
            model: Model::default(),
            now: 1_000_000,
            opened: Vec::new(),
            received: BTreeMap::new(),
        }
    }

    fn ts(&self) -> Timestamp {
        Timestamp::from_unix_millis(self.now)
    }

    /// Sends a command through [`Core::handle`], as hosts do.
    fn ask<C: Ask>(&mut self, command: C) -> Result<C::Answer, Error> {
        let now = self.ts();
        self.core.ask(now, command)
    }

    /// The model's side of creating a public room on first use: the refusal it predicts, or
    /// none (with the creation recorded and announced if the room was missing).
    fn create_if_missing(
        &mut self,
        user: &str,
        room: &str,
        expected: &mut Vec<Event>,
    ) -> Option<&'static str> {
        if let Some(refusal) = Self::name_refusal(user, room) {
            return Some(refusal);
        }
        if self.model.rooms.contains_key(room) {
            return None;
        }
        if self.model.rooms.len() >= self.config.limits.max_rooms {
            return Some("too-many-rooms");
        }
        let mr = ModelRoom {
            owner: user.to_owned(),
            last_active: self.now,
            ..ModelRoom::default()
        };
        self.model.rooms.insert(room.to_owned(), mr);
        expected.push(Event::RoomCreated {
            room: crate::RoomId::parse(room, 8).expect("checked valid above"),
            created_at: self.ts(),
            owner: Some(crate::UserId::parse(user, 16).expect("checked valid above")),
            private: false,
        });
        None
    }

    /// The model's side of closing a listener: whether it was open, with its leave announced.
    fn model_close(&mut self, id: ListenerId, expected: &mut Vec<Event>) -> bool {
        let Some((room, user)) = self.model.listeners.remove(&id) else {
            return false;
        };
        self.received.remove(&id);
        if let Some(mr) = self.model.rooms.get_mut(&room) {
            mr.last_active = self.now;
        }
        let present = self.model.presence(&room);
        // A leave is announced if the room had at most ANNOUNCE_UP_TO before it.
        if !present.contains_key(&user) && present.len() < ANNOUNCE_UP_TO {
            expected.push(Event::Left {
                room: crate::RoomId::parse(&room, 8).expect("valid"),
                user: crate::UserId::parse(&user, 16).expect("valid"),
            });
        }
        true
    }

    fn history_len(&self) -> usize {
        self.config.history_len
    }

    /// The precondition refusals every room command checks first, in core's order.
    fn name_refusal(user: &str, room: &str) -> Option<&'static str> {
        if user == USERS[3] {
            Some("invalid-user-name")
        } else if room == ROOMS[4] {
            Some("invalid-room-id")
        } else {
            None
        }
    }

    /// Applies one operation to both, checks the answer against the model, then checks every
    /// invariant. Panics with a description on any difference.
    pub fn apply(&mut self, op: &Op) {
        let rooms_before: BTreeSet<String> = self.model.rooms.keys().cloned().collect();
        let mut expected_events: Vec<Event> = Vec::new();
        match *op {
            Op::Advance { ms } => self.now += u64::from(ms),
            Op::Create { user, room } => {
                let (user, room) = (pick(&USERS, user), pick(&ROOMS, room));
                let r = self.ask(CreateRoom {
                    user: user.to_owned(),
                    room: room.to_owned(),
                    private: false,
                });
                let want =
                    Self::name_refusal(user, room).or_else(|| match self.model.rooms.get(room) {
                        Some(mr) => mr.barred(user),
                        None => (self.model.rooms.len() >= self.config.limits.max_rooms)
                            .then_some("too-many-rooms"),
                    });
                assert_eq!(code(&r), want, "create {room} by {user}: {r:?}");
                if let Ok(created) = r {
                    assert_eq!(created.created, !self.model.rooms.contains_key(room));
                    if created.created {
                        let mr = ModelRoom {
                            owner: user.to_owned(),
                            last_active: self.now,
                            ..ModelRoom::default()
                        };
                        self.model.rooms.insert(room.to_owned(), mr);
                        expected_events.push(Event::RoomCreated {
                            room: created.room.id,
                            created_at: created.room.created_at,
                            owner: Some(
                                crate::UserId::parse(user, 16).expect("checked valid above"),
                            ),
                            private: false,
                        });
                    }
                }
            }
            Op::Delete { user, room } => {
                let (user, room) = (pick(&USERS, user), pick(&ROOMS, room));
                let r = self.ask(DeleteRoom {
                    user: user.to_owned(),
                    room: room.to_owned(),
                });
                let want =
                    Self::name_refusal(user, room).or_else(|| match self.model.rooms.get(room) {
                        None => Some("room-not-found"),
                        Some(mr) if mr.banned.contains(user) => Some("banned"),
                        Some(mr) if mr.owner != user => Some("permission-denied"),
                        Some(_) => None,
                    });
                assert_eq!(code(&r), want, "delete {room} by {user}: {r:?}");
                if r.is_ok() {
                    self.model.rooms.remove(room);
                    self.model.listeners.retain(|_, (r, _)| r != room);
                    expected_events.push(Event::RoomClosed {
                        room: crate::RoomId::parse(room, 8).expect("pool room ids are valid"),
                        reason: RoomEnd::Deleted {
                            by: Some(crate::UserId::parse(user, 16).expect("checked valid above")),
                        },
                    });
                }
            }
            Op::Open {
                user,
                room,
                after,
                create,
            } => self.open(
                pick(&USERS, user),
                pick(&ROOMS, room),
                after,
                (create, None),
                &mut expected_events,
            ),
            Op::Reopen { listener, after } => {
                if self.opened.is_empty() {
                    return self.check_invariants(&rooms_before, &[]);
                }
                let id = self.opened[usize::from(listener) % self.opened.len()];
                let (room, user) =
                    self.model
                        .listeners
                        .get(&id)
                        .map_or((ROOMS[0], USERS[0]), |(r, u)| {
                            (
                                pick(&ROOMS, index_of(&ROOMS, r)),
                                pick(&USERS, index_of(&USERS, u)),
                            )
                        });
                self.open(user, room, after, (false, Some(id)), &mut expected_events);
            }
            Op::Close { listener } => {
                if self.opened.is_empty() {
                    return self.check_invariants(&rooms_before, &[]);
                }
                let id = self.opened[usize::from(listener) % self.opened.len()];
                let was_open = self.model_close(id, &mut expected_events);
                let closed = self.ask(CloseListener { listener: id });
                assert_eq!(closed, Ok(was_open), "close {id}");
            }
            Op::Submit {
                user,
                room,
                text,
                key,
                create,
            } => self.submit(
                pick(&USERS, user),
                pick(&ROOMS, room),
                pick(&TEXTS, text),
                (key.map(|k| pick(&KEYS, k)), create),
                &mut expected_events,
            ),
            Op::History {
                room,
                cursor,
                at,
                limit,
            } => self.history(pick(&ROOMS, room), cursor, at, limit),
            Op::Change {
                user,
                room,
                of,
                what,
                arg,
            } => self.change(
                pick(&USERS, user),
                pick(&ROOMS, room),
                Seq(u64::from(of)),
                (what, arg),
                &mut expected_events,
            ),
            Op::Presence { room } => {
                let room = pick(&ROOMS, room);
                let r = self.ask(ViewRoom {
                    user: USERS[0].to_owned(),
                    room: room.to_owned(),
                });
                let want = Self::name_refusal(USERS[0], room)
                    .or_else(|| (!self.model.rooms.contains_key(room)).then_some("room-not-found"))
                    .or_else(|| self.model.rooms.get(room)?.barred(USERS[0]));
                assert_eq!(code(&r), want);
                if let Ok(view) = r {
                    let mr = &self.model.rooms[room];
                    assert_eq!(
                        view.may_delete,
                        mr.owner == USERS[0],
                        "who may delete {room}"
                    );
                    assert!(
                        !view.may_manage_members,
                        "a public room has no members to manage"
                    );
                    let got: BTreeMap<String, usize> = view
                        .presence
                        .into_iter()
                        .map(|e| (e.user.to_string(), e.listeners))
                        .collect();
                    assert_eq!(got, self.model.presence(room), "presence of {room}");
                }
            }
            Op::List { after } => {
                let after = after.map(|a| pick(&ROOMS, a));
                let got: Vec<String> = self
                    .ask(ListRooms {
                        user: USERS[1].to_owned(),
                        after: after.map(str::to_owned),
                        limit: None,
                    })
                    .expect("listing is always allowed")
                    .rooms
                    .into_iter()
                    .map(|s| s.id.to_string())
                    .collect();
                let want: Vec<String> = self
                    .model
                    .rooms
                    .keys()
                    .filter(|r| after.is_none_or(|a| r.as_str() > a))
                    .take(self.config.limits.rooms_page_len)
                    .cloned()
                    .collect();
                assert_eq!(got, want, "rooms after {after:?}");
            }
            Op::Member {
                user,
                room,
                member,
                add,
            } => {
                let (user, room, member) =
                    (pick(&USERS, user), pick(&ROOMS, room), pick(&USERS, member));
                let r = self.ask(crate::command::ChangeMember {
                    user: user.to_owned(),
                    room: room.to_owned(),
                    member: member.to_owned(),
                    change: if add {
                        crate::command::MemberChange::Add
                    } else {
                        crate::command::MemberChange::Remove
                    },
                });
                let want = Self::name_refusal(user, room)
                    .or_else(|| (member == USERS[3]).then_some("invalid-user-name"))
                    .or_else(|| match self.model.rooms.get(room) {
                        None => Some("room-not-found"),
                        Some(mr) if mr.banned.contains(user) => Some("banned"),
                        Some(mr) if mr.owner != user => Some("permission-denied"),
                        Some(_) => Some("membership"),
                    });
                assert_eq!(code(&r), want, "member {member} of {room} by {user}: {r:?}");
            }
            Op::Timeout => {
                let Some(due) = self.core.poll_timeout() else {
                    return self.check_invariants(&rooms_before, &[]);
                };
                // Time only moves forward: jump to the deadline if it is ahead.
                self.now = self.now.max(due.as_unix_millis());
                self.core.handle_timeout(self.ts());
                let idle =
                    crate::time::millis(self.config.room_idle_expiry.expect("sim sets an expiry"));
                let mut expired: Vec<(u64, String)> = self
                    .model
                    .rooms
                    .iter()
                    .filter(|(name, r)| {
                        self.model.listeners_of(name).next().is_none()
                            && r.last_active + idle <= self.now
                    })
                    .map(|(name, r)| (r.last_active, name.clone()))
                    .collect();
                // Rooms expire in deadline order.
                expired.sort();
                for (_, room) in expired {
                    self.model.rooms.remove(&room);
                    expected_events.push(Event::RoomClosed {
                        room: crate::RoomId::parse(&room, 8).expect("valid"),
                        reason: RoomEnd::Expired,
                    });
                }
                if let Some(next) = self.core.poll_timeout() {
                    assert!(
                        next > self.ts(),
                        "after handle_timeout({}) the next deadline {next} is not later",
                        self.now
                    );
                }
            }
        }
        let events = self.drain();
        assert_eq!(events, expected_events, "events of {op:?}");
        self.check_invariants(&rooms_before, &events);
    }

    fn open(
        &mut self,
        user: &str,
        room: &str,
        after: Option<u8>,
        (create, replacing): (bool, Option<ListenerId>),
        expected: &mut Vec<Event>,
    ) {
        let resume = after.map_or(Resume::Live, |n| Resume::After(Seq(u64::from(n))));
        let created = if create {
            self.create_if_missing(user, room, expected)
        } else {
            None
        };
        // Only a listener of the same user on the same room is replaced.
        let replacing_open = replacing.filter(|id| {
            self.model
                .listeners
                .get(id)
                .is_some_and(|(r, u)| r == room && u == user)
        });
        let mut want = created.or_else(|| self.open_refusal(user, room, after));
        let capacity = [
            "too-many-listeners",
            "server-full",
            "too-many-user-listeners",
        ];
        let mut closed_first = false;
        if let Some(old) = replacing_open {
            // A full room (or share, or server) makes the old listener close first.
            if want.is_some_and(|w| capacity.contains(&w)) {
                self.model_close(old, expected);
                closed_first = true;
                want = self.open_refusal(user, room, after);
            }
        }
        let r = self.ask(OpenListener {
            user: user.to_owned(),
            room: room.to_owned(),
            resume,
            create_if_missing: create,
            replacing,
        });
        let close_after = replacing_open.filter(|_| !closed_first);
        let mr = self.model.rooms.get(room);
        let latest = mr.map_or(0, |m| m.messages.len() as u64);
        assert_eq!(
            code(&r),
            want,
            "open {room} by {user} after {after:?} replacing {replacing:?}: {r:?}"
        );
        let Ok(opened) = r else {
            // A refused replacement still closes the listener it was to replace.
            if let Some(old) = close_after {
                self.model_close(old, expected);
            }
            return;
        };
        let mr = &self.model.rooms[room];
        let first_held = mr.first_held(self.history_len());
        assert_eq!(opened.latest, Seq(latest));
        let backlog: Vec<u64> = opened.backlog.iter().map(|m| m.seq.0).collect();
        match after {
            None => {
                assert!(
                    backlog.is_empty() && opened.gap.is_none(),
                    "live open has no backlog"
                );
            }
            Some(n) => {
                let n = u64::from(n);
                let start = (n + 1).max(first_held);
                assert_eq!(
                    backlog,
                    (start..=latest).collect::<Vec<_>>(),
                    "resume after {n} yields the missed messages"
                );
                for m in &opened.backlog {
                    let want = &mr.messages[(m.seq.0 - 1) as usize];
                    assert!(
                        want.matches(m),
                        "backlog {m:?} is as the model has it: {want:?}"
                    );
                }
                let gap = (n + 1 < first_held).then_some(crate::Gap {
                    after: Seq(n),
                    first_held: Seq(first_held),
                });
                assert_eq!(
                    opened.gap, gap,
                    "resume after {n} with oldest held {first_held}"
                );
            }
        }
        let joined = !self.model.presence(room).contains_key(user);
        self.model
            .listeners
            .insert(opened.listener, (room.to_owned(), user.to_owned()));
        let joined = joined && self.model.presence(room).len() <= ANNOUNCE_UP_TO;
        self.model.rooms.get_mut(room).expect("present").last_active = self.now;
        self.opened.push(opened.listener);
        let mut received = backlog;
        if received.is_empty() {
            // Nothing handed over yet: the next message must be latest + 1.
            received.push(latest);
        }
        self.received.insert(opened.listener, received);
        if joined {
            expected.push(Event::Joined {
                room: opened.room.clone(),
                user: crate::UserId::parse(user, 16).expect("valid"),
            });
        }
        if let Some(old) = close_after {
            self.model_close(old, expected);
        }
        let present: BTreeMap<String, usize> = opened
            .presence
            .iter()
            .map(|e| (e.user.to_string(), e.listeners))
            .collect();
        let mut want_present = self.model.presence(room);
        if close_after.is_some() {
            // The snapshot is taken when the new listener opens, before the old one closes.
            *want_present.entry(user.to_owned()).or_insert(0) += 1;
        }
        assert_eq!(
            present, want_present,
            "presence when {user} opens on {room}"
        );
    }

    /// The refusal the model predicts for opening a listener, in core's order.
    fn open_refusal(&self, user: &str, room: &str, after: Option<u8>) -> Option<&'static str> {
        let mr = self.model.rooms.get(room);
        let latest = mr.map_or(0, |m| m.messages.len() as u64);
        Self::name_refusal(user, room)
            .or_else(|| mr.is_none().then_some("room-not-found"))
            .or_else(|| mr?.barred(user))
            .or_else(|| {
                after
                    .is_some_and(|n| u64::from(n) > latest)
                    .then_some("resume-ahead")
            })
            .or_else(|| {
                (self.model.listeners_of(room).count() >= self.config.limits.max_listeners_per_room)
                    .then_some("too-many-listeners")
            })
            .or_else(|| {
                (self.model.listeners.len() >= self.config.limits.max_listeners)
                    .then_some("server-full")
            })
            .or_else(|| {
                (self
                    .model
                    .listeners_of(room)
                    .filter(|(_, u)| *u == user)
                    .count()
                    >= self.config.limits.max_listeners_per_user)
                    .then_some("too-many-user-listeners")
            })
    }

    fn submit(
        &mut self,
        user: &str,
        room: &str,
        (text, text_refusal): (&str, Option<&str>),
        (key, create): (Option<&str>, bool),
        expected: &mut Vec<Event>,
    ) {
        let created = if create {
            self.create_if_missing(user, room, expected)
        } else {
            None
        };
        let r = self.ask(Submit {
            user: user.to_owned(),
            room: room.to_owned(),
            text: text.to_owned(),
            idempotency_key: key.map(str::to_owned),
            create_if_missing: create,
            kind: Default::default(),
            recalled: None,
        });
        let normalized = text.replace("\r\n", "\n");
        let history_len = self.history_len();
        let mr = self.model.rooms.get(room);
        // A key matches if a held message by this user carries it.
        let matched = mr.zip(key).and_then(|(mr, key)| {
            mr.messages
                .iter()
                .enumerate()
                .filter(|(i, _)| mr.held(*i as u64 + 1, history_len))
                .find(|(_, m)| m.user == user && m.key.as_deref() == Some(key))
                .map(|(i, m)| (i as u64 + 1, m.text == normalized))
        });
        let want = created
            .or_else(|| Self::name_refusal(user, room))
            .or_else(|| {
                key.filter(|k| *k == KEYS[2])
                    .map(|_| "invalid-idempotency-key")
            })
            .or(text_refusal)
            .or_else(|| mr.is_none().then_some("room-not-found"))
            .or_else(|| mr?.barred(user))
            .or_else(|| {
                let until = mr?.muted.get(user).copied()?;
                (until > self.now).then_some("muted")
            })
            .or_else(|| {
                matched
                    .filter(|(_, same)| !same)
                    .map(|_| "idempotency-conflict")
            });
        // A new message (not a retry) spends a token of the poster's bucket.
        let wait = match (want, matched) {
            (None, None) => self.model.take_token(user, self.now, &self.config),
            _ => None,
        };
        if let Some(wait) = wait {
            let want = Err::<(), _>(Error::RateLimited {
                retry_after: Duration::from_millis(wait),
            });
            assert_eq!(r.as_ref().map(|_| ()), want.as_ref().map(|_| ()));
            assert_eq!(r.err(), want.err(), "rate of {user}");
            return;
        }
        assert_eq!(
            code(&r),
            want,
            "submit {text:?} to {room} by {user} key {key:?}: {r:?}"
        );
        let Ok(submitted) = r else { return };
        if let Some((seq, _)) = matched {
            assert!(submitted.duplicate, "a retried key returns the original");
            assert_eq!(submitted.message.seq, Seq(seq));
            return;
        }
        assert!(!submitted.duplicate);
        let mr = self
            .model
            .rooms
            .get_mut(room)
            .expect("accepted so the room exists");
        mr.messages.push(ModelMessage::new(
            user,
            normalized,
            key,
            Kind::default(),
            self.now,
        ));
        mr.last_active = self.now;
        let m = &submitted.message;
        assert_eq!(
            m.seq,
            Seq(mr.messages.len() as u64),
            "the next sequence number"
        );
        assert_eq!(m.sent_at, self.ts());
        expected.push(Event::Published(submitted.message));
    }

    /// An edit, deletion, reaction or reply, checked against the model's rules in core's order.
    /// A message older than the ring is answered `message-not-held`; the harness then hands it
    /// over as a host would from storage (the model's copy), and asks again.
    fn change(
        &mut self,
        user: &str,
        room: &str,
        of: Seq,
        (what, arg): (u8, u8),
        expected: &mut Vec<Event>,
    ) {
        let (text, text_refusal) = pick(&TEXTS, arg);
        let emoji = Emoji::parse(pick(&EMOJI, arg)).expect("the pool's emoji parse");
        let target = pick(&USERS, arg);
        let moderation = match what {
            5 => Some(Moderation::Ban),
            6 => Some(Moderation::Unban),
            7 => Some(Moderation::Mute {
                seconds: MUTE_SECONDS,
            }),
            8 => Some(Moderation::Unmute),
            9 => Some(Moderation::Kick),
            _ => None,
        };
        if let Some(action) = moderation {
            return self.moderate(user, room, target, action, expected);
        }
        let kind = match what {
            0 => Kind::Edit { of },
            1 => Kind::Delete { of },
            2 | 3 => Kind::React {
                of,
                emoji: emoji.clone(),
                added: what == 2,
            },
            _ => Kind::Post {
                reply_to: Some(of),
                attachments: Vec::new(),
            },
        };
        let has_text = matches!(kind, Kind::Edit { .. } | Kind::Post { .. });
        let submit = Submit {
            user: user.to_owned(),
            room: room.to_owned(),
            text: if has_text { text } else { "" }.to_owned(),
            idempotency_key: None,
            create_if_missing: false,
            kind: kind.clone(),
            recalled: None,
        };
        let mut r = self.ask(submit.clone());
        let first_held = self
            .model
            .rooms
            .get(room)
            .map_or(1, |mr| mr.first_held(self.history_len()));
        if let Err(Error::NotHeld { seq, .. }) = &r {
            assert!(seq.0 < first_held, "{seq} is held, yet core asks for it");
            let m = &self.model.rooms[room].messages[(seq.0 - 1) as usize];
            let recalled = self.model_message(room, *seq, m);
            r = self.ask(Submit {
                recalled: Some(recalled.into()),
                ..submit
            });
        }
        let normalized = text.replace("\r\n", "\n");
        let mr = self.model.rooms.get(room);
        let latest = mr.map_or(0, |m| m.messages.len() as u64);
        let target = mr
            .filter(|_| of.0 >= 1 && of.0 <= latest)
            .map(|mr| &mr.messages[(of.0 - 1) as usize]);
        let mut unchanged = false;
        let want = Self::name_refusal(user, room)
            .or(if has_text { text_refusal } else { None })
            .or_else(|| mr.is_none().then_some("room-not-found"))
            .or_else(|| mr?.barred(user))
            .or_else(|| {
                let speaks = !matches!(kind, Kind::Delete { .. });
                let until = mr?.muted.get(user).copied()?;
                (speaks && until > self.now).then_some("muted")
            })
            .or_else(|| target.is_none().then_some("message-not-found"))
            .or_else(|| {
                let (t, owner) = (target?, &mr?.owner);
                if matches!(kind, Kind::Post { .. }) {
                    return None;
                }
                if !matches!(t.kind, Kind::Post { .. }) {
                    return Some("not-a-message");
                }
                if t.deleted {
                    return Some("message-deleted");
                }
                match &kind {
                    Kind::Delete { .. } if owner == user => None,
                    Kind::Edit { .. } | Kind::Delete { .. } if t.user != user => {
                        Some("permission-denied")
                    }
                    Kind::Edit { .. } | Kind::Delete { .. }
                        if self.now - t.sent_at > crate::time::millis(EDIT_WINDOW) =>
                    {
                        Some("edit-window-closed")
                    }
                    Kind::React { added, .. } => {
                        let at = t.reactions.iter().find(|(e, _)| e == emoji.as_str());
                        let has = at.is_some_and(|(_, users)| users.iter().any(|u| u == user));
                        unchanged = has == *added;
                        let full =
                            t.reactions.len() >= self.config.limits.max_reactions_per_message;
                        (!unchanged && *added && at.is_none() && full)
                            .then_some("too-many-reactions")
                    }
                    Kind::Edit { .. }
                    | Kind::Delete { .. }
                    | Kind::Post { .. }
                    | Kind::Moderate { .. } => None,
                }
            });
        let wait = match (want, unchanged) {
            (None, false) => self.model.take_token(user, self.now, &self.config),
            _ => None,
        };
        if let Some(wait) = wait {
            let refused = Error::RateLimited {
                retry_after: Duration::from_millis(wait),
            };
            assert_eq!(r.err(), Some(refused), "rate of {user}");
            return;
        }
        assert_eq!(code(&r), want, "{kind:?} in {room} by {user}: {r:?}");
        let Ok(submitted) = r else { return };
        let mr = self.model.rooms.get_mut(room).expect("accepted: it exists");
        if unchanged {
            assert!(submitted.duplicate, "a reaction that changes nothing");
            assert!(mr.messages[(of.0 - 1) as usize].matches(&submitted.message));
            return;
        }
        assert!(!submitted.duplicate);
        let text = if has_text { normalized } else { String::new() };
        let entry = ModelMessage::new(user, text.clone(), None, kind.clone(), self.now);
        let target = &mut mr.messages[(of.0 - 1) as usize];
        match &kind {
            Kind::Post { .. } | Kind::Moderate { .. } => {}
            Kind::Edit { .. } => {
                target.text = text;
                target.edited = true;
            }
            Kind::Delete { .. } => {
                target.text.clear();
                target.deleted = true;
                target.reactions.clear();
                for m in &mut mr.messages {
                    if matches!(m.kind, Kind::Edit { of: o } if o == of) {
                        m.text.clear();
                        m.deleted = true;
                    }
                }
            }
            Kind::React { emoji, added, .. } => {
                let at = target
                    .reactions
                    .iter()
                    .position(|(e, _)| e == emoji.as_str());
                match (at, added) {
                    (Some(i), true) => target.reactions[i].1.push(user.to_owned()),
                    (None, true) => target
                        .reactions
                        .push((emoji.to_string(), vec![user.to_owned()])),
                    (Some(i), false) => {
                        target.reactions[i].1.retain(|u| u != user);
                        if target.reactions[i].1.is_empty() {
                            target.reactions.remove(i);
                        }
                    }
                    (None, false) => unreachable!("a reaction taken back was there"),
                }
            }
        }
        mr.messages.push(entry);
        mr.last_active = self.now;
        let m = &submitted.message;
        assert_eq!(
            m.seq,
            Seq(mr.messages.len() as u64),
            "the next sequence number"
        );
        assert!(mr.messages[(m.seq.0 - 1) as usize].matches(m), "{m:?}");
        expected.push(Event::Published(submitted.message));
    }

    /// A moderation by `user` of `target`, checked against the model's rules in core's order;
    /// a kick or ban closes the target's listeners on the room, each told why.
    fn moderate(
        &mut self,
        user: &str,
        room: &str,
        target: &str,
        action: Moderation,
        expected: &mut Vec<Event>,
    ) {
        // A name that breaks the rules never becomes a `UserId`: hosts refuse it first.
        let Ok(whom) = UserId::parse(target, 16) else {
            return;
        };
        let r = self.ask(Submit::new(
            user.to_owned(),
            room.to_owned(),
            String::new(),
            Kind::Moderate { user: whom, action },
        ));
        let mr = self.model.rooms.get(room);
        let want = Self::name_refusal(user, room)
            .or_else(|| mr.is_none().then_some("room-not-found"))
            .or_else(|| mr?.barred(user))
            .or_else(|| (mr?.owner != user).then_some("permission-denied"))
            .or_else(|| (target == user).then_some("moderation"))
            .or_else(|| (mr?.owner == target).then_some("moderation"));
        let wait = match want {
            None => self.model.take_token(user, self.now, &self.config),
            Some(_) => None,
        };
        if let Some(wait) = wait {
            let refused = Error::RateLimited {
                retry_after: Duration::from_millis(wait),
            };
            assert_eq!(r.err(), Some(refused), "rate of {user}");
            return;
        }
        assert_eq!(
            code(&r),
            want,
            "{action:?} of {target} in {room} by {user}: {r:?}"
        );
        let Ok(submitted) = r else { return };
        let now = self.now;
        let mr = self.model.rooms.get_mut(room).expect("accepted: it exists");
        let kind = submitted.message.kind.clone();
        mr.messages
            .push(ModelMessage::new(user, String::new(), None, kind, now));
        mr.last_active = now;
        let by = UserId::parse(user, 16).expect("valid");
        let reason = match action {
            Moderation::Ban => {
                mr.banned.insert(target.to_owned());
                Some(CloseReason::Banned { by })
            }
            Moderation::Unban => {
                mr.banned.remove(target);
                None
            }
            Moderation::Mute { seconds } => {
                mr.muted.insert(target.to_owned(), now + seconds * 1000);
                None
            }
            Moderation::Unmute => {
                mr.muted.remove(target);
                None
            }
            Moderation::Kick => Some(CloseReason::Kicked { by }),
            Moderation::Appoint | Moderation::Dismiss => None,
        };
        assert_eq!(submitted.message.seq, Seq(mr.messages.len() as u64));
        expected.push(Event::Published(submitted.message));
        if let Some(reason) = reason {
            let theirs: Vec<ListenerId> = self
                .model
                .listeners_of(room)
                .filter(|(_, u)| u.as_str() == target)
                .map(|(id, _)| *id)
                .collect();
            for listener in theirs {
                expected.push(Event::ListenerClosed {
                    listener,
                    room: RoomId::parse(room, 8).expect("valid"),
                    reason: reason.clone(),
                });
                self.model_close(listener, expected);
            }
        }
    }

    /// The model's message `seq` of `room`, as a host would read it from storage.
    fn model_message(&self, room: &str, seq: Seq, m: &ModelMessage) -> Message {
        let user = |u: &str| UserId::parse(u, 16).expect("model users are valid");
        let reactions = m
            .reactions
            .iter()
            .map(|(e, users)| crate::message::Reaction {
                emoji: Emoji::parse(e).expect("model emoji are valid"),
                users: users.iter().map(|u| user(u)).collect(),
            })
            .collect();
        Message {
            id: MessageId(0),
            room: RoomId::parse(room, 8).expect("model rooms are valid"),
            seq,
            user: user(&m.user),
            text: m.text.clone(),
            sent_at: Timestamp::from_unix_millis(m.sent_at),
            idempotency_key: None,
            kind: m.kind.clone(),
            state: State {
                edited_at: m.edited.then_some(Timestamp::from_unix_millis(m.sent_at)),
                deleted: m.deleted,
                reactions,
            },
        }
    }

    fn history(&mut self, room: &str, cursor: u8, at: u8, limit: u8) {
        let at = Seq(u64::from(at));
        let cursor = match cursor % 3 {
            0 => Cursor::Newest,
            1 => Cursor::After(at),
            _ => Cursor::Before(at),
        };
        let r = self.ask(History {
            user: USERS[2].to_owned(),
            room: room.to_owned(),
            cursor,
            limit: (limit > 0).then_some(usize::from(limit)),
        });
        let mr = self.model.rooms.get(room);
        let latest = mr.map_or(0, |m| m.messages.len() as u64);
        let want = Self::name_refusal(USERS[2], room)
            .or_else(|| mr.is_none().then_some("room-not-found"))
            .or_else(|| mr?.barred(USERS[2]))
            .or_else(|| {
                matches!(cursor, Cursor::After(a) if a.0 > latest).then_some("resume-ahead")
            });
        assert_eq!(code(&r), want, "history {room} {cursor:?}: {r:?}");
        let Ok(page) = r else { return };
        let mr = mr.expect("exists");
        let first_held = mr.first_held(self.history_len());
        let oldest_held = mr.oldest_held(self.history_len());
        let held: Vec<u64> = (1..=latest)
            .filter(|s| mr.held(*s, self.history_len()))
            .collect();
        let limits = &self.config.limits;
        let asked = if limit == 0 {
            limits.history_page_len
        } else {
            usize::from(limit)
        };
        let limit = asked.min(limits.max_page_len) as u64;
        assert_eq!(page.limit as u64, limit, "the page length used");
        let want: Vec<u64> = match cursor {
            Cursor::Newest => newest(held, limit),
            Cursor::Before(b) => newest(held.into_iter().filter(|s| *s < b.0).collect(), limit),
            // Reading forward, only the run where every entry is held.
            Cursor::After(a) => (first_held..=latest)
                .filter(|s| *s > a.0)
                .take(limit as usize)
                .collect(),
        };
        let got: Vec<u64> = page.messages.iter().map(|m| m.seq.0).collect();
        assert_eq!(got, want, "history {room} {cursor:?} limit {limit}");
        let mr = &self.model.rooms[room];
        for m in &page.messages {
            let want = &mr.messages[(m.seq.0 - 1) as usize];
            assert!(
                want.matches(m),
                "history has {m:?} as the model does: {want:?}"
            );
        }
        assert_eq!(
            (page.first_held, page.latest),
            (Seq(oldest_held), Seq(latest))
        );
        let gap = matches!(cursor, Cursor::After(a) if a.0 + 1 < first_held);
        assert_eq!(page.gap.is_some(), gap);
    }

    /// Drains events, handing published messages to the harness's record of each listener.
    fn drain(&mut self) -> Vec<Event> {
        let mut events = Vec::new();
        for _ in 0..10_000 {
            let Some(event) = self.core.poll_event() else {
                break;
            };
            if let Event::Published(m) = &event {
                let deleted = |seq: Seq| {
                    self.model.rooms[m.room.as_str()].messages[(seq.0 - 1) as usize].deleted
                };
                if let Some(of) = m.changes() {
                    assert!(
                        m.text.is_empty() || !deleted(of),
                        "the text of deleted message {of} goes out again: {m:?}"
                    );
                }
                for (id, _) in self.model.listeners_of(m.room.as_str()) {
                    self.received
                        .get_mut(id)
                        .expect("every open listener is tracked")
                        .push(m.seq.0);
                }
            }
            events.push(event);
        }
        assert_eq!(self.core.poll_event(), None, "a drain ends");
        events
    }

    fn check_invariants(&self, rooms_before: &BTreeSet<String>, events: &[Event]) {
        let core = &self.core;
        // No event names an unknown room.
        for e in events {
            let room = e.room().as_str();
            assert!(
                rooms_before.contains(room) || self.model.rooms.contains_key(room),
                "event {e:?} names an unknown room"
            );
        }
        assert_eq!(core.room_count(), self.model.rooms.len(), "room count");
        assert_eq!(
            core.stats().messages_held,
            core.messages_held_recounted(),
            "the held-message count drifted"
        );
        for name in ROOMS {
            let (Some(mr), Some(room)) = (self.model.rooms.get(name), core.room_state(name)) else {
                assert!(
                    core.room_state(name).is_none(),
                    "deleted room {name} holds nothing"
                );
                continue;
            };
            // Sequence numbers are contiguous, and history holds the newest messages and the
            // newest run of every entry, each bounded, whatever the changes among them.
            assert_eq!(core.latest(name), Some(Seq(mr.messages.len() as u64)));
            let len = self.history_len();
            let held: Vec<_> = room.history().iter().collect();
            let posts = held
                .iter()
                .filter(|m| matches!(m.kind, Kind::Post { .. }))
                .count();
            assert!(posts <= len && held.len() - posts <= len);
            let want: Vec<u64> = (1..=mr.messages.len() as u64)
                .filter(|s| mr.held(*s, len))
                .collect();
            let got: Vec<u64> = held.iter().map(|m| m.seq.0).collect();
            assert_eq!(got, want, "{name} holds the newest messages and run");
            assert_eq!(
                room.history().first_held(),
                Seq(mr.first_held(len)),
                "{name}'s complete run"
            );
            for m in &held {
                let want = &mr.messages[(m.seq.0 - 1) as usize];
                assert!(
                    want.matches(m),
                    "{name} holds {m:?} as the model has it: {want:?}"
                );
            }
            assert!(room.history().key_count() <= held.len());
            // A banned user holds no listener here (so receives nothing from the room), and
            // who is banned and muted is as the model has it.
            let banned: BTreeSet<String> = room
                .access()
                .banned
                .iter()
                .map(ToString::to_string)
                .collect();
            assert_eq!(banned, mr.banned, "banned in {name}");
            for (_, user) in self.model.listeners_of(name) {
                assert!(
                    !mr.banned.contains(user),
                    "banned {user} still listens to {name}"
                );
            }
            let muted: BTreeMap<String, u64> = room
                .access()
                .muted
                .iter()
                .map(|(u, t)| (u.to_string(), t.as_unix_millis()))
                .collect();
            assert_eq!(muted, mr.muted, "muted in {name}");
            // Presence equals the users holding listeners.
            let presence: BTreeMap<String, usize> = room
                .presence()
                .entries()
                .into_iter()
                .map(|e| (e.user.to_string(), e.listeners))
                .collect();
            assert_eq!(presence, self.model.presence(name), "presence of {name}");
            let listeners: BTreeSet<ListenerId> =
                self.model.listeners_of(name).map(|(id, _)| *id).collect();
            assert_eq!(
                room.listeners().collect::<BTreeSet<_>>(),
                listeners,
                "listeners of {name}"
            );
        }
        // Every listener core holds is one the model holds, in the same room, for the same user.
        for (id, (room, user)) in &self.model.listeners {
            let (r, u) = core
                .listener_room(*id)
                .expect("open listener known to core");
            assert_eq!((r.as_str(), u.as_str()), (room.as_str(), user.as_str()));
        }
        for id in &self.opened {
            if !self.model.listeners.contains_key(id) {
                assert!(
                    core.listener_room(*id).is_none(),
                    "closed listener {id} is gone"
                );
            }
        }
        // Each open listener was handed a gapless, duplicate-free run of sequence numbers.
        for (id, seqs) in &self.received {
            assert!(
                seqs.windows(2).all(|w| w[1] == w[0] + 1),
                "listener {id} received {seqs:?}"
            );
        }
        // Only empty rooms wait to expire.
        let empty = self
            .model
            .rooms
            .keys()
            .filter(|r| self.model.listeners_of(r).next().is_none())
            .count();
        assert_eq!(
            core.expiry_count(),
            empty,
            "expiry deadlines are set for exactly the empty rooms"
        );
        assert_eq!(core.stats().events_dropped, 0);
    }
}

/// The index of `value` in `pool`, so [`pick`] finds it again.
fn index_of(pool: &[&str], value: &str) -> u8 {
    let at = pool.iter().position(|p| *p == value).unwrap_or(0);
    u8::try_from(at).unwrap_or(0)
}

/// The last `limit` of `seqs`.
fn newest(seqs: Vec<u64>, limit: u64) -> Vec<u64> {
    let skip = seqs.len().saturating_sub(limit as usize);
    seqs[skip..].to_vec()
}

/// Runs `ops` through a fresh [`Harness`], checking everything after every step; returns the
/// core's counters, so a caller can check what the run exercised.
pub fn run_ops(ops: &[Op]) -> crate::Stats {
    let mut harness = Harness::default();
    for op in ops {
        harness.apply(op);
    }
    harness.core.stats()
}

/// The fuzz target's body: decode up to 2,000 operations from raw bytes and run them.
pub fn run_fuzz_input(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let mut ops = Vec::new();
    while ops.len() < 2000 && !u.is_empty() {
        match Op::arbitrary(&mut u) {
            Ok(op) => ops.push(op),
            Err(_) => break,
        }
    }
    run_ops(&ops);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A strategy for one operation; small ranges so rooms, keys and limits collide often.
    pub(crate) fn op() -> impl Strategy<Value = Op> {
        let idx = || 0u8..8;
        prop_oneof![
            2 => (0u16..3000).prop_map(|ms| Op::Advance { ms }),
            2 => (idx(), idx()).prop_map(|(user, room)| Op::Create { user, room }),
            1 => (idx(), idx()).prop_map(|(user, room)| Op::Delete { user, room }),
            3 => (idx(), idx(), proptest::option::of(0u8..12), any::<bool>()).prop_map(|(user, room, after, create)| Op::Open { user, room, after, create }),
            2 => (any::<u8>(), proptest::option::of(0u8..12)).prop_map(|(listener, after)| Op::Reopen { listener, after }),
            2 => any::<u8>().prop_map(|listener| Op::Close { listener }),
            6 => (idx(), idx(), idx(), proptest::option::of(0u8..3), proptest::bool::weighted(0.2))
                .prop_map(|(user, room, text, key, create)| Op::Submit { user, room, text, key, create }),
            1 => (idx(), 0u8..3, 0u8..12, 0u8..6).prop_map(|(room, cursor, at, limit)| Op::History { room, cursor, at, limit }),
            1 => idx().prop_map(|room| Op::Presence { room }),
            1 => proptest::option::of(idx()).prop_map(|after| Op::List { after }),
            1 => (idx(), idx(), idx(), any::<bool>()).prop_map(|(user, room, member, add)| Op::Member { user, room, member, add }),
            1 => Just(Op::Timeout),
            5 => (idx(), idx(), 0u8..12, 0u8..10, idx()).prop_map(|(user, room, of, what, arg)| Op::Change { user, room, of, what, arg }),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

        #[test]
        fn core_matches_the_reference_model(ops in proptest::collection::vec(op(), 1..200)) {
            run_ops(&ops);
        }
    }

    #[test]
    fn a_long_scripted_run_exercises_every_limit() {
        let mut ops = Vec::new();
        for i in 0..40u8 {
            ops.push(Op::Create { user: i, room: i });
            ops.push(Op::Open {
                user: i,
                room: i % 3,
                after: Some(i % 5),
                create: i % 4 == 0,
            });
            ops.push(Op::Reopen {
                listener: i,
                after: Some(i % 7),
            });
            for t in 0..8 {
                ops.push(Op::Submit {
                    user: i,
                    room: i % 3,
                    text: t,
                    key: Some(t % 2),
                    create: t == 0,
                });
            }
            ops.push(Op::Close { listener: i / 2 });
            ops.push(Op::Member {
                user: i,
                room: i,
                member: i + 1,
                add: i % 2 == 0,
            });
            ops.push(Op::Advance { ms: 700 });
            ops.push(Op::Timeout);
        }
        // A burst of posts by one user, faster than the rate refills.
        ops.push(Op::Create { user: 0, room: 0 });
        for t in 0..6 {
            ops.push(Op::Submit {
                user: 0,
                room: 0,
                text: t % 2,
                key: None,
                create: false,
            });
        }
        let stats = run_ops(&ops);
        for limit in [
            "too-many-rooms",
            "too-many-listeners",
            "too-many-user-listeners",
            "server-full",
            "rate-limited",
            "message-too-large",
            "resume-ahead",
            "idempotency-conflict",
            "membership",
            "permission-denied",
        ] {
            assert!(
                stats.refused.get(limit).is_some_and(|n| *n > 0),
                "the script never reached {limit}: {:?}",
                stats.refused
            );
        }
    }
    #[test]
    fn a_scripted_run_reaches_every_rule_of_changes() {
        // Each change, then time for the poster's bucket to refill.
        let change = |user, of, what, arg| {
            [
                Op::Change {
                    user,
                    room: 0,
                    of,
                    what,
                    arg,
                },
                Op::Advance { ms: 500 },
            ]
        };
        let mut ops = vec![Op::Create { user: 0, room: 0 }];
        ops.push(Op::Open {
            user: 1,
            room: 0,
            after: Some(0),
            create: false,
        });
        for t in 0..3 {
            ops.push(Op::Submit {
                user: t % 2,
                room: 0,
                text: t,
                key: None,
                create: false,
            });
        }
        ops.extend(
            [
                change(0, 1, 0, 1), // ada edits her message 1
                change(1, 1, 0, 1), // bob may not
                change(1, 9, 2, 0), // no message 9
                change(1, 4, 2, 0), // 4 is an edit
                change(1, 1, 2, 0), // 👍
                change(1, 1, 2, 0), // again: unchanged
                change(1, 1, 2, 1), // ❤
                change(0, 1, 2, 2), // ❤️ is ❤
                change(0, 1, 2, 3), // a third emoji: too many
                change(1, 1, 3, 0), // bob takes 👍 back
                change(1, 2, 4, 0), // bob replies to 2
            ]
            .into_iter()
            .flatten(),
        );
        for _ in 0..6 {
            // Past the ring (4 entries): the harness recalls 1 from the model.
            ops.push(Op::Submit {
                user: 1,
                room: 0,
                text: 0,
                key: None,
                create: false,
            });
            ops.push(Op::Advance { ms: 1000 });
        }
        ops.extend(
            [
                change(1, 1, 2, 3), // a reaction to a message no longer in the ring
                change(1, 2, 1, 0), // bob deletes ada's message 2: no
                change(0, 2, 1, 0), // the owner may
                change(0, 2, 0, 0), // deleted
                change(0, 3, 0, 1), // ada edits her message 3 (recalled)
                [Op::Advance { ms: 21_000 }, Op::Timeout],
                change(0, 3, 0, 0), // ada's window has passed
                change(0, 3, 1, 0), // the owner deletes it anyway, and the edit's text with it
            ]
            .into_iter()
            .flatten(),
        );
        ops.push(Op::History {
            room: 0,
            cursor: 1,
            at: 0,
            limit: 0,
        });
        // Moderation: the owner bans bob (his listener closes), mutes Zoë; others may not.
        ops.extend(
            [
                change(0, 0, 5, 1), // ada bans bob
                change(1, 0, 6, 1), // bob, banned, may do nothing here
                change(2, 0, 5, 1), // Zoë is no moderator
                change(0, 0, 7, 2), // ada mutes Zoë
                change(2, 1, 2, 0), // Zoë, muted, may not react
                change(0, 0, 9, 0), // ada kicks herself: no
                change(0, 0, 6, 1), // ada unbans bob
                change(0, 0, 8, 2), // and unmutes Zoë
            ]
            .into_iter()
            .flatten(),
        );
        ops.push(Op::Open {
            user: 1,
            room: 0,
            after: None,
            create: false,
        });
        let stats = run_ops(&ops);
        for refusal in [
            "message-not-found",
            "not-a-message",
            "message-deleted",
            "edit-window-closed",
            "too-many-reactions",
            "permission-denied",
            "banned",
            "muted",
            "moderation",
        ] {
            assert!(
                stats.refused.get(refusal).is_some_and(|n| *n > 0),
                "the script never reached {refusal}: {:?}",
                stats.refused
            );
        }
        assert!(
            !stats.refused.contains_key("rate-limited"),
            "{:?}",
            stats.refused
        );
        // 3 posts, an edit, 3 reactions added and 1 taken back, a reply, 6 posts, a reaction
        // past the ring, 2 deletions and an edit, 4 moderations.
        assert_eq!(
            stats.messages_accepted,
            3 + 1 + 4 + 1 + 6 + 1 + 3 + 4,
            "{stats:?}"
        );
    }
}

#[cfg(test)]
mod corpus {
    use std::path::Path;

    /// Replays every input of the committed fuzz corpus, so CI exercises the fuzz target on stable.
    #[test]
    fn fuzz_corpus_replays_cleanly() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/core_ops");
        let mut inputs = 0;
        for entry in std::fs::read_dir(&dir).expect("the fuzz corpus is committed") {
            let path = entry.expect("readable corpus entry").path();
            let data = std::fs::read(&path).expect("readable corpus file");
            super::run_fuzz_input(&data);
            inputs += 1;
        }
        // The committed corpus holds about a thousand inputs; far fewer means it was lost.
        assert!(
            inputs >= 500,
            "expected a seeded corpus in {}, found {inputs} inputs",
            dir.display()
        );
    }
}
