//! Live sessions, on injected time: a token roomcast issued works while its session lives;
//! signing out ends the session, so every token of it stops at once.

use std::collections::HashMap;
use std::sync::Arc;

use roomcast_core::Timestamp;

/// Live sessions, and how many each user holds.
#[derive(Debug)]
pub(crate) struct Sessions {
    /// Most sessions one user holds at once: one more ends their oldest. Every device and tab
    /// fits, and nobody makes the server keep sessions without bound by signing in again and
    /// again.
    max_per_user: usize,
    /// Session id → its user, its expiry, and when it opened (a count, for "oldest").
    live: HashMap<String, Session>,
    /// How many live sessions each user holds (the key shared with their sessions').
    held: HashMap<Arc<str>, usize>,
    /// The next session's place in the order sessions opened.
    opened: u64,
}

#[derive(Debug)]
struct Session {
    user: Arc<str>,
    expires: Timestamp,
    order: u64,
}

/// What opening a session did besides.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Opened {
    /// Expired sessions were forgotten (whenever the map reaches a power of two from 1,024:
    /// amortised O(1)), so the store can do the same.
    pub(crate) pruned: bool,
    /// The user's oldest session, ended to keep them within their most.
    pub(crate) ended: Option<String>,
}

impl Sessions {
    /// The sessions `live` (as the store kept them), at most `max_per_user` (at least one) each:
    /// of more, the newest.
    pub(crate) fn new(live: HashMap<String, (String, Timestamp)>, max_per_user: usize) -> Self {
        let mut sessions = Sessions {
            max_per_user: max_per_user.max(1),
            live: HashMap::with_capacity(live.len()),
            held: HashMap::new(),
            opened: 0,
        };
        let mut oldest_first: Vec<_> = live.into_iter().collect();
        oldest_first.sort_by_key(|(_, (_, expires))| *expires);
        for (sid, (user, expires)) in oldest_first {
            sessions.insert(sid, &user, expires);
        }
        sessions
    }

    /// Opens a session.
    pub(crate) fn open(
        &mut self,
        sid: String,
        user: String,
        expires: Timestamp,
        now: Timestamp,
    ) -> Opened {
        let ended = self.insert(sid, &user, expires);
        let pruned = self.live.len() >= 1024 && self.live.len().is_power_of_two();
        if pruned {
            let expired: Vec<String> = self
                .live
                .iter()
                .filter(|(_, session)| session.expires <= now)
                .map(|(sid, _)| sid.clone())
                .collect();
            for sid in expired {
                self.end(&sid);
            }
        }
        Opened { pruned, ended }
    }

    /// Adds a session; past the user's most, ends their oldest and returns it. Finding it
    /// reads every session, which is only ever needed after a sign-in (a password hash) or a
    /// guest's sign-up, both limited per address and far costlier.
    fn insert(&mut self, sid: String, user: &str, expires: Timestamp) -> Option<String> {
        let user = match self.held.get_key_value(user) {
            Some((shared, _)) => Arc::clone(shared),
            None => Arc::from(user),
        };
        let order = self.opened;
        self.opened += 1;
        let count = self.held.entry(Arc::clone(&user)).or_default();
        *count += 1;
        let over = *count > self.max_per_user;
        self.live.insert(
            sid,
            Session {
                user: Arc::clone(&user),
                expires,
                order,
            },
        );
        if !over {
            return None;
        }
        let oldest = self
            .live
            .iter()
            .filter(|(_, session)| session.user == user)
            .min_by_key(|(_, session)| session.order)
            .map(|(sid, _)| sid.clone())?;
        self.end(&oldest);
        Some(oldest)
    }

    /// Whether session `sid` is live and belongs to `user`.
    pub(crate) fn belongs_to(&self, sid: &str, user: &str) -> bool {
        self.live
            .get(sid)
            .is_some_and(|session| &*session.user == user)
    }

    /// Ends session `sid`.
    pub(crate) fn end(&mut self, sid: &str) {
        let Some(session) = self.live.remove(sid) else {
            return;
        };
        if let Some(count) = self.held.get_mut(&session.user) {
            *count -= 1;
            if *count == 0 {
                self.held.remove(&session.user);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: usize = 32;

    fn at(secs: u64) -> Timestamp {
        Timestamp::from_unix_millis(secs * 1000)
    }

    #[test]
    fn a_session_names_its_user_until_it_ends() {
        let mut s = Sessions::new(HashMap::new(), MAX);
        s.open("s1".into(), "ada".into(), at(60), at(0));
        assert!(s.belongs_to("s1", "ada"));
        assert!(!s.belongs_to("s1", "bob"), "a session names one user");
        s.end("s1");
        assert!(!s.belongs_to("s1", "ada"));
    }

    #[test]
    fn expired_sessions_are_forgotten_as_new_ones_open() {
        let mut s = Sessions::new(HashMap::new(), MAX);
        let pruned = (0..5000u64)
            .filter(|n| {
                let user = format!("user{}", n % 100);
                s.open(format!("s{n}"), user, at(n + 1), at(*n)).pruned
            })
            .count();
        assert!(pruned > 0);
        assert!(s.live.len() < 2048, "{} sessions kept", s.live.len());
        assert!(s.held.len() <= 100);
    }

    #[test]
    fn one_user_holds_a_bounded_number_of_sessions() {
        let mut s = Sessions::new(HashMap::new(), MAX);
        for n in 0..MAX {
            let opened = s.open(format!("s{n}"), "ada".into(), at(600), at(0));
            assert_eq!(opened.ended, None);
        }
        s.open("bob's".into(), "bob".into(), at(600), at(0));
        // One more ends ada's oldest, and nobody else's.
        let opened = s.open("newest".into(), "ada".into(), at(600), at(0));
        assert_eq!(opened.ended.as_deref(), Some("s0"));
        assert!(!s.belongs_to("s0", "ada"));
        assert!(s.belongs_to("s1", "ada") && s.belongs_to("newest", "ada"));
        assert!(s.belongs_to("bob's", "bob"));
        assert_eq!(s.held["ada"], MAX);
        // Restored with more than that (an older roomcast kept any number), the newest stay.
        let many = (0..40u64)
            .map(|n| (format!("r{n}"), ("cy".to_owned(), at(100 + n))))
            .collect();
        let restored = Sessions::new(many, MAX);
        assert_eq!(restored.live.len(), MAX);
        assert!(restored.belongs_to("r39", "cy") && !restored.belongs_to("r0", "cy"));
    }
}
