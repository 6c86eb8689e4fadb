//! [`Action`]: what a user asks to do, as the policy decides it and a refusal names it.

use std::fmt;

/// Something a user asks to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Action {
    /// Create a room.
    CreateRoom,
    /// Delete a room, ending its listeners.
    DeleteRoom,
    /// List the rooms.
    ListRooms,
    /// Read a room's history or presence.
    ReadRoom,
    /// Open a listener on a room.
    Listen,
    /// Post a message to a room.
    Post,
    /// Invite members to a private room, or remove them.
    ManageMembers,
    /// Edit a message (its poster's own, within the edit window).
    EditMessage,
    /// Delete a message: one's own within the edit window, any for the room's owner and admins.
    DeleteMessage,
    /// Add or take back a reaction to a message.
    React,
    /// Mute, unmute, kick, ban or unban someone (the owner, moderators and admins).
    Moderate,
    /// Appoint or dismiss moderators (the owner and admins).
    AppointModerators,
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Action::CreateRoom => "create a room",
            Action::DeleteRoom => "delete a room",
            Action::ListRooms => "list rooms",
            Action::ReadRoom => "read this room",
            Action::Listen => "listen to this room",
            Action::Post => "post in this room",
            Action::ManageMembers => "manage this room's members",
            Action::EditMessage => "edit someone else's message",
            Action::DeleteMessage => "delete someone else's message",
            Action::React => "react in this room",
            Action::Moderate => "moderate this room",
            Action::AppointModerators => "appoint or dismiss this room's moderators",
        })
    }
}
