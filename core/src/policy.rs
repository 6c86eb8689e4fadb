//! Authorization: the one place that decides who may do what.
//!
//! Every command passes through [`Policy::authorize`] with the acting user as the host vouches for
//! it. Until accounts exist the default is open, as in the original design: anyone may create,
//! read, post and delete. An operator can reserve room creation and deletion for named admins.
//! Owners, private rooms and members will be decided here too.

use std::collections::BTreeSet;
use std::fmt;

use crate::error::Error;
use crate::ids::UserName;

/// Something a user asks to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum Action {
    /// Create a room.
    CreateRoom,
    /// Delete a room, ending its listeners.
    DeleteRoom,
    /// List the rooms.
    ListRooms,
    /// Read a room's history or presence.
    ReadRoom,
    /// Open a listener on a room.
    Listen,
    /// Post a message to a room.
    Post,
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Action::CreateRoom => "create a room",
            Action::DeleteRoom => "delete a room",
            Action::ListRooms => "list rooms",
            Action::ReadRoom => "read this room",
            Action::Listen => "listen to this room",
            Action::Post => "post in this room",
        })
    }
}

/// Who may do a guarded action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Who {
    /// Every user.
    #[default]
    Anyone,
    /// Only the users named in [`Policy::admins`].
    Admins,
}

/// The authorization rules, part of [`Config`](crate::Config).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Policy {
    /// Users who may do anything.
    pub admins: BTreeSet<String>,
    /// Who may create rooms.
    pub create_rooms: Who,
    /// Who may delete rooms.
    pub delete_rooms: Who,
}

impl Policy {
    /// Whether `user` may do `action`; the refusal names the action.
    pub fn authorize(&self, user: &UserName, action: Action) -> Result<(), Error> {
        let who = match action {
            Action::CreateRoom => self.create_rooms,
            Action::DeleteRoom => self.delete_rooms,
            Action::ListRooms | Action::ReadRoom | Action::Listen | Action::Post => Who::Anyone,
        };
        match who {
            Who::Anyone => Ok(()),
            Who::Admins if self.admins.contains(user.as_str()) => Ok(()),
            Who::Admins => Err(Error::PermissionDenied { action }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(name: &str) -> UserName {
        UserName::parse(name, 32).unwrap()
    }

    #[test]
    fn default_policy_is_open() {
        let policy = Policy::default();
        for action in [
            Action::CreateRoom,
            Action::DeleteRoom,
            Action::ListRooms,
            Action::ReadRoom,
            Action::Listen,
            Action::Post,
        ] {
            assert_eq!(policy.authorize(&user("anyone"), action), Ok(()));
        }
    }

    #[test]
    fn admin_only_actions_refuse_others() {
        let policy = Policy {
            admins: BTreeSet::from(["root".to_owned()]),
            create_rooms: Who::Admins,
            delete_rooms: Who::Admins,
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
}
