//! Why core refuses a command. Hosts map these to HTTP problem responses or gRPC statuses at
//! the edge, using [`Error::class`] for the status and [`Error::code`] as a stable machine name.

use std::time::Duration;

use thiserror::Error;

use crate::action::Action;
use crate::ids::{IdempotencyKey, NameError, RoomId, Seq};

/// A refused command. Every variant names the rule or limit that refused it.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum Error {
    /// The room name breaks the room-id rules.
    #[error("invalid room id: {0}")]
    InvalidRoomId(NameError),
    /// The acting user's name breaks the user-name rules.
    #[error("invalid user name: {0}")]
    InvalidUserName(NameError),
    /// The idempotency key breaks the key rules.
    #[error("invalid idempotency key: {0}")]
    InvalidIdempotencyKey(NameError),
    /// The message text was refused.
    #[error(transparent)]
    Message(#[from] MessageError),
    /// No room has this id.
    #[error("room {room} does not exist")]
    RoomNotFound {
        /// The room asked for.
        room: RoomId,
    },
    /// Creating the room would exceed the configured number of rooms.
    #[error("the server holds its maximum of {max} rooms")]
    TooManyRooms {
        /// The configured maximum.
        max: usize,
    },
    /// Opening the listener would exceed the configured listeners per room.
    #[error("room {room} has its maximum of {max} listeners")]
    TooManyListeners {
        /// The full room.
        room: RoomId,
        /// The configured maximum.
        max: usize,
    },
    /// Opening the listener would exceed the listeners the whole server holds.
    #[error("the server holds its maximum of {max} listeners: try again later")]
    ServerFull {
        /// The configured maximum.
        max: usize,
    },
    /// Opening the listener would exceed the listeners one user may hold on one room.
    #[error("you hold the maximum of {max} listeners on room {room}: close one first")]
    TooManyUserListeners {
        /// The room.
        room: RoomId,
        /// The configured maximum.
        max: usize,
    },
    /// The user submitted faster than the configured rate.
    #[error("too many messages: try again in {} ms", retry_after.as_millis())]
    RateLimited {
        /// When the next submit will be accepted.
        retry_after: Duration,
    },
    /// The user did something with a pace of its own (creating rooms, uploading, marking
    /// read) faster than it allows.
    #[error("too many {what}: try again in {} s", retry_after.as_secs().max(1))]
    Paced {
        /// What was done too fast.
        what: Paced,
        /// When the next one will be accepted.
        retry_after: Duration,
    },
    /// Creating the room would exceed the rooms one user may own.
    #[error("you own the maximum of {max} rooms: delete one first")]
    TooManyOwnedRooms {
        /// The user's maximum.
        max: usize,
    },
    /// Opening the listener would exceed the listeners one user may hold across rooms.
    #[error("you hold the maximum of {max} listeners across rooms: close one first")]
    TooManyOwnListeners {
        /// The user's maximum.
        max: usize,
    },
    /// A resume point beyond the newest message: the client is ahead of the room, which usually
    /// means the room was deleted and re-created since.
    #[error("cannot resume after {after}: the newest message is {latest}")]
    ResumeAhead {
        /// The resume point asked for.
        after: Seq,
        /// The newest sequence number in the room.
        latest: Seq,
    },
    /// The idempotency key was already used by this user in this room for a different text.
    #[error("idempotency key {key} was already used for a different message (seq {seq})")]
    IdempotencyConflict {
        /// The reused key.
        key: IdempotencyKey,
        /// The message it belongs to.
        seq: Seq,
    },
    /// The policy does not let this user do this.
    #[error("not allowed to {action}")]
    PermissionDenied {
        /// What was refused.
        action: Action,
    },
    /// Membership was changed in a way that cannot be.
    #[error(transparent)]
    Membership(#[from] MembershipError),
    /// An edit, deletion, reaction or reply names a message the room never had.
    #[error("room {room} has no message {seq}")]
    MessageNotFound {
        /// The room.
        room: RoomId,
        /// The sequence number asked for.
        seq: Seq,
    },
    /// An edit, deletion or reaction names an entry that is itself a change, not a message.
    #[error("entry {seq} is {what}, not a message")]
    NotAMessage {
        /// The entry.
        seq: Seq,
        /// What it is ("an edit", "a deletion", "a reaction").
        what: &'static str,
    },
    /// The message was deleted: nothing more can be done to it.
    #[error("message {seq} was deleted")]
    MessageDeleted {
        /// The deleted message.
        seq: Seq,
    },
    /// Its poster may change a message only for a while after posting it.
    #[error("message {seq} can no longer be changed: the window of {} s after posting has passed", window.as_secs())]
    EditWindowClosed {
        /// The message.
        seq: Seq,
        /// The configured window.
        window: Duration,
    },
    /// A reaction must be one emoji.
    #[error("invalid reaction: {0}")]
    InvalidEmoji(#[from] NotAnEmoji),
    /// A message carries at most this many different reactions.
    #[error("message {seq} already has the maximum of {max} different reactions")]
    TooManyReactions {
        /// The message.
        seq: Seq,
        /// The configured maximum.
        max: usize,
    },
    /// The poster is muted in this room.
    #[error("you are muted in this room for another {} s", remaining.as_secs().max(1))]
    Muted {
        /// How long still.
        remaining: Duration,
    },
    /// The user is banned from this room.
    #[error("you are banned from this room")]
    Banned,
    /// A moderation that cannot be, whoever asks.
    #[error(transparent)]
    Moderation(#[from] ModerationError),
    /// An attachment was refused.
    #[error(transparent)]
    Attachment(#[from] AttachmentError),
    /// The message is older than what core holds of the room. A host with storage reads it
    /// and asks again with it in [`Submit::recalled`](crate::Submit::recalled); otherwise (or
    /// if storage no longer has it either) this is the answer.
    #[error("message {seq} of room {room} is too old to change here")]
    NotHeld {
        /// The room.
        room: RoomId,
        /// The message to read.
        seq: Seq,
    },
}

/// Why an upload, or a post's attachments, were refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum AttachmentError {
    /// More bytes than `--max-attachment-bytes`.
    #[error("the file is over the maximum of {max} bytes")]
    TooLarge {
        /// The configured maximum.
        max: u64,
    },
    /// No bytes at all.
    #[error("the file is empty")]
    Empty,
    /// A post carries at most this many.
    #[error("a message carries at most {max} attachments")]
    TooMany {
        /// The configured maximum.
        max: usize,
    },
    /// Not an attachment id, or named twice.
    #[error("{id:?} is not an attachment id, or is named twice")]
    Invalid {
        /// What was given.
        id: String,
    },
    /// No upload of the poster's in this room has this id (or it was deleted).
    #[error("no upload of yours in this room has id {id}")]
    NotFound {
        /// The id.
        id: String,
    },
    /// The uploader keeps their maximum of bytes in files (pending and posted).
    #[error("you keep the maximum of {max} bytes of files: delete a message with files first")]
    Quota {
        /// The user's maximum.
        max: u64,
    },
    /// The server keeps its maximum of bytes in files.
    #[error("the server keeps its maximum of {max} bytes of files")]
    FilesFull {
        /// The configured maximum.
        max: u64,
    },
    /// The disk is nearly full: less than the configured floor is free.
    #[error("the server's disk is nearly full (less than {floor} bytes free)")]
    DiskFull {
        /// The configured floor.
        floor: u64,
    },
}

/// What has a pace of its own ([`Error::Paced`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Paced {
    /// Creating rooms (direct messages too).
    Rooms,
    /// Uploading files.
    Uploads,
    /// Moving read markers.
    ReadMarkers,
}

impl std::fmt::Display for Paced {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Paced::Rooms => "new rooms",
            Paced::Uploads => "uploads",
            Paced::ReadMarkers => "read markers moved",
        })
    }
}

