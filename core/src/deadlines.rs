//! An index of deadlines by time, so the next one is found without scanning every room or user.

use std::collections::{BTreeMap, BTreeSet};

use crate::time::Timestamp;

/// At most one deadline per key, ordered by time (then key, for determinism).
#[derive(Debug, Clone)]
pub(crate) struct Deadlines<K: Ord + Clone> {
    by_time: BTreeSet<(Timestamp, K)>,
    by_key: BTreeMap<K, Timestamp>,
}

impl<K: Ord + Clone> Default for Deadlines<K> {
    fn default() -> Self {
        Deadlines {
            by_time: BTreeSet::new(),
            by_key: BTreeMap::new(),
        }
    }
}

impl<K: Ord + Clone> Deadlines<K> {
    /// Sets (or moves) `key`'s deadline to `at`.
    pub(crate) fn set(&mut self, key: K, at: Timestamp) {
        if let Some(old) = self.by_key.insert(key.clone(), at) {
            self.by_time.remove(&(old, key.clone()));
        }
        self.by_time.insert((at, key));
    }

    /// Clears `key`'s deadline, if any.
    pub(crate) fn remove(&mut self, key: &K) {
        if let Some(old) = self.by_key.remove(key) {
            self.by_time.remove(&(old, key.clone()));
        }
    }

    /// The earliest deadline.
    pub(crate) fn next(&self) -> Option<Timestamp> {
        self.by_time.first().map(|(at, _)| *at)
    }

    /// Removes and returns the earliest key whose deadline is at or before `now`.
    pub(crate) fn pop_due(&mut self, now: Timestamp) -> Option<K> {
        if self.next()? > now {
            return None;
        }
        let (_, key) = self.by_time.pop_first()?;
        self.by_key.remove(&key);
        Some(key)
    }

    /// How many deadlines are set.
    #[cfg(any(test, feature = "fuzzing"))]
    pub(crate) fn len(&self) -> usize {
        self.by_key.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(ms: u64) -> Timestamp {
        Timestamp::from_unix_millis(ms)
    }

    #[test]
    fn pops_in_time_order_and_moves_on_reset() {
        let mut d = Deadlines::default();
        d.set("b", t(20));
        d.set("a", t(30));
        d.set("c", t(10));
        d.set("c", t(40));
        d.remove(&"b");
        d.remove(&"missing");
        assert_eq!(d.len(), 2);
        assert_eq!(d.next(), Some(t(30)));
        assert_eq!(d.pop_due(t(29)), None);
        assert_eq!(d.pop_due(t(100)), Some("a"));
        assert_eq!(d.pop_due(t(100)), Some("c"));
        assert_eq!(d.pop_due(t(100)), None);
        assert_eq!(d.next(), None);
    }
}
