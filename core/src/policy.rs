//! Authorization: the one place that decides who may do what.
//!
//! Every command passes through [`Policy::authorize`] (or, for one room,
//! [`Policy::authorize_room`]) with the acting user as the host has verified it. Public rooms are
//! open to everyone; private rooms only to their members. A room's owner deletes it and manages its
//! members; admins may do anything. An operator can reserve room creation and deletion for admins.

use std::collections::BTreeSet;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use crate::action::Action;
use crate::error::Error;
use crate::error::ModerationError;
use crate::ids::UserId;
use crate::message::{Message, Moderation};
use crate::room::{Access, RoomPage, RoomSummary};

/// The longest mute: a year.
pub const MAX_MUTE_SECONDS: u64 = 365 * 24 * 3600;
use crate::time::Timestamp;

/// Who may do a guarded action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Who {
    /// Every user.
    #[default]
    Anyone,
    /// Only the users named in [`Policy::admins`].
    Admins,
}

/// The authorization rules, part of [`Config`](crate::Config).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policy {
    /// Users who may do anything.
    pub admins: BTreeSet<String>,
    /// Who may create rooms.
    pub create_rooms: Who,
    /// Who may delete rooms: each owner their own (`Anyone`), or only admins.
    pub delete_rooms: Who,
    /// How long after posting a message its poster may edit or delete it (a room's owner and
    /// admins delete any message at any time).
    #[serde(default = "default_edit_window")]
    pub edit_window: Duration,
    /// Applications' system users (behind API keys): they create rooms and read, listen and
    /// post in every room, private ones included, whoever else may; nothing more.
    #[serde(default)]
    pub systems: BTreeSet<String>,
}

fn default_edit_window() -> Duration {
    Duration::from_secs(15 * 60)
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            admins: BTreeSet::new(),
            create_rooms: Who::default(),
            delete_rooms: Who::default(),
            edit_window: default_edit_window(),
            systems: BTreeSet::new(),
        }
    }
}

impl Policy {
    /// Whether `user` may do `action`; the refusal names the action.
    pub fn authorize(&self, user: &UserId, action: Action) -> Result<(), Error> {
        self.authorize_room(user, action, &Access::default())
    }

    /// Whether `user` may do `action` in a room with this `access`.
    pub fn authorize_room(
        &self,
        user: &UserId,
        action: Action,
        access: &Access,
    ) -> Result<(), Error> {
        if self.is_admin(user) {
            return Ok(());
        }
        if access.banned.contains(user) && !matches!(action, Action::CreateRoom | Action::ListRooms)
        {
            return Err(Error::Banned);
        }
        let system = self.systems.contains(user.as_str());
        if system
            && matches!(
                action,
                Action::CreateRoom
                    | Action::ListRooms
                    | Action::ReadRoom
                    | Action::Listen
                    | Action::Post
            )
        {
            return Ok(());
        }
        let owns = access.owner.as_ref() == Some(user);
        let allowed = match action {
            Action::CreateRoom => self.create_rooms == Who::Anyone,
            Action::ListRooms => true,
            Action::ReadRoom
            | Action::Listen
            | Action::Post
            | Action::React
            | Action::EditMessage
            | Action::DeleteMessage => access.admits(user),
            Action::DeleteRoom => self.delete_rooms == Who::Anyone && owns,
            Action::ManageMembers | Action::AppointModerators => owns,
            Action::Moderate => access.moderates(user),
        };
        if allowed {
            Ok(())
        } else {
            Err(Error::PermissionDenied { action })
        }
    }

    /// Whether `user` may edit (`Action::EditMessage`) or delete (`Action::DeleteMessage`)
    /// `message` at `now`, in a room with this `access` they may post in. Only its poster edits
    /// it, within the edit window; its poster deletes it within the window, the room's owner and
    /// admins at any time.
    pub fn authorize_change(
        &self,
        user: &UserId,
        action: Action,
        message: &Message,
        now: Timestamp,
        access: &Access,
    ) -> Result<(), Error> {
        let moderates = self.is_admin(user) || access.moderates(user);
        if action == Action::DeleteMessage && moderates {
            return Ok(());
        }
        if &message.user != user || !matches!(action, Action::EditMessage | Action::DeleteMessage) {
            return Err(Error::PermissionDenied { action });
        }
        if now.saturating_since(message.sent_at) > self.edit_window {
            return Err(Error::EditWindowClosed {
                seq: message.seq,
                window: self.edit_window,
            });
        }
        Ok(())
    }

