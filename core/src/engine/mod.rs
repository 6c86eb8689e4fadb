//! [`Core`]: the state machine that ties rooms, listeners, history, presence, limits and policy
//! together. One file per concern: [`rooms`] (create, direct, delete, list, view),
//! [`membership`], [`listeners`] and [`messages`] (submit, history); this one holds the state,
//! the one entry point [`Core::handle`], the outputs and the deadlines.

mod holdings;
mod listeners;
mod membership;
mod messages;
mod replica;
mod rooms;

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::action::Action;
use crate::command::{Ask, Command, Reply};
use crate::deadlines::Deadlines;
use crate::error::Error;
use crate::event::{Event, RoomEnd};
use crate::ids::{MessageId, RoomId, UserId};
use crate::limits::{Limits, RateLimiter, Refill, UserPace};
use crate::log::Sequencer;
use crate::policy::Policy;
use crate::room::{Room, StoredRoom};
use crate::time::Timestamp;

/// Most events held for the host between drains. The contract (drain after every call) keeps
/// the queue far below this: no call emits more than [`EXPIRE_BATCH`] + 1 events, or one per
/// listener a member holds on a room when they are removed.
pub const MAX_QUEUED_EVENTS: usize = 4096;

/// Most rooms one [`Core::handle_timeout`] expires; the rest stay due, so
/// [`Core::poll_timeout`] asks the host to call again at once.
pub const EXPIRE_BATCH: usize = 1024;

/// Everything configurable about core.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Config {
    /// What clients may send and how much is held.
    pub limits: Limits,
    /// Messages kept per room for history and resume (default 1,000; at least 1).
    pub history_len: usize,
    /// Close rooms that have had no listener for this long; `None` keeps them (the default).
    pub room_idle_expiry: Option<Duration>,
    /// Who may do what.
    pub policy: Policy,
    /// Who numbers messages: core itself (one node), or a shared log core replicates.
    #[serde(default)]
    pub sequencer: Sequencer,
    /// With a shared log, how long a hole in a room's sequence may wait for the missing entry
    /// before core asks the host to read it from the log (default 50 ms).
    #[serde(default = "default_fetch_after")]
    pub fetch_after: Duration,
    /// Without `room_idle_expiry`, how long a room without listeners or posts keeps its
    /// messages in memory (default 10 minutes): then they leave it ([`Event::Unloaded`]), and
    /// its history is read from the store or log. With a shared log the whole room is unloaded;
    /// otherwise core keeps what it needs to number and authorize (a few hundred bytes).
    /// `None` keeps every message in memory: a host without a store has no other copy.
    #[serde(default = "default_unload_after")]
    pub unload_after: Option<Duration>,
}

fn default_unload_after() -> Option<Duration> {
    Some(Duration::from_secs(600))
}

fn default_fetch_after() -> Duration {
    Duration::from_millis(50)
}

