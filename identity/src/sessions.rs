//! Live sessions, on injected time: a token roomcast issued works while its session lives;
//! signing out ends the session, so every token of it stops at once.

use std::collections::HashMap;

use roomcast_core::Timestamp;

/// Session id → (user, expiry).
#[derive(Debug, Default)]
pub(crate) struct Sessions {
    live: HashMap<String, (String, Timestamp)>,
}

impl Sessions {
    pub(crate) fn new(live: HashMap<String, (String, Timestamp)>) -> Self {
        Sessions { live }
    }

    /// Opens a session; returns whether expired ones were forgotten on the way (whenever the
    /// map reaches a power of two from 1,024: amortised O(1)), so the store can do the same.
    pub(crate) fn open(
        &mut self,
        sid: String,
        user: String,
        expires: Timestamp,
        now: Timestamp,
    ) -> bool {
        self.live.insert(sid, (user, expires));
        let prune = self.live.len() >= 1024 && self.live.len().is_power_of_two();
        if prune {
            self.live.retain(|_, (_, until)| *until > now);
        }
        prune
    }

    /// Whether session `sid` is live and belongs to `user`.
    pub(crate) fn belongs_to(&self, sid: &str, user: &str) -> bool {
        self.live.get(sid).is_some_and(|(owner, _)| owner == user)
    }

    /// Ends session `sid`.
    pub(crate) fn end(&mut self, sid: &str) {
        self.live.remove(sid);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64) -> Timestamp {
        Timestamp::from_unix_millis(secs * 1000)
    }

    #[test]
    fn a_session_names_its_user_until_it_ends() {
        let mut s = Sessions::default();
        s.open("s1".into(), "ada".into(), at(60), at(0));
        assert!(s.belongs_to("s1", "ada"));
        assert!(!s.belongs_to("s1", "bob"), "a session names one user");
        s.end("s1");
        assert!(!s.belongs_to("s1", "ada"));
    }

    #[test]
    fn expired_sessions_are_forgotten_as_new_ones_open() {
        let mut s = Sessions::default();
        let pruned = (0..5000u64)
            .filter(|n| s.open(format!("s{n}"), "ada".into(), at(n + 1), at(*n)))
            .count();
        assert!(pruned > 0);
        assert!(s.live.len() < 2048, "{} sessions kept", s.live.len());
    }
}
