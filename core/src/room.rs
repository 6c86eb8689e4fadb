//! One room's state: its history, its listeners and who is present. Everything a room needs to
//! sequence and replay its messages sits here, so a room could later be backed by a shared log.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::event::{Durable, Event};
use crate::history::History;
use crate::ids::{IdempotencyKey, ListenerId, MessageId, RoomId, Seq, UserId};
use crate::message::{Attachment, Kind, Message, Moderation, Standing};
use crate::presence::Presence;
use crate::read::{ReadMarker, Unread};
use crate::time::Timestamp;

/// A room as [`Core`](crate::Core) holds it. It sequences its own messages and keeps its own
/// listeners and presence; the engine decides who may do what and keeps the indexes across rooms.
#[derive(Debug, Clone)]
pub(crate) struct Room {
    id: RoomId,
    created_at: Timestamp,
    /// The last time a message was posted or a listener opened or closed.
    last_active: Timestamp,
    history: History,
    access: Access,
    presence: Presence,
    /// Its open listeners and whose each is.
    listeners: BTreeMap<ListenerId, UserId>,
    /// Its place in a shared log (unused while core numbers messages itself).
    pub(crate) replica: Replica,
    /// Messages older than the history that the host read from storage to change them, as
    /// they are now (the newest [`RECALLED`] of them).
    recalled: BTreeMap<Seq, Arc<Message>>,
    /// When each user who typed lately was last announced as typing (none older than
    /// [`TYPING_EVERY`] is kept).
    typing: BTreeMap<UserId, Timestamp>,
    /// How many messages (posts) its log has up to `latest`.
    posts: u64,
    /// How far each user who marked it has read it.
    read: BTreeMap<UserId, ReadMarker>,
}

/// A user's typing is announced at most this often in a room.
pub const TYPING_EVERY: std::time::Duration = std::time::Duration::from_secs(2);

/// How long a client shows that someone is typing after being told (unless told again, or
/// their message arrives first).
pub const TYPING_SHOWN_FOR: std::time::Duration = std::time::Duration::from_secs(5);

/// How many messages older than its history a room keeps after changing them: a later change
/// (the next reaction) finds them as they are now, not as storage had them before.
pub(crate) const RECALLED: usize = 64;

/// Whether a user's first listener here opened, or their last closed: a change in who is
/// present (announced as the engine decides: see `Core::presence_changed`).
pub(crate) type Changed = bool;

impl Room {
    pub(crate) fn new(id: RoomId, now: Timestamp, history_len: usize, access: Access) -> Self {
        Room {
            id,
            created_at: now,
            last_active: now,
            history: History::new(history_len),
            access,
            presence: Presence::default(),
            listeners: BTreeMap::new(),
            replica: Replica::default(),
            recalled: BTreeMap::new(),
            typing: BTreeMap::new(),
            posts: 0,
            read: BTreeMap::new(),
        }
    }

    /// A room rebuilt from storage, idle since `now`. The changes among its entries are made
    /// again to the messages they name (a log that keeps entries as appended, as a shared
    /// log's stream does, has them unmade; a store that kept each message as it is changes
    /// nothing by it: each change sets what it sets).
    pub(crate) fn restore(stored: StoredRoom, now: Timestamp, history_len: usize) -> Self {
        let mut room = Room {
            history: History::restore(history_len, stored.latest, stored.recent),
            created_at: stored.created_at,
            replica: Replica {
                epoch: stored.epoch,
                ..Replica::default()
            },
            posts: stored.posts,
            read: stored.read,
            ..Room::new(stored.id, now, history_len, stored.access)
        };
        let changes: Vec<Arc<Message>> = room
            .history
            .after(Seq::ZERO, history_len)
            .0
            .into_iter()
            .filter(|m| m.changes().is_some() || matches!(m.kind, Kind::Moderate { .. }))
            .collect();
        for entry in changes {
            if let Kind::Moderate { user, action } = &entry.kind {
                room.access.moderate(user, *action, entry.sent_at);
            }
            let Some(of) = entry.changes() else { continue };
            // The entry as it now is: a deletion may have taken an edit's text since.
            let entry = room.history.get(entry.seq).cloned().unwrap_or(entry);
            let (made, _) = room.change(of, entry.clone());
            if made != entry {
                room.history.replace(made);
            }
        }
        room
    }

    pub(crate) fn id(&self) -> &RoomId {
        &self.id
    }

