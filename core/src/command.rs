//! Inputs to core and its synchronous answers.
//!
//! Each command is also a method on [`Core`](crate::Core); the [`Command`] enum exists so a host
//! can send any of them down one channel, and so a recorded `(time, Command)` sequence can be
//! replayed. Names come in as the client sent them and are checked by core, so the rules live
//! in one place for every host.

use std::sync::Arc;

use crate::history::Gap;
use crate::ids::{ListenerId, RoomId, Seq};
use crate::message::Message;
use crate::presence::PresenceEntry;
use crate::room::{RoomPage, RoomSummary};

/// Where a new listener starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resume {
    /// Only messages posted from now on.
    Live,
    /// Every held message after this sequence number, then live ones (`After(Seq::ZERO)` asks
    /// for the whole room). If some are no longer held, the answer carries a [`Gap`].
    After(Seq),
}

/// Which page of history to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cursor {
    /// The newest messages.
    Newest,
    /// The oldest held messages after this sequence number (paging forward).
    After(Seq),
    /// The newest messages before this sequence number (paging back).
    Before(Seq),
}

/// A message to post.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Submit {
    /// The poster, as the host vouches for them.
    pub user: String,
    /// The room to post to.
    pub room: String,
    /// The text.
    pub text: String,
    /// A client-chosen key: a retry with the same key returns the original message.
    pub idempotency_key: Option<String>,
}

/// Every input to core, for hosts that drive it through one channel and for replay.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Command {
    /// See [`Core::create_room`](crate::Core::create_room).
    CreateRoom {
        /// The acting user.
        user: String,
        /// The room to create.
        room: String,
    },
    /// See [`Core::create_private_room`](crate::Core::create_private_room).
    CreatePrivateRoom {
        /// The acting user, its owner.
        user: String,
        /// The room to create.
        room: String,
    },
    /// See [`Core::open_direct`](crate::Core::open_direct).
    OpenDirect {
        /// The acting user.
        user: String,
        /// The other user.
        other: String,
    },
    /// See [`Core::invite`](crate::Core::invite).
    Invite {
        /// The acting user.
        user: String,
        /// The private room.
        room: String,
        /// Who to add.
        member: String,
    },
    /// See [`Core::remove_member`](crate::Core::remove_member).
    RemoveMember {
        /// The acting user.
        user: String,
        /// The private room.
        room: String,
        /// Who to remove.
        member: String,
    },
    /// See [`Core::delete_room`](crate::Core::delete_room).
    DeleteRoom {
        /// The acting user.
        user: String,
        /// The room to delete.
        room: String,
    },
    /// See [`Core::rooms`](crate::Core::rooms).
    ListRooms {
        /// The acting user.
        user: String,
        /// List rooms whose ids sort after this one.
        after: Option<String>,
        /// How many at most.
        limit: usize,
    },
    /// See [`Core::open_listener`](crate::Core::open_listener).
    OpenListener {
        /// The acting user.
        user: String,
        /// The room to listen to.
        room: String,
        /// Where to start.
        resume: Resume,
    },
    /// See [`Core::close_listener`](crate::Core::close_listener).
    CloseListener {
        /// The listener to close.
        listener: ListenerId,
    },
    /// See [`Core::submit`](crate::Core::submit).
    Submit(Submit),
    /// See [`Core::history`](crate::Core::history).
    History {
        /// The acting user.
        user: String,
        /// The room to read.
        room: String,
        /// Which page.
        cursor: Cursor,
        /// How many messages at most.
        limit: usize,
    },
    /// See [`Core::room`](crate::Core::room).
    Room {
        /// The acting user.
        user: String,
        /// The room to look at.
        room: String,
    },
    /// See [`Core::presence`](crate::Core::presence).
    Presence {
        /// The acting user.
        user: String,
        /// The room to look at.
        room: String,
    },
}

/// The synchronous answer to a [`Command`], one variant per command.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Reply {
    /// To [`Command::CreateRoom`], [`Command::CreatePrivateRoom`] and [`Command::OpenDirect`].
    RoomCreated(Created),
    /// To [`Command::Invite`] and [`Command::RemoveMember`]: whether membership changed.
    MembershipChanged(bool),
    /// To [`Command::DeleteRoom`].
    RoomDeleted,
    /// To [`Command::ListRooms`].
    Rooms(RoomPage),
    /// To [`Command::OpenListener`].
    ListenerOpened(Opened),
    /// To [`Command::CloseListener`]: whether it was open.
    ListenerClosed(bool),
    /// To [`Command::Submit`].
    Submitted(Submitted),
    /// To [`Command::History`].
    History(HistoryPage),
    /// To [`Command::Presence`].
    Presence(Vec<PresenceEntry>),
    /// To [`Command::Room`].
    Room(RoomSummary),
}

/// The answer to creating a room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Created {
    /// The room as it now is.
    pub room: RoomSummary,
    /// False if it already existed (creating is idempotent).
    pub created: bool,
}

/// The answer to opening a listener: the backlog to deliver before any live message.
///
/// The host must start delivering the room's [`Event`](crate::Event)s to this listener from the
/// next one it polls: the backlog ends at `latest`, and the next published message is `latest + 1`,
/// so backlog then live has no gap and no duplicate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Opened {
    /// The new listener.
    pub listener: ListenerId,
    /// Its room.
    pub room: RoomId,
    /// Set if the resume point is older than what is held: deliver it before the backlog.
    pub gap: Option<Gap>,
    /// Held messages after the resume point, oldest first (empty for [`Resume::Live`]).
    pub backlog: Vec<Arc<Message>>,
    /// The room's newest sequence number when the listener opened.
    pub latest: Seq,
}

/// The answer to a submit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Submitted {
    /// The stored message with its sequence number.
    pub message: Arc<Message>,
    /// True if this was a retry that matched an earlier submit's idempotency key: nothing new
    /// was posted.
    pub duplicate: bool,
}

/// A page of history, oldest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryPage {
    /// The messages.
    pub messages: Vec<Arc<Message>>,
    /// Set if a forward read started before what is held.
    pub gap: Option<Gap>,
    /// The oldest held sequence number: there is nothing older to page back to.
    pub first_held: Seq,
    /// The room's newest sequence number.
    pub latest: Seq,
}
