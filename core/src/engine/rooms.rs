//! Rooms: create (public, private, on first use), direct messages, delete, list and view.

use std::collections::BTreeSet;
use std::ops::Bound;

use super::Core;
use crate::action::Action;
use crate::command::{
    CreateRoom, Created, DeleteRoom, Depart, Departed, ListRooms, OpenDirect, RoomView, ViewRoom,
};
use crate::error::{Error, MembershipError, Paced};
use crate::event::{Event, RoomEnd};
use crate::ids::{RoomId, Seq, UserId};
use crate::limits::Limits;
use crate::room::{Access, Room, RoomPage};
use crate::time::Timestamp;

impl Core {
    pub(super) fn create_room(&mut self, now: Timestamp, c: CreateRoom) -> Result<Created, Error> {
        let user = self.user(&c.user)?;
        let id = self.room_id(&c.room)?;
        self.config.policy.authorize(&user, Action::CreateRoom)?;
        if let Some(existing) = self.rooms.get(&id) {
            // Creating is idempotent, but a private room is not revealed to outsiders.
            self.config
                .policy
                .authorize_room(&user, Action::ReadRoom, existing.access())?;
            return Ok(Created {
                room: existing.summary(),
                created: false,
            });
        }
        let limits = &self.config.limits;
        let share = limits.for_user(limits.max_rooms_per_user, &user);
        let owned = self.holdings.owned(&user);
        if owned >= share && !self.config.policy.is_admin(&user) {
            return Err(Error::TooManyOwnedRooms { max: share });
        }
        self.may_create(&user, owned, now)?;
        let access = Access {
            owner: Some(user.clone()),
            private: c.private,
            members: if c.private {
                BTreeSet::from([user])
            } else {
                BTreeSet::new()
            },
            ..Access::default()
        };
        self.insert_room(id, now, access)
    }

    /// Creates the public room `room` for `user` if it does not exist yet (the seed's routes
    /// create on first use); false if it existed.
    pub(super) fn create_if_missing(
        &mut self,
        now: Timestamp,
        user: &str,
        room: &str,
    ) -> Result<bool, Error> {
        self.user(user)?;
        let id = self.room_id(room)?;
        if self.rooms.contains_key(&id) {
            return Ok(false);
        }
        let create = CreateRoom {
            user: user.to_owned(),
            room: room.to_owned(),
            private: false,
        };
        self.create_room(now, create).map(|created| created.created)
    }

    /// Whether `user`, who owns `owned` rooms, may create one now: the server's room cap (the
    /// last of it kept for those who own few) and their pace, whose token this takes. Admins
    /// and system users are not paced.
    fn may_create(&mut self, user: &UserId, owned: usize, now: Timestamp) -> Result<(), Error> {
        let max = self.config.limits.max_rooms;
        if !Limits::may_take(max, self.rooms.len(), owned) {
            return Err(Error::TooManyRooms { max });
        }
        let policy = &self.config.policy;
        if policy.is_admin(user) || policy.systems.contains(user.as_str()) {
            return Ok(());
        }
        self.creates
            .take(user, now)
            .map_err(|retry_after| Error::Paced {
                what: Paced::Rooms,
                retry_after,
            })
    }

    /// Adds a new room (the limits checked) and announces it with its members.
    fn insert_room(
        &mut self,
        id: RoomId,
        now: Timestamp,
        access: Access,
    ) -> Result<Created, Error> {
        if let Some(owner) = &access.owner {
            self.holdings.own(owner, &id);
        }
        let new = Room::new(id.clone(), now, self.config.history_len, access.clone());
        let summary = new.summary();
        self.rooms.insert(id.clone(), new);
        self.schedule_expiry(&id, now);
        self.emit(Event::RoomCreated {
            room: id.clone(),
            created_at: now,
            owner: access.owner,
            private: access.private,
        });
        for user in access.members {
            self.emit(Event::MemberAdded {
                room: id.clone(),
                user,
            });
        }
        Ok(Created {
            room: summary,
            created: true,
        })
    }