    pub(crate) fn access(&self) -> &Access {
        &self.access
    }

    pub(crate) fn history(&self) -> &History {
        &self.history
    }

    pub(crate) fn presence(&self) -> &Presence {
        &self.presence
    }

    pub(crate) fn listener_count(&self) -> usize {
        self.listeners.len()
    }

    pub(crate) fn listeners(&self) -> impl Iterator<Item = ListenerId> + '_ {
        self.listeners.keys().copied()
    }

    /// Whose listener this is, if it is open here.
    pub(crate) fn listener_user(&self, listener: ListenerId) -> Option<&UserId> {
        self.listeners.get(&listener)
    }

    /// Sequences an entry (core is the sequencer): it gets the room's next number.
    pub(crate) fn sequence(
        &self,
        id: MessageId,
        user: UserId,
        text: String,
        idempotency_key: Option<IdempotencyKey>,
        kind: Kind,
        now: Timestamp,
    ) -> Arc<Message> {
        Arc::new(Message {
            id,
            room: self.id.clone(),
            seq: self.history.latest().next(),
            user,
            text,
            sent_at: now,
            idempotency_key,
            kind,
            state: crate::message::State::default(),
        })
    }

    /// The message `seq` as the room holds it now: in its history, or recalled from storage.
    pub(crate) fn held(&self, seq: Seq) -> Option<&Arc<Message>> {
        self.history.get(seq).or_else(|| self.recalled.get(&seq))
    }

    /// Notes that `user` is typing at `now`; true if it is to be announced (not announced
    /// within [`TYPING_EVERY`]). Forgets those older than that, so the map holds only who
    /// typed in the last few seconds.
    pub(crate) fn typing(&mut self, user: &UserId, now: Timestamp) -> bool {
        self.typing
            .retain(|_, at| now.saturating_since(*at) < TYPING_EVERY);
        if self.typing.contains_key(user) {
            return false;
        }
        self.typing.insert(user.clone(), now);
        true
    }

    /// Moves `user`'s read marker to `seq` (the newest entry at most); `None` if it is there or
    /// past it already. The messages after `seq` are counted in the history; entries older than
    /// the history are counted as messages, so a marker never hides one.
    pub(crate) fn mark_read(&mut self, user: &UserId, seq: Seq) -> Option<ReadMarker> {
        let seq = seq.min(self.history.latest());
        // No marker reads as one at the start: only a marker that moves on is kept.
        let at = self.read.get(user).map_or(Seq::ZERO, |m| m.seq);
        if at >= seq {
            return None;
        }
        let held_after = self
            .history
            .iter()
            .filter(|m| m.seq > seq && matches!(m.kind, Kind::Post { .. }))
            .count() as u64;
        // Every message from the oldest held on is held: what came before it is not known.
        let unheld = self.history.oldest_held().0.saturating_sub(seq.0 + 1);
        let marker = ReadMarker {
            seq,
            posts: self.posts.saturating_sub(held_after + unheld),
        };
        self.read.insert(user.clone(), marker);
        Some(marker)
    }

    /// Who keeps a read marker here.
    pub(crate) fn readers(&self) -> impl Iterator<Item = &UserId> {
        self.read.keys()
    }

    /// Forgets `user`'s read marker (a guest departed); false if they kept none.
    pub(crate) fn forget_reader(&mut self, user: &UserId) -> bool {
        self.read.remove(user).is_some()
    }

    /// `user`'s read marker and what is unread after it.
    pub(crate) fn unread(&self, user: &UserId) -> Unread {
        let marker = self.read.get(user).copied().unwrap_or_default();
        Unread {
            up_to: marker.seq,
            count: self.posts.saturating_sub(marker.posts),
        }
    }

    /// Keeps `message`, read from storage, to change it (unless it is held already).
    pub(crate) fn recall(&mut self, message: Arc<Message>) {
        if self.held(message.seq).is_some() {
            return;
        }
        if self.recalled.len() >= RECALLED {
            self.recalled.pop_first();
        }
        self.recalled.insert(message.seq, message);
    }

    /// Applies the room's next committed entry: it joins the history, and a change is made to
    /// the message it names (if held here; storage makes it to the rest). Its number must be
    /// `latest + 1` (the log contract: see the `log` module). Returns the entry as published
    /// (an edit of a message deleted meanwhile loses its text), how many entries the ring held
    /// before, and the attachments a deletion took off its message.
    pub(crate) fn apply(
        &mut self,
        entry: Arc<Message>,
        now: Timestamp,
    ) -> (Arc<Message>, usize, Vec<Attachment>) {
        let (entry, dropped) = match entry.changes() {
            Some(of) => self.change(of, entry),
            None => (entry, Vec::new()),
        };
        match &entry.kind {
            Kind::Post { .. } => self.posts += 1,
            Kind::Moderate { user, action } => self.access.moderate(user, *action, entry.sent_at),
            Kind::Edit { .. } | Kind::Delete { .. } | Kind::React { .. } => {}
        }
        let before = self.history.len();
        self.history.push(entry.clone());
        self.last_active = now;
        (entry, before, dropped)
    }

    /// Makes the change `entry` to message `of`; a deletion also says what the message carried.
    fn change(&mut self, of: Seq, entry: Arc<Message>) -> (Arc<Message>, Vec<Attachment>) {
        let Some(target) = self.held(of) else {
            return (entry, Vec::new());
        };
        if !matches!(target.kind, Kind::Post { .. }) {
            return (entry, Vec::new());
        }
        if target.state.deleted {
            // Nothing changes a deleted message, and nothing brings its text back.
            if !entry.text.is_empty() {
                let mut wiped = Message::clone(&entry);
                wiped.text.clear();
                wiped.state.deleted = true;
                return (Arc::new(wiped), Vec::new());
            }
            return (entry, Vec::new());
        }
        let mut changed = Message::clone(target);
        let mut dropped = Vec::new();
        match &entry.kind {
            Kind::Post { .. } | Kind::Moderate { .. } => return (entry, Vec::new()),
            Kind::Edit { .. } => {
                changed.text.clone_from(&entry.text);
                changed.state.edited_at = Some(entry.sent_at);
            }
            Kind::Delete { .. } => {
                changed.text.clear();
                changed.state.deleted = true;
                changed.state.reactions.clear();
                if let Kind::Post { attachments, .. } = &mut changed.kind {
                    dropped = std::mem::take(attachments);
                }
                self.history.wipe_edits_of(of);
            }
            Kind::React { emoji, added, .. } => {
                changed.state.react(emoji, &entry.user, *added);
            }
        }
        let changed = Arc::new(changed);
        if !self.history.replace(changed.clone()) {
            self.recalled.insert(of, changed);
        }
        (entry, dropped)
    }

    /// Continues after `latest`, forgetting what is held: see [`History::skip_to`].
    /// How many messages left the ring.
    pub(crate) fn skip_to(&mut self, latest: Seq) -> usize {
        let dropped = self.history.len();
        self.history.skip_to(latest);
        self.recalled.clear();
        self.replica.held.retain(|seq, _| *seq > latest);
        dropped
    }

    /// Adds a listener of `user`; true if it is their first here.
    pub(crate) fn join(&mut self, listener: ListenerId, user: &UserId, now: Timestamp) -> Changed {
        self.listeners.insert(listener, user.clone());
        self.last_active = now;
        self.presence.add(user)
    }

    /// Removes a listener, and says whose it was and whether it was their last here. `None` if
    /// it was not this room's.
    pub(crate) fn leave(
        &mut self,
        listener: ListenerId,
        now: Timestamp,
    ) -> Option<(UserId, Changed)> {
        let user = self.listeners.remove(&listener)?;
        self.last_active = now;
        let left = self.presence.remove(&user);
        Some((user, left))
    }

    /// Who is present as the shared log reports it (shared mode).
    pub(crate) fn presence_mut(&mut self) -> &mut Presence {
        &mut self.presence
    }

    /// Replaces who may see the room (another node changed it).
    pub(crate) fn set_access(&mut self, access: Access) {
        self.access = access;
    }

    /// Makes `user` a member; false if they were one.
    pub(crate) fn add_member(&mut self, user: UserId) -> bool {
        self.access.members.insert(user)
    }

    /// Ends `user`'s membership and closes their listeners here: the listeners closed, and
    /// whether they were present here. `None` if they were not a member.
    pub(crate) fn remove_member(
        &mut self,
        user: &UserId,
        now: Timestamp,
    ) -> Option<(Vec<ListenerId>, Changed)> {
        if !self.access.members.remove(user) {
            return None;
        }
        let theirs: Vec<ListenerId> = self
            .listeners
            .iter()
            .filter(|(_, u)| *u == user)
            .map(|(l, _)| *l)
            .collect();
        for listener in &theirs {
            self.listeners.remove(listener);
        }
        self.last_active = now;
        let left = self.presence.forget(user);
        Some((theirs, left))
    }

    /// The room as `user` sees it in a listing: with what they have not read.
    pub(crate) fn summary_for(&self, user: &UserId) -> RoomSummary {
        let member = self.access.private && self.access.members.contains(user);
        RoomSummary {
            unread: ReadMarker::unread(self.read.get(user), self.posts, member),
            ..self.summary()
        }
    }

    pub(crate) fn summary(&self) -> RoomSummary {
        RoomSummary {
            id: self.id.clone(),
            latest: self.history.latest(),
            first_held: self.history.first_held(),
            listeners: self.listeners.len(),
            users: self.presence.users(),
            created_at: self.created_at,
            last_active: self.last_active,
            owner: self.access.owner.clone(),
            private: self.access.private,
            members: self.access.members.iter().cloned().collect(),
            unread: None,
        }
    }
}

