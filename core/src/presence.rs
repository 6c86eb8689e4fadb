//! Who is in a room: users holding at least one listener, with how many each holds.

use std::collections::BTreeMap;

use crate::ids::UserName;

/// One user present in a room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresenceEntry {
    /// The user.
    pub user: UserName,
    /// How many listeners (tabs, devices, streams) they hold open on the room.
    pub listeners: usize,
}

/// Listener counts per user. A user joins with their first listener and leaves with their last.
#[derive(Debug, Clone, Default)]
pub(crate) struct Presence {
    counts: BTreeMap<UserName, usize>,
}

impl Presence {
    /// Counts a new listener for `user`; true if this made them join.
    pub(crate) fn add(&mut self, user: &UserName) -> bool {
        let count = self.counts.entry(user.clone()).or_insert(0);
        *count += 1;
        *count == 1
    }

    /// Uncounts a listener of `user`; true if this made them leave.
    pub(crate) fn remove(&mut self, user: &UserName) -> bool {
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
    pub(crate) fn forget(&mut self, user: &UserName) -> bool {
        self.counts.remove(user).is_some()
    }

    /// How many listeners `user` holds.
    pub(crate) fn listeners_of(&self, user: &UserName) -> usize {
        self.counts.get(user).copied().unwrap_or(0)
    }

    /// How many distinct users are present.
    pub(crate) fn users(&self) -> usize {
        self.counts.len()
    }

    /// Everyone present, by name.
    pub(crate) fn entries(&self) -> Vec<PresenceEntry> {
        self.counts
            .iter()
            .map(|(user, &listeners)| PresenceEntry {
                user: user.clone(),
                listeners,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn join_on_first_leave_on_last() {
        let ada = UserName::parse("ada", 8).unwrap();
        let bob = UserName::parse("bob", 8).unwrap();
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
