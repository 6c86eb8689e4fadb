//! The gRPC server through the generated tonic client: submit and stream, order across many
//! streams, resume, gaps, deletion, every refusal's status code, slow streams, health and
//! reflection.

use futures_util::StreamExt;
use roomcast_e2e::Server;
use roomcast_e2e::grpc::{
    as_user, client, create, guest, next, next_seq, open, submit, with_token,
};
use roomcast_proto::v1 as pb;
use roomcast_proto::v1::stream_event::Event;
use tonic::Code;
use tonic::transport::Channel;

#[tokio::test]
async fn submit_then_stream_with_presence() {
    let server = Server::tokio(&[]);
    let mut c = client(&server).await;
    create(&mut c, "lobby").await;
    let mut s = open(&mut c, "bob", "lobby", None).await;
    match next(&mut s).await {
        Some(Event::Presence(p)) => {
            let users: Vec<_> = p
                .users
                .iter()
                .map(|u| (u.user.as_str(), u.listeners))
                .collect();
            assert_eq!(users, [("bob", 1)]);
            assert!(p.users[0].user_id.starts_with("bob~"), "{:?}", p.users);
        }
        other => panic!("presence first, got {other:?}"),
    }
    let sent = submit(&mut c, "ada", "lobby", "hello over gRPC 👋").await;
    assert_eq!((sent.seq, sent.user.as_str()), (1, "ada"));
    match next(&mut s).await {
        Some(Event::Message(m)) => assert_eq!(m, sent),
        other => panic!("the message, got {other:?}"),
    }
    let mut other = open(&mut c, "cy", "lobby", None).await;
    next(&mut other).await;
    let joined = match next(&mut s).await {
        Some(Event::Joined(e)) => e,
        other => panic!("cy joins, got {other:?}"),
    };
    assert_eq!((joined.user.as_str(), joined.listeners), ("cy", 1));
    assert!(joined.user_id.starts_with("cy~"), "{joined:?}");
    drop(other);
    assert_eq!(
        next(&mut s).await,
        Some(Event::Left(pb::PresenceEntry {
            listeners: 0,
            ..joined
        })),
        "a dropped stream leaves"
    );
    let req = as_user(
        &mut c,
        "bob",
        pb::PresenceRequest {
            room: "lobby".into(),
        },
    )
    .await;
    let who = c.presence(req).await.unwrap().into_inner();
    assert_eq!(who.users.len(), 1);
}

#[tokio::test]
async fn many_concurrent_streams_receive_every_message_in_order() {
    // Thirty-odd users from one address: over the default sign-ups per address.
    let server = Server::tokio(&["--rate-burst=0", "--sign-up-burst=0"]);
    let mut c = client(&server).await;
    create(&mut c, "crowd").await;
    let mut streams = Vec::new();
    for i in 0..30 {
        let mut s = open(&mut c, &format!("u{i}"), "crowd", None).await;
        next(&mut s).await;
        streams.push(s);
    }
    let posters: Vec<_> = (0..3)
        .map(|p| {
            let mut c = c.clone();
            tokio::spawn(async move {
                for n in 0..40 {
                    submit(&mut c, &format!("p{p}"), "crowd", &format!("{p}:{n}")).await;
                }
            })
        })
        .collect();
    for p in posters {
        p.await.unwrap();
    }
    let readers: Vec<_> = streams
        .into_iter()
        .map(|mut s| {
            tokio::spawn(async move {
                let mut seqs = Vec::new();
                while seqs.len() < 120 {
                    seqs.push(next_seq(&mut s).await);
                }
                seqs
            })
        })
        .collect();
    for r in readers {
        assert_eq!(r.await.unwrap(), (1..=120).collect::<Vec<_>>());
    }
}

