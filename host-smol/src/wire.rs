//! The JSON the web API speaks: response bodies, request bodies, and the stream events that SSE
//! and WebSocket share. Core types stay out of the wire format, so either can change alone.

use std::time::{Duration, UNIX_EPOCH};

use roomcast_core::{
    Attachment, Emoji, Error, Gap, HistoryPage, Kind, Message, PresenceEntry, RoomSummary, Seq,
    TYPING_SHOWN_FOR, Timestamp, UserId,
};
use roomcast_hub::Delivery;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// RFC 3339 with milliseconds, in UTC.
pub fn rfc3339(t: Timestamp) -> String {
    humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(t.as_unix_millis()))
        .to_string()
}

/// A chat message.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct MessageBody {
    /// Unique across rooms and time.
    #[schema(example = "000000000000002a")]
    pub id: String,
    /// The room it was posted to.
    pub room: String,
    /// Its position in the room: 1, 2, 3, ... with no gaps.
    pub seq: u64,
    /// Who posted it: their name.
    pub user: String,
    /// Who posted it: their id, which no later holder of the name shares (compare this, not
    /// the name, to tell whose a message is).
    #[schema(example = "ada~k2j4m9q7x1")]
    pub user_id: String,
    /// The text (UTF-8, newlines as `\n`).
    pub text: String,
    /// When the server accepted it (RFC 3339, UTC).
    pub sent_at: String,
    /// What the entry is if not a message: `edited`, `deleted` or `reaction` (each a change to
    /// message `of`, numbered in the room's sequence like messages).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(example = json!(null))]
    pub kind: Option<String>,
    /// For a reply: the message it answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<u64>,
    /// For an edit, deletion or reaction: the message it changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub of: Option<u64>,
    /// For a reaction: the emoji.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub emoji: Option<String>,
    /// For a reaction: added (`true`) or taken back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub added: Option<bool>,
    /// When its text was last edited (RFC 3339), if it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub edited_at: Option<String>,
    /// Deleted: its text is gone (and an edit's, once its message was deleted).
    #[serde(default, skip_serializing_if = "is_false")]
    pub deleted: bool,
    /// Its reactions, each emoji with who added it, in the order they first appeared.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reactions: Vec<ReactionBody>,
    /// For a moderation: who was moderated (their name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// For a moderation: who was moderated (their id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_id: Option<String>,
    /// For a moderation: `appoint`, `dismiss`, `mute`, `unmute`, `kick`, `ban` or `unban`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    /// For a mute: until when (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<String>,
    /// The files a message carries (none once it is deleted).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attachments: Vec<AttachmentBody>,
}

/// A file a message carries.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AttachmentBody {
    /// Its id: name it in a post's `attachments`.
    #[schema(example = "5f0c6e4f2b9a4d7e8c1b3a2d4e6f8a0b")]
    pub id: String,
    /// Its file name.
    #[schema(example = "holiday.png")]
    pub name: String,
    /// Its type, as the server told it from the bytes (`application/octet-stream` when unsure).
    #[schema(example = "image/png")]
    pub content_type: String,
    /// Its length in bytes.
    pub size: u64,
    /// Where to download it (those who may read the room).
    pub url: String,
}

impl AttachmentBody {
    /// An attachment of `room` as the wire says it.
    pub fn of(room: &str, a: &Attachment) -> Self {
        AttachmentBody {
            id: a.id.clone(),
            name: a.name.clone(),
            content_type: a.content_type.clone(),
            size: a.size,
            url: format!("/api/v1/rooms/{room}/attachments/{}", a.id),
        }
    }
}

fn is_false(b: &bool) -> bool {
    !b
}

/// One emoji on a message.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ReactionBody {
    /// The emoji.
    #[schema(example = "👍")]
    pub emoji: String,
    /// How many added it.
    pub count: usize,
    /// Who added it, in order (names).
    pub users: Vec<String>,
    /// Who added it, in order (ids, as `users`).
    pub user_ids: Vec<String>,
}