    /// Whether `user` may do `action` to `target` in a room with this `access`, past
    /// [`Policy::authorize_room`]: nobody moderates themselves, the room's owner or an admin,
    /// and a moderator does not moderate another (the owner and admins do).
    pub fn authorize_moderation(
        &self,
        user: &UserId,
        action: Moderation,
        target: &UserId,
        access: &Access,
    ) -> Result<(), Error> {
        if target == user {
            return Err(ModerationError::Yourself.into());
        }
        if access.owner.as_ref() == Some(target) {
            return Err(ModerationError::Owner.into());
        }
        if self.is_admin(target) {
            return Err(ModerationError::Admin.into());
        }
        let above = self.is_admin(user) || access.owner.as_ref() == Some(user);
        if access.moderators.contains(target) && !above {
            return Err(Error::PermissionDenied {
                action: Action::Moderate,
            });
        }
        if let Moderation::Mute { seconds } = action
            && !(1..=MAX_MUTE_SECONDS).contains(&seconds)
        {
            return Err(ModerationError::Duration.into());
        }
        Ok(())
    }

    /// Whether `user` is an admin, who may do anything.
    pub fn is_admin(&self, user: &UserId) -> bool {
        self.admins.contains(user.as_str())
    }

    /// A page of `limit` rooms from `rooms` (in id order) that `user` may see: private rooms
    /// are listed to their members and admins only. The one rule for every listing, of the
    /// rooms core holds or of a shared log's index of rooms.
    pub fn list(
        &self,
        user: &UserId,
        rooms: impl Iterator<Item = RoomSummary>,
        limit: usize,
    ) -> RoomPage {
        let admin = self.is_admin(user) || self.systems.contains(user.as_str());
        let mut rest = rooms
            .filter(|room| admin || !room.private || room.members.contains(user))
            .peekable();
        let rooms: Vec<RoomSummary> = rest.by_ref().take(limit).collect();
        // Another page exists only if a room follows this one's last.
        let next_after = match (rest.next(), rooms.last()) {
            (Some(_), Some(last)) => Some(last.id.clone()),
            _ => None,
        };
        RoomPage { rooms, next_after }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(name: &str) -> UserId {
        UserId::parse(name, 32).unwrap()
    }

    #[test]
    fn system_users_create_and_post_anywhere_and_do_nothing_more() {
        let policy = Policy {
            create_rooms: Who::Admins,
            systems: ["deploybot".to_owned()].into(),
            ..Policy::default()
        };
        let private = Access {
            owner: Some(user("ada")),
            private: true,
            members: [user("ada")].into(),
            ..Access::default()
        };
        let bot = user("deploybot");
        for action in [
            Action::CreateRoom,
            Action::ReadRoom,
            Action::Listen,
            Action::Post,
        ] {
            assert_eq!(
                policy.authorize_room(&bot, action, &private),
                Ok(()),
                "{action:?}"
            );
        }
        for action in [
            Action::DeleteRoom,
            Action::ManageMembers,
            Action::Moderate,
            Action::AppointModerators,
        ] {
            assert!(
                policy.authorize_room(&bot, action, &private).is_err(),
                "{action:?}"
            );
        }
        let banned = Access {
            banned: [bot.clone()].into(),
            ..private
        };
        assert_eq!(
            policy.authorize_room(&bot, Action::Post, &banned),
            Err(Error::Banned),
            "a ban holds for a bot too"
        );
        assert!(
            policy
                .authorize_room(&user("eve"), Action::CreateRoom, &Access::default())
                .is_err()
        );
    }

    #[test]
    fn public_rooms_are_open_and_owners_delete_them() {
        let policy = Policy::default();
        let public = Access {
            owner: Some(user("ada")),
            ..Access::default()
        };
        for action in [
            Action::CreateRoom,
            Action::ListRooms,
            Action::ReadRoom,
            Action::Listen,
            Action::Post,
        ] {
            assert_eq!(
                policy.authorize_room(&user("anyone"), action, &public),
                Ok(())
            );
        }
        for action in [Action::DeleteRoom, Action::ManageMembers] {
            assert_eq!(policy.authorize_room(&user("ada"), action, &public), Ok(()));
            assert_eq!(
                policy.authorize_room(&user("bob"), action, &public),
                Err(Error::PermissionDenied { action })
            );
        }
    }

    #[test]
    fn private_rooms_admit_members_and_admins_only() {
        let policy = Policy {
            admins: BTreeSet::from(["root".to_owned()]),
            ..Policy::default()
        };
        let private = Access {
            owner: Some(user("ada")),
            private: true,
            members: BTreeSet::from([user("ada"), user("bob")]),
            ..Access::default()
        };
        for action in [Action::ReadRoom, Action::Listen, Action::Post] {
            for member in ["ada", "bob", "root"] {
                assert_eq!(
                    policy.authorize_room(&user(member), action, &private),
                    Ok(())
                );
            }
            assert_eq!(
                policy.authorize_room(&user("eve"), action, &private),
                Err(Error::PermissionDenied { action })
            );
        }
        assert!(
            policy
                .authorize_room(&user("bob"), Action::ManageMembers, &private)
                .is_err(),
            "members do not manage members"
        );
        assert_eq!(
            policy.authorize_room(&user("root"), Action::DeleteRoom, &private),
            Ok(())
        );
    }

    #[test]
    fn admin_only_actions_refuse_others() {
        let policy = Policy {
            admins: BTreeSet::from(["root".to_owned()]),
            create_rooms: Who::Admins,
            delete_rooms: Who::Admins,
            ..Policy::default()
        };
        assert_eq!(policy.authorize(&user("root"), Action::DeleteRoom), Ok(()));
        assert_eq!(
            policy.authorize(&user("ada"), Action::DeleteRoom),
            Err(Error::PermissionDenied {
                action: Action::DeleteRoom
            })
        );
        assert_eq!(
            policy.authorize(&user("ada"), Action::CreateRoom),
            Err(Error::PermissionDenied {
                action: Action::CreateRoom
            })
        );
        assert_eq!(policy.authorize(&user("ada"), Action::Post), Ok(()));
    }

    #[test]
    fn posters_change_their_own_messages_for_a_while_owners_delete_any() {
        let policy = Policy {
            admins: BTreeSet::from(["root".to_owned()]),
            ..Policy::default()
        };
        let room = Access {
            owner: Some(user("own")),
            ..Access::default()
        };
        let posted = Timestamp::from_unix_millis(1_000_000);
        let message = Message {
            id: crate::ids::MessageId(1),
            room: crate::ids::RoomId::parse("r", 8).unwrap(),
            seq: crate::ids::Seq(4),
            user: user("ada"),
            text: "hi".into(),
            sent_at: posted,
            idempotency_key: None,
            kind: crate::message::Kind::default(),
            state: crate::message::State::default(),
        };
        let soon = posted.saturating_add(Duration::from_secs(60));
        let late = posted.saturating_add(Duration::from_secs(16 * 60));
        for action in [Action::EditMessage, Action::DeleteMessage] {
            let change =
                |who: &str, at| policy.authorize_change(&user(who), action, &message, at, &room);
            assert_eq!(change("ada", soon), Ok(()));
            assert_eq!(
                change("ada", late),
                Err(Error::EditWindowClosed {
                    seq: crate::ids::Seq(4),
                    window: Duration::from_secs(900)
                })
            );
            assert_eq!(change("bob", soon), Err(Error::PermissionDenied { action }));
        }
        let delete = |who: &str| {
            policy.authorize_change(&user(who), Action::DeleteMessage, &message, late, &room)
        };
        assert_eq!((delete("own"), delete("root")), (Ok(()), Ok(())));
        let edit = |who: &str| {
            policy.authorize_change(&user(who), Action::EditMessage, &message, soon, &room)
        };
        assert!(
            edit("own").is_err() && edit("root").is_err(),
            "nobody edits another's words"
        );
    }
}
