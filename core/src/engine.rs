//! [`Core`]: the state machine that ties rooms, listeners, history, presence, limits and policy
//! together.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::ops::Bound;
use std::sync::Arc;
use std::time::Duration;

use crate::command::{
    Command, Created, Cursor, HistoryPage, Opened, Reply, Resume, Submit, Submitted,
};
use crate::deadlines::Deadlines;
use crate::error::Error;
use crate::event::{CloseReason, Event};
use crate::ids::{IdempotencyKey, ListenerId, MessageId, RoomId, UserName};
use crate::limits::{Limits, RateLimiter, check_text};
use crate::message::Message;
use crate::policy::{Action, Policy};
use crate::presence::PresenceEntry;
use crate::room::{Access, Room, RoomPage, RoomSummary, StoredRoom};
use crate::time::Timestamp;

/// Most events held for the host between drains. The contract (drain after every call) keeps
/// the queue far below this: no call emits more than [`EXPIRE_BATCH`] + 1 events.
pub const MAX_QUEUED_EVENTS: usize = 4096;

/// Most rooms one [`Core::handle_timeout`] expires; the rest stay due, so
/// [`Core::poll_timeout`] asks the host to call again at once.
pub const EXPIRE_BATCH: usize = 1024;

/// The id of the direct-message room of a pair: `dm-` and a stable 64-bit FNV-1a hash of the two
/// names, so it is the same on every server and version and needs no lookup table.
fn direct_room_id(pair: &BTreeSet<UserName>) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for name in pair {
        for byte in name.as_str().bytes().chain([0]) {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    }
    format!("dm-{hash:016x}")
}

/// Everything configurable about core.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// What clients may send and how much is held.
    pub limits: Limits,
    /// Messages kept per room for history and resume (default 1,000; at least 1).
    pub history_len: usize,
    /// Close rooms that have had no listener for this long; `None` keeps them (the default).
    pub room_idle_expiry: Option<Duration>,
    /// Who may do what.
    pub policy: Policy,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            limits: Limits::default(),
            history_len: 1000,
            room_idle_expiry: None,
            policy: Policy::default(),
        }
    }
}

/// Counters for metrics. All counts since the core was created.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// Rooms that exist now.
    pub rooms: usize,
    /// Listeners open now.
    pub listeners: usize,
    /// Messages accepted.
    pub messages_accepted: u64,
    /// Submits answered from an idempotency key without posting again.
    pub duplicates: u64,
    /// Commands refused, by [`Error::code`].
    pub refused: BTreeMap<&'static str, u64>,
    /// Events dropped because the host did not drain [`Core::poll_event`]; non-zero means a
    /// host bug.
    pub events_dropped: u64,
    /// Users currently held by the rate limiter.
    pub rate_limited_users: usize,
}

#[derive(Debug, Clone)]
struct Listener {
    room: RoomId,
    user: UserName,
}

/// The roomcast state machine. See the [crate docs](crate) for the drain contract and a host loop.
#[derive(Debug, Clone)]
pub struct Core {
    config: Config,
    rooms: BTreeMap<RoomId, Room>,
    listeners: BTreeMap<ListenerId, Listener>,
    /// Rooms without listeners, by when they expire. Empty unless `room_idle_expiry` is set.
    expiries: Deadlines<RoomId>,
    rate: RateLimiter,
    events: VecDeque<Event>,
    /// The newest time seen: time never runs backwards inside core.
    now: Timestamp,
    next_listener: u64,
    next_message: u64,
    stats: Stats,
}

impl Core {
    /// A core with no rooms.
    pub fn new(config: Config) -> Self {
        Core {
            rate: RateLimiter::new(config.limits.submit_rate),
            config,
            rooms: BTreeMap::new(),
            listeners: BTreeMap::new(),
            expiries: Deadlines::default(),
            events: VecDeque::new(),
            now: Timestamp::EPOCH,
            next_listener: 1,
            next_message: 1,
            stats: Stats::default(),
        }
    }

    /// The configuration this core runs with.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Rebuilds a room from durable storage, before serving. Emits no event (nothing new
    /// happened) and is not subject to the room limit (what is stored stays). A room that
    /// already exists is replaced.
    pub fn restore_room(&mut self, now: Timestamp, stored: StoredRoom) {
        let now = self.tick(now);
        if let Some(newest) = stored.recent.iter().map(|m| m.id.0).max() {
            self.next_message = self.next_message.max(newest.saturating_add(1));
        }
        let id = stored.id.clone();
        self.remove_room_silently(&id);
        self.rooms.insert(
            id.clone(),
            Room::restore(stored, now, self.config.history_len),
        );
        self.schedule_expiry(&id, now);
    }

    /// Makes new message ids start at `next` at the lowest, so ids stay unique across restarts
    /// even for messages whose rooms are gone.
    pub fn restore_message_ids(&mut self, next: MessageId) {
        self.next_message = self.next_message.max(next.0);
    }

    /// The id the next accepted message will get (durable storage records it).
    pub fn next_message_id(&self) -> MessageId {
        MessageId(self.next_message)
    }

    /// Runs any command; the typed methods below do the same one at a time.
    pub fn handle(&mut self, now: Timestamp, command: Command) -> Result<Reply, Error> {
        Ok(match command {
            Command::CreateRoom { user, room } => {
                Reply::RoomCreated(self.create_room(now, &user, &room)?)
            }
            Command::CreatePrivateRoom { user, room } => {
                Reply::RoomCreated(self.create_private_room(now, &user, &room)?)
            }
            Command::OpenDirect { user, other } => {
                Reply::RoomCreated(self.open_direct(now, &user, &other)?)
            }
            Command::Invite { user, room, member } => {
                Reply::MembershipChanged(self.invite(now, &user, &room, &member)?)
            }
            Command::RemoveMember { user, room, member } => {
                Reply::MembershipChanged(self.remove_member(now, &user, &room, &member)?)
            }
            Command::DeleteRoom { user, room } => {
                self.delete_room(now, &user, &room)?;
                Reply::RoomDeleted
            }
            Command::ListRooms { user, after, limit } => {
                Reply::Rooms(self.rooms(&user, after.as_deref(), limit)?)
            }
            Command::OpenListener { user, room, resume } => {
                Reply::ListenerOpened(self.open_listener(now, &user, &room, resume)?)
            }
            Command::CloseListener { listener } => {
                Reply::ListenerClosed(self.close_listener(now, listener))
            }
            Command::Submit(submit) => Reply::Submitted(self.submit(now, submit)?),
            Command::History {
                user,
                room,
                cursor,
                limit,
            } => Reply::History(self.history(&user, &room, cursor, limit)?),
            Command::Presence { user, room } => Reply::Presence(self.presence(&user, &room)?),
            Command::Room { user, room } => Reply::Room(self.room(&user, &room)?),
        })
    }

    /// Creates a room, or returns it as it is if it exists.
    pub fn create_room(
        &mut self,
        now: Timestamp,
        user: &str,
        room: &str,
    ) -> Result<Created, Error> {
        let now = self.tick(now);
        let result = self.try_create_room(now, user, room, false);
        self.count(result)
    }