impl From<&Message> for MessageBody {
    fn from(m: &Message) -> Self {
        let (reply_to, emoji, added) = match &m.kind {
            Kind::Post { reply_to, .. } => (reply_to.map(|s| s.0), None, None),
            Kind::React { emoji, added, .. } => (None, Some(emoji.to_string()), Some(*added)),
            Kind::Edit { .. } | Kind::Delete { .. } | Kind::Moderate { .. } => (None, None, None),
        };
        let (target, action, until) = match &m.kind {
            Kind::Moderate { user, action } => (
                Some(user),
                Some(action.name().to_owned()),
                action.until(m.sent_at).map(rfc3339),
            ),
            Kind::Post { .. } | Kind::Edit { .. } | Kind::Delete { .. } | Kind::React { .. } => {
                (None, None, None)
            }
        };
        MessageBody {
            id: m.id.to_string(),
            room: m.room.to_string(),
            seq: m.seq.0,
            user: m.user.name().to_owned(),
            user_id: m.user.to_string(),
            text: m.text.clone(),
            sent_at: rfc3339(m.sent_at),
            kind: match m.kind {
                Kind::Post { .. } => None,
                Kind::Edit { .. }
                | Kind::Delete { .. }
                | Kind::React { .. }
                | Kind::Moderate { .. } => Some(m.kind.name().to_owned()),
            },
            target: target.map(|t| t.name().to_owned()),
            target_id: target.map(ToString::to_string),
            action,
            until,
            reply_to,
            of: m.changes().map(|s| s.0),
            emoji,
            added,
            edited_at: m.state.edited_at.map(rfc3339),
            deleted: m.state.deleted,
            reactions: m
                .state
                .reactions
                .iter()
                .map(|r| ReactionBody {
                    emoji: r.emoji.to_string(),
                    count: r.users.len(),
                    users: r.users.iter().map(|u| u.name().to_owned()).collect(),
                    user_ids: r.users.iter().map(ToString::to_string).collect(),
                })
                .collect(),
            attachments: match &m.kind {
                Kind::Post { attachments, .. } => attachments
                    .iter()
                    .map(|a| AttachmentBody::of(m.room.as_str(), a))
                    .collect(),
                Kind::Edit { .. }
                | Kind::Delete { .. }
                | Kind::React { .. }
                | Kind::Moderate { .. } => Vec::new(),
            },
        }
    }
}

/// A room.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct RoomBody {
    /// The room id.
    pub id: String,
    /// The newest sequence number (0 before the first message).
    pub latest: u64,
    /// The oldest sequence number still held (`latest + 1` when none is).
    pub first_held: u64,
    /// Listeners open on it.
    pub listeners: usize,
    /// Distinct users present.
    pub users: usize,
    /// When it was created (RFC 3339).
    pub created_at: String,
    /// When a message was last posted or a listener last came or went (RFC 3339).
    pub last_active: String,
    /// Whether only members may see it.
    pub private: bool,
    /// Who created it (absent for direct-message rooms): their name.
    pub owner: Option<String>,
    /// Who created it: their id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner_id: Option<String>,
    /// The members of a private room (empty for a public one): their names.
    pub members: Vec<String>,
    /// The members' ids, as `members`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub member_ids: Vec<String>,
    /// Messages the caller has not read (after their read marker): absent for a public room
    /// they never marked read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unread: Option<u64>,
}

impl From<&RoomSummary> for RoomBody {
    fn from(r: &RoomSummary) -> Self {
        RoomBody {
            id: r.id.to_string(),
            latest: r.latest.0,
            first_held: r.first_held.0,
            listeners: r.listeners,
            users: r.users,
            created_at: rfc3339(r.created_at),
            last_active: rfc3339(r.last_active),
            private: r.private,
            owner: r.owner.as_ref().map(|o| o.name().to_owned()),
            owner_id: r.owner.as_ref().map(ToString::to_string),
            members: r.members.iter().map(|m| m.name().to_owned()).collect(),
            member_ids: r.members.iter().map(ToString::to_string).collect(),
            unread: r.unread,
        }
    }
}

/// A page of rooms, by id.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct RoomList {
    /// The rooms.
    pub rooms: Vec<RoomBody>,
    /// Pass as `after` for the next page; absent on the last page.
    pub next_after: Option<String>,
}

/// Messages that are no longer held: those after `after` and before `first_held`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct GapBody {
    /// The point the reader asked to continue after.
    pub after: u64,
    /// The oldest sequence number still held.
    pub first_held: u64,
}

impl From<Gap> for GapBody {
    fn from(g: Gap) -> Self {
        GapBody {
            after: g.after.0,
            first_held: g.first_held.0,
        }
    }
}