#[tokio::test]
async fn resume_after_n_and_too_old_resume_gives_a_gap() {
    // In memory, history is the ring alone (with a store, older messages come from disk).
    let server = Server::tokio(&["--in-memory", "--rate-burst=0", "--history-len=5"]);
    let mut c = client(&server).await;
    create(&mut c, "r").await;
    for n in 1..=12 {
        submit(&mut c, "ada", "r", &format!("m{n}")).await;
    }
    let mut s = open(&mut c, "bob", "r", Some(9)).await;
    assert_eq!(
        [
            next_seq(&mut s).await,
            next_seq(&mut s).await,
            next_seq(&mut s).await
        ],
        [10, 11, 12]
    );
    submit(&mut c, "ada", "r", "live").await;
    assert_eq!(next_seq(&mut s).await, 13);

    let mut old = open(&mut c, "bob", "r", Some(2)).await;
    assert!(matches!(next(&mut old).await, Some(Event::Presence(_))));
    assert_eq!(
        next(&mut old).await,
        Some(Event::Gap(pb::Gap {
            after: 2,
            first_held: 9
        }))
    );
    assert_eq!(next_seq(&mut old).await, 9);

    let req = as_user(
        &mut c,
        "bob",
        pb::StreamRequest {
            room: "r".into(),
            resume_after: Some(99),
        },
    )
    .await;
    let ahead = c.stream(req).await.unwrap_err();
    assert_eq!(ahead.code(), Code::OutOfRange);
}

#[tokio::test]
async fn deleting_a_room_ends_its_streams() {
    let server = Server::tokio(&["--admins=ada"]);
    let mut c = client(&server).await;
    create(&mut c, "doomed").await;
    let mut s = open(&mut c, "bob", "doomed", None).await;
    next(&mut s).await;
    let req = as_user(
        &mut c,
        "ada",
        pb::DeleteRoomRequest {
            room: "doomed".into(),
        },
    )
    .await;
    c.delete_room(req).await.unwrap();
    match next(&mut s).await {
        Some(Event::Closed(c)) => {
            assert_eq!((c.reason.as_str(), c.by.as_str()), ("deleted", "ada"));
            assert!(c.by_id.starts_with("ada~"), "{c:?}");
        }
        other => panic!("closed, got {other:?}"),
    }
    assert_eq!(
        next(&mut s).await,
        None,
        "the stream ends with an OK status"
    );
}

