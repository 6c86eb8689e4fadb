//! Read markers: how far each user has read a room, so a listing can say what is unread with
//! a subtraction. A room counts its messages (posts, not the edits, deletions, reactions and
//! moderations that are entries of its log too); a marker keeps that count as it was at the
//! number read up to, so unread is the room's count now minus the marker's.

use serde::{Deserialize, Serialize};

use crate::ids::Seq;

/// How far a user has read a room: up to entry `seq`, when the room had `posts` messages.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadMarker {
    /// The newest entry read.
    pub seq: Seq,
    /// How many messages the room had up to `seq`.
    pub posts: u64,
}

impl ReadMarker {
    /// How many of a room's `posts` messages the marker's user has not read: those after the
    /// marker; without one, every message for a member of a private room (a direct message
    /// waiting to be read), and `None` for a public room they never marked.
    pub fn unread(marker: Option<&ReadMarker>, posts: u64, member: bool) -> Option<u64> {
        match marker {
            Some(marker) => Some(posts.saturating_sub(marker.posts)),
            None => member.then_some(posts),
        }
    }
}

/// The answer to marking a room read: where the caller's marker now is, and what is unread.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unread {
    /// The newest entry read (a marker never goes back: marking an older one leaves it).
    pub up_to: Seq,
    /// Messages after it.
    pub count: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unread_is_a_subtraction() {
        let marker = ReadMarker {
            seq: Seq(10),
            posts: 7,
        };
        assert_eq!(ReadMarker::unread(Some(&marker), 9, false), Some(2));
        assert_eq!(ReadMarker::unread(Some(&marker), 7, true), Some(0));
        assert_eq!(ReadMarker::unread(None, 5, true), Some(5));
        assert_eq!(ReadMarker::unread(None, 5, false), None);
    }
}
