//! Where things live in Redis: a room's keys under its hash tag, and the few keys of the cluster
//! as a whole.

/// Keys of one room, all with the room's hash tag.
pub(super) struct Keys {
    pub(super) meta: String,
    pub(super) members: String,
    pub(super) log: String,
    pub(super) gone: String,
    /// The numbers of its deleted messages: reads take their text, and their edits', out.
    pub(super) erased: String,
    /// Its moderation: `<role>|<user>` → until (ms, for `muted`) or 0; roles `moderator`,
    /// `banned`, `muted`.
    pub(super) moderation: String,
    /// How far each user has read it: user → `<seq> <posts>` (see `ReadMarker`).
    pub(super) read: String,
    /// Who is present from which node: `<node>|<user>` → 1.
    pub(super) present: String,
    /// On how many nodes each present user is: user → count.
    pub(super) users: String,
    pub(super) channel: String,
}

impl Keys {
    pub(super) fn of(room: &str) -> Keys {
        let tag = format!("rc:{{{room}}}");
        Keys {
            members: format!("{tag}:m"),
            log: format!("{tag}:log"),
            gone: format!("{tag}:gone"),
            erased: format!("{tag}:x"),
            moderation: format!("{tag}:mod"),
            read: format!("{tag}:read"),
            present: format!("{tag}:p"),
            users: format!("{tag}:pu"),
            channel: tag.clone(),
            meta: tag,
        }
    }

    pub(super) fn idempotency(room: &str, user: &str, key: &str) -> String {
        format!("rc:{{{room}}}:k:{user}:{key}")
    }

    /// The room a channel belongs to.
    pub(super) fn room_of(channel: &str) -> Option<&str> {
        channel.strip_prefix("rc:{")?.strip_suffix('}')
    }
}

/// The rooms a user owns, and (a guest) the rooms where they keep a read marker: what goes when
/// a guest departs, found without scanning every room. Under the user's own hash tag.
pub(super) fn owned_by(user: &str) -> String {
    format!("rc:{{u:{user}}}:owned")
}

/// See [`owned_by`].
pub(super) fn marked_by(user: &str) -> String {
    format!("rc:{{u:{user}}}:marks")
}

/// Nodes by their last heartbeat (milliseconds).
pub(super) const NODES: &str = "rc:nodes";

/// The rooms where a node has presence.
pub(super) fn node_rooms(node: &str) -> String {
    format!("rc:node:{node}:rooms")
}

/// Every room, by id, for listings (one key outside any room's slot).
pub(super) const ROOMS: &str = "rc:rooms";

/// Where identity's changes (revocations, new accounts) are announced to every node.
pub(crate) const IDENTITY_EVENTS: &str = "rc:{id}:events";