/// A page of the room listing, by id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomPage {
    /// The rooms on this page.
    pub rooms: Vec<RoomSummary>,
    /// Where the next page starts (pass as `after`); `None` on the last page.
    pub next_after: Option<RoomId>,
}

/// What a room listing shows of a room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomSummary {
    /// The room.
    pub id: RoomId,
    /// Its newest sequence number (`Seq::ZERO` before the first message).
    pub latest: Seq,
    /// Its oldest held sequence number (`latest + 1` when it holds none).
    pub first_held: Seq,
    /// Listeners open on it.
    pub listeners: usize,
    /// Distinct users present.
    pub users: usize,
    /// When it was created.
    pub created_at: Timestamp,
    /// When a message was last posted or a listener last opened or closed.
    pub last_active: Timestamp,
    /// Who created it (`None` for direct-message rooms).
    pub owner: Option<UserId>,
    /// Whether only members may see it.
    pub private: bool,
    /// Its members, by name (empty for a public room).
    pub members: Vec<UserId>,
    /// Messages the listing's asker has not read ([`ReadMarker::unread`]); `None` in a public
    /// room they never marked read, and in a summary for nobody in particular.
    pub unread: Option<u64>,
}

impl RoomSummary {
    /// For a direct-message room (private, without an owner), the other person of the pair
    /// `user` is in; `None` for any other room, or a pair without `user`.
    pub fn direct_with(&self, user: &str) -> Option<&UserId> {
        if self.owner.is_some() || !self.private || self.members.len() != 2 {
            return None;
        }
        let mine = self.members.iter().position(|m| m.as_str() == user)?;
        self.members.get(1 - mine)
    }
}

