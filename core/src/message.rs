//! A room's log entries: messages, and the changes to them (edits, deletions, reactions), each
//! numbered in the room's one sequence so a listener that resumes replays them in order.

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{ModerationError, NotAnEmoji};
use crate::ids::{IdempotencyKey, MessageId, RoomId, Seq, UserId};
use crate::time::Timestamp;

/// An accepted entry of a room's log. Shared as `Arc<Message>` between history, events and every
/// listener, so publishing it copies nothing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    /// Unique across rooms and time.
    pub id: MessageId,
    /// The room it was posted to.
    pub room: RoomId,
    /// Its position in the room: the previous entry's plus one.
    pub seq: Seq,
    /// Who posted it.
    pub user: UserId,
    /// The text, checked against the limits, with `\r\n` normalized to `\n`: a post's (its
    /// newest edit's, once edited) or an edit's new text. Empty for a deletion or a reaction,
    /// and once the message was deleted.
    pub text: String,
    /// When core accepted it.
    pub sent_at: Timestamp,
    /// The key the poster gave so a retried submit finds this entry again, if any.
    pub idempotency_key: Option<IdempotencyKey>,
    /// What the entry does: a new message, or a change to an earlier one.
    #[serde(default)]
    pub kind: Kind,
    /// What later entries did to it: edited, deleted, reacted to.
    #[serde(default)]
    pub state: State,
}

impl Message {
    /// The message an entry changes (`None` for a post).
    pub fn changes(&self) -> Option<Seq> {
        match &self.kind {
            Kind::Post { .. } | Kind::Moderate { .. } => None,
            Kind::Edit { of } | Kind::Delete { of } | Kind::React { of, .. } => Some(*of),
        }
    }
}

/// What a log entry does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Kind {
    /// A new message, perhaps a reply to an earlier one.
    Post {
        /// The message it answers, shown as a quote.
        #[serde(default)]
        reply_to: Option<Seq>,
        /// The files it carries, uploaded before it was posted (none once it is deleted).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        attachments: Vec<Attachment>,
    },
    /// Replaces the text of message `of` with this entry's text.
    Edit {
        /// The message edited.
        of: Seq,
    },
    /// Deletes message `of`: its text, its edits' text and its reactions are gone.
    Delete {
        /// The message deleted.
        of: Seq,
    },
    /// The poster added `emoji` to message `of`, or took theirs back.
    React {
        /// The message reacted to.
        of: Seq,
        /// The reaction.
        emoji: Emoji,
        /// Added (`true`) or taken back.
        added: bool,
    },
    /// The poster (the room's owner, a moderator or an admin) moderated `user`.
    Moderate {
        /// Who.
        user: UserId,
        /// What was done.
        action: Moderation,
    },
}

/// What a moderator does to someone in a room. Each is an entry of the room's log, so every
/// node applies it and everyone listening sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Moderation {
    /// Makes them a moderator (the owner and admins only).
    Appoint,
    /// Makes them no longer a moderator (the owner and admins only).
    Dismiss,
    /// Refuses their posts, edits and reactions for this many seconds from the entry's time.
    Mute {
        /// How long.
        seconds: u64,
    },
    /// Lets them post again.
    Unmute,
    /// Closes their listeners on the room; they may come back.
    Kick,
    /// Closes their listeners and keeps them out (a public room too) until unbanned.
    Ban,
    /// Lets them in again.
    Unban,
}

/// How long a mute lasts when nobody says (ten minutes).
pub const DEFAULT_MUTE_SECONDS: u64 = 600;

impl Moderation {
    /// The moderation a client names (`appoint`, `dismiss`, `mute`, `unmute`, `kick`, `ban`,
    /// `unban`), a mute lasting `seconds` ([`DEFAULT_MUTE_SECONDS`] if not given).
    pub fn named(name: &str, seconds: Option<u64>) -> Result<Self, ModerationError> {
        Ok(match name {
            "appoint" => Moderation::Appoint,
            "dismiss" => Moderation::Dismiss,
            "mute" => Moderation::Mute {
                seconds: seconds.unwrap_or(DEFAULT_MUTE_SECONDS),
            },
            "unmute" => Moderation::Unmute,
            "kick" => Moderation::Kick,
            "ban" => Moderation::Ban,
            "unban" => Moderation::Unban,
            _ => return Err(ModerationError::Unknown),
        })
    }

