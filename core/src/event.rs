//! Outputs that others must hear, drained with [`Core::poll_event`](crate::Core::poll_event).

use std::sync::Arc;

use crate::ids::{RoomId, UserName};
use crate::message::Message;
use crate::time::Timestamp;

/// Something that happened, addressed to a room. Hosts deliver room events to every listener
/// they hold on that room; core says each thing once, however many listen.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// A room now exists.
    RoomCreated {
        /// The new room.
        room: RoomId,
        /// When it was created (persist it with the room).
        created_at: Timestamp,
        /// Who created it (`None` for a direct-message room).
        owner: Option<UserName>,
        /// Whether only members may see it; its members follow as [`Event::MemberAdded`].
        private: bool,
    },
    /// A user became a member of a private room.
    MemberAdded {
        /// The room.
        room: RoomId,
        /// The new member.
        user: UserName,
    },
    /// A member was removed from a private room. Their listeners on it are closed: end those
    /// streams (the others in the room may show it as a departure).
    MemberRemoved {
        /// The room.
        room: RoomId,
        /// The former member.
        user: UserName,
    },
    /// A room is gone with everything in it. Its listeners are closed: end their streams with
    /// `reason`. No presence `Left` events follow for them.
    RoomClosed {
        /// The room.
        room: RoomId,
        /// Why it closed.
        reason: CloseReason,
    },
    /// A message was accepted: persist it (if the host keeps history), then deliver it to the
    /// room's listeners.
    Published(Arc<Message>),
    /// A user opened their first listener on a room.
    Joined {
        /// The room.
        room: RoomId,
        /// Who joined.
        user: UserName,
    },
    /// A user closed their last listener on a room.
    Left {
        /// The room.
        room: RoomId,
        /// Who left.
        user: UserName,
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
            | Event::Left { room, .. } => room,
            Event::Published(message) => &message.room,
        }
    }
}

/// Why a room closed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CloseReason {
    /// A user deleted it.
    Deleted {
        /// Who.
        by: UserName,
    },
    /// It had no listeners for the configured idle time.
    Expired,
}
