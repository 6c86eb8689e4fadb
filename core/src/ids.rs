//! Identifiers: what names a room, a user, a listener and a message.
//!
//! Names that come from clients ([`RoomId`], [`UserId`], [`IdempotencyKey`]) can only be built by
//! parsing, so holding one means it passed the rules. They are `Arc<str>` inside: cloning one into
//! every message and event costs a reference count, not an allocation.

use std::borrow::Borrow;
use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use thiserror::Error;

/// Why a name (room id, user name, idempotency key) was refused. The name itself is not echoed:
/// it may be megabytes long or meant to be logged.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum NameError {
    /// Nothing was given.
    #[error("must not be empty")]
    Empty,
    /// Longer than allowed (bytes for room ids and keys, characters for user names).
    #[error("{len} is longer than the maximum of {max}")]
    TooLong {
        /// The length given.
        len: usize,
        /// The configured maximum.
        max: usize,
    },
    /// Contains a character the rules do not allow.
    #[error("character {ch:?} is not allowed")]
    BadCharacter {
        /// The first such character.
        ch: char,
    },
    /// Room ids must start with a letter or digit.
    #[error("must start with a letter or digit")]
    BadStart,
    /// User names must not start or end with a space, nor hold two in a row.
    #[error("must not start or end with a space, nor hold two spaces in a row")]
    BadSpacing,
    /// A user id's tag (after `~`) is 1 to 32 lowercase ASCII letters and digits.
    #[error("a user id's tag (after ~) must be 1 to 32 lowercase letters and digits")]
    BadTag,
}

/// The longest idempotency key accepted, in bytes.
pub const IDEMPOTENCY_KEY_MAX_LEN: usize = 64;

/// A room's name: ASCII letters, digits, `-`, `_` and `.`, starting with a letter or digit, so it
/// can stand in a URL path unescaped. Case-sensitive.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RoomId(Arc<str>);

