//! Configurable limits and the checks that enforce them: message text rules, and token
//! buckets on the injected time ([`RateLimiter`], for the per-user submit rate and for anything
//! else a host limits by key, such as sign-in attempts per address).

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::deadlines::Deadlines;
use crate::error::{AttachmentError, MessageError};
use crate::ids::UserId;
use crate::message::Attachment;
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
    /// Most different emoji on one message (default 32); each user adds each one once.
    #[serde(default = "default_reactions_per_message")]
    pub max_reactions_per_message: usize,
    /// Largest file one may upload (default 10 MiB).
    #[serde(default = "default_attachment_bytes")]
    pub max_attachment_bytes: u64,
    /// Most files one message carries (default 10).
    #[serde(default = "default_attachments_per_message")]
    pub max_attachments_per_message: usize,
    /// The share of each per-user limit a guest gets, in percent (default 25): of the rooms
    /// one owns, the listeners one holds, the files one keeps and each pace below (at least
    /// one of each).
    #[serde(default = "default_guest_share")]
    pub guest_share: u8,
    /// Most rooms one user owns at once (default 100).
    #[serde(default = "default_rooms_per_user")]
    pub max_rooms_per_user: usize,
    /// Most listeners one user holds open across every room (default 64).
    #[serde(default = "default_user_listeners")]
    pub max_user_listeners: usize,
    /// How many rooms (a direct message's too) one user may create (default 30 an hour).
    #[serde(default = "default_room_pace")]
    pub room_pace: Option<Pace>,
    /// How many files one user may upload (default 20 every 10 minutes).
    #[serde(default = "default_upload_pace")]
    pub upload_pace: Option<Pace>,
    /// How often one user may move a read marker (default 120 a minute): cheap, but not free.
    #[serde(default = "default_read_pace")]
    pub read_pace: Option<Pace>,
}

fn default_guest_share() -> u8 {
    25
}

fn default_rooms_per_user() -> usize {
    100
}

fn default_user_listeners() -> usize {
    64
}

fn default_room_pace() -> Option<Pace> {
    Some(Pace::new(30, Duration::from_secs(3600)))
}

fn default_upload_pace() -> Option<Pace> {
    Some(Pace::new(20, Duration::from_secs(600)))
}

fn default_read_pace() -> Option<Pace> {
    Some(Pace::new(120, Duration::from_secs(60)))
}

/// The last part of a global cap (rooms, listeners) is kept for users who hold little: once
/// only this share (a tenth) is left, a user who holds [`RESERVE_HOLDS`] or more gets none of
/// it, so one user (or a few) filling the server leaves room for everyone else.
pub const RESERVE_PERCENT: usize = 10;

/// How many a user may hold and still take from a cap's reserve (see [`RESERVE_PERCENT`]).
pub const RESERVE_HOLDS: usize = 4;

/// How many may be taken at once: at most `count` in any `per` (a bucket of `count`, refilled
/// one at a time, evenly over `per`). Written `30/1h` on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pace {
    /// How many at once (at least 1).
    pub count: u32,
    /// Over how long they come back (at least 1 ms).
    pub per: Duration,
}

impl Pace {
    /// `count` in any `per`.
    pub const fn new(count: u32, per: Duration) -> Self {
        Pace { count, per }
    }

    /// The bucket this pace fills.
    pub fn refill(self) -> Refill {
        let count = self.count.max(1);
        Refill {
            burst: count,
            tokens: 1,
            period: (self.per / count).max(Duration::from_millis(1)),
        }
    }

    /// The pace at `share` percent, of both the burst and the rate: `share` of `count` in the
    /// same `per` (at least one).
    pub fn share(self, share: u8) -> Pace {
        let count = (u64::from(self.count) * u64::from(share) / 100).max(1);
        Pace {
            count: u32::try_from(count).unwrap_or(u32::MAX),
            per: self.per,
        }
    }
}

impl Limits {
    /// `limit` for `user`: all of it for an account, the guest share for a guest (at least one).
    pub fn for_user(&self, limit: usize, user: &UserId) -> usize {
        match user.is_guest() {
            true => (limit * usize::from(self.guest_share) / 100).max(1),
            false => limit,
        }
    }

    /// [`Limits::for_user`] of bytes.
    pub fn bytes_for_user(&self, limit: u64, user: &UserId) -> u64 {
        match user.is_guest() {
            true => (limit / 100 * u64::from(self.guest_share)).max(1),
            false => limit,
        }
    }

    /// Whether someone holding `held` of a cap of `max` that has `taken` in all may take one
    /// more: below the reserve anyone may; in it, only those holding fewer than
    /// [`RESERVE_HOLDS`].
    pub fn may_take(max: usize, taken: usize, held: usize) -> bool {
        let reserve = max * RESERVE_PERCENT / 100;
        taken < max && (taken < max - reserve || held < RESERVE_HOLDS)
    }
}

/// A pace per user: a guest's bucket is the guest share of an account's ([`Pace::share`]).
#[derive(Debug, Clone)]
pub(crate) struct UserPace {
    accounts: RateLimiter<UserId>,
    guests: RateLimiter<UserId>,
}