/// Who a room belongs to and who may see it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Access {
    /// Who created it: deletes it and manages its members. `None` for direct-message rooms and
    /// rooms stored before owners existed (only admins manage those).
    pub owner: Option<UserId>,
    /// Only members may read, listen, post or see presence.
    pub private: bool,
    /// The members of a private room (its owner among them); empty for a public room.
    pub members: BTreeSet<UserId>,
    /// Who moderate the room besides its owner.
    #[serde(default)]
    pub moderators: BTreeSet<UserId>,
    /// Who may not enter the room, public or private, until unbanned.
    #[serde(default)]
    pub banned: BTreeSet<UserId>,
    /// Who may not post, edit or react until when.
    #[serde(default)]
    pub muted: BTreeMap<UserId, Timestamp>,
}

impl Access {
    /// Whether `user` may see the room's content (not counting admins).
    pub fn admits(&self, user: &UserId) -> bool {
        (!self.private || self.members.contains(user)) && !self.banned.contains(user)
    }

    /// Whether `user` moderates the room (its owner, or one of its moderators; not counting
    /// admins).
    pub fn moderates(&self, user: &UserId) -> bool {
        self.owner.as_ref() == Some(user) || self.moderators.contains(user)
    }

    /// Until when `user` is muted, if they are at `now`.
    pub fn muted_until(&self, user: &UserId, now: Timestamp) -> Option<Timestamp> {
        self.muted.get(user).copied().filter(|until| *until > now)
    }

    /// Makes a moderation, entered at `at`.
    pub fn moderate(&mut self, user: &UserId, action: Moderation, at: Timestamp) {
        match action.standing() {
            Some((standing, true)) => self.grant(standing, user.clone(), action.until(at)),
            Some((standing, false)) => self.revoke(standing, user),
            None => {}
        }
    }

