//! Outputs that others must hear, drained with [`Core::poll_event`](crate::Core::poll_event).

use std::sync::Arc;

use crate::error::Error;
use crate::history::Gap;
use crate::ids::{ListenerId, RoomId, Seq, UserId};
use crate::message::{Attachment, Message};
use crate::read::ReadMarker;
use crate::time::Timestamp;

/// Something that happened, addressed as precisely as it happened: to a room (hosts deliver it
/// to every listener they hold on that room; core says it once, however many listen), or to one
/// listener ([`Event::ListenerClosed`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A room now exists.
    RoomCreated {
        /// The new room.
        room: RoomId,
        /// When it was created (persist it with the room).
        created_at: Timestamp,
        /// Who created it (`None` for a direct-message room).
        owner: Option<UserId>,
        /// Whether only members may see it; its members follow as [`Event::MemberAdded`].
        private: bool,
    },
    /// A user became a member of a private room.
    MemberAdded {
        /// The room.
        room: RoomId,
        /// The new member.
        user: UserId,
    },
    /// A member was removed from a private room. Each of their listeners on it gets its own
    /// [`Event::ListenerClosed`] before this.
    MemberRemoved {
        /// The room.
        room: RoomId,
        /// The former member.
        user: UserId,
    },
    /// A room is gone with everything in it. Its listeners are closed: end their streams with
    /// `reason` (as a [`CloseReason`]). No presence `Left` events follow for them.
    RoomClosed {
        /// The room.
        room: RoomId,
        /// Why it closed.
        reason: RoomEnd,
    },
    /// One listener was closed by core while its room goes on: end that one stream with
    /// `reason`.
    ListenerClosed {
        /// The listener.
        listener: ListenerId,
        /// Its room.
        room: RoomId,
        /// Why.
        reason: CloseReason,
    },
    /// A message was accepted: persist it (if the host keeps history), then deliver it to the
    /// room's listeners.
    Published(Arc<Message>),
    /// A message was deleted with the files it carried: the host lets go of those uploads
    /// (with a shared log, every node says so; letting go twice is harmless).
    AttachmentsDropped {
        /// The room.
        room: RoomId,
        /// What the message carried.
        attachments: Vec<Attachment>,
    },
    /// A user's read marker on a room moved on: persist it (nobody else is told).
    Read {
        /// The room.
        room: RoomId,
        /// Whose marker.
        user: UserId,
        /// Where it is now.
        marker: ReadMarker,
    },
    /// A departed guest's read marker on a room is gone: forget it (nobody else is told).
    ReadForgotten {
        /// The room.
        room: RoomId,
        /// Whose marker it was.
        user: UserId,
    },
    /// A user is typing in a room: show it for a few seconds
    /// ([`TYPING_SHOWN_FOR`](crate::TYPING_SHOWN_FOR)), or until their message arrives. Not
    /// sequenced, never stored or replayed.
    Typing {
        /// The room.
        room: RoomId,
        /// Who.
        user: UserId,
    },
    /// A user opened their first listener on a room.
    Joined {
        /// The room.
        room: RoomId,
        /// Who joined.
        user: UserId,
    },
    /// A user closed their last listener on a room.
    Left {
        /// The room.
        room: RoomId,
        /// Who left.
        user: UserId,
    },
    /// The shared log no longer holds messages its listeners have not seen (it trimmed them):
    /// tell them, then the messages from `gap.first_held` on follow.
    Gap {
        /// The room.
        room: RoomId,
        /// What is missing.
        gap: Gap,
    },
    /// For the host's shared log: `user`'s first listener on the room opened on this node
    /// (`here`), or their last here closed. The log announces [`Event::Joined`] or
    /// [`Event::Left`] on every node when that changes whether they are present anywhere.
    Here {
        /// The room.
        room: RoomId,
        /// Who.
        user: UserId,
        /// Whether they are here now.
        here: bool,
    },
    /// The room had no listeners or posts for `unload_after`: its messages left memory (the
    /// store or log keeps them; pages and resumes read them there). With a shared log the room
    /// is no longer held here at all: the host stops following it and loads it again when
    /// asked.
    Unloaded {
        /// The room.
        room: RoomId,
    },
    /// For the host's shared log: it went back on what this room applied (numbering fell
    /// behind, or a number now holds another message) without changing its `epoch`, as after a
    /// failover to a replica that was behind. Start a new epoch for the room in the log if it
    /// is still `epoch`; every node then closes its listeners with `CloseReason::Reset`.
    Diverged {
        /// The room.
        room: RoomId,
        /// The epoch that went back.
        epoch: u64,
    },
    /// For the host's shared log: read the room's entries after `after` and hand them back as
    /// `log::Committed` with what the read found. Core asks when a hole in
    /// the sequence does not fill in time, or the log is known to be ahead.
    Fetch {
        /// The room.
        room: RoomId,
        /// The newest entry applied.
        after: Seq,
    },
}

