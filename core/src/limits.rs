//! Configurable limits and the checks that enforce them: message text rules and the per-user
//! submit rate (a token bucket on the injected time).

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::deadlines::Deadlines;
use crate::error::{Error, MessageError};
use crate::ids::UserName;
use crate::time::Timestamp;

/// Limits on what clients may send and how much the server holds. Every one is configurable;
/// the defaults suit a public chat server on a small machine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// Longest room id, in bytes (default 64).
    pub room_id_max_len: usize,
    /// Longest user name, in characters (default 32).
    pub user_name_max_chars: usize,
    /// Largest message text, in UTF-8 bytes after line endings are normalized (default 4 KiB).
    pub message_max_bytes: usize,
    /// Most rooms at once (default 10,000).
    pub max_rooms: usize,
    /// Most listeners open on one room (default 50,000).
    pub max_listeners_per_room: usize,
    /// Most listeners one user may hold open on one room (default 16): enough for every tab
    /// and device, and one user cannot use up a room's places.
    pub max_listeners_per_user: usize,
    /// Most listeners open on the whole server (default 100,000): what bounds the memory that
    /// many streams on few connections (gRPC) could take.
    pub max_listeners: usize,
    /// Per-user submit rate across all rooms; `None` for no limit (default 10 at once, 5 per second).
    pub submit_rate: Option<Rate>,
    /// Most rooms or messages one page returns; longer requests are cut to this (default 500).
    pub max_page_len: usize,
    /// Rooms on a page of the room list when the client does not say (default 100).
    pub rooms_page_len: usize,
    /// Messages on a page of history when the client does not say (default 50).
    pub history_page_len: usize,
    /// Joins and leaves are announced to the room only while at most this many users are
    /// present (default 1,000). Past that, every join would cost a delivery to everyone
    /// (quadratic in the room's size); listeners still get the snapshot when they open.
    pub announce_presence_up_to: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            room_id_max_len: 64,
            user_name_max_chars: 32,
            message_max_bytes: 4096,
            max_rooms: 10_000,
            max_listeners_per_room: 50_000,
            max_listeners_per_user: 16,
            max_listeners: 100_000,
            submit_rate: Some(Rate {
                burst: 10,
                per_second: 5,
            }),
            max_page_len: 500,
            rooms_page_len: 100,
            history_page_len: 50,
            announce_presence_up_to: 1000,
        }
    }
}

/// A token-bucket rate: up to `burst` submits at once, refilled at `per_second`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rate {
    /// Bucket size: how many submits may come back to back (at least 1).
    pub burst: u32,
    /// Refill speed in submits per second (at least 1).
    pub per_second: u32,
}

/// Checks a message text and normalizes its line endings (`\r\n` becomes `\n`, as browsers send
/// form text with CRLF). Refuses control characters other than newline and tab, texts that are
/// only white space, and texts over `max_bytes`.
pub fn check_text(text: String, max_bytes: usize) -> Result<String, MessageError> {
    let bytes = text.as_bytes();
    for (offset, ch) in text.char_indices() {
        let allowed =
            matches!(ch, '\n' | '\t') || (ch == '\r' && bytes.get(offset + 1) == Some(&b'\n'));
        if ch.is_control() && !allowed {
            return Err(MessageError::ControlCharacter { ch, offset });
        }
    }
    let text = if text.contains('\r') {
        text.replace("\r\n", "\n")
    } else {
        text
    };
    if text.len() > max_bytes {
        return Err(MessageError::TooLarge {
            len: text.len(),
            max: max_bytes,
        });
    }
    if text.trim().is_empty() {
        return Err(MessageError::Empty);
    }
    Ok(text)
}

/// Thousandths of a token, so refills at any whole rate stay exact in integer milliseconds.
const MILLI: u64 = 1000;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    millitokens: u64,
    updated: Timestamp,
}

/// Per-user token buckets. Only users who are below a full bucket are held: a full bucket is the
/// same as no bucket, so each is dropped when it refills (a deadline), keeping memory bounded by
/// recently active users.
#[derive(Debug, Clone)]
pub(crate) struct RateLimiter {
    rate: Option<Rate>,
    buckets: BTreeMap<UserName, Bucket>,
    refilled: Deadlines<UserName>,
}

impl RateLimiter {
    pub(crate) fn new(rate: Option<Rate>) -> Self {
        let rate = rate.map(|r| Rate {
            burst: r.burst.max(1),
            per_second: r.per_second.max(1),
        });
        RateLimiter {
            rate,
            buckets: BTreeMap::new(),
            refilled: Deadlines::default(),
        }
    }