    pub(super) fn open_direct(&mut self, now: Timestamp, c: OpenDirect) -> Result<Created, Error> {
        let user = self.user(&c.user)?;
        let other = self.user(&c.other)?;
        if user == other {
            return Err(MembershipError::DirectWithSelf.into());
        }
        let pair = BTreeSet::from([user, other]);
        // The id comes from the pair, so both find the same room; on the (unlikely) chance that
        // another room holds it, the next suffix is tried.
        let base = crate::ids::direct_room_id(&pair);
        for n in 0u32.. {
            let candidate = if n == 0 {
                base.clone()
            } else {
                format!("{base}-{n}")
            };
            let id = RoomId::parse(&candidate, usize::MAX).expect("hex ids are valid room ids");
            match self.rooms.get(&id) {
                Some(existing)
                    if existing.access().owner.is_none() && existing.access().members == pair =>
                {
                    return Ok(Created {
                        room: existing.summary(),
                        created: false,
                    });
                }
                Some(_) => continue,
                None => {
                    let opener = self.user(&c.user)?;
                    self.may_create(&opener, 0, now)?;
                    let access = Access {
                        owner: None,
                        private: true,
                        members: pair,
                        ..Access::default()
                    };
                    return self.insert_room(id, now, access);
                }
            }
        }
        unreachable!("some suffix is free")
    }

    /// A guest departed: the rooms they own that never had an entry go (anyone listening is
    /// told it was deleted), and their read markers are forgotten.
    pub(super) fn depart(&mut self, c: Depart) -> Result<Departed, Error> {
        let user = self.user(&c.user)?;
        let mut departed = Departed::default();
        for id in self.holdings.owned_rooms(&user) {
            let empty = self
                .rooms
                .get(&id)
                .is_some_and(|r| r.history().latest() == Seq::ZERO);
            if empty {
                self.remove_room(&id, RoomEnd::Deleted { by: None });
                departed.rooms.push(id);
            }
        }
        for id in self.holdings.take_marked(&user) {
            if self
                .rooms
                .get_mut(&id)
                .is_some_and(|r| r.forget_reader(&user))
            {
                departed.markers += 1;
                self.emit(Event::ReadForgotten {
                    room: id,
                    user: user.clone(),
                });
            }
        }
        Ok(departed)
    }

    pub(super) fn delete_room(&mut self, c: DeleteRoom) -> Result<(), Error> {
        let (user, room) = self.authorized(&c.user, &c.room, Action::DeleteRoom)?;
        let id = room.id().clone();
        self.remove_room(&id, RoomEnd::Deleted { by: Some(user) });
        Ok(())
    }

    /// Up to `limit` rooms the user may see (the default page length if none is asked, never
    /// more than the maximum) whose ids sort after `after`, by id.
    pub fn list_rooms(&self, c: &ListRooms) -> Result<RoomPage, Error> {
        let user = self.user(&c.user)?;
        self.config.policy.authorize(&user, Action::ListRooms)?;
        let start = c.after.as_deref().map_or(Bound::Unbounded, Bound::Excluded);
        let limit = self.config.limits.rooms_page(c.limit);
        let rest = self
            .rooms
            .range::<str, _>((start, Bound::Unbounded))
            .map(|(_, room)| room.summary_for(&user));
        Ok(self.config.policy.list(&user, rest, limit))
    }

    pub(super) fn view_room(&self, c: &ViewRoom) -> Result<RoomView, Error> {
        self.room_view(&c.user, &c.room)
    }

    /// One room as `user` sees it: its summary, who is present, and what `user` may do there.
    pub fn room_view(&self, user: &str, room: &str) -> Result<RoomView, Error> {
        let (user, r) = self.authorized(user, room, Action::ReadRoom)?;
        let policy = &self.config.policy;
        let may = |action| policy.authorize_room(&user, action, r.access()).is_ok();
        Ok(RoomView {
            room: r.summary_for(&user),
            presence: r.presence().entries(),
            may_manage_members: r.access().private
                && r.access().owner.is_some()
                && may(Action::ManageMembers),
            may_delete: may(Action::DeleteRoom),
            moderates: policy.is_admin(&user) || r.access().moderates(&user),
        })
    }
}