    /// Its name on the wire.
    pub fn name(self) -> &'static str {
        match self {
            Moderation::Appoint => "appoint",
            Moderation::Dismiss => "dismiss",
            Moderation::Mute { .. } => "mute",
            Moderation::Unmute => "unmute",
            Moderation::Kick => "kick",
            Moderation::Ban => "ban",
            Moderation::Unban => "unban",
        }
    }
}

impl Default for Kind {
    fn default() -> Self {
        Kind::Post {
            reply_to: None,
            attachments: Vec::new(),
        }
    }
}

/// A file a message carries. It is uploaded first (see [`Upload`](crate::Upload)); the host
/// keeps the bytes and describes them here, and a post names it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attachment {
    /// The upload's id: [`ATTACHMENT_ID_LEN`] lowercase hex digits.
    pub id: String,
    /// Its file name as the uploader gave it (no path, no control characters).
    pub name: String,
    /// Its media type, as the host found it in the bytes (not as the uploader said).
    pub content_type: String,
    /// Its length in bytes.
    pub size: u64,
}

/// How long an attachment's id is: 128 random bits in hex.
pub const ATTACHMENT_ID_LEN: usize = 32;

impl Attachment {
    /// An attachment as a client names it in a post, by id alone: the host describes it from
    /// the upload it kept before core sees it.
    pub fn named(id: String) -> Self {
        Attachment {
            id,
            name: String::new(),
            content_type: String::new(),
            size: 0,
        }
    }

    /// Whether `id` has an attachment id's shape (so it is safe as a file name, too).
    pub fn is_id(id: &str) -> bool {
        id.len() == ATTACHMENT_ID_LEN
            && id
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    }
}

impl Kind {
    /// Whether this entry speaks in the room (a post, an edit, a reaction): what a muted user
    /// may not do. Deleting and moderating are not speaking.
    pub fn speaks(&self) -> bool {
        match self {
            Kind::Post { .. } | Kind::Edit { .. } | Kind::React { .. } => true,
            Kind::Delete { .. } | Kind::Moderate { .. } => false,
        }
    }

    /// The kind's name on the wire: SSE event types, WebSocket frame types, store rows.
    pub fn name(&self) -> &'static str {
        match self {
            Kind::Post { .. } => "message",
            Kind::Edit { .. } => "edited",
            Kind::Delete { .. } => "deleted",
            Kind::React { .. } => "reaction",
            Kind::Moderate { .. } => "moderation",
        }
    }
}

/// What a moderation leaves someone with in a room, one each: the vocabulary storage keeps it
/// in (a store's rows, Redis's hash), read back with [`Access::grant`](crate::Access::grant).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    /// A moderator of the room.
    Moderator,
    /// Banned from it.
    Banned,
    /// Muted in it, until a time.
    Muted,
}

impl Standing {
    /// Its name in storage.
    pub fn name(self) -> &'static str {
        match self {
            Standing::Moderator => "moderator",
            Standing::Banned => "banned",
            Standing::Muted => "muted",
        }
    }

    /// The standing named so, if any.
    pub fn named(name: &str) -> Option<Self> {
        [Standing::Moderator, Standing::Banned, Standing::Muted]
            .into_iter()
            .find(|s| s.name() == name)
    }
}

impl Moderation {
    /// The standing this gives (`true`) or takes away (`false`); `None` for a kick, which
    /// leaves nothing behind.
    pub fn standing(self) -> Option<(Standing, bool)> {
        Some(match self {
            Moderation::Appoint => (Standing::Moderator, true),
            Moderation::Dismiss => (Standing::Moderator, false),
            Moderation::Mute { .. } => (Standing::Muted, true),
            Moderation::Unmute => (Standing::Muted, false),
            Moderation::Ban => (Standing::Banned, true),
            Moderation::Unban => (Standing::Banned, false),
            Moderation::Kick => return None,
        })
    }

    /// For a mute entered at `at`, when it ends.
    pub fn until(self, at: Timestamp) -> Option<Timestamp> {
        match self {
            Moderation::Mute { seconds } => {
                Some(at.saturating_add(std::time::Duration::from_secs(seconds)))
            }
            Moderation::Appoint
            | Moderation::Dismiss
            | Moderation::Unmute
            | Moderation::Kick
            | Moderation::Ban
            | Moderation::Unban => None,
        }
    }
}

