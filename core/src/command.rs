//! Inputs to core and its synchronous answers, as plain data.
//!
//! Each input is a struct; [`Command`] holds any of them, so a host sends every input down one
//! channel as a value, and a recorded `(time, Command)` sequence can be replayed. [`Ask`] ties
//! each input to the type of its answer, so a host that sends a [`Submit`] gets a [`Submitted`]
//! back without matching on [`Reply`]. Names come in as the client sent them and are checked by
//! core, so the rules live in one place for every host.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::history::Gap;
use crate::ids::{ListenerId, RoomId, Seq, UserId};
use crate::log::{Applied, Committed};
use crate::message::{Kind, Message};
use crate::presence::PresenceEntry;
use crate::read::Unread;
use crate::room::{RoomPage, RoomSummary};

/// Where a new listener starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Resume {
    /// Only messages posted from now on.
    Live,
    /// Every held message after this sequence number, then live ones (`After(Seq::ZERO)` asks
    /// for the whole room). If some are no longer held, the answer carries a [`Gap`].
    After(Seq),
}

/// Which page of history to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Cursor {
    /// The newest messages.
    Newest,
    /// The oldest held messages after this sequence number (paging forward).
    After(Seq),
    /// The newest messages before this sequence number (paging back).
    Before(Seq),
}

/// Creates a room, or returns it as it is if it exists. A private room is owned by its creator,
/// its only member until they invite others.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateRoom {
    /// The acting user.
    pub user: String,
    /// The room to create.
    pub room: String,
    /// Whether only members may see it.
    pub private: bool,
}

/// Finds or creates the direct-message room of two users: private, both members, no owner.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenDirect {
    /// The acting user.
    pub user: String,
    /// The other user.
    pub other: String,
}

/// Adds a member to a private room, or removes one (closing their listeners on it at once).
/// Owners and admins only; the owner cannot be removed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangeMember {
    /// The acting user.
    pub user: String,
    /// The private room.
    pub room: String,
    /// Who to add or remove.
    pub member: String,
    /// Which.
    pub change: MemberChange,
}

/// What [`ChangeMember`] does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum MemberChange {
    /// Make them a member.
    Add,
    /// Make them no longer a member.
    Remove,
}

/// Deletes a room with its history, closing every listener on it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeleteRoom {
    /// The acting user.
    pub user: String,
    /// The room to delete.
    pub room: String,
}

/// A page of the rooms the user may see, by id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListRooms {
    /// The acting user.
    pub user: String,
    /// List rooms whose ids sort after this one.
    pub after: Option<String>,
    /// How many at most; `None` for [`Limits::rooms_page_len`](crate::Limits::rooms_page_len).
    /// Capped at [`Limits::max_page_len`](crate::Limits::max_page_len).
    pub limit: Option<usize>,
}

/// One room as the user sees it: its summary, who is present and what they may do there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ViewRoom {
    /// The acting user.
    pub user: String,
    /// The room to look at. Looking never creates it: a mistyped link makes no room.
    pub room: String,
}

/// Opens a listener on a room, with the backlog to deliver before live events.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenListener {
    /// The acting user.
    pub user: String,
    /// The room to listen to.
    pub room: String,
    /// Where to start.
    pub resume: Resume,
    /// Create the room (public, owned by `user`) if it does not exist.
    pub create_if_missing: bool,
    /// A listener of the same user on the same room that this one replaces (a listener that fell
    /// behind and resumes): it is closed in the same step, after the new one opens so presence
    /// does not flicker, or before if the room or the user's share of it is full.
    pub replacing: Option<ListenerId>,
}

/// Closes a listener. Closing one that is not open (already closed, or its room deleted) is not
/// an error: the answer says whether it was open.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CloseListener {
    /// The listener to close.
    pub listener: ListenerId,
}

/// Posts an entry to a room's log: a message (perhaps a reply), or an edit, deletion or
/// reaction of an earlier one. On success it has the room's next sequence number and is
/// published as [`Event::Published`](crate::Event::Published); a retry with the same idempotency
/// key returns the original instead, and a reaction that changes nothing (added twice, taken back
/// when absent) returns the message reacted to as a duplicate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Submit {
    /// The poster, as the host vouches for them.
    pub user: String,
    /// The room to post to.
    pub room: String,
    /// The text: a message's, or an edit's new text; ignored for a deletion or reaction.
    pub text: String,
    /// A client-chosen key: a retry with the same key returns the original message.
    pub idempotency_key: Option<String>,
    /// Create the room (public, owned by `user`) if it does not exist.
    pub create_if_missing: bool,
    /// What the entry does.
    #[serde(default)]
    pub kind: Kind,
    /// The message a change names, as the host read it from storage after core answered
    /// [`Error::NotHeld`](crate::Error::NotHeld): core holds only a room's newest messages.
    #[serde(default)]
    pub recalled: Option<Arc<Message>>,
}

