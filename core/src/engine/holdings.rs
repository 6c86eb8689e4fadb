//! What each user holds across rooms: the listeners they have open, the rooms they own, and
//! (for guests, who depart) the rooms where they keep a read marker. Per-user limits read it,
//! and a departed guest's leftovers are found by it, never by scanning every room.

use std::collections::{BTreeMap, BTreeSet};

use crate::ids::{ListenerId, RoomId, UserId};

/// The open listeners, by id and by user, and what users own and mark.
#[derive(Debug, Clone, Default)]
pub(crate) struct Holdings {
    /// Which room each open listener is on, and whose it is.
    listeners: BTreeMap<ListenerId, (RoomId, UserId)>,
    /// How many listeners each user has open.
    listening: BTreeMap<UserId, usize>,
    /// The rooms each user owns.
    owned: BTreeMap<UserId, BTreeSet<RoomId>>,
    /// The rooms where each guest keeps a read marker (accounts never depart).
    marked: BTreeMap<UserId, BTreeSet<RoomId>>,
}

impl Holdings {
    /// A listener of `user` opened on `room`.
    pub(crate) fn open(&mut self, listener: ListenerId, room: RoomId, user: UserId) {
        *self.listening.entry(user.clone()).or_default() += 1;
        self.listeners.insert(listener, (room, user));
    }

    /// A listener closed: the room it was on, if it was open.
    pub(crate) fn close(&mut self, listener: ListenerId) -> Option<RoomId> {
        let (room, user) = self.listeners.remove(&listener)?;
        if let Some(count) = self.listening.get_mut(&user) {
            *count -= 1;
            if *count == 0 {
                self.listening.remove(&user);
            }
        }
        Some(room)
    }

    /// The room a listener is open on.
    pub(crate) fn room_of(&self, listener: ListenerId) -> Option<&RoomId> {
        self.listeners.get(&listener).map(|(room, _)| room)
    }

    /// How many listeners are open.
    pub(crate) fn listeners(&self) -> usize {
        self.listeners.len()
    }

    /// How many listeners `user` has open.
    pub(crate) fn listening(&self, user: &UserId) -> usize {
        self.listening.get(user).copied().unwrap_or(0)
    }

    /// `user` owns `room` now.
    pub(crate) fn own(&mut self, user: &UserId, room: &RoomId) {
        self.owned
            .entry(user.clone())
            .or_default()
            .insert(room.clone());
    }

    /// `room` of `owner` is gone.
    pub(crate) fn disown(&mut self, owner: &UserId, room: &RoomId) {
        forget(&mut self.owned, owner, room);
    }

    /// How many rooms `user` owns.
    pub(crate) fn owned(&self, user: &UserId) -> usize {
        self.owned.get(user).map_or(0, BTreeSet::len)
    }

    /// The rooms `user` owns.
    pub(crate) fn owned_rooms(&self, user: &UserId) -> Vec<RoomId> {
        self.owned
            .get(user)
            .map(|rooms| rooms.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// `user` keeps a read marker on `room` (noted for guests only).
    pub(crate) fn mark(&mut self, user: &UserId, room: &RoomId) {
        if user.is_guest() {
            self.marked
                .entry(user.clone())
                .or_default()
                .insert(room.clone());
        }
    }

    /// `user`'s marker on `room` is gone (with the room).
    pub(crate) fn unmark(&mut self, user: &UserId, room: &RoomId) {
        forget(&mut self.marked, user, room);
    }

    /// Forgets the rooms where `user` kept markers, and says which they were.
    pub(crate) fn take_marked(&mut self, user: &UserId) -> BTreeSet<RoomId> {
        self.marked.remove(user).unwrap_or_default()
    }
}

/// Takes `room` out of `user`'s set, and the set once empty.
fn forget(map: &mut BTreeMap<UserId, BTreeSet<RoomId>>, user: &UserId, room: &RoomId) {
    if let Some(rooms) = map.get_mut(user) {
        rooms.remove(room);
        if rooms.is_empty() {
            map.remove(user);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(s: &str) -> UserId {
        UserId::parse(s, 32).unwrap()
    }

    fn room(s: &str) -> RoomId {
        RoomId::parse(s, 64).unwrap()
    }

    #[test]
    fn listeners_are_counted_per_user_and_forgotten() {
        let mut h = Holdings::default();
        h.open(ListenerId(1), room("a"), user("ada"));
        h.open(ListenerId(2), room("b"), user("ada"));
        h.open(ListenerId(3), room("b"), user("bob"));
        assert_eq!((h.listening(&user("ada")), h.listeners()), (2, 3));
        assert_eq!(h.close(ListenerId(1)), Some(room("a")));
        assert_eq!(h.close(ListenerId(1)), None, "closed once");
        h.close(ListenerId(2));
        assert_eq!(h.listening(&user("ada")), 0);
        assert_eq!(h.room_of(ListenerId(3)), Some(&room("b")));
    }

    #[test]
    fn rooms_owned_and_guests_markers_are_indexed() {
        let mut h = Holdings::default();
        h.own(&user("ada"), &room("a"));
        h.own(&user("ada"), &room("b"));
        assert_eq!(h.owned(&user("ada")), 2);
        h.disown(&user("ada"), &room("a"));
        assert_eq!(h.owned_rooms(&user("ada")), vec![room("b")]);
        h.mark(&user("ada~uq1"), &room("a"));
        h.mark(&user("zoe~gq1"), &room("a"));
        h.mark(&user("zoe~gq1"), &room("b"));
        h.unmark(&user("zoe~gq1"), &room("b"));
        assert_eq!(h.take_marked(&user("zoe~gq1")), BTreeSet::from([room("a")]));
        assert!(
            h.take_marked(&user("ada~uq1")).is_empty(),
            "an account's markers are not indexed: accounts never depart"
        );
    }
}
