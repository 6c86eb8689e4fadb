//! Membership is managed by owners.

mod support;

use support::*;

#[test]
fn private_rooms_admit_members_only_and_removal_ends_listeners() {
    let mut core = Core::new(unlimited());
    create_private_room(&mut core, t(1), "ada", "den").unwrap();
    drain(&mut core);
    let post_as = |core: &mut Core, who: &str| {
        submit(
            core,
            t(2),
            Submit {
                user: who.into(),
                room: "den".into(),
                text: "hi".into(),
                idempotency_key: None,
                create_if_missing: false,
                kind: Default::default(),
                recalled: None,
            },
        )
    };
    let denied = |action| Err(Error::PermissionDenied { action });
    assert_eq!(post_as(&mut core, "eve").map(|_| ()), denied(Action::Post));
    assert_eq!(
        open_listener(&mut core, t(2), "eve", "den", Resume::Live).map(|_| ()),
        denied(Action::Listen)
    );
    assert_eq!(
        presence(&mut core, "eve", "den").map(|_| ()),
        denied(Action::ReadRoom)
    );
    assert_eq!(
        history(&mut core, "eve", "den", Cursor::Newest, 10).map(|_| ()),
        denied(Action::ReadRoom)
    );
    assert_eq!(
        create_room(&mut core, t(2), "eve", "den").map(|_| ()),
        denied(Action::ReadRoom),
        "creating again does not reveal a private room"
    );
    assert!(
        rooms(&mut core, "eve", None, 10).unwrap().rooms.is_empty(),
        "nor does the listing"
    );
    assert_eq!(
        invite(&mut core, t(2), "eve", "den", "eve").map(|_| ()),
        denied(Action::ManageMembers)
    );

    assert_eq!(invite(&mut core, t(3), "ada", "den", "bob"), Ok(true));
    assert_eq!(invite(&mut core, t(3), "ada", "den", "bob"), Ok(false));
    assert_eq!(rooms(&mut core, "bob", None, 10).unwrap().rooms.len(), 1);
    let bob = open_listener(&mut core, t(4), "bob", "den", Resume::Live).unwrap();
    let bob_too = open_listener(&mut core, t(4), "bob", "den", Resume::Live).unwrap();
    post_as(&mut core, "bob").unwrap();
    drain(&mut core);
    assert_eq!(
        remove_member(&mut core, t(5), "bob", "den", "ada").map(|_| ()),
        denied(Action::ManageMembers)
    );
    assert_eq!(
        remove_member(&mut core, t(5), "ada", "den", "ada"),
        Err(Error::Membership(MembershipError::OwnerStays))
    );
    assert_eq!(
        remove_member(&mut core, t(5), "ada", "den", "bob"),
        Ok(true)
    );
    let closed = |listener| Event::ListenerClosed {
        listener,
        room: room("den"),
        reason: CloseReason::Removed,
    };
    assert_eq!(
        drain(&mut core),
        [
            closed(bob.listener),
            closed(bob_too.listener),
            Event::Left {
                room: room("den"),
                user: user("bob")
            },
            Event::MemberRemoved {
                room: room("den"),
                user: user("bob")
            }
        ]
    );
    assert_eq!(core.stats().listeners, 0, "both of bob's listeners closed");
    assert!(
        !close_listener(&mut core, t(6), bob.listener),
        "already closed"
    );
    assert_eq!(post_as(&mut core, "bob").map(|_| ()), denied(Action::Post));
    assert!(matches!(
        invite(&mut core, t(6), "ada", "lobby-x", "bob"),
        Err(Error::RoomNotFound { .. })
    ));
}
