//! The store through its public API, on real files in a temporary dir.

use std::sync::Arc;
use std::time::Duration;

use roomcast_core::{
    Event, IdempotencyKey, Message, MessageId, RoomEnd, RoomId, Seq, Timestamp, UserId,
};
use roomcast_store::{Journal, OpenError, Progress, Retention, Store};

fn room(id: &str) -> RoomId {
    RoomId::parse(id, 64).unwrap()
}

fn message(id: u64, r: &str, seq: u64, at: u64, key: Option<&str>) -> Event {
    Event::Published(Arc::new(Message {
        id: MessageId(id),
        room: room(r),
        seq: Seq(seq),
        user: UserId::parse("ada", 32).unwrap(),
        text: format!("{r} #{seq}"),
        sent_at: Timestamp::from_unix_millis(at),
        idempotency_key: key.map(|k| IdempotencyKey::parse(k).unwrap()),
        kind: Default::default(),
        state: Default::default(),
    }))
}

fn created(r: &str) -> Event {
    Event::RoomCreated {
        room: room(r),
        created_at: Timestamp::from_unix_millis(7),
        owner: Some(user("ada")),
        private: false,
    }
}

fn user(name: &str) -> UserId {
    UserId::parse(name, 32).unwrap()
}

/// Writes the batches and waits until all are durable.
fn write_all(journal: &Journal, batches: Vec<Vec<Event>>) {
    let n = batches.len() as u64;
    for batch in batches {
        journal.write(batch).unwrap();
    }
    let mut durable = 0;
    while durable < n {
        match journal.progress().recv_blocking().unwrap() {
            Progress::Committed(n) => durable = n,
            Progress::Failed(reason) => panic!("the writer failed: {reason}"),
        }
    }
}

/// The wall clock, as a host passes it for retention by age.
fn wall_clock() -> Timestamp {
    Timestamp::from(std::time::SystemTime::now())
}

fn seqs(messages: &[Arc<Message>]) -> Vec<u64> {
    messages.iter().map(|m| m.seq.0).collect()
}

#[test]
fn a_new_dir_starts_empty_and_appends_survive_reopening() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(&dir.path().join("nested/data")).unwrap();
        let loaded = store.load(10).unwrap();
        assert!(loaded.rooms.is_empty());
        assert_eq!(loaded.next_message_id, MessageId(1));
        let journal = store.journal(Retention::default(), wall_clock).unwrap();
        let mut batches = vec![vec![created("lobby"), created("gone")]];
        batches.extend(
            (1..=30).map(|s| vec![message(s, "lobby", s, 100 + s, Some(&format!("k{s}")))]),
        );
        batches.push(vec![
            message(31, "gone", 1, 200, None),
            Event::RoomClosed {
                room: room("gone"),
                reason: RoomEnd::Expired,
            },
        ]);
        write_all(&journal, batches);
    }
    let store = Store::open(&dir.path().join("nested/data")).unwrap();
    let loaded = store.load(5).unwrap();
    assert_eq!(
        loaded.next_message_id,
        MessageId(32),
        "ids of deleted rooms are never reused"
    );
    assert_eq!(loaded.rooms.len(), 1);
    let lobby = &loaded.rooms[0];
    assert_eq!(
        (lobby.id.as_str(), lobby.latest, lobby.created_at),
        ("lobby", Seq(30), Timestamp::from_unix_millis(7))
    );
    assert_eq!(seqs(&lobby.recent), [26, 27, 28, 29, 30]);
    assert_eq!(
        lobby.recent[4].idempotency_key.as_ref().unwrap().as_str(),
        "k30"
    );
    assert_eq!(lobby.recent[4].text, "lobby #30");
    assert_eq!(lobby.recent[4].sent_at, Timestamp::from_unix_millis(130));

    // Ranges read what the ring no longer holds, oldest first.
    assert_eq!(
        seqs(&store.after(&room("lobby"), Seq(3), Seq(9), 100).unwrap()),
        [4, 5, 6, 7, 8]
    );
    assert_eq!(
        seqs(&store.after(&room("lobby"), Seq(3), Seq(9), 2).unwrap()),
        [4, 5]
    );
    assert_eq!(
        seqs(&store.before(&room("lobby"), Seq(10), 3).unwrap()),
        [7, 8, 9]
    );
    assert_eq!(seqs(&store.before(&room("lobby"), Seq(2), 3).unwrap()), [1]);
    assert_eq!(store.first_seq(&room("lobby")).unwrap(), Some(Seq(1)));
    assert_eq!(store.first_seq(&room("gone")).unwrap(), None);
    assert!(
        store
            .after(&room("gone"), Seq::ZERO, Seq(9), 10)
            .unwrap()
            .is_empty()
    );
}