impl UserPace {
    pub(crate) fn new(pace: Option<Pace>, guest_share: u8) -> Self {
        UserPace {
            accounts: RateLimiter::new(pace.map(Pace::refill)),
            guests: RateLimiter::new(pace.map(|p| p.share(guest_share).refill())),
        }
    }

    /// Takes one for `user`, or says how long until one is available.
    pub(crate) fn take(&mut self, user: &UserId, now: Timestamp) -> Result<(), Duration> {
        match user.is_guest() {
            true => self.guests.take(user, now),
            false => self.accounts.take(user, now),
        }
    }

    pub(crate) fn poll_timeout(&self) -> Option<Timestamp> {
        [self.accounts.poll_timeout(), self.guests.poll_timeout()]
            .into_iter()
            .flatten()
            .min()
    }

    pub(crate) fn handle_timeout(&mut self, now: Timestamp) {
        self.accounts.handle_timeout(now);
        self.guests.handle_timeout(now);
    }

    pub(crate) fn tracked(&self) -> usize {
        self.accounts.tracked() + self.guests.tracked()
    }
}

fn default_attachment_bytes() -> u64 {
    10 * 1024 * 1024
}

fn default_attachments_per_message() -> usize {
    10
}

fn default_reactions_per_message() -> usize {
    32
}

impl Limits {
    /// How many rooms a listing page holds when `asked` for so many (or not).
    pub fn rooms_page(&self, asked: Option<usize>) -> usize {
        asked.unwrap_or(self.rooms_page_len).min(self.max_page_len)
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            room_id_max_len: 64,
            user_name_max_chars: 32,
            message_max_bytes: 4096,
            max_rooms: 200_000,
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
            max_reactions_per_message: default_reactions_per_message(),
            max_attachment_bytes: default_attachment_bytes(),
            max_attachments_per_message: default_attachments_per_message(),
            guest_share: default_guest_share(),
            max_rooms_per_user: default_rooms_per_user(),
            max_user_listeners: default_user_listeners(),
            room_pace: default_room_pace(),
            upload_pace: default_upload_pace(),
            read_pace: default_read_pace(),
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

impl Limits {
    /// A post's attachments: at most [`Limits::max_attachments_per_message`], each a
    /// well-formed id named once, each within [`Limits::max_attachment_bytes`].
    pub fn check_attachments(&self, attachments: &[Attachment]) -> Result<(), AttachmentError> {
        if attachments.len() > self.max_attachments_per_message {
            return Err(AttachmentError::TooMany {
                max: self.max_attachments_per_message,
            });
        }
        for (i, a) in attachments.iter().enumerate() {
            if !Attachment::is_id(&a.id) || attachments[..i].iter().any(|b| b.id == a.id) {
                return Err(AttachmentError::Invalid { id: a.id.clone() });
            }
            if a.size > self.max_attachment_bytes {
                return Err(AttachmentError::TooLarge {
                    max: self.max_attachment_bytes,
                });
            }
        }
        Ok(())
    }
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

/// A token bucket's shape: up to `burst` at once, refilled by `tokens` every `period`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refill {
    /// Tokens a full bucket holds (at least 1).
    pub burst: u32,
    /// Tokens added each `period` (at least 1).
    pub tokens: u32,
    /// How often `tokens` are added (at least 1 ms).
    pub period: Duration,
}

impl Refill {
    /// `burst` at once, then one more each time `every` passes.
    pub fn every(burst: u32, every: Duration) -> Self {
        Refill {
            burst,
            tokens: 1,
            period: every,
        }
    }
}

impl From<Rate> for Refill {
    fn from(rate: Rate) -> Self {
        Refill {
            burst: rate.burst,
            tokens: rate.per_second,
            period: Duration::from_secs(1),
        }
    }
}

/// A bucket's level in units of 1/period-in-ms of a token, so any refill stays exact in
/// integer milliseconds: each millisecond adds `tokens` units, and a token is `period` units.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    units: u64,
    updated: Timestamp,
}

/// Token buckets by key (a user, an address), on the injected time. Only keys below a full
/// bucket are held: a full bucket is the same as none, so each is dropped when it refills (a
/// deadline that [`RateLimiter::handle_timeout`] honours), keeping memory bounded by the keys
/// active within one refill.
#[derive(Debug, Clone)]
pub struct RateLimiter<K: Ord + Clone> {
    /// Units per token, units a full bucket holds, units added per millisecond.
    shape: Option<(u64, u64, u64)>,
    buckets: BTreeMap<K, Bucket>,
    refilled: Deadlines<K>,
}

impl<K: Ord + Clone> RateLimiter<K> {
    /// Buckets of this shape; `None` limits nothing and holds nothing.
    pub fn new(refill: Option<Refill>) -> Self {
        let shape = refill.map(|r| {
            let token = crate::time::millis(r.period).max(1);
            (
                token,
                u64::from(r.burst.max(1)) * token,
                u64::from(r.tokens.max(1)),
            )
        });
        RateLimiter {
            shape,
            buckets: BTreeMap::new(),
            refilled: Deadlines::default(),
        }
    }