/// Why a membership change cannot be, whoever asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum MembershipError {
    /// Members are managed in private rooms only.
    #[error("a public room has no members to manage")]
    PublicRoom,
    /// The owner of a room stays its member.
    #[error("the owner of a room cannot be removed from it")]
    OwnerStays,
    /// A direct-message room keeps its two members.
    #[error("a direct-message room keeps its two members")]
    DirectRoom,
    /// A direct message needs two different users.
    #[error("a direct message needs two different users")]
    DirectWithSelf,
}

/// Why a reaction's emoji was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{0:?} is not one emoji")]
pub struct NotAnEmoji(pub String);

/// Why someone cannot be moderated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum ModerationError {
    /// The room's owner is not moderated (nor appointed: they moderate already).
    #[error("the room's owner cannot be moderated")]
    Owner,
    /// Admins are not moderated.
    #[error("an admin cannot be moderated")]
    Admin,
    /// Nobody moderates themselves.
    #[error("you cannot moderate yourself")]
    Yourself,
    /// A mute lasts at least a second and at most a year.
    #[error("a mute lasts from 1 second to 1 year")]
    Duration,
    /// Not a moderation there is.
    #[error("the action is one of appoint, dismiss, mute, unmute, kick, ban, unban")]
    Unknown,
}

/// The broad kind of a refusal, for picking an HTTP status or gRPC code: one vocabulary for
/// every refusal a host maps (core's, and identity's, which adds the last two).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// The request itself is malformed (400, `INVALID_ARGUMENT`).
    Invalid,
    /// It names something that does not exist (404, `NOT_FOUND`).
    NotFound,
    /// It contradicts what is already there (409, `ALREADY_EXISTS`).
    Conflict,
    /// It is larger than allowed (413, `RESOURCE_EXHAUSTED`).
    TooLarge,
    /// A server capacity limit is reached (503, `RESOURCE_EXHAUSTED`).
    Capacity,
    /// The caller is going too fast, or holds too much (429, `RESOURCE_EXHAUSTED`).
    RateLimited,
    /// A position outside what exists (409, `OUT_OF_RANGE`).
    OutOfRange,
    /// The room is not in a state where this can be done, whoever asks (409,
    /// `FAILED_PRECONDITION`): membership of a public room, the owner's own membership.
    Precondition,
    /// The caller may not do this (403, `PERMISSION_DENIED`).
    Denied,
    /// The caller is not who they need to be signed in as (401, `UNAUTHENTICATED`); identity's.
    Unauthenticated,
    /// The server cannot do this now, try again (503, `UNAVAILABLE`); identity's.
    Unavailable,
    /// There is no room to keep it: a quota, or the disk (507, `RESOURCE_EXHAUSTED`).
    Storage,
}