/// A page of history, oldest first.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct HistoryBody {
    /// The messages.
    pub messages: Vec<MessageBody>,
    /// Present if the page was asked to start before what is held.
    pub gap: Option<GapBody>,
    /// The oldest held sequence number: nothing older can be paged to.
    pub first_held: u64,
    /// The newest sequence number in the room.
    pub latest: u64,
}

impl From<&HistoryPage> for HistoryBody {
    fn from(p: &HistoryPage) -> Self {
        HistoryBody {
            messages: p.messages.iter().map(|m| MessageBody::from(&**m)).collect(),
            gap: p.gap.map(GapBody::from),
            first_held: p.first_held.0,
            latest: p.latest.0,
        }
    }
}

/// One user present in a room.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct PresenceBody {
    /// The user's name.
    pub user: String,
    /// The user's id.
    pub user_id: String,
    /// Their open listeners (tabs, devices).
    pub listeners: usize,
}

impl From<&PresenceEntry> for PresenceBody {
    fn from(p: &PresenceEntry) -> Self {
        PresenceBody {
            user: p.user.name().to_owned(),
            user_id: p.user.to_string(),
            listeners: p.listeners,
        }
    }
}

/// Who is in a room.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct PresenceList {
    /// The room.
    pub room: String,
    /// Everyone present, by name.
    pub users: Vec<PresenceBody>,
}

/// Create a room.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CreateRoom {
    /// Letters, digits, `-`, `_`, `.`; starting with a letter or digit; at most 64 bytes.
    #[schema(example = "lobby")]
    pub room: String,
    /// Only members (the creator, and whoever they invite) may see it.
    #[serde(default)]
    pub private: bool,
}

/// Register or sign in.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Credentials {
    /// The user name (letters and digits of any script, `-`, `_`, `.`, inner spaces; at most 32).
    #[schema(
        example = "ada",
        min_length = 1,
        max_length = 32,
        pattern = r"^[\p{L}\p{N}_.\-]+( [\p{L}\p{N}_.\-]+)*$"
    )]
    pub name: String,
    /// 8 to 256 characters.
    #[schema(min_length = 8, max_length = 256)]
    pub password: String,
}

/// Chat as a guest.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct GuestRequest {
    /// The name to show (the user-name rules); must not be held by an account or a guest.
    #[schema(
        example = "visitor-7",
        min_length = 1,
        max_length = 32,
        pattern = r"^[\p{L}\p{N}_.\-]+( [\p{L}\p{N}_.\-]+)*$"
    )]
    pub nickname: String,
}

/// A token and who it names.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TokenBody {
    /// Send as `Authorization: Bearer <token>`.
    pub token: String,
    /// The user's name.
    pub user: String,
    /// The user's id: theirs alone, for good (a later holder of the name gets another).
    #[schema(example = "ada~k2j4m9q7x1")]
    pub user_id: String,
    /// Whether this is a guest.
    pub guest: bool,
    /// Expiry, seconds since the Unix epoch.
    pub expires_at: u64,
}

impl From<roomcast_hub::identity::Issued> for TokenBody {
    fn from(i: roomcast_hub::identity::Issued) -> Self {
        TokenBody {
            user: i.name().to_owned(),
            token: i.token,
            user_id: i.user,
            guest: i.guest,
            expires_at: i.expires_at,
        }
    }
}

/// Who the caller is.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct MeBody {
    /// The user's name.
    pub user: String,
    /// The user's id.
    pub user_id: String,
    /// Whether this is a guest.
    pub guest: bool,
}

/// A member to add, or the other side of a direct conversation.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct UserRef {
    /// The user: a name (whoever holds it now), or an id.
    #[schema(example = "bob")]
    pub user: String,
}

/// Post a message.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct PostMessage {
    /// Ignored if it names the caller; refused (403) if it names anyone else. The poster is
    /// always the signed-in user.
    #[schema(example = "ada")]
    pub user: Option<String>,
    /// The text: non-empty, at most the server's limit (4 KiB by default), no control characters
    /// but newline and tab.
    #[schema(example = "hello 👋")]
    pub text: String,
    /// Makes a retry safe: the same user posting the same key again gets the original back
    /// (also accepted as the `Idempotency-Key` header).
    pub idempotency_key: Option<String>,
    /// The message this one answers (shown as a quote).
    #[serde(default)]
    pub reply_to: Option<u64>,
    /// Files to carry: the ids of the caller's uploads to this room
    /// (`POST /api/v1/rooms/{room}/attachments`). With one, the text may be empty.
    #[serde(default)]
    pub attachments: Vec<String>,
}

