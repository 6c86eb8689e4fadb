//! Who holds which name, on injected time: an account holds its name for good; a guest holds
//! its nickname until a time (its session's end and a grace after). Nobody takes a held name.

use std::collections::{HashMap, HashSet};

use roomcast_core::Timestamp;

/// The names held.
#[derive(Debug, Default)]
pub(crate) struct Names {
    registered: HashSet<String>,
    /// Guests' nicknames and when each is released.
    guests: HashMap<String, Timestamp>,
    /// Released holds are forgotten when the map has doubled since: amortised O(1).
    sweep_at: usize,
}

impl Names {
    pub(crate) fn new(registered: HashSet<String>, guests: HashMap<String, Timestamp>) -> Self {
        Names {
            registered,
            guests,
            sweep_at: 1024,
        }
    }

    pub(crate) fn is_registered(&self, name: &str) -> bool {
        self.registered.contains(name)
    }

    /// Whether a guest holds `name` at `now`.
    pub(crate) fn is_held(&self, name: &str, now: Timestamp) -> bool {
        self.guests.get(name).is_some_and(|until| *until > now)
    }

    /// Whether an account or a guest holds `name` at `now`.
    pub(crate) fn is_taken(&self, name: &str, now: Timestamp) -> bool {
        self.is_registered(name) || self.is_held(name, now)
    }

    /// Until when a guest holds `name`, if one ever did.
    pub(crate) fn held_until(&self, name: &str) -> Option<Timestamp> {
        self.guests.get(name).copied()
    }

    /// A guest holds `name` until `until`.
    pub(crate) fn hold(&mut self, name: String, until: Timestamp, now: Timestamp) {
        self.guests.insert(name, until);
        if self.guests.len() >= self.sweep_at {
            self.guests.retain(|_, until| *until > now);
            self.sweep_at = (self.guests.len() * 2).max(1024);
        }
    }

    /// An account now holds `name`.
    pub(crate) fn register(&mut self, name: String) {
        self.registered.insert(name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64) -> Timestamp {
        Timestamp::from_unix_millis(secs * 1000)
    }

    #[test]
    fn a_guest_holds_a_name_until_its_time_an_account_for_good() {
        let mut names = Names::default();
        names.hold("zoe".into(), at(100), at(0));
        assert!(names.is_taken("zoe", at(99)));
        assert!(!names.is_taken("zoe", at(100)), "released at its time");
        names.register("ada".into());
        assert!(names.is_taken("ada", at(1_000_000)));
        assert_eq!(names.held_until("zoe"), Some(at(100)));
    }

    #[test]
    fn released_holds_are_forgotten() {
        let mut names = Names::default();
        for n in 0..10_000u64 {
            names.hold(format!("guest{n}"), at(n + 1), at(n));
        }
        assert!(
            names.guests.len() < 2048,
            "{} holds kept",
            names.guests.len()
        );
    }
}