impl Event {
    /// The room the event is about.
    pub fn room(&self) -> &RoomId {
        match self {
            Event::RoomCreated { room, .. }
            | Event::RoomClosed { room, .. }
            | Event::MemberAdded { room, .. }
            | Event::MemberRemoved { room, .. }
            | Event::Joined { room, .. }
            | Event::Typing { room, .. }
            | Event::Read { room, .. }
            | Event::ReadForgotten { room, .. }
            | Event::AttachmentsDropped { room, .. }
            | Event::Left { room, .. }
            | Event::ListenerClosed { room, .. }
            | Event::Gap { room, .. }
            | Event::Here { room, .. }
            | Event::Unloaded { room }
            | Event::Diverged { room, .. }
            | Event::Fetch { room, .. } => room,
            Event::Published(message) => &message.room,
        }
    }

    /// Whether a host that keeps history must persist this event before anyone hears of it
    /// (rooms, their members and messages; not presence, not listeners).
    pub fn is_durable(&self) -> bool {
        self.durable().is_some()
    }

    /// The event as what keeps history sees it, if it is durable: whoever stores events
    /// matches on [`Durable`]'s seven kinds alone, so a new event for listeners or for the log
    /// is decided here once.
    pub fn durable(&self) -> Option<Durable<'_>> {
        Some(match self {
            Event::RoomCreated {
                room,
                created_at,
                owner,
                private,
            } => Durable::RoomCreated {
                room,
                created_at: *created_at,
                owner: owner.as_ref(),
                private: *private,
            },
            Event::MemberAdded { room, user } => Durable::MemberAdded { room, user },
            Event::MemberRemoved { room, user } => Durable::MemberRemoved { room, user },
            Event::RoomClosed { room, reason } => Durable::RoomClosed { room, reason },
            Event::Published(message) => Durable::Published(message),
            Event::Read { room, user, marker } => Durable::Read {
                room,
                user,
                marker: *marker,
            },
            Event::ReadForgotten { room, user } => Durable::ReadForgotten { room, user },
            Event::Joined { .. }
            | Event::AttachmentsDropped { .. }
            | Event::Typing { .. }
            | Event::Left { .. }
            | Event::ListenerClosed { .. }
            | Event::Gap { .. }
            | Event::Here { .. }
            | Event::Unloaded { .. }
            | Event::Diverged { .. }
            | Event::Fetch { .. } => return None,
        })
    }
}

/// A durable [`Event`] ([`Event::durable`]): a change to rooms, their members or their
/// messages, which a store persists before anyone hears of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durable<'a> {
    /// See [`Event::RoomCreated`].
    RoomCreated {
        /// The new room.
        room: &'a RoomId,
        /// When it was created.
        created_at: Timestamp,
        /// Who created it.
        owner: Option<&'a UserId>,
        /// Whether only members may see it.
        private: bool,
    },
    /// See [`Event::MemberAdded`].
    MemberAdded {
        /// The room.
        room: &'a RoomId,
        /// The new member.
        user: &'a UserId,
    },
    /// See [`Event::MemberRemoved`].
    MemberRemoved {
        /// The room.
        room: &'a RoomId,
        /// The former member.
        user: &'a UserId,
    },
    /// See [`Event::RoomClosed`].
    RoomClosed {
        /// The room.
        room: &'a RoomId,
        /// Why it closed.
        reason: &'a RoomEnd,
    },
    /// See [`Event::Published`].
    Published(&'a Arc<Message>),
    /// See [`Event::Read`].
    Read {
        /// The room.
        room: &'a RoomId,
        /// Whose marker.
        user: &'a UserId,
        /// Where it is now.
        marker: ReadMarker,
    },
    /// See [`Event::ReadForgotten`].
    ReadForgotten {
        /// The room.
        room: &'a RoomId,
        /// Whose marker it was.
        user: &'a UserId,
    },
}

/// Why a room ended: the two of [`CloseReason`]s that end a whole room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoomEnd {
    /// Deleted (by this user, when known; `None` when a shared log reported it deleted
    /// elsewhere).
    Deleted {
        /// Who deleted it.
        by: Option<UserId>,
    },
    /// Expired after having no listeners for the configured idle time.
    Expired,
}

