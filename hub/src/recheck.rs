//! Requests that a node with a shared log refused on what it had applied of a room (core's
//! [`may_be_stale`](roomcast_core::Error::may_be_stale)): each waits for the node to catch up
//! with the room as Redis has it, read after the request arrived, and is then decided again.
//! A refusal therefore never contradicts an entry acknowledged (on any node) before the
//! request came. Plain state: the hub thread starts the catch-ups this asks for and runs again
//! what it hands back.

use std::collections::HashMap;

use roomcast_core::RoomId;

/// Who waits for a catch-up, by room.
#[derive(Debug)]
pub(crate) struct Rechecks<W> {
    rooms: HashMap<RoomId, Waiters<W>>,
}

/// The requests a running catch-up answers, and those that came while it ran: its read may
/// have been made before they arrived, so they wait for the next.
#[derive(Debug)]
struct Waiters<W> {
    running: Vec<W>,
    next: Vec<W>,
}

impl<W> Default for Rechecks<W> {
    fn default() -> Self {
        Rechecks {
            rooms: HashMap::new(),
        }
    }
}

impl<W> Rechecks<W> {
    /// `waiter` waits for a catch-up of `room` that starts from now on; true if the caller
    /// must start one (none runs), false if it waits for the one after the running one.
    pub(crate) fn wait(&mut self, room: RoomId, waiter: W) -> bool {
        match self.rooms.get_mut(&room) {
            Some(waiters) => {
                waiters.next.push(waiter);
                false
            }
            None => {
                let waiters = Waiters {
                    running: vec![waiter],
                    next: Vec::new(),
                };
                self.rooms.insert(room, waiters);
                true
            }
        }
    }

    /// The catch-up of `room` ended (or could not run): who to decide again now, and whether
    /// the caller must start another for those who came while it ran.
    pub(crate) fn caught_up(&mut self, room: &RoomId) -> (Vec<W>, bool) {
        let Some(waiters) = self.rooms.get_mut(room) else {
            return (Vec::new(), false);
        };
        let done = std::mem::take(&mut waiters.running);
        if waiters.next.is_empty() {
            self.rooms.remove(room);
            (done, false)
        } else {
            waiters.running = std::mem::take(&mut waiters.next);
            (done, true)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn room(name: &str) -> RoomId {
        RoomId::parse(name, 64).expect("a room id")
    }

    #[test]
    fn the_first_waiter_starts_a_catch_up_and_is_answered_when_it_ends() {
        let mut rechecks = Rechecks::default();
        assert!(rechecks.wait(room("r"), 1));
        assert_eq!(rechecks.caught_up(&room("r")), (vec![1], false));
        assert_eq!(rechecks.caught_up(&room("r")), (vec![], false));
    }

    #[test]
    fn who_comes_during_a_catch_up_waits_for_the_next_one() {
        let mut rechecks = Rechecks::default();
        assert!(rechecks.wait(room("r"), 1));
        assert!(!rechecks.wait(room("r"), 2));
        assert!(!rechecks.wait(room("r"), 3));
        // The running read may predate 2 and 3: they wait for another.
        assert_eq!(rechecks.caught_up(&room("r")), (vec![1], true));
        assert!(!rechecks.wait(room("r"), 4));
        assert_eq!(rechecks.caught_up(&room("r")), (vec![2, 3], true));
        assert_eq!(rechecks.caught_up(&room("r")), (vec![4], false));
        assert!(
            rechecks.wait(room("r"), 5),
            "nothing runs: a new one starts"
        );
    }

    #[test]
    fn rooms_catch_up_apart() {
        let mut rechecks = Rechecks::default();
        assert!(rechecks.wait(room("a"), 1));
        assert!(rechecks.wait(room("b"), 2));
        assert_eq!(rechecks.caught_up(&room("b")), (vec![2], false));
        assert_eq!(rechecks.caught_up(&room("a")), (vec![1], false));
    }
}