    /// `key`'s bucket level at `now`, with the limiter's shape.
    fn level(&self, key: &K, now: Timestamp) -> Option<(u64, (u64, u64, u64))> {
        let shape @ (_, full, per_ms) = self.shape?;
        let level = self.buckets.get(key).map_or(full, |bucket| {
            let elapsed = now
                .as_unix_millis()
                .saturating_sub(bucket.updated.as_unix_millis());
            full.min(bucket.units.saturating_add(elapsed.saturating_mul(per_ms)))
        });
        Some((level, shape))
    }

    /// Whether `key` has a token at `now`, or how long until it will; takes nothing.
    pub fn check(&self, key: &K, now: Timestamp) -> Result<(), Duration> {
        match self.level(key, now) {
            Some((level, (token, _, per_ms))) if level < token => {
                Err(Duration::from_millis((token - level).div_ceil(per_ms)))
            }
            Some(_) | None => Ok(()),
        }
    }

    /// Takes one token for `key`, or says how long until one is available.
    pub fn take(&mut self, key: &K, now: Timestamp) -> Result<(), Duration> {
        self.check(key, now)?;
        let Some((level, (token, full, per_ms))) = self.level(key, now) else {
            return Ok(());
        };
        let units = level - token;
        self.buckets.insert(
            key.clone(),
            Bucket {
                units,
                updated: now,
            },
        );
        let full_in = (full - units).div_ceil(per_ms);
        self.refilled.set(
            key.clone(),
            now.saturating_add(Duration::from_millis(full_in)),
        );
        Ok(())
    }

    /// When the next bucket becomes full and can be forgotten.
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        self.refilled.next()
    }

    /// Forgets every bucket that is full by `now`.
    pub fn handle_timeout(&mut self, now: Timestamp) {
        while let Some(key) = self.refilled.pop_due(now) {
            self.buckets.remove(&key);
        }
    }

    /// How many keys are held below a full bucket.
    pub fn tracked(&self) -> usize {
        self.buckets.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::UserId;

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
        let ada = UserId::parse("ada", 32).unwrap();
        let mut rl = RateLimiter::new(Some(Refill::from(Rate {
            burst: 2,
            per_second: 4,
        })));
        assert!(rl.take(&ada, t(0)).is_ok());
        assert!(rl.take(&ada, t(0)).is_ok());
        assert_eq!(rl.take(&ada, t(0)), Err(Duration::from_millis(250)));
        assert_eq!(rl.take(&ada, t(100)), Err(Duration::from_millis(150)));
        assert!(rl.take(&ada, t(250)).is_ok());
        // Other users have their own bucket.
        let bob = UserId::parse("bob", 32).unwrap();
        assert!(rl.take(&bob, t(250)).is_ok());
    }

    #[test]
    fn full_buckets_are_forgotten_on_their_deadline() {
        let ada = UserId::parse("ada", 32).unwrap();
        let mut rl = RateLimiter::new(Some(Refill::from(Rate {
            burst: 2,
            per_second: 1,
        })));
        rl.take(&ada, t(0)).unwrap();
        assert_eq!(rl.tracked(), 1);
        assert_eq!(rl.poll_timeout(), Some(t(1000)));
        rl.handle_timeout(t(999));
        assert_eq!(rl.tracked(), 1);
        rl.handle_timeout(t(1000));
        assert_eq!(rl.tracked(), 0);
        assert_eq!(rl.poll_timeout(), None);
        // Forgetting a full bucket changes nothing: the burst is whole again.
        assert!(rl.take(&ada, t(1000)).is_ok());
        assert!(rl.take(&ada, t(1000)).is_ok());
        assert!(rl.take(&ada, t(1000)).is_err());
    }

    #[test]
    fn slow_refills_stay_exact() {
        // One every 12 s, as sign-in attempts are limited: no rounding lets an early one in.
        let ada = UserId::parse("ada", 32).unwrap();
        let mut rl = RateLimiter::new(Some(Refill::every(1, Duration::from_secs(12))));
        assert!(rl.take(&ada, t(0)).is_ok());
        assert_eq!(rl.check(&ada, t(0)), Err(Duration::from_secs(12)));
        assert_eq!(rl.check(&ada, t(11_999)), Err(Duration::from_millis(1)));
        assert_eq!(rl.check(&ada, t(12_000)), Ok(()), "check takes nothing");
        assert!(rl.take(&ada, t(12_000)).is_ok());
        assert!(rl.take(&ada, t(12_000)).is_err());
    }

    #[test]
    fn no_rate_means_no_limit_and_no_state() {
        let ada = UserId::parse("ada", 32).unwrap();
        let mut rl = RateLimiter::<UserId>::new(None);
        for _ in 0..1000 {
            assert!(rl.take(&ada, t(0)).is_ok());
        }
        assert_eq!(rl.tracked(), 0);
        assert_eq!(rl.poll_timeout(), None);
    }
}