impl Submit {
    /// An entry of `kind` by `user` in `room` (an existing one), without an idempotency key.
    pub fn new(user: String, room: String, text: String, kind: Kind) -> Self {
        Submit {
            user,
            room,
            text,
            idempotency_key: None,
            create_if_missing: false,
            kind,
            recalled: None,
        }
    }
}

/// Says that the user is typing in a room. Announced to its listeners as
/// [`Event::Typing`](crate::Event::Typing) at most once every
/// [`TYPING_EVERY`](crate::TYPING_EVERY) per user and room, and not at all in a room with more
/// than [`Limits::announce_presence_up_to`](crate::Limits::announce_presence_up_to) people
/// present; the answer says whether it was announced (with a shared log: whether the host is
/// to announce it through the log).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Typing {
    /// Who is typing.
    pub user: String,
    /// Where.
    pub room: String,
}

/// Asks whether the user may upload a file of `size` bytes (if known before reading it) to a
/// room, to post it as an attachment: they may post there, are not muted, the size is within
/// [`Limits::max_attachment_bytes`](crate::Limits::max_attachment_bytes), and it takes one of
/// their rate tokens. The host then keeps the bytes (never more than the limit).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Upload {
    /// Who uploads.
    pub user: String,
    /// To which room.
    pub room: String,
    /// How many bytes, if the host knows before reading them.
    pub size: Option<u64>,
}

/// Marks a room read up to entry `seq` for the user (a number past the newest reads up to the
/// newest; a marker never goes back). Kept per user and room ([`Event::Read`](crate::Event::Read)),
/// so listings say what is unread ([`RoomSummary::unread`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MarkRead {
    /// Who read.
    pub user: String,
    /// Which room.
    pub room: String,
    /// The newest entry they have seen.
    pub seq: Seq,
}

/// A guest departed: their hold on their name ended (their session and the grace after), and
/// nobody will act as them again. The rooms they own in which nothing was ever posted are
/// deleted, and their read markers forgotten; rooms with something in them stay.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Depart {
    /// Who departed.
    pub user: String,
}

/// What a departure reclaimed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Departed {
    /// The empty rooms deleted.
    pub rooms: Vec<RoomId>,
    /// How many read markers were forgotten.
    pub markers: usize,
}

/// A page of a room's history, oldest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct History {
    /// The acting user.
    pub user: String,
    /// The room to read.
    pub room: String,
    /// Which page.
    pub cursor: Cursor,
    /// How many messages at most; `None` for
    /// [`Limits::history_page_len`](crate::Limits::history_page_len). Capped at
    /// [`Limits::max_page_len`](crate::Limits::max_page_len).
    pub limit: Option<usize>,
}

/// An input whose answer has a type of its own. [`Core::ask`](crate::Core::ask) and hosts use
/// it to get that answer back from a [`Reply`].
pub trait Ask: Into<Command> {
    /// What core answers.
    type Answer;
    /// The answer inside `reply`, if `reply` answers this kind of input.
    fn answer(reply: Reply) -> Option<Self::Answer>;
}