impl Error {
    /// The broad kind of refusal.
    pub fn class(&self) -> ErrorClass {
        match self {
            Error::InvalidRoomId(_)
            | Error::InvalidUserName(_)
            | Error::InvalidIdempotencyKey(_) => ErrorClass::Invalid,
            Error::Message(MessageError::TooLarge { .. }) => ErrorClass::TooLarge,
            Error::Message(_) => ErrorClass::Invalid,
            Error::RoomNotFound { .. } => ErrorClass::NotFound,
            Error::TooManyRooms { .. }
            | Error::TooManyListeners { .. }
            | Error::ServerFull { .. } => ErrorClass::Capacity,
            Error::RateLimited { .. }
            | Error::Paced { .. }
            | Error::TooManyUserListeners { .. }
            | Error::TooManyOwnedRooms { .. }
            | Error::TooManyOwnListeners { .. } => ErrorClass::RateLimited,
            Error::ResumeAhead { .. } => ErrorClass::OutOfRange,
            Error::IdempotencyConflict { .. } => ErrorClass::Conflict,
            Error::Membership(_) => ErrorClass::Precondition,
            Error::PermissionDenied { .. }
            | Error::EditWindowClosed { .. }
            | Error::Muted { .. }
            | Error::Banned => ErrorClass::Denied,
            Error::Moderation(ModerationError::Duration | ModerationError::Unknown) => {
                ErrorClass::Invalid
            }
            Error::Moderation(_) => ErrorClass::Precondition,
            Error::MessageNotFound { .. } => ErrorClass::NotFound,
            Error::NotAMessage { .. } | Error::InvalidEmoji(_) => ErrorClass::Invalid,
            Error::MessageDeleted { .. }
            | Error::TooManyReactions { .. }
            | Error::NotHeld { .. } => ErrorClass::Precondition,
            Error::Attachment(AttachmentError::TooLarge { .. }) => ErrorClass::TooLarge,
            Error::Attachment(AttachmentError::NotFound { .. }) => ErrorClass::NotFound,
            Error::Attachment(
                AttachmentError::Empty
                | AttachmentError::TooMany { .. }
                | AttachmentError::Invalid { .. },
            ) => ErrorClass::Invalid,
            Error::Attachment(
                AttachmentError::Quota { .. }
                | AttachmentError::FilesFull { .. }
                | AttachmentError::DiskFull { .. },
            ) => ErrorClass::Storage,
        }
    }

