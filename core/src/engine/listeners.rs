//! Listeners: opening one with its backlog (or replacing one that fell behind), and closing.

use super::Core;
use crate::action::Action;
use crate::command::{OpenListener, Opened, Resume};
use crate::error::Error;
use crate::ids::{ListenerId, RoomId};
use crate::limits::Limits;
use crate::time::Timestamp;

impl Core {
    pub(super) fn open_listener(
        &mut self,
        now: Timestamp,
        c: OpenListener,
    ) -> Result<Opened, Error> {
        if c.create_if_missing {
            self.create_if_missing(now, &c.user, &c.room)?;
        }
        // Only a listener of the same user on the same room can be replaced (a room knows its
        // own listeners and whose each is).
        let replaceable = |old: &ListenerId| {
            self.rooms
                .get(c.room.as_str())
                .and_then(|r| r.listener_user(*old))
                .is_some_and(|user| user.as_str() == c.user)
        };
        let Some(old) = c.replacing.filter(replaceable) else {
            return self.open(now, &c.user, &c.room, c.resume);
        };
        // Open the new listener before closing the old, so presence does not flicker; unless
        // the room (or the user's share of it, or the server) is full, where the old one's
        // place is needed.
        match self.open(now, &c.user, &c.room, c.resume) {
            Err(
                Error::TooManyListeners { .. }
                | Error::TooManyUserListeners { .. }
                | Error::TooManyOwnListeners { .. }
                | Error::ServerFull { .. },
            ) => {
                self.close_listener(now, old);
                self.open(now, &c.user, &c.room, c.resume)
            }
            // Opened or refused, the old listener is done.
            result => {
                self.close_listener(now, old);
                result
            }
        }
    }

    fn open(
        &mut self,
        now: Timestamp,
        user: &str,
        room: &str,
        resume: Resume,
    ) -> Result<Opened, Error> {
        let (user, r) = self.authorized(user, room, Action::Listen)?;
        let limits = &self.config.limits;
        let latest = r.history().latest();
        let (backlog, gap) = match resume {
            Resume::Live => (Vec::new(), None),
            Resume::After(after) if after > latest => {
                return Err(Error::ResumeAhead { after, latest });
            }
            Resume::After(after) => r.history().after(after, usize::MAX),
        };
        let id = r.id().clone();
        if r.listener_count() >= limits.max_listeners_per_room {
            let max = limits.max_listeners_per_room;
            return Err(Error::TooManyListeners { room: id, max });
        }
        let held = self.holdings.listening(&user);
        let taken = self.holdings.listeners();
        if !Limits::may_take(limits.max_listeners, taken, held) {
            return Err(Error::ServerFull {
                max: limits.max_listeners,
            });
        }
        let share = limits.for_user(limits.max_user_listeners, &user);
        if held >= share {
            return Err(Error::TooManyOwnListeners { max: share });
        }
        if r.presence().listeners_of(&user) >= limits.max_listeners_per_user {
            let max = limits.max_listeners_per_user;
            return Err(Error::TooManyUserListeners { room: id, max });
        }
        let listener = ListenerId(self.next_listener);
        self.next_listener += 1;
        let room = self.room_mut(&id);
        let joined = room.join(listener, &user, now);
        let presence = room.presence().entries();
        self.holdings.open(listener, id.clone(), user.clone());
        self.expiries.remove(&id);
        if joined {
            self.presence_changed(&id, user, true);
        }
        Ok(Opened {
            listener,
            room: id,
            presence,
            gap,
            backlog,
            latest,
        })
    }

    /// Closes a listener; false if it was not open.
    pub(super) fn close_listener(&mut self, now: Timestamp, listener: ListenerId) -> bool {
        let Some(room) = self.holdings.close(listener) else {
            return false;
        };
        let Some(r) = self.rooms.get_mut(&room) else {
            debug_assert!(false, "an open listener's room exists");
            return true;
        };
        let Some((user, left)) = r.leave(listener, now) else {
            debug_assert!(false, "an open listener is in its room");
            return true;
        };
        if r.listener_count() == 0 {
            self.schedule_expiry(&room, now);
        }
        if left {
            self.presence_changed(&room, user, false);
        }
        true
    }

    /// The room a listener is open on.
    pub fn listener_room_id(&self, listener: ListenerId) -> Option<&RoomId> {
        self.holdings.room_of(listener)
    }
}
