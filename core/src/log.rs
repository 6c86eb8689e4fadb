//! The log contract: who numbers a room's messages, and how core follows a log it does not own.
//!
//! With one node, core is the log's sequencer: a room numbers its own messages (`latest + 1`)
//! and the store keeps them ([`Sequencer::Core`]). With several nodes sharing rooms, one shared
//! log (Redis) numbers them ([`Sequencer::Shared`]): core validates and authorizes a submit and
//! answers with a [`Draft`] to append; the host appends it and hands every entry the log
//! committed back as [`Committed`], from the append's reply, from pub/sub, or from a read. Core
//! applies them strictly in sequence order, whichever way they came: it holds ones that arrive
//! early, drops duplicates, asks for a read ([`Event::Fetch`](crate::Event::Fetch)) when a hole
//! does not fill within [`Config::fetch_after`](crate::Config), tells listeners of what the log no
//! longer holds as a gap, and closes them with [`CloseReason::Reset`](crate::CloseReason) when
//! the log's history was lost (its epoch changed). Applying is the same code in both modes.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::ids::{IdempotencyKey, MessageId, RoomId, Seq, UserId};
use crate::message::{Kind, Message, State};
use crate::room::Access;
use crate::time::Timestamp;

/// Who assigns a room's sequence numbers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Sequencer {
    /// Core does (one node; the embedded store persists what it numbered).
    #[default]
    Core,
    /// A log shared by several nodes does; core replicates the rooms it serves.
    Shared,
}

/// A checked message waiting for the shared log to number it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Draft {
    /// Its id, unique across nodes (each node takes ids from its own block).
    pub id: MessageId,
    /// The room it goes to.
    pub room: RoomId,
    /// Its poster.
    pub user: UserId,
    /// Its text, checked.
    pub text: String,
    /// When it was posted.
    pub sent_at: Timestamp,
    /// The poster's idempotency key: the log answers a retry with the original.
    pub idempotency_key: Option<IdempotencyKey>,
    /// What the entry does.
    #[serde(default)]
    pub kind: Kind,
}

impl Draft {
    /// The message this draft becomes at `seq`.
    pub fn at(&self, seq: Seq) -> Message {
        Message {
            id: self.id,
            room: self.room.clone(),
            seq,
            user: self.user.clone(),
            text: self.text.clone(),
            sent_at: self.sent_at,
            idempotency_key: self.idempotency_key.clone(),
            kind: self.kind.clone(),
            state: State::default(),
        }
    }
}

/// What the shared log reports of one room: entries it committed, in any order, possibly
/// repeated, and what a read found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Committed {
    /// The room.
    pub room: RoomId,
    /// The log's epoch for the room: it grows when the room's history in the log was lost
    /// (entries of an older epoch are stale and dropped).
    pub epoch: u64,
    /// Committed entries.
    pub messages: Vec<Arc<Message>>,
    /// Set by a read of the log: the oldest entry it still holds for the room (everything
    /// before was trimmed), and its newest.
    pub read: Option<LogRead>,
    /// The room is no longer in the log: another node deleted it. Core closes it here too.
    #[serde(default)]
    pub gone: bool,
    /// Who may see the room now, when another node changed it: listeners whose users may no
    /// longer listen are closed as removed.
    #[serde(default)]
    pub access: Option<Access>,
    /// Who the log announced as now present somewhere (`true`) or nowhere (`false`).
    #[serde(default)]
    pub presence: Vec<(UserId, bool)>,
    /// Who the log announced as typing (on any node).
    #[serde(default)]
    pub typing: Vec<UserId>,
    /// Who is present anywhere, as a read of the log found: joins and leaves this node missed
    /// are announced.
    #[serde(default)]
    pub present: Option<Vec<UserId>>,
}

impl Committed {
    /// Nothing yet about `room` at `epoch`: a base to fill in with what the log reported.
    pub fn of(room: RoomId, epoch: u64) -> Self {
        Committed {
            room,
            epoch,
            messages: Vec::new(),
            read: None,
            gone: false,
            access: None,
            presence: Vec::new(),
            typing: Vec::new(),
            present: None,
        }
    }
}

/// What a read of a room's log found besides its entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogRead {
    /// The read asked for entries after this one.
    pub after: Seq,
    /// The oldest entry after `after` the log holds; later than `after + 1` when it trimmed
    /// some (or `latest + 1` when it holds none).
    pub first_held: Seq,
    /// The room's newest sequence number in the log.
    pub latest: Seq,
}

/// What applying [`Committed`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Applied {
    /// Entries applied (published to listeners).
    pub applied: usize,
    /// The room's newest applied sequence number.
    pub latest: Seq,
    /// Entries waiting for an earlier one.
    pub held: usize,
}
