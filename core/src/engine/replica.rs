//! Following a shared log ([`crate::log`]): committed entries applied strictly in sequence
//! order, holes read back from the log, trims told as gaps, lost history as a reset.

use super::Core;
use crate::action::Action;
use crate::event::{CloseReason, Event, RoomEnd};
use crate::history::Gap;
use crate::ids::{RoomId, Seq, UserId};
use crate::log::{Applied, Committed, LogRead};
use crate::room::Access;
use crate::time::Timestamp;

/// Most entries held ahead of a hole; past this, later ones are dropped and read back once the
/// hole is filled (the log has them all).
const MAX_HELD: usize = 4096;

impl Core {
    /// Applies what the log committed for a room this core serves; a room it does not serve is
    /// left alone (the host loads it when someone asks for it).
    pub(super) fn committed(&mut self, now: Timestamp, c: Committed) -> Applied {
        if !self.rooms.contains_key(&c.room) {
            return Applied::default();
        }
        if c.gone {
            // Nobody here deleted it (`by: None`): the log already has, so the host does not
            // write the deletion again.
            self.remove_room(&c.room, RoomEnd::Deleted { by: None });
            return Applied::default();
        }
        if let Some(access) = c.access {
            self.replace_access(&c.room, access, now);
        }
        for (user, present) in c.presence {
            self.announced(&c.room, &user, present);
        }
        for user in c.typing {
            self.emit(Event::Typing {
                room: c.room.clone(),
                user,
            });
        }
        if let Some(present) = c.present {
            let known = self.room_mut(&c.room).presence().cluster().clone();
            let present: std::collections::BTreeSet<_> = present.into_iter().collect();
            for user in known.difference(&present) {
                self.announced(&c.room, user, false);
            }
            for user in present.difference(&known) {
                self.announced(&c.room, user, true);
            }
        }
        let room = self.room_mut(&c.room);
        // Epochs only grow: an entry of an older one is from before the log lost its history
        // (delayed in flight) and is dropped; a newer one means the history was lost.
        if c.epoch < room.replica.epoch {
            return Applied {
                latest: room.history().latest(),
                ..Applied::default()
            };
        }
        let mut read = c.read;
        if room.replica.epoch != c.epoch {
            if room.replica.epoch != 0 {
                self.stats.log_resets += 1;
                self.reset(&c.room, now);
                // A read's `after` counted in the old numbering: read the new one from the
                // start instead of taking what it skipped for a gap.
                read = read.map(|r| LogRead {
                    after: Seq::ZERO,
                    first_held: Seq::ZERO,
                    ..r
                });
            }
            self.room_mut(&c.room).replica.epoch = c.epoch;
        }
        if self.diverged(&c.room, read.as_ref(), &c.messages) {
            // What follows is not this room's history as listeners saw it: take none of it
            // until the log's new epoch says where numbering stands.
            return Applied {
                latest: self.room_mut(&c.room).history().latest(),
                ..Applied::default()
            };
        }
        let room = self.room_mut(&c.room);
        let mut gap = None;
        let mut dropped = 0;
        if let Some(read) = read {
            room.replica.known_latest = room.replica.known_latest.max(read.latest);
            let latest = room.history().latest();
            // The log trimmed entries this room has not applied: skip them, and say so.
            if read.after <= latest && read.first_held > latest.next() {
                gap = Some(Gap {
                    after: latest,
                    first_held: read.first_held,
                });
                dropped = room.skip_to(Seq(read.first_held.0 - 1));
            }
        }
        for message in c.messages {
            if message.room != c.room {
                continue;
            }
            room.replica.known_latest = room.replica.known_latest.max(message.seq);
            if message.seq > room.history().latest() && room.replica.held.len() < MAX_HELD {
                room.replica.held.insert(message.seq, message);
            }
        }
        self.messages_held -= dropped;
        if let Some(gap) = gap {
            self.stats.log_gaps += 1;
            self.emit(Event::Gap {
                room: c.room.clone(),
                gap,
            });
        }
        let mut applied = 0;
        loop {
            let room = self.room_mut(&c.room);
            let next = room.history().latest().next();
            let Some(message) = room.replica.held.remove(&next) else {
                break;
            };
            self.apply(now, message);
            applied += 1;
        }
        let room = self.room_mut(&c.room);
        let latest = room.history().latest();
        room.replica.held.retain(|seq, _| *seq > latest);
        let held = room.replica.held.len();
        let behind = room.replica.known_latest > latest;
        if !behind {
            room.replica.hole_since = None;
            self.fetches.remove(&c.room);
        } else if c.read.is_some() {
            // A read that stopped short (it reads a page at a time): read on at once.
            self.fetches.remove(&c.room);
            self.stats.log_fetches += 1;
            self.emit(Event::Fetch {
                room: c.room.clone(),
                after: latest,
            });
        } else if room.replica.hole_since.is_none() {
            room.replica.hole_since = Some(now);
            let at = now.saturating_add(self.config.fetch_after);
            self.fetches.set(c.room.clone(), at);
        }
        Applied {
            applied,
            latest,
            held,
        }
    }

