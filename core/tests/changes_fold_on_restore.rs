//! A room rebuilt from a log that keeps entries as appended (a shared log's stream) shows each
//! message as its later entries left it, as a room that applied them live does.

use std::sync::Arc;

use roomcast_core::{
    Access, Config, Core, Cursor, Emoji, History, Kind, Message, MessageId, RoomId, Seq,
    StoredRoom, Timestamp, UserId,
};

fn entry(seq: u64, user: &str, text: &str, kind: Kind) -> Arc<Message> {
    Arc::new(Message {
        id: MessageId(seq),
        room: RoomId::parse("r", 64).unwrap(),
        seq: Seq(seq),
        user: UserId::parse(user, 64).unwrap(),
        text: text.into(),
        sent_at: Timestamp::from_unix_millis(1000 + seq),
        idempotency_key: None,
        kind,
        state: Default::default(),
    })
}

#[test]
fn a_room_restored_from_raw_entries_shows_them_made() {
    let up = Emoji::parse("👍").unwrap();
    let recent = vec![
        entry(1, "ada", "hello", Kind::default()),
        entry(2, "bob", "a secret", Kind::default()),
        entry(3, "bob", "the secret, edited", Kind::Edit { of: Seq(2) }),
        entry(4, "ada", "hello!", Kind::Edit { of: Seq(1) }),
        entry(
            5,
            "bob",
            "",
            Kind::React {
                of: Seq(1),
                emoji: up.clone(),
                added: true,
            },
        ),
        entry(
            6,
            "cy",
            "",
            Kind::React {
                of: Seq(1),
                emoji: up.clone(),
                added: true,
            },
        ),
        entry(
            7,
            "bob",
            "",
            Kind::React {
                of: Seq(1),
                emoji: up.clone(),
                added: false,
            },
        ),
        entry(8, "bob", "", Kind::Delete { of: Seq(2) }),
    ];
    let mut core = Core::new(Config::default());
    core.restore_room(
        Timestamp::from_unix_millis(2000),
        StoredRoom {
            id: RoomId::parse("r", 64).unwrap(),
            created_at: Timestamp::EPOCH,
            access: Access::default(),
            latest: Seq(8),
            recent,
            epoch: 3,
            posts: 2,
            read: Default::default(),
        },
    );
    let page = core
        .history(&History {
            user: "dan".into(),
            room: "r".into(),
            cursor: Cursor::After(Seq::ZERO),
            limit: Some(10),
        })
        .unwrap();
    let m = &page.messages;
    assert_eq!(m[0].text, "hello!");
    assert_eq!(
        m[0].state.edited_at,
        Some(Timestamp::from_unix_millis(1004))
    );
    let reactions: Vec<(&str, Vec<&str>)> = m[0]
        .state
        .reactions
        .iter()
        .map(|r| {
            (
                r.emoji.as_str(),
                r.users.iter().map(|u| u.as_str()).collect(),
            )
        })
        .collect();
    assert_eq!(reactions, [("👍", vec!["cy"])]);
    assert!(m[1].state.deleted && m[1].text.is_empty());
    assert!(
        m[2].state.deleted && m[2].text.is_empty(),
        "an edit of a deleted message keeps no text: {:?}",
        m[2]
    );
    assert!(!page.messages.iter().any(|e| e.text.contains("secret")));
}
