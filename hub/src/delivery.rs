//! What listeners are told: a [`Delivery`] for every listener of a room, carried with the
//! end of one listener's stream on the room's broadcast ([`Broadcast`]).

use roomcast_core::{CloseReason, Gap, ListenerId, PresenceEntry, UserId};

use crate::shared::Shared;

/// One thing to tell a listener, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// Everyone present now. Comes first on every (re)subscription; replaces what was known.
    Presence(Vec<PresenceEntry>),
    /// Messages after `gap.after` and before `gap.first_held` are no longer held.
    Gap(Gap),
    /// A message, in sequence order, each exactly once; its encodings are shared by every
    /// listener.
    Message(Shared),
    /// A user opened their first listener on the room.
    Joined(UserId),
    /// A user closed their last listener on the room.
    Left(UserId),
    /// A user is typing (show it for a few seconds, or until their message arrives).
    Typing(UserId),
    /// The stream ends, for this reason; nothing follows.
    Closed(CloseReason),
}

/// What a room's broadcast carries: a delivery for every listener on the room, or the end of
/// one listener's stream (core addressed it to that listener alone).
#[derive(Debug, Clone)]
pub(crate) enum Broadcast {
    Room(Delivery),
    Listener(ListenerId, CloseReason),
}