    /// Whether the log went back on what this room applied, in the same epoch: it reports a
    /// newest number below ours, or another message at a number we applied (a failover to a
    /// replica that was behind, which does not change the epoch). Said once per epoch as
    /// [`Event::Diverged`], for the host to start a new epoch in the log, which every node then
    /// applies as a reset.
    fn diverged(
        &mut self,
        id: &RoomId,
        read: Option<&LogRead>,
        messages: &[std::sync::Arc<crate::Message>],
    ) -> bool {
        let room = self.room_mut(id);
        let latest = room.history().latest();
        // The log reports less than was applied when the read was asked (its `after`). A read
        // answered after later appends were applied is only late, not a log that went back.
        let behind = read.is_some_and(|r| r.latest < r.after);
        let rewritten = messages.iter().any(|m| {
            m.seq <= latest
                && room
                    .history()
                    .get(m.seq)
                    .is_some_and(|held| held.id != m.id)
        });
        if !(behind || rewritten) {
            return false;
        }
        let epoch = room.replica.epoch;
        if room.replica.diverged != Some(epoch) {
            room.replica.diverged = Some(epoch);
            self.emit(Event::Diverged {
                room: id.clone(),
                epoch,
            });
        }
        true
    }

    /// Asks for reads of the rooms whose holes did not fill in time; asks again later if the
    /// read does not come back.
    pub(super) fn fetch_due(&mut self, now: Timestamp) {
        while let Some(room) = self.fetches.pop_due(now) {
            let Some(r) = self.rooms.get(&room) else {
                continue;
            };
            let after = r.history().latest();
            let retry = now.saturating_add(self.config.fetch_after * 4);
            self.fetches.set(room.clone(), retry);
            self.stats.log_fetches += 1;
            self.emit(Event::Fetch { room, after });
        }
    }

    /// The log says `user` is now present on some node (or on none): announced to this node's
    /// listeners while few enough are present.
    fn announced(&mut self, id: &RoomId, user: &UserId, present: bool) {
        let up_to = self.config.limits.announce_presence_up_to;
        let presence = self.room_mut(id).presence_mut();
        if !presence.announced(user, present) {
            return;
        }
        let users = presence.users();
        let room = id.clone();
        let user = user.clone();
        if present && users <= up_to {
            self.emit(Event::Joined { room, user });
        } else if !present && users < up_to {
            self.emit(Event::Left { room, user });
        }
    }

    /// Another node changed who may see the room: listeners whose users may no longer listen
    /// are closed as removed (and leave).
    fn replace_access(&mut self, id: &RoomId, access: Access, now: Timestamp) {
        let policy = self.config.policy.clone();
        let room = self.room_mut(id);
        room.set_access(access);
        let barred: Vec<_> = room
            .listeners()
            .filter(|l| {
                room.listener_user(*l).is_some_and(|user| {
                    policy
                        .authorize_room(user, Action::Listen, room.access())
                        .is_err()
                })
            })
            .collect();
        for listener in barred {
            self.holdings.close(listener);
            let left = self.room_mut(id).leave(listener, now);
            self.emit(Event::ListenerClosed {
                listener,
                room: id.clone(),
                reason: CloseReason::Removed,
            });
            if let Some((user, true)) = left {
                self.presence_changed(id, user, false);
            }
        }
    }

    /// The log lost the room's history: its listeners' positions mean nothing now, so they are
    /// closed with [`CloseReason::Reset`], and numbering starts again.
    fn reset(&mut self, id: &RoomId, now: Timestamp) {
        let room = self.room_mut(id);
        let listeners: Vec<_> = room.listeners().collect();
        let dropped = room.skip_to(Seq::ZERO);
        room.replica.held.clear();
        room.replica.known_latest = Seq::ZERO;
        room.replica.hole_since = None;
        self.messages_held -= dropped;
        for listener in listeners {
            self.holdings.close(listener);
            let left = self.room_mut(id).leave(listener, now);
            self.emit(Event::ListenerClosed {
                listener,
                room: id.clone(),
                reason: CloseReason::Reset,
            });
            if let Some((user, true)) = left {
                self.presence_changed(id, user, false);
            }
        }
        self.fetches.remove(id);
        self.schedule_expiry(id, now);
    }
}