impl RoomId {
    /// Checks `s` against the room-id rules with at most `max_len` bytes.
    pub fn parse(s: &str, max_len: usize) -> Result<Self, NameError> {
        check_len(s.len(), max_len)?;
        if let Some(ch) = s
            .chars()
            .find(|&c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
        {
            return Err(NameError::BadCharacter { ch });
        }
        if !s.starts_with(|c: char| c.is_ascii_alphanumeric()) {
            return Err(NameError::BadStart);
        }
        Ok(RoomId(s.into()))
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A user's name, as people see and type it: letters and digits of any script, plus `-`, `_`,
/// `.` and inner spaces. Counted in characters, not bytes, so "Zoë" and "李小龍" are as welcome as
/// "zoe". A name says who someone looks like, not who they are: that is their [`UserId`].
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct UserName(Arc<str>);

impl UserName {
    /// Checks `s` against the user-name rules with at most `max_chars` characters.
    pub fn parse(s: &str, max_chars: usize) -> Result<Self, NameError> {
        check_len(s.chars().count(), max_chars)?;
        if let Some(ch) = s
            .chars()
            .find(|&c| !(c.is_alphanumeric() || matches!(c, '-' | '_' | '.' | ' ')))
        {
            return Err(NameError::BadCharacter { ch });
        }
        if s.starts_with(' ') || s.ends_with(' ') || s.contains("  ") {
            return Err(NameError::BadSpacing);
        }
        Ok(UserName(s.into()))
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Separates a user id's name from its tag: a character no name may hold.
pub const USER_TAG_SEPARATOR: char = '~';

/// The longest tag of a user id.
pub const USER_TAG_MAX_LEN: usize = 32;

/// What a guest's tag starts with (and an account's never does).
pub const GUEST_TAG: char = 'g';

/// Who a user is, for good: every relation (a message's poster, a room's owner and members,
/// roles, read markers, uploads) names this, never the bare name. It is the name its holder
/// took, then [`USER_TAG_SEPARATOR`] and a tag of lowercase letters and digits that no later
/// holder of that name ever gets, so a name released by a guest who left is taken up by
/// someone who inherits nothing: `zoe~gk2j4m9q7x`. The name part is what people see
/// ([`UserId::name`]). A guest's tag starts with [`GUEST_TAG`], an account's never does, so
/// core gives guests their smaller share of each per-user limit ([`UserId::is_guest`]). An id
/// without a tag is a name that is its own id: accounts made before ids had tags,
/// applications' system users, and users of tokens another application mints (its `sub`).
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct UserId(Arc<str>);

impl UserId {
    /// Checks `s`: a user name of at most `max_name_chars` characters, then optionally
    /// [`USER_TAG_SEPARATOR`] and a tag of 1 to [`USER_TAG_MAX_LEN`] lowercase ASCII letters and
    /// digits.
    pub fn parse(s: &str, max_name_chars: usize) -> Result<Self, NameError> {
        let (name, tag) = match s.split_once(USER_TAG_SEPARATOR) {
            Some((name, tag)) => (name, Some(tag)),
            None => (s, None),
        };
        UserName::parse(name, max_name_chars)?;
        if let Some(tag) = tag {
            let lower = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
            if tag.is_empty() || tag.len() > USER_TAG_MAX_LEN || !tag.chars().all(lower) {
                return Err(NameError::BadTag);
            }
        }
        Ok(UserId(s.into()))
    }

    /// The id of the holder of `name` whose tag is `tag` (lowercase letters and digits).
    pub fn tagged(name: &UserName, tag: &str) -> Result<Self, NameError> {
        UserId::parse(
            &format!("{}{USER_TAG_SEPARATOR}{tag}", name.as_str()),
            usize::MAX,
        )
    }

    /// The name part: what people see.
    pub fn name(&self) -> &str {
        self.0
            .split_once(USER_TAG_SEPARATOR)
            .map_or(&*self.0, |(name, _)| name)
    }

    /// The whole id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether this is a guest: its tag starts with [`GUEST_TAG`].
    pub fn is_guest(&self) -> bool {
        self.0
            .split_once(USER_TAG_SEPARATOR)
            .is_some_and(|(_, tag)| tag.starts_with(GUEST_TAG))
    }
}

/// A client-chosen key that makes a retried submit return the original message instead of
/// posting twice: 1 to [`IDEMPOTENCY_KEY_MAX_LEN`] visible ASCII characters.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct IdempotencyKey(Arc<str>);

impl IdempotencyKey {
    /// Checks `s` against the key rules.
    pub fn parse(s: &str) -> Result<Self, NameError> {
        check_len(s.len(), IDEMPOTENCY_KEY_MAX_LEN)?;
        if let Some(ch) = s.chars().find(|c| !c.is_ascii_graphic()) {
            return Err(NameError::BadCharacter { ch });
        }
        Ok(IdempotencyKey(s.into()))
    }

    /// The key as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn check_len(len: usize, max: usize) -> Result<(), NameError> {
    match len {
        0 => Err(NameError::Empty),
        len if len > max => Err(NameError::TooLong { len, max }),
        _ => Ok(()),
    }
}

macro_rules! text_id {
    ($($t:ty),*) => {$(
        impl Borrow<str> for $t {
            fn borrow(&self) -> &str {
                &self.0
            }
        }
        impl AsRef<str> for $t {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
        impl fmt::Debug for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(&*self.0, f)
            }
        }
    )*};
}
text_id!(RoomId, UserName, UserId, IdempotencyKey);

/// Names travel as plain strings. Reading one back (a recording, a replay) checks the rules
/// again, without the configured length limits, which the recording's own config applies.
macro_rules! text_id_serde {
    ($($t:ty => $parse:expr),*) => {$(
        impl Serialize for $t {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }
        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let text = String::deserialize(d)?;
                let parse: fn(&str) -> Result<$t, NameError> = $parse;
                parse(&text).map_err(serde::de::Error::custom)
            }
        }
    )*};
}
text_id_serde!(
    RoomId => |s| RoomId::parse(s, usize::MAX),
    UserName => |s| UserName::parse(s, usize::MAX),
    UserId => |s| UserId::parse(s, usize::MAX),
    IdempotencyKey => IdempotencyKey::parse
);

/// A message's position in its room: 1 for the first message, then 2, 3, ... with no gaps and
/// never reused. `Seq::ZERO` means "before the first message".
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Seq(pub u64);

impl Seq {
    /// Before the first message of a room.
    pub const ZERO: Seq = Seq(0);

    /// The sequence number after this one.
    pub const fn next(self) -> Seq {
        Seq(self.0 + 1)
    }
}

impl fmt::Display for Seq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Names one open listener (a browser tab, a device, a stream). Allocated by core, never reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ListenerId(pub u64);

impl fmt::Display for ListenerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "L{}", self.0)
    }
}