/// Edit a message: its new text.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct EditMessage {
    /// The new text, under the same rules as a message's.
    #[schema(example = "hello 👋 (edited)")]
    pub text: String,
}

/// What a client asks to do to a message (REST, WebSocket): the entry kind it becomes.
pub fn change(of: u64, what: Change<'_>) -> Result<Kind, Error> {
    let of = Seq(of);
    Ok(match what {
        Change::Edit => Kind::Edit { of },
        Change::Delete => Kind::Delete { of },
        Change::React { emoji, added } => Kind::React {
            of,
            emoji: Emoji::parse(emoji)?,
            added,
        },
    })
}

/// Mark a room read up to an entry.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct MarkReadBody {
    /// The newest sequence number the caller has seen (past the newest reads up to the newest).
    #[schema(example = 42)]
    pub seq: u64,
}

/// Where the caller's read marker is, and what is unread after it.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct UnreadBody {
    /// The newest entry read: a marker never goes back.
    pub up_to: u64,
    /// Messages after it.
    pub unread: u64,
}

/// Moderate someone in a room.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ModerateBody {
    /// Who: a name (whoever holds it now), or an id (`user_id` of their messages).
    #[schema(example = "bob")]
    pub target: String,
    /// `appoint` or `dismiss` (a moderator; the owner and admins only), `mute`, `unmute`,
    /// `kick`, `ban` or `unban`.
    #[schema(example = "mute")]
    pub action: String,
    /// For `mute`: how long, in seconds (default 600, at most a year).
    pub seconds: Option<u64>,
}

/// A change a client asks for.
#[derive(Debug, Clone, Copy)]
pub enum Change<'a> {
    /// Replace the text.
    Edit,
    /// Delete it.
    Delete,
    /// Add (or take back) a reaction.
    React {
        /// The emoji, as sent.
        emoji: &'a str,
        /// Add, or take back.
        added: bool,
    },
}

/// The seed's `POST /submit` body.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct SeedSubmit {
    /// The room (created if missing).
    pub room: String,
    /// Refused if it names anyone but the caller.
    pub user: Option<String>,
    /// The text.
    pub text: String,
}

/// A client-to-server WebSocket frame.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientFrame {
    /// The first frame, when the handshake carried no credentials (no cookie, no
    /// `Authorization`): the token to use. Until it comes, nothing is delivered.
    Auth {
        /// A token from `/api/v1/auth/*`.
        token: String,
    },
    /// Post a message; answered by an `ack` or an `error` frame carrying the same `ref`.
    Submit {
        /// The text.
        text: String,
        /// Makes a retry safe.
        idempotency_key: Option<String>,
        /// The message this one answers.
        #[serde(default)]
        reply_to: Option<u64>,
        /// Files to carry: the ids of one's uploads to the room.
        #[serde(default)]
        attachments: Vec<String>,
        /// Echoed back in the answer, to match it.
        #[serde(rename = "ref")]
        reference: Option<String>,
    },
    /// Edit one's own message; answered like a submit (the `ack` carries the `edited` entry).
    Edit {
        /// The message.
        of: u64,
        /// Its new text.
        text: String,
        /// Echoed back in the answer.
        #[serde(rename = "ref")]
        reference: Option<String>,
    },
    /// Delete a message; answered like a submit.
    Delete {
        /// The message.
        of: u64,
        /// Echoed back in the answer.
        #[serde(rename = "ref")]
        reference: Option<String>,
    },
    /// Moderate `user` (`action`: `appoint`, `dismiss`, `mute` for `seconds`, `unmute`, `kick`,
    /// `ban`, `unban`); answered like a submit.
    Moderate {
        /// Who.
        user: String,
        /// What.
        action: String,
        /// For `mute`: how long (default 600 s).
        seconds: Option<u64>,
        /// Echoed back in the answer.
        #[serde(rename = "ref")]
        reference: Option<String>,
    },
    /// Says that the user is typing (send it every few seconds while they type); not answered
    /// unless refused.
    Typing,
    /// Marks the room read up to `seq` (the newest entry the client has shown); answered by a
    /// `read` frame carrying the same `ref`.
    Read {
        /// The newest sequence number seen.
        seq: u64,
        /// Echoed back in the answer.
        #[serde(rename = "ref")]
        reference: Option<String>,
    },
    /// Add a reaction (or take it back with `added: false`); answered like a submit (an `ack`
    /// with `duplicate: true` and the message, if it changed nothing).
    React {
        /// The message.
        of: u64,
        /// One emoji.
        emoji: String,
        /// Add (the default), or take back.
        #[serde(default = "yes")]
        added: bool,
        /// Echoed back in the answer.
        #[serde(rename = "ref")]
        reference: Option<String>,
    },
}