    /// Whether this refusal rests on the room's replicated state (who is muted, banned, a
    /// member or a moderator, which messages exist, how far the room has gone): a replica
    /// behind its shared log may refuse what the log's head allows, so a host with a shared
    /// log catches up and asks again before it answers with this.
    pub fn may_be_stale(&self) -> bool {
        match self {
            Error::ResumeAhead { .. }
            | Error::PermissionDenied { .. }
            | Error::MessageNotFound { .. }
            | Error::TooManyReactions { .. }
            | Error::Muted { .. }
            | Error::Banned => true,
            // The request itself, this node's own limits, the clock, or facts that never
            // change once in the log (a deletion, an owner, what an entry is).
            Error::InvalidRoomId(_)
            | Error::InvalidUserName(_)
            | Error::InvalidIdempotencyKey(_)
            | Error::Message(_)
            | Error::RoomNotFound { .. }
            | Error::TooManyRooms { .. }
            | Error::TooManyListeners { .. }
            | Error::ServerFull { .. }
            | Error::TooManyUserListeners { .. }
            | Error::RateLimited { .. }
            | Error::Paced { .. }
            | Error::TooManyOwnedRooms { .. }
            | Error::TooManyOwnListeners { .. }
            | Error::IdempotencyConflict { .. }
            | Error::Membership(_)
            | Error::NotAMessage { .. }
            | Error::MessageDeleted { .. }
            | Error::EditWindowClosed { .. }
            | Error::InvalidEmoji(_)
            | Error::Moderation(_)
            | Error::Attachment(_)
            | Error::NotHeld { .. } => false,
        }
    }

