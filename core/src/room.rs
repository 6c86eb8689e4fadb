//! One room's state: its history, its listeners and who is present. Everything a room needs to
//! sequence and replay its messages sits here, so a room could later be backed by a shared log.

use std::collections::BTreeSet;

use crate::ids::UserName;
use std::sync::Arc;

use crate::history::History;
use crate::ids::{ListenerId, RoomId, Seq};
use crate::message::Message;
use crate::presence::Presence;
use crate::time::Timestamp;

/// A room as [`Core`](crate::Core) holds it.
#[derive(Debug, Clone)]
pub(crate) struct Room {
    pub(crate) id: RoomId,
    pub(crate) created_at: Timestamp,
    /// The last time a message was posted or a listener opened or closed.
    pub(crate) last_active: Timestamp,
    pub(crate) history: History,
    pub(crate) access: Access,
    pub(crate) presence: Presence,
    pub(crate) listeners: BTreeSet<ListenerId>,
}

impl Room {
    pub(crate) fn new(id: RoomId, now: Timestamp, history_len: usize, access: Access) -> Self {
        Room {
            id,
            created_at: now,
            last_active: now,
            history: History::new(history_len),
            access,
            presence: Presence::default(),
            listeners: BTreeSet::new(),
        }
    }

    /// A room rebuilt from storage, idle since `now`.
    pub(crate) fn restore(stored: StoredRoom, now: Timestamp, history_len: usize) -> Self {
        Room {
            history: History::restore(history_len, stored.latest, stored.recent),
            created_at: stored.created_at,
            ..Room::new(stored.id, now, history_len, stored.access)
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
    pub owner: Option<UserName>,
    /// Whether only members may see it.
    pub private: bool,
    /// Its members, by name (empty for a public room).
    pub members: Vec<UserName>,
}

/// Who a room belongs to and who may see it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Access {
    /// Who created it: deletes it and manages its members. `None` for direct-message rooms and
    /// rooms stored before owners existed (only admins manage those).
    pub owner: Option<UserName>,
    /// Only members may read, listen, post or see presence.
    pub private: bool,
    /// The members of a private room (its owner among them); empty for a public room.
    pub members: BTreeSet<UserName>,
}

impl Access {
    /// Whether `user` may see the room's content (not counting admins).
    pub fn admits(&self, user: &UserName) -> bool {
        !self.private || self.members.contains(user)
    }
}

/// A room as durable storage holds it: enough to rebuild it after a restart.
#[derive(Debug, Clone, PartialEq, Eq)]
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
}