impl From<RoomEnd> for CloseReason {
    fn from(end: RoomEnd) -> Self {
        match end {
            RoomEnd::Deleted { by } => CloseReason::Deleted { by },
            RoomEnd::Expired => CloseReason::Expired,
        }
    }
}

/// Why a listener's stream ended: one name from core to the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CloseReason {
    /// The room was deleted (by this user, when known; `None` when a shared log reported it
    /// deleted elsewhere).
    Deleted {
        /// Who deleted it.
        by: Option<UserId>,
    },
    /// The room expired after having no listeners for the configured idle time.
    Expired,
    /// The listener's user was removed from the private room.
    Removed,
    /// A listener that fell behind could not be reopened: core refused it for this reason.
    Refused(Error),
    /// The server is stopping. Core never emits it; the host that stops says it.
    ShuttingDown,
    /// The shared log lost the room's history (its epoch changed: Redis restarted without
    /// persistence, or failed over to a replica that was behind): numbering starts again, so a
    /// listener's position means nothing now. Reconnect without one.
    Reset,
    /// The listener's session ended (signed out, here or on another node). Core never emits
    /// it; the hub says it when the session a stream was opened with ends.
    SignedOut,
    /// The token the listener's stream was opened with expired. Core never emits it either.
    SessionExpired,
    /// A moderator kicked the listener's user out of the room; they may come back.
    Kicked {
        /// Who.
        by: UserId,
    },
    /// A moderator banned the listener's user from the room.
    Banned {
        /// Who.
        by: UserId,
    },
}

impl CloseReason {
    /// A short machine name: `deleted`, `expired`, `removed`, `shutdown`, `reset`,
    /// `signed-out`, `session-expired`, or the refusal's
    /// [`Error::code`].
    pub fn code(&self) -> &'static str {
        match self {
            CloseReason::Deleted { .. } => "deleted",
            CloseReason::Expired => "expired",
            CloseReason::Removed => "removed",
            CloseReason::Refused(error) => error.code(),
            CloseReason::ShuttingDown => "shutdown",
            CloseReason::Reset => "reset",
            CloseReason::SignedOut => "signed-out",
            CloseReason::SessionExpired => "session-expired",
            CloseReason::Kicked { .. } => "kicked",
            CloseReason::Banned { .. } => "banned",
        }
    }

    /// Who deleted the room, when that is why and it is known.
    pub fn by(&self) -> Option<&UserId> {
        match self {
            CloseReason::Deleted { by } => by.as_ref(),
            CloseReason::Kicked { by } | CloseReason::Banned { by } => Some(by),
            CloseReason::Expired
            | CloseReason::Removed
            | CloseReason::Refused(_)
            | CloseReason::ShuttingDown
            | CloseReason::Reset
            | CloseReason::SignedOut
            | CloseReason::SessionExpired => None,
        }
    }

    /// Why a listener that fell behind ends when reopening it is refused: a room that is gone
    /// was deleted; a room that is behind the listener's own last message was deleted and made
    /// again; a room it may no longer read means its user was removed.
    pub fn of_refused_reopen(error: Error) -> Self {
        match error {
            Error::RoomNotFound { .. } | Error::ResumeAhead { .. } => {
                CloseReason::Deleted { by: None }
            }
            Error::PermissionDenied { .. } => CloseReason::Removed,
            error @ (Error::InvalidRoomId(_)
            | Error::InvalidUserName(_)
            | Error::InvalidIdempotencyKey(_)
            | Error::Message(_)
            | Error::TooManyRooms { .. }
            | Error::TooManyListeners { .. }
            | Error::ServerFull { .. }
            | Error::TooManyUserListeners { .. }
            | Error::TooManyOwnedRooms { .. }
            | Error::TooManyOwnListeners { .. }
            | Error::RateLimited { .. }
            | Error::Paced { .. }
            | Error::IdempotencyConflict { .. }
            | Error::Membership(_)
            | Error::MessageNotFound { .. }
            | Error::NotAMessage { .. }
            | Error::MessageDeleted { .. }
            | Error::EditWindowClosed { .. }
            | Error::InvalidEmoji(_)
            | Error::TooManyReactions { .. }
            | Error::NotHeld { .. }
            | Error::Attachment(_)
            | Error::Muted { .. }
            | Error::Banned
            | Error::Moderation(_)) => CloseReason::Refused(error),
        }
    }
}