#[test]
fn owners_privacy_and_members_are_kept() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let journal = store.journal(Retention::default(), wall_clock).unwrap();
    let den = Event::RoomCreated {
        room: room("den"),
        created_at: Timestamp::from_unix_millis(9),
        owner: Some(user("ada")),
        private: true,
    };
    let member = |u: &str| Event::MemberAdded {
        room: room("den"),
        user: user(u),
    };
    write_all(
        &journal,
        vec![
            vec![
                created("hall"),
                den,
                member("ada"),
                member("bob"),
                member("cy"),
            ],
            vec![Event::MemberRemoved {
                room: room("den"),
                user: user("bob"),
            }],
        ],
    );
    let loaded = store.load(10).unwrap();
    let den = &loaded.rooms[0];
    assert_eq!(den.id.as_str(), "den");
    assert!(den.access.private);
    assert_eq!(den.access.owner, Some(user("ada")));
    assert_eq!(
        den.access.members,
        [user("ada"), user("cy")].into_iter().collect()
    );
    let hall = &loaded.rooms[1];
    assert!(!hall.access.private && hall.access.members.is_empty());
}

#[test]
fn a_room_created_again_after_deletion_starts_fresh() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let journal = store.journal(Retention::default(), wall_clock).unwrap();
    write_all(
        &journal,
        vec![
            vec![
                created("r"),
                message(1, "r", 1, 1, None),
                message(2, "r", 2, 1, None),
            ],
            vec![
                Event::RoomClosed {
                    room: room("r"),
                    reason: RoomEnd::Expired,
                },
                created("r"),
                message(3, "r", 1, 2, None),
            ],
        ],
    );
    let loaded = store.load(10).unwrap();
    assert_eq!(loaded.rooms[0].latest, Seq(1));
    assert_eq!(
        loaded.rooms[0]
            .recent
            .iter()
            .map(|m| m.id.0)
            .collect::<Vec<_>>(),
        [3]
    );
    assert_eq!(
        seqs(&store.after(&room("r"), Seq::ZERO, Seq(99), 10).unwrap()),
        [1]
    );
}

#[test]
fn retention_trims_by_count_and_age_and_purges_deleted_rooms() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let now = Timestamp::from(std::time::SystemTime::now()).as_unix_millis();
    let hour = 3_600_000;
    {
        let journal = store.journal(Retention::default(), wall_clock).unwrap();
        let mut batch = vec![created("count"), created("age"), created("doomed")];
        // 1,500 messages: more than one retention chunk in each case.
        for s in 1..=1500 {
            batch.push(message(s, "doomed", s, now, None));
        }
        // Two days old, then fresh.
        for s in 1..=1000 {
            batch.push(message(1500 + s, "age", s, now - 48 * hour, None));
        }
        for s in 1001..=1010 {
            batch.push(message(1500 + s, "age", s, now, None));
        }
        for s in 1..=1200 {
            batch.push(message(3000 + s, "count", s, now, None));
        }
        batch.push(Event::RoomClosed {
            room: room("doomed"),
            reason: RoomEnd::Expired,
        });
        write_all(&journal, vec![batch]);
    }
    let retention = Retention {
        messages_per_room: Some(100),
        max_age: Some(Duration::from_secs(24 * 3600)),
    };
    let journal = store.journal(retention, wall_clock).unwrap();
    // Retention runs between commits; keep committing until it is done.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let count = store.first_seq(&room("count")).unwrap();
        let age = store.first_seq(&room("age")).unwrap();
        if count == Some(Seq(1101)) && age == Some(Seq(1001)) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "retention did not finish: {count:?} {age:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    drop(journal);
    // Deleted rooms' messages are purged, and retention never forgets where numbering is.
    let loaded = store.load(1000).unwrap();
    let latest: Vec<_> = loaded
        .rooms
        .iter()
        .map(|r| (r.id.as_str(), r.latest, r.recent.len()))
        .collect();
    assert_eq!(latest, [("age", Seq(1010), 10), ("count", Seq(1200), 100)]);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while rusqlite_count(dir.path()) != 110 {
        assert!(
            std::time::Instant::now() < deadline,
            "deleted room not purged"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Messages in the file, read with a separate plain connection.
fn rusqlite_count(dir: &std::path::Path) -> i64 {
    let conn = rusqlite::Connection::open(dir.join(roomcast_store::DATABASE_FILE)).unwrap();
    conn.query_row("SELECT count(*) FROM messages", [], |r| r.get(0))
        .unwrap()
}

#[test]
fn a_second_server_on_the_same_dir_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let _first = Store::open(dir.path()).unwrap();
    let err = Store::open(dir.path()).unwrap_err();
    assert!(matches!(err, OpenError::Locked { .. }), "{err}");
    let line = err.to_string();
    assert!(
        line.contains("in use by another running roomcast"),
        "{line}"
    );
    assert!(
        line.contains(&format!("pid {}", std::process::id())),
        "{line}"
    );
}

#[test]
fn files_that_are_not_ours_are_refused_with_a_reason() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("roomcast.db"), vec![b'x'; 4096]).unwrap();
    let err = Store::open(dir.path()).unwrap_err();
    assert!(
        err.to_string()
            .contains("not a roomcast database (not an SQLite file)"),
        "{err}"
    );

    let other = tempfile::tempdir().unwrap();
    rusqlite::Connection::open(other.path().join("roomcast.db"))
        .unwrap()
        .execute_batch("CREATE TABLE invoices (id INTEGER)")
        .unwrap();
    let err = Store::open(other.path()).unwrap_err();
    assert!(err.to_string().contains("another application"), "{err}");
}