macro_rules! commands {
    ($($(#[$doc:meta])* $name:ident => $answer:ty),* $(,)?) => {
        /// Every input to core, for hosts that drive it through one channel and for replay.
        #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
        pub enum Command {
            $($(#[$doc])* $name($name),)*
        }

        /// The synchronous answer to a [`Command`]: the variant of the same name.
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub enum Reply {
            $($(#[$doc])* $name($answer),)*
            /// The answer to a [`Submit`] when a shared log numbers messages
            /// ([`Sequencer::Shared`](crate::log::Sequencer)): it is valid and may be posted;
            /// the host appends the draft and answers the poster with what the log committed.
            Append(crate::log::Draft),
        }

        $(
            impl From<$name> for Command {
                fn from(command: $name) -> Self {
                    Command::$name(command)
                }
            }

            impl Ask for $name {
                type Answer = $answer;
                fn answer(reply: Reply) -> Option<$answer> {
                    match reply {
                        Reply::$name(answer) => Some(answer),
                        #[allow(clippy::wildcard_enum_match_arm, reason = "every other reply answers another command")]
                        _ => None,
                    }
                }
            }
        )*
    };
}

commands! {
    /// See [`CreateRoom`].
    CreateRoom => Created,
    /// See [`OpenDirect`].
    OpenDirect => Created,
    /// See [`ChangeMember`]; the answer says whether membership changed.
    ChangeMember => bool,
    /// See [`DeleteRoom`].
    DeleteRoom => (),
    /// See [`ListRooms`].
    ListRooms => RoomPage,
    /// See [`ViewRoom`].
    ViewRoom => RoomView,
    /// See [`OpenListener`].
    OpenListener => Opened,
    /// See [`CloseListener`]; the answer says whether it was open.
    CloseListener => bool,
    /// See [`Submit`].
    Submit => Submitted,
    /// See [`History`].
    History => HistoryPage,
    /// See [`Typing`]; the answer says whether it is announced.
    Typing => bool,
    /// See [`MarkRead`].
    MarkRead => Unread,
    /// See [`Upload`].
    Upload => (),
    /// See [`Committed`]: entries of a shared log, handed to core by the host.
    Committed => Applied,
    /// See [`Depart`].
    Depart => Departed,
}

impl Command {
    /// Whether the command may create its room (a host with a shared log holds the room limit
    /// for every node, so it checks before these).
    pub fn may_create(&self) -> bool {
        match self {
            Command::CreateRoom(_) | Command::OpenDirect(_) => true,
            Command::OpenListener(c) => c.create_if_missing,
            Command::Submit(c) => c.create_if_missing,
            Command::ChangeMember(_)
            | Command::ViewRoom(_)
            | Command::DeleteRoom(_)
            | Command::ListRooms(_)
            | Command::CloseListener(_)
            | Command::History(_)
            | Command::Typing(_)
            | Command::MarkRead(_)
            | Command::Upload(_)
            | Command::Committed(_)
            | Command::Depart(_) => false,
        }
    }

    /// The room the command names, if it names a valid one (a host with a shared log makes
    /// sure it holds that room first); for a direct message, the pair's room.
    pub fn room(&self) -> Option<RoomId> {
        let named = match self {
            Command::CreateRoom(c) => &c.room,
            Command::ChangeMember(c) => &c.room,
            Command::DeleteRoom(c) => &c.room,
            Command::ViewRoom(c) => &c.room,
            Command::OpenListener(c) => &c.room,
            Command::Submit(c) => &c.room,
            Command::History(c) => &c.room,
            Command::Typing(c) => &c.room,
            Command::MarkRead(c) => &c.room,
            Command::Upload(c) => &c.room,
            Command::Committed(c) => return Some(c.room.clone()),
            Command::OpenDirect(c) => {
                let user = UserId::parse(&c.user, usize::MAX).ok()?;
                let other = UserId::parse(&c.other, usize::MAX).ok()?;
                let pair = std::collections::BTreeSet::from([user, other]);
                return RoomId::parse(&crate::ids::direct_room_id(&pair), usize::MAX).ok();
            }
            Command::ListRooms(_) | Command::CloseListener(_) | Command::Depart(_) => return None,
        };
        RoomId::parse(named, usize::MAX).ok()
    }
}

/// The answer to creating a room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Created {
    /// The room as it now is.
    pub room: RoomSummary,
    /// False if it already existed (creating is idempotent).
    pub created: bool,
}

/// One room as the asking user sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomView {
    /// The room.
    pub room: RoomSummary,
    /// Who is present, by name.
    pub presence: Vec<PresenceEntry>,
    /// Whether the asking user may invite and remove members (the owner of a private room, or
    /// an admin).
    pub may_manage_members: bool,
    /// Whether the asking user may delete the room.
    pub may_delete: bool,
    /// Whether the asking user moderates the room (its owner, a moderator or an admin):
    /// deletes anyone's messages, mutes, kicks and bans.
    pub moderates: bool,
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
    /// Who is present, this listener's user included.
    pub presence: Vec<PresenceEntry>,
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
    /// The room.
    pub room: RoomId,
    /// The messages.
    pub messages: Vec<Arc<Message>>,
    /// Set if a forward read started before what is held.
    pub gap: Option<Gap>,
    /// The oldest entry held (a message, perhaps older than where a resume is complete): there
    /// is nothing older to page back to.
    pub first_held: Seq,
    /// The room's newest sequence number.
    pub latest: Seq,
    /// The page length this page was cut to (the asked limit, or the default, at most the
    /// maximum): a host that completes the page from older storage fills it up to this.
    pub limit: usize,
}