    /// When to try again, for a refusal that says (a rate limit).
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Error::RateLimited { retry_after } | Error::Paced { retry_after, .. } => {
                Some(*retry_after)
            }
            Error::Muted { remaining } => Some(*remaining),
            Error::Banned | Error::Moderation(_) => None,
            Error::InvalidRoomId(_)
            | Error::InvalidUserName(_)
            | Error::InvalidIdempotencyKey(_)
            | Error::Message(_)
            | Error::RoomNotFound { .. }
            | Error::TooManyRooms { .. }
            | Error::TooManyListeners { .. }
            | Error::ServerFull { .. }
            | Error::TooManyUserListeners { .. }
            | Error::TooManyOwnedRooms { .. }
            | Error::TooManyOwnListeners { .. }
            | Error::ResumeAhead { .. }
            | Error::IdempotencyConflict { .. }
            | Error::PermissionDenied { .. }
            | Error::Membership(_)
            | Error::MessageNotFound { .. }
            | Error::NotAMessage { .. }
            | Error::MessageDeleted { .. }
            | Error::EditWindowClosed { .. }
            | Error::InvalidEmoji(_)
            | Error::TooManyReactions { .. }
            | Error::Attachment(_)
            | Error::NotHeld { .. } => None,
        }
    }

    /// A stable kebab-case name for this refusal, for problem types, metrics and logs.
    pub fn code(&self) -> &'static str {
        match self {
            Error::InvalidRoomId(_) => "invalid-room-id",
            Error::InvalidUserName(_) => "invalid-user-name",
            Error::InvalidIdempotencyKey(_) => "invalid-idempotency-key",
            Error::Message(MessageError::Empty) => "empty-message",
            Error::Message(MessageError::TooLarge { .. }) => "message-too-large",
            Error::Message(MessageError::ControlCharacter { .. }) => "control-character",
            Error::RoomNotFound { .. } => "room-not-found",
            Error::TooManyRooms { .. } => "too-many-rooms",
            Error::TooManyListeners { .. } => "too-many-listeners",
            Error::TooManyUserListeners { .. } => "too-many-user-listeners",
            Error::ServerFull { .. } => "server-full",
            Error::RateLimited { .. } | Error::Paced { .. } => "rate-limited",
            Error::TooManyOwnedRooms { .. } => "too-many-owned-rooms",
            Error::TooManyOwnListeners { .. } => "too-many-own-listeners",
            Error::ResumeAhead { .. } => "resume-ahead",
            Error::IdempotencyConflict { .. } => "idempotency-conflict",
            Error::PermissionDenied { .. } => "permission-denied",
            Error::Membership(_) => "membership",
            Error::MessageNotFound { .. } => "message-not-found",
            Error::NotAMessage { .. } => "not-a-message",
            Error::MessageDeleted { .. } => "message-deleted",
            Error::EditWindowClosed { .. } => "edit-window-closed",
            Error::InvalidEmoji(_) => "invalid-emoji",
            Error::TooManyReactions { .. } => "too-many-reactions",
            Error::NotHeld { .. } => "message-not-held",
            Error::Muted { .. } => "muted",
            Error::Banned => "banned",
            Error::Moderation(_) => "moderation",
            Error::Attachment(AttachmentError::TooLarge { .. }) => "attachment-too-large",
            Error::Attachment(AttachmentError::Empty) => "empty-attachment",
            Error::Attachment(AttachmentError::TooMany { .. }) => "too-many-attachments",
            Error::Attachment(AttachmentError::Invalid { .. }) => "invalid-attachment",
            Error::Attachment(AttachmentError::NotFound { .. }) => "attachment-not-found",
            Error::Attachment(AttachmentError::Quota { .. }) => "files-quota",
            Error::Attachment(AttachmentError::FilesFull { .. }) => "files-full",
            Error::Attachment(AttachmentError::DiskFull { .. }) => "disk-full",
        }
    }
}

/// Why a message text was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum MessageError {
    /// Nothing but white space.
    #[error("message is empty")]
    Empty,
    /// More bytes than the configured maximum.
    #[error("message is {len} bytes, over the maximum of {max}")]
    TooLarge {
        /// The size in UTF-8 bytes.
        len: usize,
        /// The configured maximum.
        max: usize,
    },
    /// A control character other than newline or tab.
    #[error("control character U+{:04X} at byte {offset} is not allowed", *ch as u32)]
    ControlCharacter {
        /// The character.
        ch: char,
        /// Its byte offset in the text.
        offset: usize,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_cause() {
        let e = Error::Message(MessageError::TooLarge {
            len: 5000,
            max: 4096,
        });
        assert_eq!(
            e.to_string(),
            "message is 5000 bytes, over the maximum of 4096"
        );
        assert_eq!(e.class(), ErrorClass::TooLarge);
        assert_eq!(e.code(), "message-too-large");
        let e = Error::Message(MessageError::ControlCharacter {
            ch: '\u{1b}',
            offset: 3,
        });
        assert_eq!(
            e.to_string(),
            "control character U+001B at byte 3 is not allowed"
        );
        let e = Error::RateLimited {
            retry_after: Duration::from_millis(250),
        };
        assert_eq!(e.to_string(), "too many messages: try again in 250 ms");
        assert_eq!(
            Error::InvalidRoomId(NameError::BadCharacter { ch: '/' }).to_string(),
            "invalid room id: character '/' is not allowed"
        );
        assert_eq!(
            Error::PermissionDenied {
                action: Action::DeleteRoom
            }
            .to_string(),
            "not allowed to delete a room"
        );
    }
}