#[test]
fn a_newer_schema_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    drop(Store::open(dir.path()).unwrap());
    rusqlite::Connection::open(dir.path().join("roomcast.db"))
        .unwrap()
        .pragma_update(None, "user_version", 99)
        .unwrap();
    let err = Store::open(dir.path()).unwrap_err();
    assert!(
        matches!(
            err,
            OpenError::TooNew {
                found: 99,
                known,
                ..
            } if known < 99
        ),
        "{err}"
    );
    assert!(
        err.to_string().contains("newer than this roomcast knows"),
        "{err}"
    );
}

#[test]
fn an_unusable_dir_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a-file");
    std::fs::write(&file, "").unwrap();
    let err = Store::open(&file.join("data")).unwrap_err();
    assert!(matches!(err, OpenError::Unwritable { .. }), "{err}");
    assert!(err.to_string().contains("--in-memory"), "{err}");
}

#[test]
fn guest_holds_survive_reopening_until_reclaimed() {
    use roomcast_store::StoredGuest;
    let dir = tempfile::tempdir().unwrap();
    let at = |secs: u64| Timestamp::from_unix_millis(secs * 1000);
    let hold = |id: &str, until| StoredGuest {
        id: id.into(),
        key: Some(id.split('~').next().unwrap().into()),
        held_until: at(until),
    };
    {
        let store = Store::open(dir.path()).unwrap();
        store.hold_guest(&hold("zed~a", 2_000)).unwrap();
        store.hold_guest(&hold("amy~b", 1_000)).unwrap();
        // Holding again replaces the earlier hold (a sign-out shortens it).
        store.hold_guest(&hold("zed~a", 1_500)).unwrap();
    }
    let store = Store::open(dir.path()).unwrap();
    let mut held = store.guests().unwrap();
    held.sort_by(|a, b| a.id.cmp(&b.id));
    assert_eq!(held, vec![hold("amy~b", 1_000), hold("zed~a", 1_500)]);
    store.remove_guests(&["amy~b".into()]).unwrap();
    assert_eq!(store.guests().unwrap(), vec![hold("zed~a", 1_500)]);
}

#[test]
fn an_account_name_is_one_persons_by_its_key() {
    use roomcast_store::StoredAccount;
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let now = Timestamp::from_unix_millis(1_000);
    let account = |id: &str, name: &str| StoredAccount {
        id: id.into(),
        name: name.into(),
        key: Some("alice".into()),
    };
    assert!(
        store
            .create_account(&account("alice~a", "alice"), "h1", now)
            .unwrap()
    );
    assert!(
        !store
            .create_account(&account("Alice~b", "Alice"), "h2", now)
            .unwrap()
    );
    assert_eq!(
        store.account_by_key("alice").unwrap(),
        Some(("alice~a".into(), "h1".into()))
    );
    assert!(store.set_password("alice~a", "h3").unwrap());
    assert!(!store.set_password("nobody~x", "h3").unwrap());
    assert_eq!(
        store.account_by_key("alice").unwrap().unwrap().1,
        "h3",
        "the new password"
    );
    assert_eq!(store.accounts().unwrap(), vec![account("alice~a", "alice")]);
}

