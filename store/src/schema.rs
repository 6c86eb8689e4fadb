//! The schema, as an ordered list of migrations (rusqlite_migration tracks the version in
//! SQLite's `user_version`). Append new migrations; never edit a released one.

use rusqlite_migration::{M, Migrations};

/// Marks the file as roomcast's (`PRAGMA application_id`), so another program's SQLite file is
/// recognised and refused: "RCst".
pub(crate) const APPLICATION_ID: i32 = 0x5243_7374;

const MIGRATIONS: &[M<'static>] = &[
    M::up(
        "PRAGMA application_id = 1380152180;

    -- A room while it exists. `key` is never reused (AUTOINCREMENT), so the messages of a deleted
    -- room can be purged in the background even if a room with the same id is created again.
    CREATE TABLE rooms (
        key        INTEGER PRIMARY KEY AUTOINCREMENT,
        id         TEXT NOT NULL UNIQUE,
        created_at INTEGER NOT NULL, -- ms since the Unix epoch
        latest     INTEGER NOT NULL  -- its newest sequence number, kept even when retention empties it
    );

    -- Messages, keyed by their id (unique across rooms and time, assigned in order).
    CREATE TABLE messages (
        id              INTEGER PRIMARY KEY,
        room            INTEGER NOT NULL, -- rooms.key
        seq             INTEGER NOT NULL,
        user            TEXT NOT NULL,
        text            TEXT NOT NULL,
        sent_at         INTEGER NOT NULL, -- ms since the Unix epoch
        idempotency_key TEXT,
        UNIQUE (room, seq)
    );

    -- Rooms deleted whose messages are still being purged, a chunk at a time.
    CREATE TABLE purges (room INTEGER PRIMARY KEY);

    -- Counters that must survive deletions: the next message id.
    CREATE TABLE counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
    INSERT INTO counters (name, value) VALUES ('next_message_id', 1);",
    ),
    M::up(
        "-- Owners and private rooms; rooms from before have no owner (admins manage them).
    ALTER TABLE rooms ADD COLUMN owner TEXT;
    ALTER TABLE rooms ADD COLUMN private INTEGER NOT NULL DEFAULT 0;
    CREATE TABLE members (
        room INTEGER NOT NULL, -- rooms.key
        user TEXT NOT NULL,
        PRIMARY KEY (room, user)
    ) WITHOUT ROWID;

    -- Accounts: a name and its argon2id password hash (PHC string).
    CREATE TABLE accounts (
        name          TEXT PRIMARY KEY,
        password_hash TEXT NOT NULL,
        created_at    INTEGER NOT NULL
    ) WITHOUT ROWID;

    -- Signed-in sessions; signing out deletes the row, which revokes its tokens.
    CREATE TABLE sessions (
        id         TEXT PRIMARY KEY,
        user       TEXT NOT NULL,
        expires_at INTEGER NOT NULL -- ms since the Unix epoch
    ) WITHOUT ROWID;",
    ),
    M::up(
        "-- Guest nicknames in use: a name belongs to one guest while its session lives and a while
    -- after, so nobody else can take it up and read what it could.
    CREATE TABLE guest_names (
        name       TEXT PRIMARY KEY,
        held_until INTEGER NOT NULL -- ms since the Unix epoch
    ) WITHOUT ROWID;",
    ),
    M::up(
        "-- Edits, deletions and reactions are entries of a room's log like messages; a message's
    -- row keeps it as it now is (its newest text, or none once deleted).
    ALTER TABLE messages ADD COLUMN kind TEXT;      -- the entry's kind as JSON; NULL for a plain message
    ALTER TABLE messages ADD COLUMN of INTEGER;     -- the message a change names (its seq)
    ALTER TABLE messages ADD COLUMN edited_at INTEGER;
    ALTER TABLE messages ADD COLUMN deleted INTEGER NOT NULL DEFAULT 0;
    CREATE INDEX messages_changes ON messages (room, of) WHERE of IS NOT NULL;

    -- Who reacted to a message with what, in the order they did (by rowid).
    CREATE TABLE reactions (
        room  INTEGER NOT NULL, -- rooms.key
        seq   INTEGER NOT NULL,
        emoji TEXT NOT NULL,
        user  TEXT NOT NULL,
        UNIQUE (room, seq, emoji, user)
    );
    -- A message's reactions go with it (retention, a purged room).
    CREATE TRIGGER reactions_follow AFTER DELETE ON messages BEGIN
        DELETE FROM reactions WHERE room = OLD.room AND seq = OLD.seq;
    END;",
    ),
    M::up(
        "-- Who moderates a room, who is banned from it, who is muted in it and until when.
    CREATE TABLE moderation (
        room  INTEGER NOT NULL, -- rooms.key
        user  TEXT NOT NULL,
        role  TEXT NOT NULL,    -- 'moderator', 'banned' or 'muted'
        until INTEGER,          -- for 'muted': ms since the Unix epoch
        PRIMARY KEY (room, user, role)
    ) WITHOUT ROWID;",
    ),
    M::up(
        "-- How many messages (posts, not changes) each room's log has, and how far each user has
    -- read each room: unread is one subtraction, `rooms.posts - read_markers.posts`.
    ALTER TABLE rooms ADD COLUMN posts INTEGER NOT NULL DEFAULT 0;
    UPDATE rooms SET posts = (SELECT COUNT(*) FROM messages m WHERE m.room = rooms.key
        AND (m.kind IS NULL OR json_extract(m.kind, '$.kind') = 'post'));
    CREATE TABLE read_markers (
        room  INTEGER NOT NULL, -- rooms.key
        user  TEXT NOT NULL,
        seq   INTEGER NOT NULL, -- read up to this entry
        posts INTEGER NOT NULL, -- when the room had this many messages
        PRIMARY KEY (room, user)
    ) WITHOUT ROWID;",
    ),
    M::up(
        "-- Who a user is: an id that a later holder of the same name never gets (the name, a `~`
    -- and a tag), carried by every relation (owners, members, roles, markers, messages). Accounts
    -- made before ids had tags keep their name as their id. `key` is the name as people read it
    -- (identity's comparison key: case and look-alikes folded), filled in by identity.
    ALTER TABLE accounts ADD COLUMN id TEXT;
    ALTER TABLE accounts ADD COLUMN key TEXT;
    UPDATE accounts SET id = name;
    CREATE INDEX accounts_key ON accounts (key);

    -- Guests by id, each with the name it holds (by key) until when. A row stays after its hold
    -- ends until the guest's leftovers (empty rooms, read markers) are reclaimed.
    CREATE TABLE guests (
        id         TEXT PRIMARY KEY,
        key        TEXT,
        held_until INTEGER NOT NULL -- ms since the Unix epoch
    ) WITHOUT ROWID;
    CREATE INDEX guests_key ON guests (key);

    -- Users of tokens another application mints (`sub` a bare name), once seen: their names
    -- are theirs here too, to be invited and written to.
    CREATE TABLE minted_users (
        key TEXT PRIMARY KEY,
        id  TEXT NOT NULL
    ) WITHOUT ROWID;
    INSERT INTO guests (id, key, held_until) SELECT name, NULL, held_until FROM guest_names;
    DROP TABLE guest_names;",
    ),
];

/// The migrations this binary knows.
pub(crate) fn migrations() -> Migrations<'static> {
    Migrations::from_slice(MIGRATIONS)
}

/// Brings `conn`'s schema to `version` exactly, as the roomcast that wrote that version left it
/// (released migrations are never edited): where tests of upgrades start.
pub fn migrate_to(conn: &mut rusqlite::Connection, version: usize) -> Result<(), String> {
    migrations()
        .to_version(conn, version)
        .map_err(|e| e.to_string())
}

/// The newest schema version this binary knows.
pub(crate) fn latest_version() -> usize {
    MIGRATIONS.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_are_valid_and_mark_the_file() {
        assert!(migrations().validate().is_ok());
        assert_eq!(APPLICATION_ID, 1_380_152_180);
        let mut conn = rusqlite::Connection::open_in_memory().unwrap();
        migrations().to_latest(&mut conn).unwrap();
        let id: i32 = conn
            .query_row("PRAGMA application_id", [], |r| r.get(0))
            .unwrap();
        assert_eq!(id, APPLICATION_ID);
    }
}