    /// Creates a private room owned by `user`, its only member until they invite others, or
    /// returns it as it is if it exists and `user` may see it.
    pub fn create_private_room(
        &mut self,
        now: Timestamp,
        user: &str,
        room: &str,
    ) -> Result<Created, Error> {
        let now = self.tick(now);
        let result = self.try_create_room(now, user, room, true);
        self.count(result)
    }

    fn try_create_room(
        &mut self,
        now: Timestamp,
        user: &str,
        room: &str,
        private: bool,
    ) -> Result<Created, Error> {
        let user = self.user(user)?;
        let id = self.room_id(room)?;
        self.config.policy.authorize(&user, Action::CreateRoom)?;
        if let Some(existing) = self.rooms.get(&id) {
            // Creating is idempotent, but a private room is not revealed to outsiders.
            self.config
                .policy
                .authorize_room(&user, Action::ReadRoom, &existing.access)?;
            return Ok(Created {
                room: existing.summary(),
                created: false,
            });
        }
        let access = Access {
            owner: Some(user.clone()),
            private,
            members: if private {
                BTreeSet::from([user])
            } else {
                BTreeSet::new()
            },
        };
        self.insert_room(id, now, access)
    }

    /// Adds a new room (the limit permitting) and announces it with its members.
    fn insert_room(
        &mut self,
        id: RoomId,
        now: Timestamp,
        access: Access,
    ) -> Result<Created, Error> {
        if self.rooms.len() >= self.config.limits.max_rooms {
            return Err(Error::TooManyRooms {
                max: self.config.limits.max_rooms,
            });
        }
        let new = Room::new(id.clone(), now, self.config.history_len, access.clone());
        let summary = new.summary();
        self.rooms.insert(id.clone(), new);
        self.schedule_expiry(&id, now);
        self.emit(Event::RoomCreated {
            room: id.clone(),
            created_at: now,
            owner: access.owner,
            private: access.private,
        });
        for user in access.members {
            self.emit(Event::MemberAdded {
                room: id.clone(),
                user,
            });
        }
        Ok(Created {
            room: summary,
            created: true,
        })
    }

    /// The direct-message room of `user` and `other`: a private room with both as members and
    /// no owner, found or created by naming the other user.
    pub fn open_direct(
        &mut self,
        now: Timestamp,
        user: &str,
        other: &str,
    ) -> Result<Created, Error> {
        let now = self.tick(now);
        let result = self.try_open_direct(now, user, other);
        self.count(result)
    }

    fn try_open_direct(
        &mut self,
        now: Timestamp,
        user: &str,
        other: &str,
    ) -> Result<Created, Error> {
        let user = self.user(user)?;
        let other = self.user(other)?;
        if user == other {
            return Err(Error::Membership {
                reason: "a direct message needs two different users",
            });
        }
        let pair = BTreeSet::from([user, other]);
        // The id comes from the pair, so both find the same room; on the (unlikely) chance that
        // another room holds it, the next suffix is tried.
        let base = direct_room_id(&pair);
        for n in 0u32.. {
            let candidate = if n == 0 {
                base.clone()
            } else {
                format!("{base}-{n}")
            };
            let id = RoomId::parse(&candidate, usize::MAX).expect("hex ids are valid room ids");
            match self.rooms.get(&id) {
                Some(existing)
                    if existing.access.owner.is_none() && existing.access.members == pair =>
                {
                    return Ok(Created {
                        room: existing.summary(),
                        created: false,
                    });
                }
                Some(_) => continue,
                None => {
                    let access = Access {
                        owner: None,
                        private: true,
                        members: pair,
                    };
                    return self.insert_room(id, now, access);
                }
            }
        }
        unreachable!("some suffix is free")
    }

    /// Makes `member` a member of the private room `room`. Owners and admins only; returns
    /// whether they were not a member before.
    pub fn invite(
        &mut self,
        now: Timestamp,
        user: &str,
        room: &str,
        member: &str,
    ) -> Result<bool, Error> {
        self.tick(now);
        let result = self.try_invite(user, room, member);
        self.count(result)
    }

    fn try_invite(&mut self, user: &str, room: &str, member: &str) -> Result<bool, Error> {
        let (id, member) = self.check_membership_change(user, room, member)?;
        let r = self.rooms.get_mut(&id).expect("checked to exist");
        if !r.access.members.insert(member.clone()) {
            return Ok(false);
        }
        self.emit(Event::MemberAdded {
            room: id,
            user: member,
        });
        Ok(true)
    }

    /// Removes `member` from the private room `room`, closing their listeners on it at once.
    /// Owners and admins only; the owner cannot be removed. Returns whether they were a member.
    pub fn remove_member(
        &mut self,
        now: Timestamp,
        user: &str,
        room: &str,
        member: &str,
    ) -> Result<bool, Error> {
        let now = self.tick(now);
        let result = self.try_remove_member(now, user, room, member);
        self.count(result)
    }

    fn try_remove_member(
        &mut self,
        now: Timestamp,
        user: &str,
        room: &str,
        member: &str,
    ) -> Result<bool, Error> {
        let (id, member) = self.check_membership_change(user, room, member)?;
        let r = self.rooms.get_mut(&id).expect("checked to exist");
        if r.access.owner.as_ref() == Some(&member) {
            return Err(Error::Membership {
                reason: "the owner of a room cannot be removed from it",
            });
        }
        if !r.access.members.remove(&member) {
            return Ok(false);
        }
        let theirs: Vec<ListenerId> = r
            .listeners
            .iter()
            .copied()
            .filter(|l| self.listeners.get(l).is_some_and(|l| l.user == member))
            .collect();
        for listener in &theirs {
            r.listeners.remove(listener);
            self.listeners.remove(listener);
        }
        let was_present = r.presence.forget(&member)
            && r.presence.users() < self.config.limits.announce_presence_up_to;
        r.last_active = now;
        if r.listeners.is_empty() {
            self.schedule_expiry(&id, now);
        }
        if was_present {
            self.emit(Event::Left {
                room: id.clone(),
                user: member.clone(),
            });
        }
        self.emit(Event::MemberRemoved {
            room: id,
            user: member,
        });
        Ok(true)
    }

    /// Checks a membership change: valid names, an existing private room, the right to manage it.
    fn check_membership_change(
        &self,
        user: &str,
        room: &str,
        member: &str,
    ) -> Result<(RoomId, UserName), Error> {
        let user = self.user(user)?;
        let id = self.room_id(room)?;
        let member = self.user(member)?;
        let r = self.existing(&id)?;
        self.config
            .policy
            .authorize_room(&user, Action::ManageMembers, &r.access)?;
        if !r.access.private {
            return Err(Error::Membership {
                reason: "a public room has no members to manage",
            });
        }
        if r.access.owner.is_none() {
            return Err(Error::Membership {
                reason: "a direct-message room keeps its two members",
            });
        }
        Ok((id, member))
    }