fn yes() -> bool {
    true
}

/// Server-to-client events, the same on SSE (as `data:`, with `event:` = `type`) and WebSocket.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum StreamEvent {
    /// A message, in sequence order.
    Message(MessageBody),
    /// Message `of` was edited: its new text. Numbered in sequence like messages.
    Edited(MessageBody),
    /// Message `of` was deleted: forget its text. Numbered in sequence like messages.
    Deleted(MessageBody),
    /// Someone added `emoji` to message `of` (`added`), or took theirs back. Numbered in
    /// sequence like messages.
    Reaction(MessageBody),
    /// A moderator moderated `target` (`action`, and `until` for a mute). Numbered in sequence
    /// like messages.
    Moderation(MessageBody),
    /// Presence: a `snapshot` of everyone (first on every connection; replaces what the client
    /// knew), or one user `joined` / `left`.
    Presence {
        /// `snapshot`, `joined` or `left`.
        kind: String,
        /// For `snapshot`: everyone present.
        #[serde(skip_serializing_if = "Option::is_none")]
        users: Option<Vec<PresenceBody>>,
        /// For `joined` and `left`: who (their name).
        #[serde(skip_serializing_if = "Option::is_none")]
        user: Option<String>,
        /// For `joined` and `left`: who (their id).
        #[serde(skip_serializing_if = "Option::is_none")]
        user_id: Option<String>,
    },
    /// `user` is typing: show it for `expires_in_ms`, or until their next message.
    Typing {
        /// Who (their name).
        user: String,
        /// Who (their id).
        user_id: String,
        /// How long to show it.
        expires_in_ms: u64,
    },
    /// Messages after `after` and before `first_held` are no longer held; delivery goes on from
    /// `first_held`.
    Gap(GapBody),
    /// The stream ends: the room was `deleted` or `expired`, the listener `removed` from a
    /// private room, `kicked` or `banned` by a moderator, its session `signed-out` or its token expired (`session-expired`), the
    /// room's numbering `reset` (reconnect without a position), or the server is shutting down
    /// (`shutdown`; reconnect later and resume).
    Closed {
        /// `deleted`, `expired`, `removed`, `kicked`, `banned`, `signed-out`,
        /// `session-expired`, `reset`, `shutdown`, or a refusal's code.
        reason: String,
        /// For `deleted`: who deleted the room, if known; for `kicked` and `banned`: who did
        /// (their name).
        #[serde(skip_serializing_if = "Option::is_none")]
        by: Option<String>,
        /// Who did (their id).
        #[serde(skip_serializing_if = "Option::is_none")]
        by_id: Option<String>,
    },
    /// WebSocket only: a submit was accepted (or matched an earlier one by idempotency key).
    Ack {
        /// The submit's `ref`.
        #[serde(rename = "ref", skip_serializing_if = "Option::is_none")]
        reference: Option<String>,
        /// The stored message.
        message: MessageBody,
        /// True if this was a retry and nothing new was posted.
        duplicate: bool,
    },
    /// WebSocket only: where the connection's user's read marker is after a `read` frame.
    Read {
        /// The frame's `ref`.
        #[serde(rename = "ref", skip_serializing_if = "Option::is_none")]
        reference: Option<String>,
        /// The newest entry read (a marker never goes back).
        up_to: u64,
        /// Messages after it.
        unread: u64,
    },
    /// WebSocket only: a frame was refused; the connection stays open.
    Error {
        /// The frame's `ref`, if it had one.
        #[serde(rename = "ref", skip_serializing_if = "Option::is_none")]
        reference: Option<String>,
        /// The refusal's stable name, as in problem responses.
        code: String,
        /// What was wrong.
        detail: String,
    },
}