#[tokio::test]
async fn every_refusal_has_its_status_code() {
    let server = Server::tokio(&[
        "--max-message-bytes=16",
        "--rate-burst=2",
        "--rate-per-second=1",
        "--max-rooms=2",
        "--admins=root",
        "--admin-only-delete",
    ]);
    let mut c = client(&server).await;
    create(&mut c, "a").await;
    let code =
        |r: Result<tonic::Response<pb::SubmitResponse>, tonic::Status>| r.unwrap_err().code();
    let tester = guest(&mut c, "tester").await;
    let sub = |room: &str, text: &str| {
        with_token(
            &tester,
            pb::SubmitRequest {
                room: room.into(),
                text: text.into(),
                idempotency_key: String::new(),
                reply_to: 0,
                attachments: Vec::new(),
            },
        )
    };
    assert_eq!(
        code(c.submit(sub("a", "seventeen bytes!!")).await),
        Code::ResourceExhausted
    );
    assert_eq!(code(c.submit(sub("a", "  ")).await), Code::InvalidArgument);
    assert_eq!(
        code(c.submit(sub("a", "bell\u{7}")).await),
        Code::InvalidArgument
    );
    assert_eq!(code(c.submit(sub("no-such", "hi")).await), Code::NotFound);
    assert_eq!(
        code(c.submit(sub("bad/room", "hi")).await),
        Code::InvalidArgument
    );
    let bad_name = c
        .guest(pb::GuestRequest {
            nickname: "bad name!".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(bad_name.code(), Code::InvalidArgument);
    let kim = guest(&mut c, "kim").await;
    let keyed = |text: &str| {
        with_token(
            &kim,
            pb::SubmitRequest {
                room: "a".into(),
                text: text.into(),
                idempotency_key: "k1".into(),
                reply_to: 0,
                attachments: Vec::new(),
            },
        )
    };
    let first = c.submit(keyed("once")).await.unwrap().into_inner();
    let again = c.submit(keyed("once")).await.unwrap().into_inner();
    assert!(again.duplicate && again.message == first.message);
    assert_eq!(
        code(c.submit(keyed("different")).await),
        Code::AlreadyExists
    );
    submit(&mut c, "rl", "a", "1").await;
    submit(&mut c, "rl", "a", "2").await;
    let rl = guest(&mut c, "rl").await;
    let third = with_token(
        &rl,
        pb::SubmitRequest {
            room: "a".into(),
            text: "3".into(),
            idempotency_key: String::new(),
            reply_to: 0,
            attachments: Vec::new(),
        },
    );
    let limited = c.submit(third).await.unwrap_err();
    assert_eq!(limited.code(), Code::ResourceExhausted);
    assert!(
        limited.message().contains("rate-limited"),
        "{}",
        limited.message()
    );
    // The cause for programs, as REST's `code` and `Retry-After`: google.rpc.ErrorInfo and
    // RetryInfo in the status details.
    use tonic_types::StatusExt;
    let details = limited.get_error_details();
    let info = details.error_info().expect("ErrorInfo");
    assert_eq!(
        (info.reason.as_str(), info.domain.as_str()),
        ("rate-limited", "roomcast")
    );
    let retry = details.retry_info().expect("RetryInfo");
    assert!(retry.retry_delay.is_some_and(|d| !d.is_zero()), "{retry:?}");
    let missing = c.submit(sub("no-such", "hi")).await.unwrap_err();
    let details = missing.get_error_details();
    assert_eq!(
        details.error_info().expect("ErrorInfo").reason,
        "room-not-found"
    );
    assert!(details.retry_info().is_none(), "nothing to retry");
    create(&mut c, "b").await;
    let full = c
        .create_room(with_token(
            &tester,
            pb::CreateRoomRequest {
                room: "c".into(),
                private: false,
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(full.code(), Code::ResourceExhausted);
    let req = as_user(&mut c, "ada", pb::DeleteRoomRequest { room: "a".into() }).await;
    let denied = c.delete_room(req).await.unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);
    let req = as_user(&mut c, "root", pb::DeleteRoomRequest { room: "a".into() }).await;
    c.delete_room(req).await.expect("admins may");
    let history = c
        .history(with_token(
            &tester,
            pb::HistoryRequest {
                room: "b".into(),
                cursor: Some(pb::history_request::Cursor::After(5)),
                limit: 0,
            },
        ))
        .await;
    assert_eq!(history.unwrap_err().code(), Code::OutOfRange);
    // An oversized request is refused by the transport limit, not read into memory.
    let huge = c
        .submit(sub("b", &"x".repeat(200 * 1024)))
        .await
        .unwrap_err();
    // Size limits are RESOURCE_EXHAUSTED (gRPC's rule), like the core's message-size limit.
    assert_eq!(huge.code(), Code::ResourceExhausted, "{huge:?}");
    assert!(huge.message().contains("--max-request-bytes"), "{huge:?}");
    // The server still serves.
    submit(&mut c, "ok", "b", "fine").await;
}

#[tokio::test]
async fn a_slow_stream_does_not_delay_a_fast_one() {
    // In memory, so that history (200 messages) cannot cover what the slow stream misses.
    let server = Server::tokio(&[
        "--in-memory",
        "--rate-burst=0",
        "--room-buffer=16",
        "--history-len=200",
        "--max-message-bytes=16384",
    ]);
    let mut c = client(&server).await;
    create(&mut c, "hose").await;
    // Separate connections, so HTTP/2 flow control of one does not touch the other.
    let mut slow_client = client(&server).await;
    let mut slow = open(&mut slow_client, "slow", "hose", None).await;
    next(&mut slow).await;
    let mut fast = open(&mut client(&server).await, "fast", "hose", None).await;
    next(&mut fast).await;
    let total = 600u64;
    let reading = tokio::spawn(async move {
        let mut seqs = Vec::new();
        while seqs.len() < total as usize {
            seqs.push(next_seq(&mut fast).await);
        }
        seqs
    });
    let text = "y".repeat(16_000);
    for _ in 0..total {
        submit(&mut c, "ada", "hose", &text).await;
    }
    assert_eq!(
        reading.await.unwrap(),
        (1..=total).collect::<Vec<_>>(),
        "the fast stream got everything in order"
    );
    // The slow one, read now, is in order with any loss announced as a gap.
    let mut expected = 1;
    let mut gaps = 0;
    while expected <= total {
        match next(&mut slow).await.expect("open") {
            Event::Message(m) => {
                assert_eq!(m.seq, expected);
                expected += 1;
            }
            Event::Gap(g) => {
                assert_eq!(g.after, expected - 1);
                expected = g.first_held;
                gaps += 1;
            }
            Event::Presence(_)
            | Event::Joined(_)
            | Event::Left(_)
            | Event::Typing(_)
            | Event::Closed(_)
            | Event::Edited(_)
            | Event::Deleted(_)
            | Event::Reaction(_)
            | Event::Moderation(_) => {}
        }
    }
    assert!(
        gaps >= 1,
        "9.6 MB behind with 200 messages of history must have lost some"
    );
}

#[tokio::test]
async fn health_and_reflection_work_without_the_proto_file() {
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::health_client::HealthClient;
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

    let server = Server::tokio(&[]);
    let channel = Channel::from_shared(server.url(""))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut health = HealthClient::new(channel.clone());
    let status = health
        .check(tonic_health::pb::HealthCheckRequest {
            service: "roomcast.v1.Chat".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .status;
    assert_eq!(status, ServingStatus::Serving as i32);

    let mut reflection = ServerReflectionClient::new(channel.clone());
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut answers = reflection
        .server_reflection_info(futures_util::stream::iter([request]))
        .await
        .unwrap()
        .into_inner();
    let answer = answers.next().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = answer.message_response else {
        panic!("a service list")
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    assert!(names.contains(&"roomcast.v1.Chat".to_owned()), "{names:?}");
    assert!(
        names.contains(&"grpc.health.v1.Health".to_owned()),
        "{names:?}"
    );

    // The older protocol (older grpcurl, BloomRPC, grpcio-reflection) is served too: it finds
    // the file that defines the service.
    use tonic_reflection::pb::v1alpha as alpha;
    let mut reflection = alpha::server_reflection_client::ServerReflectionClient::new(channel);
    let request = alpha::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(
            alpha::server_reflection_request::MessageRequest::FileContainingSymbol(
                "roomcast.v1.Chat".into(),
            ),
        ),
    };
    let mut answers = reflection
        .server_reflection_info(futures_util::stream::iter([request]))
        .await
        .expect("v1alpha is served")
        .into_inner();
    let answer = answers.next().await.unwrap().unwrap();
    let Some(alpha::server_reflection_response::MessageResponse::FileDescriptorResponse(files)) =
        answer.message_response
    else {
        panic!("the file descriptors: {answer:?}")
    };
    use prost::Message as _;
    let file = prost_types::FileDescriptorProto::decode(&*files.file_descriptor_proto[0])
        .expect("a file descriptor");
    assert_eq!(file.package(), "roomcast.v1");
    assert!(file.service.iter().any(|s| s.name() == "Chat"));
}

#[tokio::test]
async fn sigterm_ends_streams_cleanly_and_exits_zero() {
    let mut server = Server::tokio(&[]);
    let mut c = client(&server).await;
    create(&mut c, "bye").await;
    let mut s = open(&mut c, "bob", "bye", None).await;
    next(&mut s).await;
    server.signal("TERM");
    assert_eq!(
        next(&mut s).await,
        Some(Event::Closed(pb::Closed {
            reason: "shutdown".into(),
            by: String::new(),
            by_id: String::new(),
        }))
    );
    assert_eq!(next(&mut s).await, None, "an OK end, not an error");
    assert_eq!(
        tokio::task::spawn_blocking(move || server.wait())
            .await
            .unwrap()
            .code(),
        Some(0)
    );
}