    /// Deletes a room with its history, closing every listener on it.
    pub fn delete_room(&mut self, now: Timestamp, user: &str, room: &str) -> Result<(), Error> {
        self.tick(now);
        let result = self.try_delete_room(user, room);
        self.count(result)
    }

    fn try_delete_room(&mut self, user: &str, room: &str) -> Result<(), Error> {
        let user = self.user(user)?;
        let id = self.room_id(room)?;
        let access = &self.existing(&id)?.access;
        self.config
            .policy
            .authorize_room(&user, Action::DeleteRoom, access)?;
        self.remove_room(&id, CloseReason::Deleted { by: user });
        Ok(())
    }

    /// Up to `limit` rooms (capped at the page limit) whose ids sort after `after`, by id.
    pub fn rooms(
        &mut self,
        user: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<RoomPage, Error> {
        let result = self.try_rooms(user, after, limit);
        self.count(result)
    }

    fn try_rooms(&self, user: &str, after: Option<&str>, limit: usize) -> Result<RoomPage, Error> {
        let user = self.user(user)?;
        self.config.policy.authorize(&user, Action::ListRooms)?;
        let start = after.map_or(Bound::Unbounded, Bound::Excluded);
        let limit = limit.min(self.config.limits.max_page_len);
        let mut rest = self.rooms.range::<str, _>((start, Bound::Unbounded));
        // Private rooms are listed to their members (and admins) only.
        let admin = self.config.policy.is_admin(&user);
        let mut rest = rest
            .by_ref()
            .filter(|(_, room)| admin || room.access.admits(&user))
            .peekable();
        let rooms: Vec<RoomSummary> = rest
            .by_ref()
            .take(limit)
            .map(|(_, room)| room.summary())
            .collect();
        // Another page exists only if a room follows this one's last.
        let next_after = match (rest.next(), rooms.last()) {
            (Some(_), Some(last)) => Some(last.id.clone()),
            _ => None,
        };
        Ok(RoomPage { rooms, next_after })
    }

    /// One room's summary.
    pub fn room(&mut self, user: &str, room: &str) -> Result<RoomSummary, Error> {
        let result = self.try_room(user, room);
        self.count(result)
    }

    fn try_room(&self, user: &str, room: &str) -> Result<RoomSummary, Error> {
        let user = self.user(user)?;
        let id = self.room_id(room)?;
        let r = self.existing(&id)?;
        self.config
            .policy
            .authorize_room(&user, Action::ReadRoom, &r.access)?;
        Ok(r.summary())
    }

    /// Opens a listener on a room for a user, with the backlog to deliver before live events.
    pub fn open_listener(
        &mut self,
        now: Timestamp,
        user: &str,
        room: &str,
        resume: Resume,
    ) -> Result<Opened, Error> {
        let now = self.tick(now);
        let result = self.try_open_listener(now, user, room, resume);
        self.count(result)
    }

    fn try_open_listener(
        &mut self,
        now: Timestamp,
        user: &str,
        room: &str,
        resume: Resume,
    ) -> Result<Opened, Error> {
        let user = self.user(user)?;
        let id = self.room_id(room)?;
        let max = self.config.limits.max_listeners_per_room;
        let r = self.existing(&id)?;
        self.config
            .policy
            .authorize_room(&user, Action::Listen, &r.access)?;
        let latest = r.history.latest();
        let (backlog, gap) = match resume {
            Resume::Live => (Vec::new(), None),
            Resume::After(after) if after > latest => {
                return Err(Error::ResumeAhead { after, latest });
            }
            Resume::After(after) => r.history.after(after, usize::MAX),
        };
        if r.listeners.len() >= max {
            return Err(Error::TooManyListeners { room: id, max });
        }
        let total = self.config.limits.max_listeners;
        if self.listeners.len() >= total {
            return Err(Error::ServerFull { max: total });
        }
        let per_user = self.config.limits.max_listeners_per_user;
        if r.presence.listeners_of(&user) >= per_user {
            return Err(Error::TooManyUserListeners {
                room: id,
                max: per_user,
            });
        }
        let listener = ListenerId(self.next_listener);
        self.next_listener += 1;
        let r = self
            .rooms
            .get_mut(&id)
            .expect("room checked to exist above");
        r.listeners.insert(listener);
        r.last_active = now;
        let joined = r.presence.add(&user)
            && r.presence.users() <= self.config.limits.announce_presence_up_to;
        self.listeners.insert(
            listener,
            Listener {
                room: id.clone(),
                user: user.clone(),
            },
        );
        self.expiries.remove(&id);
        if joined {
            self.emit(Event::Joined {
                room: id.clone(),
                user,
            });
        }
        Ok(Opened {
            listener,
            room: id,
            gap,
            backlog,
            latest,
        })
    }

    /// Closes a listener. Closing one that is not open (already closed, or its room deleted) is
    /// not an error: returns whether it was open.
    pub fn close_listener(&mut self, now: Timestamp, listener: ListenerId) -> bool {
        let now = self.tick(now);
        let Some(Listener { room, user }) = self.listeners.remove(&listener) else {
            return false;
        };
        let Some(r) = self.rooms.get_mut(&room) else {
            debug_assert!(false, "an open listener's room exists");
            return true;
        };
        r.listeners.remove(&listener);
        r.last_active = now;
        let left = r.presence.remove(&user)
            && r.presence.users() < self.config.limits.announce_presence_up_to;
        let empty = r.listeners.is_empty();
        if empty {
            self.schedule_expiry(&room, now);
        }
        if left {
            self.emit(Event::Left { room, user });
        }
        true
    }

    /// Posts a message. On success the message has the room's next sequence number and is
    /// published as [`Event::Published`]; a retry with the same idempotency key returns the
    /// original instead.
    pub fn submit(&mut self, now: Timestamp, submit: Submit) -> Result<Submitted, Error> {
        let now = self.tick(now);
        let result = self.try_submit(now, submit);
        match &result {
            Ok(Submitted {
                duplicate: true, ..
            }) => self.stats.duplicates += 1,
            Ok(_) => self.stats.messages_accepted += 1,
            Err(_) => {}
        }
        self.count(result)
    }

    fn try_submit(&mut self, now: Timestamp, submit: Submit) -> Result<Submitted, Error> {
        let user = self.user(&submit.user)?;
        let id = self.room_id(&submit.room)?;
        let key = submit
            .idempotency_key
            .as_deref()
            .map(IdempotencyKey::parse)
            .transpose()
            .map_err(Error::InvalidIdempotencyKey)?;
        let text = check_text(submit.text, self.config.limits.message_max_bytes)?;
        let r = self.existing(&id)?;
        self.config
            .policy
            .authorize_room(&user, Action::Post, &r.access)?;
        if let Some(key) = &key
            && let Some(original) = r.history.find_key(&user, key)
        {
            if original.text != text {
                return Err(Error::IdempotencyConflict {
                    key: key.clone(),
                    seq: original.seq,
                });
            }
            return Ok(Submitted {
                message: original.clone(),
                duplicate: true,
            });
        }
        self.rate.take(&user, now)?;
        let r = self
            .rooms
            .get_mut(&id)
            .expect("room checked to exist above");
        let message = Arc::new(Message {
            id: MessageId(self.next_message),
            room: r.id.clone(),
            seq: r.history.latest().next(),
            user,
            text,
            sent_at: now,
            idempotency_key: key,
        });
        self.next_message += 1;
        r.history.push(message.clone());
        r.last_active = now;
        if r.listeners.is_empty() {
            self.schedule_expiry(&id, now);
        }
        self.emit(Event::Published(message.clone()));
        Ok(Submitted {
            message,
            duplicate: false,
        })
    }

    /// A page of a room's history, oldest first, at most `limit` (capped at the page limit) long.
    pub fn history(
        &mut self,
        user: &str,
        room: &str,
        cursor: Cursor,
        limit: usize,
    ) -> Result<HistoryPage, Error> {
        let result = self.try_history(user, room, cursor, limit);
        self.count(result)
    }

    fn try_history(
        &self,
        user: &str,
        room: &str,
        cursor: Cursor,
        limit: usize,
    ) -> Result<HistoryPage, Error> {
        let user = self.user(user)?;
        let id = self.room_id(room)?;
        let r = self.existing(&id)?;
        self.config
            .policy
            .authorize_room(&user, Action::ReadRoom, &r.access)?;
        let history = &r.history;
        let limit = limit.min(self.config.limits.max_page_len);
        let latest = history.latest();
        let (messages, gap) = match cursor {
            Cursor::Newest => (history.before(latest.next(), limit), None),
            Cursor::Before(before) => (history.before(before, limit), None),
            Cursor::After(after) if after > latest => {
                return Err(Error::ResumeAhead { after, latest });
            }
            Cursor::After(after) => history.after(after, limit),
        };
        Ok(HistoryPage {
            messages,
            gap,
            first_held: history.first_held(),
            latest,
        })
    }

    /// Who is in a room, by name.
    pub fn presence(&mut self, user: &str, room: &str) -> Result<Vec<PresenceEntry>, Error> {
        let result = self.try_presence(user, room);
        self.count(result)
    }

    fn try_presence(&self, user: &str, room: &str) -> Result<Vec<PresenceEntry>, Error> {
        let user = self.user(user)?;
        let id = self.room_id(room)?;
        let r = self.existing(&id)?;
        self.config
            .policy
            .authorize_room(&user, Action::ReadRoom, &r.access)?;
        Ok(r.presence.entries())
    }

    /// The next event for the host, oldest first. Drain to `None` after every call.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When [`Core::handle_timeout`] must next be called; `None` if nothing is pending. May be
    /// in the past (work is due now).
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        match (self.expiries.next(), self.rate.poll_timeout()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Does whatever is due at `now`: expires idle rooms (at most [`EXPIRE_BATCH`] per call) and
    /// forgets refilled rate buckets.
    pub fn handle_timeout(&mut self, now: Timestamp) {
        let now = self.tick(now);
        self.rate.handle_timeout(now);
        for _ in 0..EXPIRE_BATCH {
            let Some(room) = self.expiries.pop_due(now) else {
                break;
            };
            self.remove_room(&room, CloseReason::Expired);
        }
    }

    /// Counters for metrics.
    pub fn stats(&self) -> Stats {
        Stats {
            rooms: self.rooms.len(),
            listeners: self.listeners.len(),
            rate_limited_users: self.rate.tracked_users(),
            ..self.stats.clone()
        }
    }

    fn tick(&mut self, now: Timestamp) -> Timestamp {
        self.now = self.now.max(now);
        self.now
    }

    fn user(&self, name: &str) -> Result<UserName, Error> {
        UserName::parse(name, self.config.limits.user_name_max_chars)
            .map_err(Error::InvalidUserName)
    }

    fn room_id(&self, id: &str) -> Result<RoomId, Error> {
        RoomId::parse(id, self.config.limits.room_id_max_len).map_err(Error::InvalidRoomId)
    }

    fn existing(&self, id: &RoomId) -> Result<&Room, Error> {
        self.rooms
            .get(id)
            .ok_or_else(|| Error::RoomNotFound { room: id.clone() })
    }

    fn schedule_expiry(&mut self, room: &RoomId, now: Timestamp) {
        if let Some(idle) = self.config.room_idle_expiry {
            self.expiries.set(room.clone(), now.saturating_add(idle));
        }
    }

    fn remove_room_silently(&mut self, id: &RoomId) -> Option<Room> {
        let room = self.rooms.remove(id)?;
        for listener in &room.listeners {
            self.listeners.remove(listener);
        }
        self.expiries.remove(id);
        Some(room)
    }

    fn remove_room(&mut self, id: &RoomId, reason: CloseReason) {
        if let Some(room) = self.remove_room_silently(id) {
            self.emit(Event::RoomClosed {
                room: room.id,
                reason,
            });
        }
    }

    fn emit(&mut self, event: Event) {
        if self.events.len() >= MAX_QUEUED_EVENTS {
            self.stats.events_dropped += 1;
            return;
        }
        self.events.push_back(event);
    }

    fn count<T>(&mut self, result: Result<T, Error>) -> Result<T, Error> {
        if let Err(e) = &result {
            *self.stats.refused.entry(e.code()).or_insert(0) += 1;
        }
        result
    }

    #[cfg(any(test, feature = "fuzzing"))]
    pub(crate) fn room_state(&self, id: &str) -> Option<&Room> {
        self.rooms.get(id)
    }

    #[cfg(any(test, feature = "fuzzing"))]
    pub(crate) fn listener_room(&self, listener: ListenerId) -> Option<(&RoomId, &UserName)> {
        self.listeners.get(&listener).map(|l| (&l.room, &l.user))
    }

    #[cfg(any(test, feature = "fuzzing"))]
    pub(crate) fn room_count(&self) -> usize {
        self.rooms.len()
    }

    #[cfg(any(test, feature = "fuzzing"))]
    pub(crate) fn expiry_count(&self) -> usize {
        self.expiries.len()
    }

    /// The newest sequence number of a room, for tests.
    #[cfg(any(test, feature = "fuzzing"))]
    pub(crate) fn latest(&self, room: &str) -> Option<crate::ids::Seq> {
        self.rooms.get(room).map(|r| r.history.latest())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::error::{MessageError, NameError};
    use crate::history::Gap;
    use crate::ids::Seq;
    use crate::limits::Rate;
    use crate::policy::Who;

    fn t(ms: u64) -> Timestamp {
        Timestamp::from_unix_millis(ms)
    }

    fn unlimited() -> Config {
        Config {
            limits: Limits {
                submit_rate: None,
                ..Limits::default()
            },
            ..Config::default()
        }
    }

    fn core_with_room(config: Config) -> Core {
        let mut core = Core::new(config);
        core.create_room(t(1), "ada", "lobby").unwrap();
        drain(&mut core);
        core
    }

    fn drain(core: &mut Core) -> Vec<Event> {
        std::iter::from_fn(|| core.poll_event()).collect()
    }

    fn post(core: &mut Core, now: u64, user: &str, text: &str) -> Result<Submitted, Error> {
        core.submit(
            t(now),
            Submit {
                user: user.into(),
                room: "lobby".into(),
                text: text.into(),
                idempotency_key: None,
            },
        )
    }

    fn post_keyed(core: &mut Core, user: &str, text: &str, key: &str) -> Result<Submitted, Error> {
        let submit = Submit {
            user: user.into(),
            room: "lobby".into(),
            text: text.into(),
            idempotency_key: Some(key.into()),
        };
        core.submit(t(5), submit)
    }

    fn seqs(messages: &[Arc<Message>]) -> Vec<u64> {
        messages.iter().map(|m| m.seq.0).collect()
    }

    fn room(id: &str) -> RoomId {
        RoomId::parse(id, 64).unwrap()
    }

    fn user(name: &str) -> UserName {
        UserName::parse(name, 32).unwrap()
    }

    #[test]
    fn create_is_idempotent_and_announced_once() {
        let mut core = Core::new(Config::default());
        let first = core.create_room(t(1), "ada", "lobby").unwrap();
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
        let again = core.create_room(t(2), "bob", "lobby").unwrap();
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
            core.create_room(t(1), "ada", "a/b"),
            Err(Error::InvalidRoomId(NameError::BadCharacter { ch: '/' }))
        );
        assert_eq!(
            core.create_room(t(1), "ada", "much-too-long"),
            Err(Error::InvalidRoomId(NameError::TooLong { len: 13, max: 8 }))
        );
        assert_eq!(
            core.create_room(t(1), "", "lobby"),
            Err(Error::InvalidUserName(NameError::Empty))
        );
        core.create_room(t(1), "ada", "one").unwrap();
        assert_eq!(
            core.create_room(t(1), "ada", "two"),
            Err(Error::TooManyRooms { max: 1 })
        );
        // An existing room is still returned at the limit.
        assert!(!core.create_room(t(1), "ada", "one").unwrap().created);
        assert_eq!(core.stats().refused.get("too-many-rooms"), Some(&1));
        assert_eq!(core.stats().refused.get("invalid-room-id"), Some(&2));
    }

    #[test]
    fn policy_is_consulted_for_create_and_delete() {
        let policy = Policy {
            admins: BTreeSet::from(["root".to_owned()]),
            create_rooms: Who::Admins,
            delete_rooms: Who::Admins,
        };
        let mut core = Core::new(Config {
            policy,
            ..Config::default()
        });
        assert_eq!(
            core.create_room(t(1), "ada", "lobby"),
            Err(Error::PermissionDenied {
                action: Action::CreateRoom
            })
        );
        core.create_room(t(1), "root", "lobby").unwrap();
        assert_eq!(
            core.delete_room(t(1), "ada", "lobby"),
            Err(Error::PermissionDenied {
                action: Action::DeleteRoom
            })
        );
        assert!(post(&mut core, 2, "ada", "anyone may post").is_ok());
        core.delete_room(t(3), "root", "lobby").unwrap();
    }

    #[test]
    fn delete_ends_listeners_and_forgets_everything() {
        let mut core = core_with_room(unlimited());
        let l = core
            .open_listener(t(2), "bob", "lobby", Resume::Live)
            .unwrap()
            .listener;
        let first = post(&mut core, 3, "ada", "hello").unwrap().message;
        drain(&mut core);
        core.delete_room(t(4), "ada", "lobby").unwrap();
        assert_eq!(
            drain(&mut core),
            vec![Event::RoomClosed {
                room: room("lobby"),
                reason: CloseReason::Deleted { by: user("ada") }
            }]
        );
        assert_eq!(core.stats().listeners, 0);
        assert!(
            !core.close_listener(t(5), l),
            "the listener ended with its room"
        );
        assert!(drain(&mut core).is_empty(), "no Left for a deleted room");
        assert_eq!(
            core.delete_room(t(5), "ada", "lobby"),
            Err(Error::RoomNotFound {
                room: room("lobby")
            })
        );
        // A re-created room starts again at 1, but message ids never repeat.
        core.create_room(t(6), "ada", "lobby").unwrap();
        let again = post(&mut core, 7, "ada", "hello again").unwrap().message;
        assert_eq!(again.seq, Seq(1));
        assert!(again.id > first.id);
        assert_eq!(
            core.history("ada", "lobby", Cursor::Newest, 10)
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
            core.create_room(t(1), "ada", id).unwrap();
        }
        let ids = |page: RoomPage| {
            page.rooms
                .into_iter()
                .map(|r| r.id.to_string())
                .collect::<Vec<_>>()
        };
        let next = |page: RoomPage| page.next_after.map(|id| id.to_string());
        assert_eq!(
            next(core.rooms("ada", None, 100).unwrap()).as_deref(),
            Some("b"),
            "capped pages still point on"
        );
        assert_eq!(
            next(core.rooms("ada", None, 1).unwrap()).as_deref(),
            Some("a")
        );
        assert_eq!(
            next(core.rooms("ada", Some("a"), 100).unwrap()),
            None,
            "the last page says so"
        );
        assert_eq!(
            ids(core.rooms("ada", None, 100).unwrap()),
            ["a", "b"],
            "capped at the page limit"
        );
        assert_eq!(ids(core.rooms("ada", Some("a"), 100).unwrap()), ["b", "c"]);
        assert_eq!(
            ids(core.rooms("ada", Some("c"), 100).unwrap()),
            Vec::<String>::new()
        );
        assert_eq!(ids(core.rooms("ada", None, 1).unwrap()), ["a"]);
    }

    #[test]
    fn messages_get_contiguous_sequence_numbers_and_are_published_once() {
        let mut core = core_with_room(unlimited());
        for (i, listener_user) in ["bob", "cy", "cy"].iter().enumerate() {
            core.open_listener(t(2), listener_user, "lobby", Resume::Live)
                .unwrap();
            assert!(i == 2 || !drain(&mut core).is_empty());
        }
        drain(&mut core);
        let mut ids = BTreeSet::new();
        for n in 1..=5 {
            let done = post(&mut core, 10 + n, "ada", &format!("message {n}")).unwrap();
            assert!(!done.duplicate);
            let m = &done.message;
            assert_eq!(
                (m.seq, m.sent_at, m.room.as_str(), m.user.as_str()),
                (Seq(n), t(10 + n), "lobby", "ada")
            );
            assert!(ids.insert(m.id));
            assert_eq!(
                drain(&mut core),
                vec![Event::Published(m.clone())],
                "one event however many listen"
            );
        }
        assert_eq!(core.stats().messages_accepted, 5);
    }

    #[test]
    fn submit_refusals_name_the_rule() {
        let mut core = core_with_room(Config {
            limits: Limits {
                message_max_bytes: 8,
                submit_rate: None,
                ..Limits::default()
            },
            ..Config::default()
        });
        assert_eq!(
            post(&mut core, 2, "ada", "123456789"),
            Err(Error::Message(MessageError::TooLarge { len: 9, max: 8 }))
        );
        assert_eq!(
            post(&mut core, 2, "ada", "  \n "),
            Err(Error::Message(MessageError::Empty))
        );
        assert_eq!(
            post(&mut core, 2, "ada", "a\u{0}b"),
            Err(Error::Message(MessageError::ControlCharacter {
                ch: '\0',
                offset: 1
            }))
        );
        assert_eq!(
            post(&mut core, 2, "ada!", "hi"),
            Err(Error::InvalidUserName(NameError::BadCharacter { ch: '!' }))
        );
        let nowhere = Submit {
            user: "ada".into(),
            room: "nowhere".into(),
            text: "hi".into(),
            idempotency_key: None,
        };
        assert_eq!(
            core.submit(t(2), nowhere),
            Err(Error::RoomNotFound {
                room: room("nowhere")
            })
        );
        assert_eq!(
            post_keyed(&mut core, "ada", "hi", "has space"),
            Err(Error::InvalidIdempotencyKey(NameError::BadCharacter {
                ch: ' '
            }))
        );
        assert!(drain(&mut core).is_empty(), "refusals publish nothing");
        assert_eq!(
            core.history("ada", "lobby", Cursor::Newest, 10)
                .unwrap()
                .latest,
            Seq::ZERO,
            "and use no sequence number"
        );
        assert_eq!(
            post(&mut core, 2, "ada", "8 bytes!").unwrap().message.seq,
            Seq(1)
        );
    }

    #[test]
    fn rate_limit_is_per_user_on_injected_time() {
        let config = Config {
            limits: Limits {
                submit_rate: Some(Rate {
                    burst: 2,
                    per_second: 1,
                }),
                ..Limits::default()
            },
            ..Config::default()
        };
        let mut core = core_with_room(config);
        assert!(post(&mut core, 1000, "ada", "one").is_ok());
        assert!(post(&mut core, 1000, "ada", "two").is_ok());
        assert_eq!(
            post(&mut core, 1000, "ada", "three"),
            Err(Error::RateLimited {
                retry_after: Duration::from_secs(1)
            })
        );
        assert!(
            post(&mut core, 1000, "bob", "mine").is_ok(),
            "another user has their own bucket"
        );
        assert_eq!(core.poll_timeout(), Some(t(2000)), "the refill deadline");
        assert!(post(&mut core, 2000, "ada", "three").is_ok());
        assert_eq!(core.stats().refused.get("rate-limited"), Some(&1));
        core.handle_timeout(t(10_000));
        assert_eq!(
            core.stats().rate_limited_users,
            0,
            "refilled buckets are forgotten"
        );
        assert_eq!(core.poll_timeout(), None);
    }

    /// Replays the events a durable host would have stored into a fresh core.
    fn restored_from(events: &[Event], config: Config, history_len_stored: usize) -> Core {
        let mut stored: BTreeMap<RoomId, StoredRoom> = BTreeMap::new();
        let mut next_id = MessageId(1);
        for event in events {
            match event {
                Event::RoomCreated {
                    room,
                    created_at,
                    owner,
                    private,
                } => {
                    stored.insert(
                        room.clone(),
                        StoredRoom {
                            id: room.clone(),
                            created_at: *created_at,
                            access: Access {
                                owner: owner.clone(),
                                private: *private,
                                members: BTreeSet::new(),
                            },
                            latest: Seq::ZERO,
                            recent: Vec::new(),
                        },
                    );
                }
                Event::MemberAdded { room, user } => {
                    stored
                        .get_mut(room)
                        .unwrap()
                        .access
                        .members
                        .insert(user.clone());
                }
                Event::MemberRemoved { room, user } => {
                    stored.get_mut(room).unwrap().access.members.remove(user);
                }
                Event::RoomClosed { room, .. } => {
                    stored.remove(room);
                }
                Event::Published(m) => {
                    let r = stored.get_mut(&m.room).unwrap();
                    r.latest = m.seq;
                    r.recent.push(m.clone());
                    next_id = MessageId(m.id.0 + 1);
                }
                _ => {}
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

    #[test]
    fn a_restored_core_continues_numbering_history_and_keys() {
        let config = Config {
            history_len: 3,
            ..unlimited()
        };
        let mut core = core_with_room(config.clone());
        let mut events = vec![Event::RoomCreated {
            room: room("lobby"),
            created_at: t(1),
            owner: Some(user("ada")),
            private: false,
        }];
        core.create_room(t(2), "ada", "gone").unwrap();
        core.submit(
            t(2),
            Submit {
                user: "ada".into(),
                room: "gone".into(),
                text: "x".into(),
                idempotency_key: None,
            },
        )
        .unwrap();
        core.delete_room(t(2), "ada", "gone").unwrap();
        for n in 0..4 {
            post(&mut core, 3, "ada", &format!("m{n}")).unwrap();
        }
        post_keyed(&mut core, "ada", "keyed", "k1").unwrap();
        events.extend(drain(&mut core));

        let mut restored = restored_from(&events, config, 2);
        let summary = restored.room("ada", "lobby").unwrap();
        assert_eq!((summary.latest, summary.first_held), (Seq(5), Seq(4)));
        assert_eq!(summary.created_at, t(1));
        assert!(
            restored.room("ada", "gone").is_err(),
            "deleted rooms stay deleted"
        );
        // The retry finds the key again; the next message continues both numberings.
        let retry = post_keyed(&mut restored, "ada", "keyed", "k1").unwrap();
        assert!(retry.duplicate);
        let next = post(&mut restored, 200, "bob", "after restart").unwrap();
        assert_eq!(next.message.seq, Seq(6));
        assert_eq!(next.message.id, core.next_message_id());
        // Resume across the restart: exactly what follows, or a gap for what the ring lacks.
        let opened = restored
            .open_listener(t(201), "cy", "lobby", Resume::After(Seq(4)))
            .unwrap();
        assert_eq!(seqs(&opened.backlog), [5, 6]);
        let opened = restored
            .open_listener(t(201), "cy", "lobby", Resume::After(Seq(1)))
            .unwrap();
        assert_eq!(
            opened.gap,
            Some(Gap {
                after: Seq(1),
                first_held: Seq(4)
            })
        );
    }

    #[test]
    fn private_rooms_admit_members_only_and_removal_ends_listeners() {
        let mut core = Core::new(unlimited());
        core.create_private_room(t(1), "ada", "den").unwrap();
        drain(&mut core);
        let post_as = |core: &mut Core, who: &str| {
            core.submit(
                t(2),
                Submit {
                    user: who.into(),
                    room: "den".into(),
                    text: "hi".into(),
                    idempotency_key: None,
                },
            )
        };
        let denied = |action| Err(Error::PermissionDenied { action });
        assert_eq!(post_as(&mut core, "eve").map(|_| ()), denied(Action::Post));
        assert_eq!(
            core.open_listener(t(2), "eve", "den", Resume::Live)
                .map(|_| ()),
            denied(Action::Listen)
        );
        assert_eq!(
            core.presence("eve", "den").map(|_| ()),
            denied(Action::ReadRoom)
        );
        assert_eq!(
            core.history("eve", "den", Cursor::Newest, 10).map(|_| ()),
            denied(Action::ReadRoom)
        );
        assert_eq!(
            core.create_room(t(2), "eve", "den").map(|_| ()),
            denied(Action::ReadRoom),
            "creating again does not reveal a private room"
        );
        assert!(
            core.rooms("eve", None, 10).unwrap().rooms.is_empty(),
            "nor does the listing"
        );
        assert_eq!(
            core.invite(t(2), "eve", "den", "eve").map(|_| ()),
            denied(Action::ManageMembers)
        );

        assert_eq!(core.invite(t(3), "ada", "den", "bob"), Ok(true));
        assert_eq!(core.invite(t(3), "ada", "den", "bob"), Ok(false));
        assert_eq!(core.rooms("bob", None, 10).unwrap().rooms.len(), 1);
        let bob = core
            .open_listener(t(4), "bob", "den", Resume::Live)
            .unwrap();
        core.open_listener(t(4), "bob", "den", Resume::Live)
            .unwrap();
        post_as(&mut core, "bob").unwrap();
        drain(&mut core);
        assert_eq!(
            core.remove_member(t(5), "bob", "den", "ada").map(|_| ()),
            denied(Action::ManageMembers)
        );
        assert!(matches!(
            core.remove_member(t(5), "ada", "den", "ada"),
            Err(Error::Membership { .. })
        ));
        assert_eq!(core.remove_member(t(5), "ada", "den", "bob"), Ok(true));
        assert_eq!(
            drain(&mut core),
            [
                Event::Left {
                    room: room("den"),
                    user: user("bob")
                },
                Event::MemberRemoved {
                    room: room("den"),
                    user: user("bob")
                }
            ]
        );
        assert_eq!(core.stats().listeners, 0, "both of bob's listeners closed");
        assert!(!core.close_listener(t(6), bob.listener), "already closed");
        assert_eq!(post_as(&mut core, "bob").map(|_| ()), denied(Action::Post));
        assert!(matches!(
            core.invite(t(6), "ada", "lobby-x", "bob"),
            Err(Error::RoomNotFound { .. })
        ));
    }

    #[test]
    fn a_direct_room_is_found_by_either_side_and_closed_to_others() {
        let mut core = Core::new(unlimited());
        let first = core.open_direct(t(1), "ada", "bob").unwrap();
        assert!(first.created && first.room.private && first.room.owner.is_none());
        let id = first.room.id.clone();
        assert!(id.as_str().starts_with("dm-"));
        let events = drain(&mut core);
        assert_eq!(events.len(), 3, "created, then both members: {events:?}");
        let again = core.open_direct(t(2), "bob", "ada").unwrap();
        assert_eq!((again.created, again.room.id), (false, id.clone()));
        assert!(
            core.open_listener(t(3), "bob", id.as_str(), Resume::Live)
                .is_ok()
        );
        assert!(core.history("cy", id.as_str(), Cursor::Newest, 5).is_err());
        assert!(matches!(
            core.open_direct(t(3), "ada", "ada"),
            Err(Error::Membership { .. })
        ));
        assert!(matches!(
            core.invite(t(3), "ada", id.as_str(), "cy"),
            Err(Error::PermissionDenied { .. })
        ));
        // Another pair gets another room.
        let other = core.open_direct(t(4), "ada", "cy").unwrap();
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
        core.create_room(t(1), "ada", "a").unwrap();
        core.create_room(t(1), "ada", "b").unwrap();
        assert_eq!(
            core.delete_room(t(2), "bob", "a"),
            Err(Error::PermissionDenied {
                action: Action::DeleteRoom
            })
        );
        assert_eq!(core.delete_room(t(2), "ada", "a"), Ok(()));
        assert_eq!(core.delete_room(t(2), "root", "b"), Ok(()));
    }

    #[test]
    fn a_retried_submit_returns_the_original() {
        let mut core = core_with_room(Config {
            history_len: 2,
            ..unlimited()
        });
        let first = post_keyed(&mut core, "ada", "hello", "k1").unwrap();
        drain(&mut core);
        let retry = post_keyed(&mut core, "ada", "hello", "k1").unwrap();
        assert!(retry.duplicate);
        assert_eq!(retry.message, first.message);
        assert!(drain(&mut core).is_empty(), "a duplicate publishes nothing");
        assert_eq!(
            post_keyed(&mut core, "ada", "other text", "k1"),
            Err(Error::IdempotencyConflict {
                key: IdempotencyKey::parse("k1").unwrap(),
                seq: Seq(1)
            })
        );
        // Keys belong to their user.
        assert_eq!(
            post_keyed(&mut core, "bob", "hello", "k1")
                .unwrap()
                .message
                .seq,
            Seq(2)
        );
        // Once the message leaves history, its key is forgotten.
        post(&mut core, 6, "ada", "push it out").unwrap();
        let late = post_keyed(&mut core, "ada", "hello", "k1").unwrap();
        assert!(!late.duplicate);
        assert_eq!(late.message.seq, Seq(4));
        assert_eq!(core.stats().duplicates, 1);
    }

    #[test]
    fn presence_joins_on_first_listener_and_leaves_on_last() {
        let mut core = core_with_room(unlimited());
        let a1 = core
            .open_listener(t(2), "ada", "lobby", Resume::Live)
            .unwrap()
            .listener;
        assert_eq!(
            drain(&mut core),
            vec![Event::Joined {
                room: room("lobby"),
                user: user("ada")
            }]
        );
        let a2 = core
            .open_listener(t(2), "ada", "lobby", Resume::Live)
            .unwrap()
            .listener;
        assert!(
            drain(&mut core).is_empty(),
            "a second tab is not a second join"
        );
        core.open_listener(t(2), "bob", "lobby", Resume::Live)
            .unwrap();
        drain(&mut core);
        let who = core.presence("cy", "lobby").unwrap();
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
        assert!(core.close_listener(t(3), a1));
        assert!(drain(&mut core).is_empty());
        assert!(core.close_listener(t(3), a2));
        assert_eq!(
            drain(&mut core),
            vec![Event::Left {
                room: room("lobby"),
                user: user("ada")
            }]
        );
        assert!(!core.close_listener(t(3), a2), "closing twice is fine");
        assert!(
            !core.close_listener(t(3), ListenerId(999)),
            "closing an unknown listener is fine"
        );
        assert!(drain(&mut core).is_empty());
        assert_eq!(
            core.presence("cy", "nowhere"),
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
            let l = core
                .open_listener(t(2), who, "lobby", Resume::Live)
                .unwrap();
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
            core.presence("ada", "lobby").unwrap().len(),
            3,
            "but is present"
        );
        assert!(core.close_listener(t(3), cy));
        assert!(drain(&mut core).is_empty(), "nor is their leaving");
        let (cy, _) = open(&mut core, "cy");
        let (_, _) = open(&mut core, "dee");
        core.close_listener(t(3), cy);
        core.close_listener(t(3), cy);
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
        let l = core
            .open_listener(t(2), "ada", "lobby", Resume::Live)
            .unwrap()
            .listener;
        core.open_listener(t(2), "bob", "lobby", Resume::Live)
            .unwrap();
        assert_eq!(
            core.open_listener(t(2), "cy", "lobby", Resume::Live),
            Err(Error::TooManyListeners {
                room: room("lobby"),
                max: 2
            })
        );
        core.close_listener(t(3), l);
        assert!(
            core.open_listener(t(3), "cy", "lobby", Resume::Live)
                .is_ok()
        );
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
        let first = core
            .open_listener(t(2), "ada", "lobby", Resume::Live)
            .unwrap()
            .listener;
        core.open_listener(t(2), "ada", "lobby", Resume::Live)
            .unwrap();
        assert_eq!(
            core.open_listener(t(2), "ada", "lobby", Resume::Live),
            Err(Error::TooManyUserListeners {
                room: room("lobby"),
                max: 2
            })
        );
        assert!(
            core.open_listener(t(2), "bob", "lobby", Resume::Live)
                .is_ok(),
            "others are not held up"
        );
        core.close_listener(t(3), first);
        assert!(
            core.open_listener(t(3), "ada", "lobby", Resume::Live)
                .is_ok()
        );
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
        core.create_room(t(1), "ada", "other").unwrap();
        let first = core
            .open_listener(t(2), "ada", "lobby", Resume::Live)
            .unwrap()
            .listener;
        core.open_listener(t(2), "bob", "other", Resume::Live)
            .unwrap();
        assert_eq!(
            core.open_listener(t(2), "cy", "other", Resume::Live),
            Err(Error::ServerFull { max: 2 })
        );
        core.close_listener(t(3), first);
        assert!(
            core.open_listener(t(3), "cy", "other", Resume::Live)
                .is_ok()
        );
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
        let open = |core: &mut Core, resume| core.open_listener(t(20), "bob", "lobby", resume);
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

    #[test]
    fn history_pages_forward_and_back() {
        let mut core = core_with_room(Config {
            history_len: 6,
            limits: Limits {
                max_page_len: 3,
                submit_rate: None,
                ..Limits::default()
            },
            ..Config::default()
        });
        for n in 1..=10 {
            post(&mut core, n, "ada", &format!("m{n}")).unwrap();
        }
        let page = |cursor, limit| core.clone().history("bob", "lobby", cursor, limit).unwrap();
        let newest = page(Cursor::Newest, 100);
        assert_eq!(
            (seqs(&newest.messages), newest.first_held, newest.latest),
            (vec![8, 9, 10], Seq(5), Seq(10))
        );
        assert_eq!(seqs(&page(Cursor::Before(Seq(8)), 2).messages), vec![6, 7]);
        assert_eq!(seqs(&page(Cursor::Before(Seq(6)), 3).messages), vec![5]);
        assert_eq!(
            seqs(&page(Cursor::After(Seq(6)), 3).messages),
            vec![7, 8, 9]
        );
        let gap = page(Cursor::After(Seq(2)), 3);
        assert_eq!(
            (seqs(&gap.messages), gap.gap),
            (
                vec![5, 6, 7],
                Some(Gap {
                    after: Seq(2),
                    first_held: Seq(5)
                })
            )
        );
        assert_eq!(
            core.history("bob", "lobby", Cursor::After(Seq(11)), 3),
            Err(Error::ResumeAhead {
                after: Seq(11),
                latest: Seq(10)
            })
        );
    }

    #[test]
    fn empty_rooms_expire_after_the_idle_time() {
        let mut core = Core::new(Config {
            room_idle_expiry: Some(Duration::from_secs(60)),
            ..unlimited()
        });
        assert_eq!(core.poll_timeout(), None);
        core.create_room(t(0), "ada", "quiet").unwrap();
        core.create_room(t(0), "ada", "busy").unwrap();
        drain(&mut core);
        assert_eq!(core.poll_timeout(), Some(t(60_000)));
        let l = core
            .open_listener(t(10_000), "bob", "busy", Resume::Live)
            .unwrap()
            .listener;
        let posted = Submit {
            user: "ada".into(),
            room: "quiet".into(),
            text: "anyone?".into(),
            idempotency_key: None,
        };
        core.submit(t(30_000), posted).unwrap();
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
                reason: CloseReason::Expired
            }]
        );
        assert_eq!(
            core.poll_timeout(),
            None,
            "a room with a listener never expires"
        );
        core.handle_timeout(t(1_000_000));
        assert!(drain(&mut core).is_empty());
        core.close_listener(t(1_000_000), l);
        drain(&mut core);
        assert_eq!(core.poll_timeout(), Some(t(1_060_000)));
        core.handle_timeout(t(1_060_000));
        assert_eq!(
            drain(&mut core),
            vec![Event::RoomClosed {
                room: room("busy"),
                reason: CloseReason::Expired
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
                max_rooms: rooms,
                ..Limits::default()
            },
            ..Config::default()
        });
        for i in 0..rooms {
            core.create_room(t(0), "ada", &format!("room{i}")).unwrap();
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
        let run = |core: &mut Core, c| core.handle(t(1), c).unwrap();
        assert!(
            matches!(run(&mut core, Command::CreateRoom { user: user(), room: lobby() }), Reply::RoomCreated(c) if c.created)
        );
        let Reply::ListenerOpened(opened) = run(
            &mut core,
            Command::OpenListener {
                user: user(),
                room: lobby(),
                resume: Resume::Live,
            },
        ) else {
            panic!("wrong reply")
        };
        let submit = Submit {
            user: user(),
            room: lobby(),
            text: "hi".into(),
            idempotency_key: None,
        };
        assert!(
            matches!(run(&mut core, Command::Submit(submit)), Reply::Submitted(s) if s.message.seq == Seq(1))
        );
        let history = Command::History {
            user: user(),
            room: lobby(),
            cursor: Cursor::Newest,
            limit: 10,
        };
        assert!(matches!(run(&mut core, history), Reply::History(p) if p.messages.len() == 1));
        assert!(
            matches!(run(&mut core, Command::Presence { user: user(), room: lobby() }), Reply::Presence(p) if p.len() == 1)
        );
        assert!(matches!(
            run(&mut core, Command::Room { user: user(), room: lobby() }),
            Reply::Room(r) if r.latest == Seq(1) && r.listeners == 1
        ));
        assert!(
            matches!(run(&mut core, Command::ListRooms { user: user(), after: None, limit: 5 }), Reply::Rooms(r) if r.rooms.len() == 1)
        );
        assert_eq!(
            run(
                &mut core,
                Command::CloseListener {
                    listener: opened.listener
                }
            ),
            Reply::ListenerClosed(true)
        );
        assert_eq!(
            run(
                &mut core,
                Command::DeleteRoom {
                    user: user(),
                    room: lobby()
                }
            ),
            Reply::RoomDeleted
        );
        assert_eq!(
            core.handle(
                t(1),
                Command::DeleteRoom {
                    user: user(),
                    room: lobby()
                }
            ),
            Err(Error::RoomNotFound {
                room: room("lobby")
            })
        );
    }
}
