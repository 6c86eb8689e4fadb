//! Who belongs to a private room: owners and admins add and remove members; a removed member's
//! listeners are closed at once, each told why.

use super::Core;
use crate::action::Action;
use crate::command::{ChangeMember, MemberChange};
use crate::error::{Error, MembershipError};
use crate::event::{CloseReason, Event};
use crate::ids::{RoomId, UserId};
use crate::time::Timestamp;

impl Core {
    pub(super) fn change_member(&mut self, now: Timestamp, c: ChangeMember) -> Result<bool, Error> {
        let user = self.user(&c.user)?;
        let id = self.room_id(&c.room)?;
        let member = self.user(&c.member)?;
        let r = self.find_authorized(&user, &id, Action::ManageMembers)?;
        let access = r.access();
        if !access.private {
            return Err(MembershipError::PublicRoom.into());
        }
        if access.owner.is_none() {
            return Err(MembershipError::DirectRoom.into());
        }
        if c.change == MemberChange::Remove && access.owner.as_ref() == Some(&member) {
            return Err(MembershipError::OwnerStays.into());
        }
        let room = self.room_mut(&id);
        match c.change {
            MemberChange::Add => {
                if !room.add_member(member.clone()) {
                    return Ok(false);
                }
                self.emit(Event::MemberAdded {
                    room: id,
                    user: member,
                });
            }
            MemberChange::Remove => {
                let Some((closed, left)) = room.remove_member(&member, now) else {
                    return Ok(false);
                };
                let empty = room.listener_count() == 0;
                for listener in closed {
                    self.holdings.close(listener);
                    self.emit(Event::ListenerClosed {
                        listener,
                        room: id.clone(),
                        reason: CloseReason::Removed,
                    });
                }
                if empty {
                    self.schedule_expiry(&id, now);
                }
                if left {
                    self.presence_changed(&id, member.clone(), false);
                }
                self.emit(Event::MemberRemoved {
                    room: id,
                    user: member,
                });
            }
        }
        Ok(true)
    }

    /// Closes `user`'s listeners on room `id`, each told `reason` (a kick, a ban); they leave.
    pub(super) fn close_listeners_of(
        &mut self,
        id: &RoomId,
        user: &UserId,
        reason: CloseReason,
        now: Timestamp,
    ) {
        let Some(room) = self.rooms.get_mut(id) else {
            return;
        };
        let theirs: Vec<_> = room
            .listeners()
            .filter(|l| room.listener_user(*l) == Some(user))
            .collect();
        for listener in theirs {
            self.holdings.close(listener);
            let left = self.room_mut(id).leave(listener, now);
            self.emit(Event::ListenerClosed {
                listener,
                room: id.clone(),
                reason: reason.clone(),
            });
            if let Some((user, true)) = left {
                self.presence_changed(id, user, false);
            }
        }
        if self.room_mut(id).listener_count() == 0 {
            self.schedule_expiry(id, now);
        }
    }
}
