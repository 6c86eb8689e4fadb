//! No client can exhaust the server: connections are capped (and over-limit clients answered at
//! once), the listen backlog takes a reconnect storm, and one user cannot fill a room with
//! their own listeners or open unbounded streams on one gRPC connection.

use std::net::TcpStream;
use std::time::{Duration, Instant};

use roomcast_e2e::grpc::{client, guest, with_token};
use roomcast_e2e::raw::{RawConn, get_request};
use roomcast_e2e::{PATIENCE, Server, SseStream, create_room, guest_token};
use roomcast_proto::v1 as pb;
use tonic::Code;

/// The backlog of the socket listening on `port`, as `ss` reports it (Send-Q of a listener).
fn listen_backlog(port: u16) -> u32 {
    let out = std::process::Command::new("ss")
        .args(["-ltnH", &format!("sport = :{port}")])
        .output()
        .expect("ss (iproute2) runs");
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .next()
        .unwrap_or_else(|| panic!("no listener on {port}: {text}"));
    line.split_whitespace()
        .nth(2)
        .and_then(|q| q.parse().ok())
        .unwrap_or_else(|| panic!("no Send-Q in {line:?}"))
}

/// The process's soft and hard open-file limits, from `/proc`.
fn open_file_limits(pid: u32) -> (u64, u64) {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    let mut numbers = line
        .split_whitespace()
        .filter_map(|w| w.parse::<u64>().ok());
    (numbers.next().unwrap(), numbers.next().unwrap())
}