    /// Takes one token for `user`, or says how long until one is available.
    pub(crate) fn take(&mut self, user: &UserName, now: Timestamp) -> Result<(), Error> {
        let Some(rate) = self.rate else { return Ok(()) };
        let capacity = u64::from(rate.burst) * MILLI;
        let per_ms = u64::from(rate.per_second);
        let bucket = self.buckets.entry(user.clone()).or_insert(Bucket {
            millitokens: capacity,
            updated: now,
        });
        let elapsed = now
            .as_unix_millis()
            .saturating_sub(bucket.updated.as_unix_millis());
        bucket.millitokens = capacity.min(
            bucket
                .millitokens
                .saturating_add(elapsed.saturating_mul(per_ms)),
        );
        bucket.updated = now;
        if bucket.millitokens < MILLI {
            let wait = (MILLI - bucket.millitokens).div_ceil(per_ms);
            return Err(Error::RateLimited {
                retry_after: Duration::from_millis(wait),
            });
        }
        bucket.millitokens -= MILLI;
        let full_in = (capacity - bucket.millitokens).div_ceil(per_ms);
        self.refilled.set(
            user.clone(),
            now.saturating_add(Duration::from_millis(full_in)),
        );
        Ok(())
    }

    /// When the next bucket becomes full and can be forgotten.
    pub(crate) fn poll_timeout(&self) -> Option<Timestamp> {
        self.refilled.next()
    }

    /// Forgets every bucket that is full by `now`.
    pub(crate) fn handle_timeout(&mut self, now: Timestamp) {
        while let Some(user) = self.refilled.pop_due(now) {
            self.buckets.remove(&user);
        }
    }

    /// How many users are held below a full bucket.
    pub(crate) fn tracked_users(&self) -> usize {
        self.buckets.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(ms: u64) -> Timestamp {
        Timestamp::from_unix_millis(ms)
    }

    #[test]
    fn text_rules() {
        assert_eq!(check_text("hi 👋".into(), 10), Ok("hi 👋".into()));
        assert_eq!(check_text("a\r\nb\tc".into(), 10), Ok("a\nb\tc".into()));
        assert_eq!(check_text(" \n\t ".into(), 10), Err(MessageError::Empty));
        assert_eq!(check_text(String::new(), 10), Err(MessageError::Empty));
        assert_eq!(
            check_text("x".repeat(11), 10),
            Err(MessageError::TooLarge { len: 11, max: 10 })
        );
        // Ten bytes once the CRLF is normalized.
        assert_eq!(
            check_text("123456789\r\n".into(), 10),
            Ok("123456789\n".into())
        );
        assert_eq!(
            check_text("ab\u{1b}[31m".into(), 10),
            Err(MessageError::ControlCharacter {
                ch: '\u{1b}',
                offset: 2
            })
        );
        assert_eq!(
            check_text("a\rb".into(), 10),
            Err(MessageError::ControlCharacter {
                ch: '\r',
                offset: 1
            })
        );
        assert_eq!(
            check_text("a\u{85}".into(), 10),
            Err(MessageError::ControlCharacter {
                ch: '\u{85}',
                offset: 1
            })
        );
        assert!(matches!(
            check_text("\0".into(), 10),
            Err(MessageError::ControlCharacter { .. })
        ));
    }

    #[test]
    fn bucket_allows_burst_then_refills() {
        let ada = UserName::parse("ada", 32).unwrap();
        let mut rl = RateLimiter::new(Some(Rate {
            burst: 2,
            per_second: 4,
        }));
        assert!(rl.take(&ada, t(0)).is_ok());
        assert!(rl.take(&ada, t(0)).is_ok());
        assert_eq!(
            rl.take(&ada, t(0)),
            Err(Error::RateLimited {
                retry_after: Duration::from_millis(250)
            })
        );
        assert_eq!(
            rl.take(&ada, t(100)),
            Err(Error::RateLimited {
                retry_after: Duration::from_millis(150)
            })
        );
        assert!(rl.take(&ada, t(250)).is_ok());
        // Other users have their own bucket.
        let bob = UserName::parse("bob", 32).unwrap();
        assert!(rl.take(&bob, t(250)).is_ok());
    }

    #[test]
    fn full_buckets_are_forgotten_on_their_deadline() {
        let ada = UserName::parse("ada", 32).unwrap();
        let mut rl = RateLimiter::new(Some(Rate {
            burst: 2,
            per_second: 1,
        }));
        rl.take(&ada, t(0)).unwrap();
        assert_eq!(rl.tracked_users(), 1);
        assert_eq!(rl.poll_timeout(), Some(t(1000)));
        rl.handle_timeout(t(999));
        assert_eq!(rl.tracked_users(), 1);
        rl.handle_timeout(t(1000));
        assert_eq!(rl.tracked_users(), 0);
        assert_eq!(rl.poll_timeout(), None);
        // Forgetting a full bucket changes nothing: the burst is whole again.
        assert!(rl.take(&ada, t(1000)).is_ok());
        assert!(rl.take(&ada, t(1000)).is_ok());
        assert!(rl.take(&ada, t(1000)).is_err());
    }

    #[test]
    fn no_rate_means_no_limit_and_no_state() {
        let ada = UserName::parse("ada", 32).unwrap();
        let mut rl = RateLimiter::new(None);
        for _ in 0..1000 {
            assert!(rl.take(&ada, t(0)).is_ok());
        }
        assert_eq!(rl.tracked_users(), 0);
        assert_eq!(rl.poll_timeout(), None);
    }
}