/// What core decided about edits, deletions and reactions reads back from the store the same,
/// across a reopening, and a deleted message's text is nowhere in the files.
#[test]
fn changes_are_kept_as_core_made_them_and_deleted_text_is_gone_from_disk() {
    use roomcast_core::{Config, Core, CreateRoom, Cursor, Emoji, History, Kind, Submit};
    let dir = tempfile::tempdir().unwrap();
    let mut core = Core::new(Config::default());
    let mut batches = Vec::new();
    let t0 = Timestamp::from_unix_millis(1_000_000);
    let mut at = 1_000_000;
    let mut step = |core: &mut Core, user: &str, text: &str, kind: Kind| {
        at += 1000;
        core.ask(
            Timestamp::from_unix_millis(at),
            Submit {
                user: user.into(),
                room: "r".into(),
                text: text.into(),
                idempotency_key: None,
                create_if_missing: false,
                kind,
                recalled: None,
            },
        )
        .unwrap();
    };
    let create = CreateRoom {
        user: "ada".into(),
        room: "r".into(),
        private: false,
    };
    core.ask(t0, create).unwrap();
    let secret = "the launch code is 0000";
    step(&mut core, "ada", "first", Kind::default());
    step(&mut core, "bob", secret, Kind::default());
    step(
        &mut core,
        "bob",
        "an edit that says the secret again: 0000",
        Kind::Edit { of: Seq(2) },
    );
    let up = Emoji::parse("👍").unwrap();
    let heart = Emoji::parse("❤").unwrap();
    for (user, emoji, added) in [
        ("ada", &up, true),
        ("bob", &up, true),
        ("bob", &heart, true),
        ("ada", &up, false),
    ] {
        let of = Seq(1);
        step(
            &mut core,
            user,
            "",
            Kind::React {
                of,
                emoji: emoji.clone(),
                added,
            },
        );
    }
    step(
        &mut core,
        "ada",
        "with reactions",
        Kind::Post {
            reply_to: Some(Seq(1)),
            attachments: Vec::new(),
        },
    );
    step(
        &mut core,
        "bob",
        "",
        Kind::React {
            of: Seq(2),
            emoji: up.clone(),
            added: true,
        },
    );
    step(&mut core, "bob", "", Kind::Delete { of: Seq(2) });
    while let Some(event) = core.poll_event() {
        batches.push(vec![event]);
    }
    {
        let store = Store::open(dir.path()).unwrap();
        let journal = store.journal(Retention::default(), wall_clock).unwrap();
        write_all(
            &journal,
            std::iter::once(vec![created("r")]).chain(batches).collect(),
        );
        drop(journal);
    }
    let store = Store::open(dir.path()).unwrap();
    let stored = store.after(&room("r"), Seq::ZERO, Seq(100), 100).unwrap();
    let history = History {
        user: "ada".into(),
        room: "r".into(),
        cursor: Cursor::After(Seq::ZERO),
        limit: Some(100),
    };
    let held = core.history(&history).unwrap().messages;
    assert_eq!(stored, held, "the store folds changes as core does");
    assert_eq!(held[0].state.reactions.len(), 2, "{:?}", held[0].state);
    assert!(held[1].state.deleted && held[1].text.is_empty());
    assert!(
        held[2].text.is_empty(),
        "the edit of a deleted message loses its text"
    );
    drop(store);
    for file in std::fs::read_dir(dir.path()).unwrap() {
        let bytes = std::fs::read(file.unwrap().path()).unwrap_or_default();
        assert!(
            !bytes.windows(4).any(|w| w == b"0000"),
            "deleted text is still on disk"
        );
    }
}

#[test]
fn message_counts_and_read_markers_are_kept_as_core_folds_them() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let journal = store.journal(Retention::default(), wall_clock).unwrap();
    let read = |seq: u64, posts: u64| Event::Read {
        room: room("hall"),
        user: user("bob"),
        marker: roomcast_core::ReadMarker {
            seq: Seq(seq),
            posts,
        },
    };
    let mut reaction = message(4, "hall", 4, 40, None);
    if let Event::Published(m) = &mut reaction {
        let m = Arc::make_mut(m);
        m.kind = roomcast_core::Kind::React {
            of: Seq(1),
            emoji: roomcast_core::Emoji::parse("👍").unwrap(),
            added: true,
        };
        m.text.clear();
    }
    let batches = vec![
        vec![created("hall"), message(1, "hall", 1, 10, None)],
        vec![message(2, "hall", 2, 20, None), read(2, 2)],
        vec![message(3, "hall", 3, 30, None), reaction, read(1, 1)],
    ];
    let mut folded = std::collections::BTreeMap::new();
    for event in batches.iter().flatten() {
        roomcast_core::StoredRoom::apply(&mut folded, event);
    }
    write_all(&journal, batches);
    let hall = &store.load(10).unwrap().rooms[0];
    assert_eq!(hall.posts, 3, "the reaction is not a message");
    let marker = hall.read[&user("bob")];
    assert_eq!((marker.seq, marker.posts), (Seq(2), 2), "never back");
    assert_eq!(hall.posts, folded[&room("hall")].posts);
    assert_eq!(hall.read, folded[&room("hall")].read);
}