#[test]
fn over_the_connection_limit_clients_are_answered_at_once_then_served_again() {
    let server = Server::smol(&["--max-connections=40"]);
    // Thirty-six clients, each served once and then holding its connection open: all one
    // address may take, the last tenth being kept for addresses that hold few.
    let held: Vec<RawConn> = (0..36)
        .map(|_| {
            let mut conn = RawConn::connect(server.addr);
            conn.send(get_request("/healthz").as_bytes()).unwrap();
            assert_eq!(conn.response().unwrap().status(), 200);
            conn
        })
        .collect();
    // Over-limit clients that send nothing do not use up the answers: after eighty of them,
    // twenty more are still told at once to come back, with a problem that says why.
    let silent: Vec<TcpStream> = (0..80)
        .map(|_| TcpStream::connect(server.addr).unwrap())
        .collect();
    for _ in 0..20 {
        let mut conn = RawConn::connect(server.addr);
        conn.send(get_request("/healthz").as_bytes()).unwrap();
        let res = conn.response().expect("an answer, not a hang");
        res.problem(503, "too-many-connections");
        assert!(res.header("retry-after").is_some(), "{res:?}");
    }
    // One warning for the burst, not one per client.
    let warnings = server.log_lines_containing("connection limit");
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    // When the held ones leave, newcomers are served again.
    drop((held, silent));
    let deadline = Instant::now() + PATIENCE;
    loop {
        let mut conn = RawConn::connect(server.addr);
        conn.send(get_request("/healthz").as_bytes()).unwrap();
        if conn.response().unwrap().status() == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "never served again");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn the_default_connection_cap_sits_below_a_raised_file_limit() {
    let server = Server::smol(&[]);
    let (soft, hard) = open_file_limits(server.pid());
    assert_eq!(soft, hard, "the soft limit is raised to the hard one");
    let line = server.wait_for_log("connections at most");
    let cap: u64 = line
        .split("connections at most ")
        .nth(1)
        .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no cap in {line:?}"));
    assert!(cap > 0 && cap < soft, "cap {cap} with {soft} files");
}

#[tokio::test]
async fn grpc_connections_over_the_limit_are_closed_at_once() {
    let server = Server::tokio(&["--max-connections=3"]);
    let mut held = Vec::new();
    for _ in 0..3 {
        let mut c = client(&server).await;
        guest(&mut c, &format!("held{}", held.len())).await;
        held.push(c);
    }
    let started = Instant::now();
    let over = tokio::time::timeout(PATIENCE, async {
        let endpoint = tonic::transport::Endpoint::from_shared(server.url("")).unwrap();
        match endpoint.connect().await {
            Err(e) => Err(e.to_string()),
            Ok(channel) => {
                let mut c = pb::chat_client::ChatClient::new(channel);
                c.guest(pb::GuestRequest {
                    nickname: "over".into(),
                })
                .await
                .map(|_| ())
                .map_err(|s| format!("{:?}", s.code()))
            }
        }
    })
    .await
    .expect("refused promptly, not left hanging");
    assert!(over.is_err(), "the fourth connection was served");
    assert!(started.elapsed() < PATIENCE);
    drop(held);
    let deadline = Instant::now() + PATIENCE;
    loop {
        let ok = async {
            let mut c = pb::chat_client::ChatClient::connect(server.url(""))
                .await
                .ok()?;
            c.guest(pb::GuestRequest {
                nickname: "later".into(),
            })
            .await
            .ok()
        };
        if ok.await.is_some() {
            break;
        }
        assert!(Instant::now() < deadline, "never served again");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[test]
fn both_hosts_listen_with_a_deep_backlog() {
    let smol = Server::smol(&[]);
    assert!(listen_backlog(smol.addr.port()) >= 4096);
    let tokio = Server::tokio(&[]);
    assert!(listen_backlog(tokio.addr.port()) >= 4096);
    let tuned = Server::smol(&["--listen-backlog=256"]);
    assert_eq!(listen_backlog(tuned.addr.port()), 256);
}

#[test]
fn one_user_cannot_fill_a_room_with_their_own_listeners() {
    let server = Server::smol(&[]);
    create_room(&server, "lobby");
    let token = guest_token(server.addr, "hog").unwrap();
    let mut open = Vec::new();
    let refused = loop {
        match SseStream::open_with_token(server.addr, "/api/v1/rooms/lobby/events", &token) {
            Ok(stream) => open.push(stream),
            Err(refused) => break refused,
        }
        assert!(open.len() <= 64, "no cap on one user's listeners");
    };
    assert_eq!(refused.status, 429, "{refused:?}");
    assert_eq!(refused.body["code"], "too-many-user-listeners");
    // Someone else still gets in.
    let other = guest_token(server.addr, "other").unwrap();
    assert!(SseStream::open_with_token(server.addr, "/api/v1/rooms/lobby/events", &other).is_ok());
    // And the hog gets a place back once one closes.
    open.pop();
    let deadline = Instant::now() + PATIENCE;
    while SseStream::open_with_token(server.addr, "/api/v1/rooms/lobby/events", &token).is_err() {
        assert!(
            Instant::now() < deadline,
            "the closed listener's place never came back"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test]
async fn one_grpc_connection_holds_a_bounded_number_of_streams() {
    let server = Server::tokio(&[]);
    let mut c = client(&server).await;
    let token = guest(&mut c, "hog").await;
    // One room: the per-user cap answers.
    c.create_room(with_token(
        &token,
        pb::CreateRoomRequest {
            room: "lobby".into(),
            private: false,
        },
    ))
    .await
    .unwrap();
    let mut streams = Vec::new();
    let refused = loop {
        let mut c = c.clone();
        let opened = tokio::time::timeout(
            PATIENCE,
            c.stream(with_token(
                &token,
                pb::StreamRequest {
                    room: "lobby".into(),
                    resume_after: None,
                },
            )),
        )
        .await
        .expect("answered");
        match opened {
            Ok(stream) => streams.push(stream.into_inner()),
            Err(status) => break status,
        }
        assert!(streams.len() <= 64, "no cap on one user's listeners");
    };
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    assert!(refused.message().contains("too-many-user-listeners"));
    drop(streams);

    // Many rooms on one connection: at most eight streams are open at once.
    let server = Server::tokio(&["--max-streams-per-connection=8"]);
    let c = client(&server).await;
    let mut c2 = c.clone();
    let token = guest(&mut c2, "roamer").await;
    for n in 0..12 {
        c2.create_room(with_token(
            &token,
            pb::CreateRoomRequest {
                room: format!("r{n}"),
                private: false,
            },
        ))
        .await
        .unwrap();
    }
    let mut live = Vec::new();
    for n in 0..8 {
        let mut c = c.clone();
        let stream = c
            .stream(with_token(
                &token,
                pb::StreamRequest {
                    room: format!("r{n}"),
                    resume_after: None,
                },
            ))
            .await
            .unwrap()
            .into_inner();
        live.push(stream);
    }
    let mut c9 = c.clone();
    let ninth = tokio::time::timeout(
        Duration::from_secs(1),
        c9.stream(with_token(
            &token,
            pb::StreamRequest {
                room: "r8".into(),
                resume_after: None,
            },
        )),
    )
    .await;
    assert!(
        ninth.is_err(),
        "a ninth stream opened on a connection capped at eight"
    );
    drop(live);
}

#[test]
fn a_refused_client_does_not_pile_up_sockets() {
    // Over the limit, the server answers and closes: it does not keep the refused sockets.
    let server = Server::smol(&["--max-connections=5"]);
    let _held: Vec<TcpStream> = (0..5)
        .map(|_| {
            let mut conn = RawConn::connect(server.addr);
            conn.send(get_request("/healthz").as_bytes()).unwrap();
            conn.response().unwrap();
            conn.stream().try_clone().unwrap()
        })
        .collect();
    let fds = || {
        std::fs::read_dir(format!("/proc/{}/fd", server.pid()))
            .unwrap()
            .count()
    };
    let before = fds();
    for _ in 0..200 {
        let mut conn = RawConn::connect(server.addr);
        conn.send(get_request("/healthz").as_bytes()).unwrap();
        let _ = conn.response();
    }
    let deadline = Instant::now() + PATIENCE;
    while fds() > before + 8 {
        assert!(
            Instant::now() < deadline,
            "{} descriptors left open",
            fds() - before
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