impl Default for Config {
    fn default() -> Self {
        Config {
            limits: Limits::default(),
            history_len: 1000,
            room_idle_expiry: None,
            policy: Policy::default(),
            sequencer: Sequencer::Core,
            fetch_after: default_fetch_after(),
            unload_after: default_unload_after(),
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
    /// Messages held in memory across every room's ring (idle rooms hold none).
    pub messages_held: usize,
    /// With a shared log: reads asked for because a hole did not fill or the log was ahead.
    pub log_fetches: u64,
    /// With a shared log: gaps told to listeners because the log had trimmed what they missed.
    pub log_gaps: u64,
    /// With a shared log: rooms whose history the log lost (a new epoch).
    pub log_resets: u64,
}

/// The roomcast state machine. See the [crate docs](crate) for the drain contract and a host loop.
#[derive(Debug, Clone)]
pub struct Core {
    config: Config,
    rooms: BTreeMap<RoomId, Room>,
    /// The open listeners, and what each user holds across rooms.
    holdings: holdings::Holdings,
    /// Rooms without listeners, by when they expire. Empty unless `room_idle_expiry` is set.
    expiries: Deadlines<RoomId>,
    rate: RateLimiter<UserId>,
    /// Each user's pace of creating rooms, uploading and marking read.
    creates: UserPace,
    uploads: UserPace,
    reads: UserPace,
    /// Rooms with a hole in their shared log's sequence, by when to read the log.
    fetches: Deadlines<RoomId>,
    events: VecDeque<Event>,
    /// The newest time seen: time never runs backwards inside core.
    now: Timestamp,
    next_listener: u64,
    next_message: u64,
    /// Messages held in every room's ring, kept as they come and go (stats read it often).
    messages_held: usize,
    stats: Stats,
}

impl Core {
    /// A core with no rooms.
    pub fn new(config: Config) -> Self {
        let share = config.limits.guest_share;
        Core {
            rate: RateLimiter::new(config.limits.submit_rate.map(Refill::from)),
            creates: UserPace::new(config.limits.room_pace, share),
            uploads: UserPace::new(config.limits.upload_pace, share),
            reads: UserPace::new(config.limits.read_pace, share),
            config,
            rooms: BTreeMap::new(),
            holdings: holdings::Holdings::default(),
            expiries: Deadlines::default(),
            fetches: Deadlines::default(),
            events: VecDeque::new(),
            now: Timestamp::EPOCH,
            next_listener: 1,
            next_message: 1,
            messages_held: 0,
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
        if let Some(owner) = &stored.access.owner {
            self.holdings.own(owner, &id);
        }
        for reader in stored.read.keys() {
            self.holdings.mark(reader, &id);
        }
        let room = Room::restore(stored, now, self.config.history_len);
        self.messages_held += room.history().len();
        self.rooms.insert(id.clone(), room);
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

    /// Runs one command at `now`: the one entry point for every input. Refusals are counted in
    /// [`Stats::refused`]; drain [`Core::poll_event`] afterwards.
    pub fn handle(&mut self, now: Timestamp, command: Command) -> Result<Reply, Error> {
        let now = self.tick(now);
        let result = match command {
            Command::CreateRoom(c) => self.create_room(now, c).map(Reply::CreateRoom),
            Command::OpenDirect(c) => self.open_direct(now, c).map(Reply::OpenDirect),
            Command::ChangeMember(c) => self.change_member(now, c).map(Reply::ChangeMember),
            Command::DeleteRoom(c) => self.delete_room(c).map(Reply::DeleteRoom),
            Command::ListRooms(c) => self.list_rooms(&c).map(Reply::ListRooms),
            Command::ViewRoom(c) => self.view_room(&c).map(Reply::ViewRoom),
            Command::OpenListener(c) => self.open_listener(now, c).map(Reply::OpenListener),
            Command::CloseListener(c) => {
                Ok(Reply::CloseListener(self.close_listener(now, c.listener)))
            }
            Command::Submit(c) => self.submit(now, c),
            Command::History(c) => self.history(&c).map(Reply::History),
            Command::Typing(c) => self.typing(now, &c).map(Reply::Typing),
            Command::MarkRead(c) => self.mark_read(now, &c).map(Reply::MarkRead),
            Command::Upload(c) => self.upload(now, &c).map(Reply::Upload),
            Command::Committed(c) => Ok(Reply::Committed(self.committed(now, c))),
            Command::Depart(c) => self.depart(c).map(Reply::Depart),
        };
        match &result {
            // Not a refusal: the host reads the message and asks again.
            Err(Error::NotHeld { .. }) | Ok(_) => {}
            Err(e) => *self.stats.refused.entry(e.code()).or_insert(0) += 1,
        }
        result
    }

    /// [`Core::handle`] with the answer typed by the command: `core.ask(now, submit)` is a
    /// `Result<Submitted, Error>`.
    pub fn ask<C: Ask>(&mut self, now: Timestamp, command: C) -> Result<C::Answer, Error> {
        let reply = self.handle(now, command.into())?;
        // `handle` answers each command with the reply of the same name.
        Ok(C::answer(reply).expect("core answers each command with its own reply"))
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
        [
            self.expiries.next(),
            self.rate.poll_timeout(),
            self.creates.poll_timeout(),
            self.uploads.poll_timeout(),
            self.reads.poll_timeout(),
            self.fetches.next(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Does whatever is due at `now`: expires idle rooms (at most [`EXPIRE_BATCH`] per call),
    /// forgets refilled rate buckets and asks for reads of holes that did not fill.
    pub fn handle_timeout(&mut self, now: Timestamp) {
        let now = self.tick(now);
        self.rate.handle_timeout(now);
        self.creates.handle_timeout(now);
        self.uploads.handle_timeout(now);
        self.reads.handle_timeout(now);
        self.fetch_due(now);
        for _ in 0..EXPIRE_BATCH {
            let Some(room) = self.expiries.pop_due(now) else {
                break;
            };
            match (self.config.room_idle_expiry, self.config.sequencer) {
                (None, Sequencer::Shared) => {
                    if self.remove_room_silently(&room).is_some() {
                        self.emit(Event::Unloaded { room });
                    }
                }
                (None, Sequencer::Core) => {
                    if let Some(r) = self.rooms.get_mut(&room) {
                        let latest = r.history().latest();
                        self.messages_held -= r.skip_to(latest);
                        self.emit(Event::Unloaded { room });
                    }
                }
                (Some(_), _) => self.remove_room(&room, RoomEnd::Expired),
            }
        }
    }

    /// Every room this core holds, with its newest applied sequence number: a host following a
    /// shared log reads each one's log after it now and then.
    pub fn heads(&self) -> impl Iterator<Item = (&RoomId, crate::ids::Seq)> {
        self.rooms.iter().map(|(id, r)| (id, r.history().latest()))
    }

    /// Whether this core holds the room `id` (a host with a shared log loads it first if not).
    pub fn holds(&self, id: &str) -> bool {
        self.rooms.contains_key(id)
    }

    /// What a room listing shows of the room `id`, for the host (no policy is asked).
    pub fn summary(&self, id: &str) -> Option<crate::room::RoomSummary> {
        self.rooms.get(id).map(Room::summary)
    }

    /// Counters for metrics.
    pub fn stats(&self) -> Stats {
        Stats {
            rooms: self.rooms.len(),
            listeners: self.holdings.listeners(),
            rate_limited_users: self.rate.tracked()
                + self.creates.tracked()
                + self.uploads.tracked()
                + self.reads.tracked(),
            messages_held: self.messages_held,
            ..self.stats.clone()
        }
    }

    fn tick(&mut self, now: Timestamp) -> Timestamp {
        self.now = self.now.max(now);
        self.now
    }

    fn user(&self, name: &str) -> Result<UserId, Error> {
        UserId::parse(name, self.config.limits.user_name_max_chars).map_err(Error::InvalidUserName)
    }

    fn room_id(&self, id: &str) -> Result<RoomId, Error> {
        RoomId::parse(id, self.config.limits.room_id_max_len).map_err(Error::InvalidRoomId)
    }

    /// The one preamble of every room command: checks both names, finds the room and asks the
    /// policy whether `user` may do `action` there.
    fn authorized(&self, user: &str, room: &str, action: Action) -> Result<(UserId, &Room), Error> {
        let user = self.user(user)?;
        let id = self.room_id(room)?;
        let r = self.find_authorized(&user, &id, action)?;
        Ok((user, r))
    }

    /// The room `id`, if `user` may do `action` there.
    fn find_authorized(&self, user: &UserId, id: &RoomId, action: Action) -> Result<&Room, Error> {
        let r = self
            .rooms
            .get(id)
            .ok_or_else(|| Error::RoomNotFound { room: id.clone() })?;
        self.config
            .policy
            .authorize_room(user, action, r.access())?;
        Ok(r)
    }

    /// A room known to exist (checked earlier in the same command).
    fn room_mut(&mut self, id: &RoomId) -> &mut Room {
        self.rooms
            .get_mut(id)
            .expect("the command checked that the room exists")
    }

    /// A room without listeners ends after `room_idle_expiry` if set; otherwise its messages
    /// leave memory after `unload_after` (the store or log keeps them), so a node's memory
    /// follows its activity.
    fn schedule_expiry(&mut self, room: &RoomId, now: Timestamp) {
        if let Some(idle) = self.config.room_idle_expiry.or(self.config.unload_after) {
            self.expiries.set(room.clone(), now.saturating_add(idle));
        }
    }

    fn remove_room_silently(&mut self, id: &RoomId) -> Option<Room> {
        let room = self.rooms.remove(id)?;
        self.messages_held -= room.history().len();
        for listener in room.listeners() {
            self.holdings.close(listener);
        }
        if let Some(owner) = &room.access().owner {
            self.holdings.disown(owner, id);
        }
        for reader in room.readers() {
            self.holdings.unmark(reader, id);
        }
        self.expiries.remove(id);
        self.fetches.remove(id);
        Some(room)
    }

    fn remove_room(&mut self, id: &RoomId, reason: RoomEnd) {
        if let Some(room) = self.remove_room_silently(id) {
            self.emit(Event::RoomClosed {
                room: room.id().clone(),
                reason,
            });
        }
    }

    /// A user's first listener on a room opened here (`here`), or their last here closed.
    /// When core numbers messages this is the room's news, announced while few enough are
    /// present. With a shared log it is this node's share: the log hears of it
    /// ([`Event::Here`]) and announces a join or leave once for every node; a join that no
    /// node had announced yet is told here at once, and a leave only when the log says the
    /// user is nowhere.
    fn presence_changed(&mut self, room: &RoomId, user: UserId, here: bool) {
        let up_to = self.config.limits.announce_presence_up_to;
        match self.config.sequencer {
            Sequencer::Shared => {
                let new = self.rooms.get(room).is_some_and(|r| {
                    here && !r.presence().cluster().contains(&user) && r.presence().users() <= up_to
                });
                if new {
                    self.emit(Event::Joined {
                        room: room.clone(),
                        user: user.clone(),
                    });
                }
                self.emit(Event::Here {
                    room: room.clone(),
                    user,
                    here,
                });
            }
            Sequencer::Core => {
                let users = self.rooms.get(room).map_or(0, |r| r.presence().users());
                let room = room.clone();
                if here && users <= up_to {
                    self.emit(Event::Joined { room, user });
                } else if !here && users < up_to {
                    self.emit(Event::Left { room, user });
                }
            }
        }
    }

    fn emit(&mut self, event: Event) {
        if self.events.len() >= MAX_QUEUED_EVENTS {
            self.stats.events_dropped += 1;
            return;
        }
        self.events.push_back(event);
    }

    #[cfg(any(test, feature = "fuzzing"))]
    pub(crate) fn room_state(&self, id: &str) -> Option<&Room> {
        self.rooms.get(id)
    }

    #[cfg(any(test, feature = "fuzzing"))]
    pub(crate) fn listener_room(
        &self,
        listener: crate::ids::ListenerId,
    ) -> Option<(&RoomId, &UserId)> {
        let room = self.holdings.room_of(listener)?;
        let user = self.rooms.get(room)?.listener_user(listener)?;
        Some((room, user))
    }

    /// Messages held, counted again room by room (the kept count must agree).
    #[cfg(any(test, feature = "fuzzing"))]
    pub(crate) fn messages_held_recounted(&self) -> usize {
        self.rooms.values().map(|r| r.history().len()).sum()
    }

    #[cfg(any(test, feature = "fuzzing"))]
    pub(crate) fn room_count(&self) -> usize {
        self.rooms.len()
    }

    #[cfg(any(test, feature = "fuzzing"))]
    pub(crate) fn expiry_count(&self) -> usize {
        self.expiries.len()
    }

    /// The newest sequence number this core applied to the room `room`, if it holds it.
    pub fn latest(&self, room: &str) -> Option<crate::ids::Seq> {
        self.rooms.get(room).map(|r| r.history().latest())
    }
}
