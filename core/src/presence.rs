//! Who is in a room: users holding at least one listener, with how many each holds.

use std::collections::{BTreeMap, BTreeSet};

use crate::ids::UserId;

/// One user present in a room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresenceEntry {
    /// The user.
    pub user: UserId,
    /// How many listeners (tabs, devices, streams) they hold open on the room.
    pub listeners: usize,
}

/// Listener counts per user. A user joins with their first listener and leaves with their last.
/// With a shared log, also who is present on any node, as the log announced it: a user is
/// present once however many nodes hold their listeners.
#[derive(Debug, Clone, Default)]
pub(crate) struct Presence {
    counts: BTreeMap<UserId, usize>,
    cluster: BTreeSet<UserId>,
}

impl Presence {
    /// Counts a new listener for `user`; true if this made them join.
    pub(crate) fn add(&mut self, user: &UserId) -> bool {
        let count = self.counts.entry(user.clone()).or_insert(0);
        *count += 1;
        *count == 1
    }

    /// Uncounts a listener of `user`; true if this made them leave.
    pub(crate) fn remove(&mut self, user: &UserId) -> bool {
        match self.counts.get_mut(user) {
            Some(count) if *count > 1 => {
                *count -= 1;
                false
            }
            Some(_) => {
                self.counts.remove(user);
                true
            }
            None => false,
        }
    }

    /// Forgets `user` whatever their listener count; true if they were present.
    pub(crate) fn forget(&mut self, user: &UserId) -> bool {
        self.counts.remove(user).is_some()
    }

    /// How many listeners `user` holds.
    pub(crate) fn listeners_of(&self, user: &UserId) -> usize {
        self.counts.get(user).copied().unwrap_or(0)
    }

    /// How many distinct users are present (here, or anywhere per the shared log).
    pub(crate) fn users(&self) -> usize {
        if self.cluster.is_empty() {
            return self.counts.len();
        }
        self.cluster
            .union(&self.counts.keys().cloned().collect())
            .count()
    }

    /// Everyone present, by name: with a shared log, those present on other nodes too (with
    /// the listeners they hold here, or 1).
    pub(crate) fn entries(&self) -> Vec<PresenceEntry> {
        let mut entries: BTreeMap<&UserId, usize> =
            self.cluster.iter().map(|user| (user, 1)).collect();
        for (user, &listeners) in &self.counts {
            entries.insert(user, listeners);
        }
        entries
            .into_iter()
            .map(|(user, listeners)| PresenceEntry {
                user: user.clone(),
                listeners,
            })
            .collect()
    }

    /// Whether `user` is present: here, or anywhere per the shared log.
    pub(crate) fn contains(&self, user: &UserId) -> bool {
        self.counts.contains_key(user) || self.cluster.contains(user)
    }

    /// The shared log says `user` is present somewhere (or no longer anywhere); true if that
    /// changed whether they are present as this room sees it.
    pub(crate) fn announced(&mut self, user: &UserId, present: bool) -> bool {
        let before = self.contains(user);
        if present {
            self.cluster.insert(user.clone());
        } else {
            self.cluster.remove(user);
        }
        before != self.contains(user)
    }

    /// Who the shared log says is present anywhere.
    pub(crate) fn cluster(&self) -> &BTreeSet<UserId> {
        &self.cluster
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn join_on_first_leave_on_last() {
        let ada = UserId::parse("ada", 8).unwrap();
        let bob = UserId::parse("bob", 8).unwrap();
        let mut p = Presence::default();
        assert!(p.add(&ada));
        assert!(!p.add(&ada));
        assert!(p.add(&bob));
        assert_eq!(p.users(), 2);
        assert_eq!(
            p.entries(),
            vec![
                PresenceEntry {
                    user: ada.clone(),
                    listeners: 2
                },
                PresenceEntry {
                    user: bob.clone(),
                    listeners: 1
                },
            ]
        );
        assert!(!p.remove(&ada));
        assert!(p.remove(&ada));
        assert!(!p.remove(&ada), "removing an absent user is not a leave");
        assert_eq!(
            p.entries(),
            vec![PresenceEntry {
                user: bob,
                listeners: 1
            }]
        );
    }
}