/// What later entries did to an entry, kept on it in history so a page shows each message as
/// it is now.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    /// When its text was last edited.
    #[serde(default)]
    pub edited_at: Option<Timestamp>,
    /// Deleted: the text is gone (an edit of a deleted message loses its text too).
    #[serde(default)]
    pub deleted: bool,
    /// Its reactions, each emoji with who reacted, in the order they first appeared.
    #[serde(default)]
    pub reactions: Vec<Reaction>,
}

/// One emoji on a message and who added it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reaction {
    /// The emoji.
    pub emoji: Emoji,
    /// Who added it, in order; never empty, each user once.
    pub users: Vec<UserId>,
}

impl State {
    /// Adds or takes back `user`'s `emoji`; false if that changed nothing.
    pub(crate) fn react(&mut self, emoji: &Emoji, user: &UserId, added: bool) -> bool {
        let at = self.reactions.iter().position(|r| &r.emoji == emoji);
        match (at, added) {
            (Some(i), true) => {
                let users = &mut self.reactions[i].users;
                if users.contains(user) {
                    return false;
                }
                users.push(user.clone());
            }
            (None, true) => self.reactions.push(Reaction {
                emoji: emoji.clone(),
                users: vec![user.clone()],
            }),
            (Some(i), false) => {
                let users = &mut self.reactions[i].users;
                let Some(u) = users.iter().position(|u| u == user) else {
                    return false;
                };
                users.remove(u);
                if users.is_empty() {
                    self.reactions.remove(i);
                }
            }
            (None, false) => return false,
        }
        true
    }

    /// Whether `user` has reacted with `emoji`.
    pub fn has(&self, emoji: &Emoji, user: &UserId) -> bool {
        self.reactions
            .iter()
            .any(|r| &r.emoji == emoji && r.users.contains(user))
    }
}

/// One emoji, as Unicode lists it (skin tones and flags included), in its fully qualified form:
/// "❤" and "❤️" are the same reaction. Only parsing makes one, so holding one means it is an
/// emoji and not any text a client sent.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Emoji(Arc<str>);

impl Emoji {
    /// The emoji `s` is, or why not.
    pub fn parse(s: &str) -> Result<Self, NotAnEmoji> {
        match emojis::get(s) {
            Some(e) => Ok(Emoji(e.as_str().into())),
            None => {
                // Echo at most a few characters: the rest may be anything.
                Err(NotAnEmoji(s.chars().take(16).collect()))
            }
        }
    }

    /// The emoji as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Emoji {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl fmt::Display for Emoji {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for Emoji {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Emoji {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Emoji::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emoji_are_one_unicode_emoji_in_one_form() {
        assert_eq!(
            Emoji::parse("❤").unwrap(),
            Emoji::parse("❤\u{fe0f}").unwrap()
        );
        for ok in ["👍", "👍🏽", "🇫🇷", "🏳\u{fe0f}\u{200d}🌈", "1\u{fe0f}\u{20e3}"]
        {
            assert!(Emoji::parse(ok).is_ok(), "{ok}");
        }
        for bad in ["", "a", ":+1:", "👍👍", "👍 ", "<script>"] {
            assert!(Emoji::parse(bad).is_err(), "{bad:?}");
        }
        let long = "x".repeat(10_000);
        assert_eq!(
            Emoji::parse(&long).unwrap_err().to_string(),
            format!("{:?} is not one emoji", "x".repeat(16))
        );
    }

    #[test]
    fn a_reaction_is_one_per_user_and_emoji() {
        let (ada, bob) = (
            UserId::parse("ada", 8).unwrap(),
            UserId::parse("bob", 8).unwrap(),
        );
        let (up, heart) = (Emoji::parse("👍").unwrap(), Emoji::parse("❤").unwrap());
        let mut s = State::default();
        assert!(s.react(&up, &ada, true));
        assert!(!s.react(&up, &ada, true), "twice is once");
        assert!(s.react(&heart, &ada, true));
        assert!(s.react(&up, &bob, true));
        assert_eq!(s.reactions[0].users, [ada.clone(), bob.clone()]);
        assert!(s.react(&up, &ada, false));
        assert!(!s.react(&up, &ada, false), "nothing to take back");
        assert!(s.react(&up, &bob, false));
        assert_eq!(s.reactions.len(), 1, "an emoji nobody has left goes");
        assert!(s.has(&heart, &ada) && !s.has(&up, &bob));
    }
}