impl StreamEvent {
    /// The event's name (`message`, `presence`, ...), used as the SSE `event:` field.
    pub fn kind(&self) -> &'static str {
        match self {
            StreamEvent::Message(_) => "message",
            StreamEvent::Edited(_) => "edited",
            StreamEvent::Deleted(_) => "deleted",
            StreamEvent::Reaction(_) => "reaction",
            StreamEvent::Moderation(_) => "moderation",
            StreamEvent::Presence { .. } => "presence",
            StreamEvent::Typing { .. } => "typing",
            StreamEvent::Gap(_) => "gap",
            StreamEvent::Closed { .. } => "closed",
            StreamEvent::Ack { .. } => "ack",
            StreamEvent::Read { .. } => "read",
            StreamEvent::Error { .. } => "error",
        }
    }

    /// The position a client resumes after once it has seen this event (the SSE `id:`).
    pub fn resume_point(&self) -> Option<u64> {
        match self {
            StreamEvent::Message(m)
            | StreamEvent::Edited(m)
            | StreamEvent::Deleted(m)
            | StreamEvent::Reaction(m)
            | StreamEvent::Moderation(m) => Some(m.seq),
            StreamEvent::Gap(g) => Some(g.first_held - 1),
            StreamEvent::Presence { .. }
            | StreamEvent::Typing { .. }
            | StreamEvent::Closed { .. }
            | StreamEvent::Ack { .. }
            | StreamEvent::Read { .. }
            | StreamEvent::Error { .. } => None,
        }
    }

    /// A log entry as the event of its kind.
    pub fn entry(m: &Message) -> Self {
        let body = MessageBody::from(m);
        match m.kind {
            Kind::Post { .. } => StreamEvent::Message(body),
            Kind::Edit { .. } => StreamEvent::Edited(body),
            Kind::Delete { .. } => StreamEvent::Deleted(body),
            Kind::React { .. } => StreamEvent::Reaction(body),
            Kind::Moderate { .. } => StreamEvent::Moderation(body),
        }
    }

    /// The JSON text.
    pub fn to_json(&self) -> String {
        // Serializing these plain structs cannot fail (no maps with non-string keys).
        serde_json::to_string(self).unwrap_or_default()
    }
}

impl From<Delivery> for StreamEvent {
    fn from(d: Delivery) -> Self {
        let presence = |kind: &str, users, user: Option<&UserId>| StreamEvent::Presence {
            kind: kind.into(),
            users,
            user: user.map(|u| u.name().to_owned()),
            user_id: user.map(ToString::to_string),
        };
        match d {
            Delivery::Message(m) => StreamEvent::entry(&m),
            Delivery::Presence(entries) => presence(
                "snapshot",
                Some(entries.iter().map(PresenceBody::from).collect()),
                None,
            ),
            Delivery::Joined(user) => presence("joined", None, Some(&user)),
            Delivery::Left(user) => presence("left", None, Some(&user)),
            Delivery::Typing(user) => StreamEvent::Typing {
                user: user.name().to_owned(),
                user_id: user.to_string(),
                expires_in_ms: u64::try_from(TYPING_SHOWN_FOR.as_millis()).unwrap_or(u64::MAX),
            },
            Delivery::Gap(gap) => StreamEvent::Gap(gap.into()),
            Delivery::Closed(reason) => StreamEvent::Closed {
                reason: reason.code().into(),
                by: reason.by().map(|by| by.name().to_owned()),
                by_id: reason.by().map(ToString::to_string),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_events_are_tagged_json() {
        let gap = StreamEvent::Gap(GapBody {
            after: 2,
            first_held: 9,
        });
        assert_eq!(gap.to_json(), r#"{"type":"gap","after":2,"first_held":9}"#);
        assert_eq!((gap.kind(), gap.resume_point()), ("gap", Some(8)));
        let left = StreamEvent::from(Delivery::Left(
            roomcast_core::UserId::parse("bob~q1", 8).unwrap(),
        ));
        assert_eq!(
            left.to_json(),
            r#"{"type":"presence","kind":"left","user":"bob","user_id":"bob~q1"}"#
        );
        let closed = StreamEvent::from(Delivery::Closed(roomcast_core::CloseReason::ShuttingDown));
        assert_eq!(closed.to_json(), r#"{"type":"closed","reason":"shutdown"}"#);
    }

    #[test]
    fn timestamps_are_rfc3339_utc() {
        assert_eq!(
            rfc3339(Timestamp::from_unix_millis(1_700_000_000_123)),
            "2023-11-14T22:13:20.123Z"
        );
    }
}