/// A message's unique id across all rooms. Allocated by core in increasing order and never
/// reused, including across a room's deletion and re-creation (where sequence numbers restart).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct MessageId(pub u64);

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// The id of the direct-message room of a pair: `dm-` and a stable 64-bit FNV-1a hash of the two
/// names, so it is the same on every server and version and needs no lookup table.
pub(crate) fn direct_room_id(pair: &std::collections::BTreeSet<UserId>) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for name in pair {
        for byte in name.as_str().bytes().chain([0]) {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    }
    format!("dm-{hash:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_ids_are_url_safe() {
        assert_eq!(RoomId::parse("general", 64).unwrap().as_str(), "general");
        assert_eq!(RoomId::parse("a.b-c_9", 64).unwrap().to_string(), "a.b-c_9");
        assert_eq!(RoomId::parse("", 64), Err(NameError::Empty));
        assert_eq!(
            RoomId::parse("abcde", 4),
            Err(NameError::TooLong { len: 5, max: 4 })
        );
        assert_eq!(
            RoomId::parse("a/b", 64),
            Err(NameError::BadCharacter { ch: '/' })
        );
        assert_eq!(
            RoomId::parse("café", 64),
            Err(NameError::BadCharacter { ch: 'é' })
        );
        assert_eq!(RoomId::parse("-x", 64), Err(NameError::BadStart));
        assert_eq!(RoomId::parse(".hidden", 64), Err(NameError::BadStart));
    }

    #[test]
    fn user_ids_are_a_name_and_a_tag() {
        let id = UserId::parse("Zoë~k2j4m9", 3).unwrap();
        assert_eq!((id.name(), id.as_str()), ("Zoë", "Zoë~k2j4m9"));
        assert_eq!(UserId::parse("ada", 8).unwrap().name(), "ada");
        for bad in ["ada~", "ada~K2", "ada~a-b", "~abc", "ada~x~y"] {
            assert!(UserId::parse(bad, 8).is_err(), "{bad}");
        }
        assert!(UserId::parse(&format!("ada~{}", "x".repeat(33)), 8).is_err());
        let name = UserName::parse("Zoë", 8).unwrap();
        assert_eq!(UserId::tagged(&name, "q1").unwrap().as_str(), "Zoë~q1");
        assert!(UserId::parse("zoe~gk2", 8).unwrap().is_guest());
        assert!(!UserId::parse("zoe~uk2", 8).unwrap().is_guest());
        assert!(
            !UserId::parse("gus", 8).unwrap().is_guest(),
            "a bare name is not a guest"
        );
        assert_eq!(
            UserId::parse("Zoë!~q1", 8),
            Err(NameError::BadCharacter { ch: '!' })
        );
    }

    #[test]
    fn user_names_allow_any_script_and_count_characters() {
        assert!(UserId::parse("Zoë", 3).is_ok());
        assert!(UserId::parse("李小龍", 3).is_ok());
        assert!(UserId::parse("Ada Lovelace", 32).is_ok());
        assert_eq!(
            UserId::parse("Zoë!", 32),
            Err(NameError::BadCharacter { ch: '!' })
        );
        assert_eq!(
            UserId::parse("a\u{7}", 32),
            Err(NameError::BadCharacter { ch: '\u{7}' })
        );
        assert_eq!(UserId::parse(" ada", 32), Err(NameError::BadSpacing));
        assert_eq!(UserId::parse("ada ", 32), Err(NameError::BadSpacing));
        assert_eq!(UserId::parse("a  b", 32), Err(NameError::BadSpacing));
        assert_eq!(
            UserId::parse("abcd", 3),
            Err(NameError::TooLong { len: 4, max: 3 })
        );
        assert_eq!(UserId::parse("", 3), Err(NameError::Empty));
    }

    #[test]
    fn idempotency_keys_are_visible_ascii() {
        assert!(IdempotencyKey::parse("retry-7f3a:1").is_ok());
        assert_eq!(
            IdempotencyKey::parse("a b"),
            Err(NameError::BadCharacter { ch: ' ' })
        );
        assert_eq!(
            IdempotencyKey::parse(&"k".repeat(65)),
            Err(NameError::TooLong { len: 65, max: 64 })
        );
    }

    #[test]
    fn ids_display_compactly() {
        assert_eq!(Seq(7).next(), Seq(8));
        assert_eq!(ListenerId(3).to_string(), "L3");
        assert_eq!(MessageId(255).to_string(), "00000000000000ff");
        assert_eq!(format!("{:?}", RoomId::parse("x", 8).unwrap()), "\"x\"");
    }
}