    /// Gives `user` a standing (a mute ends at `until`; without one it is not kept).
    pub fn grant(&mut self, standing: Standing, user: UserId, until: Option<Timestamp>) {
        match standing {
            Standing::Moderator => {
                self.moderators.insert(user);
            }
            Standing::Banned => {
                self.banned.insert(user);
            }
            Standing::Muted => {
                if let Some(until) = until {
                    self.muted.insert(user, until);
                }
            }
        }
    }

    fn revoke(&mut self, standing: Standing, user: &UserId) {
        match standing {
            Standing::Moderator => self.moderators.remove(user),
            Standing::Banned => self.banned.remove(user),
            Standing::Muted => self.muted.remove(user).is_some(),
        };
    }
}

/// A room as durable storage holds it: enough to rebuild it after a restart.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredRoom {
    /// The room.
    pub id: RoomId,
    /// When it was first created.
    pub created_at: Timestamp,
    /// Its owner, privacy and members.
    pub access: Access,
    /// Its newest sequence number: the next message gets the one after, so none is reused.
    pub latest: Seq,
    /// Its newest messages, oldest first, ending at `latest`; the history ring holds them again
    /// (with their idempotency keys). May be fewer than the ring holds, or none.
    pub recent: Vec<Arc<Message>>,
    /// The shared log's epoch for the room (0 with the embedded store).
    #[serde(default)]
    pub epoch: u64,
    /// How many messages (posts) its log has up to `latest`.
    #[serde(default)]
    pub posts: u64,
    /// How far each user who marked it read has read it.
    #[serde(default)]
    pub read: BTreeMap<UserId, ReadMarker>,
}

impl StoredRoom {
    /// What a durable event changes in the stored rooms: the fold a store performs (in its own
    /// form) when it persists events, written once here so tests and tools need not repeat it.
    pub fn apply(rooms: &mut BTreeMap<RoomId, StoredRoom>, event: &Event) {
        let Some(durable) = event.durable() else {
            return;
        };
        match durable {
            Durable::RoomCreated {
                room,
                created_at,
                owner,
                private,
            } => {
                let access = Access {
                    owner: owner.cloned(),
                    private,
                    ..Access::default()
                };
                let stored = StoredRoom {
                    id: room.clone(),
                    created_at,
                    access,
                    latest: Seq::ZERO,
                    recent: Vec::new(),
                    epoch: 0,
                    posts: 0,
                    read: BTreeMap::new(),
                };
                rooms.insert(room.clone(), stored);
            }
            Durable::MemberAdded { room, user } => {
                if let Some(r) = rooms.get_mut(room) {
                    r.access.members.insert(user.clone());
                }
            }
            Durable::MemberRemoved { room, user } => {
                if let Some(r) = rooms.get_mut(room) {
                    r.access.members.remove(user);
                }
            }
            Durable::RoomClosed { room, .. } => {
                rooms.remove(room);
            }
            Durable::Read { room, user, marker } => {
                if let Some(r) = rooms.get_mut(room)
                    && r.read.get(user).is_none_or(|m| m.seq < marker.seq)
                {
                    r.read.insert(user.clone(), marker);
                }
            }
            Durable::ReadForgotten { room, user } => {
                if let Some(r) = rooms.get_mut(room) {
                    r.read.remove(user);
                }
            }
            Durable::Published(m) => {
                if let Some(r) = rooms.get_mut(&m.room) {
                    match &m.kind {
                        Kind::Post { .. } => r.posts += 1,
                        Kind::Moderate { user, action } => {
                            r.access.moderate(user, *action, m.sent_at);
                        }
                        Kind::Edit { .. } | Kind::Delete { .. } | Kind::React { .. } => {}
                    }
                    r.latest = m.seq;
                    r.recent.push(m.clone());
                }
            }
        }
    }
}

/// A room's place in the shared log, beside its history.
#[derive(Debug, Clone, Default)]
pub(crate) struct Replica {
    /// The log's epoch for the room; 0 until known.
    pub(crate) epoch: u64,
    /// Entries that arrived before the one they follow, by sequence number.
    pub(crate) held: BTreeMap<Seq, Arc<Message>>,
    /// The newest sequence number the log is known to have, if ahead of what is applied.
    pub(crate) known_latest: Seq,
    /// When the current hole was first seen (`None` without one).
    pub(crate) hole_since: Option<Timestamp>,
    /// The epoch in which the log went back on what this room applied, once told.
    pub(crate) diverged: Option<u64>,
}
