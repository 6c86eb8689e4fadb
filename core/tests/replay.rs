//! Replay: the same recorded `(time, command)` sequence fed to two fresh cores yields identical
//! answers and identical events, which is what lets a room's log be replayed on restart or on
//! another node.

use std::time::Duration;

use roomcast_core::{
    Command, Config, Core, Cursor, Error, Event, Limits, ListenerId, Rate, Reply, Resume, Seq,
    Submit, Timestamp,
};

/// A small deterministic generator (xorshift64), so the recording is the same on every run.
struct Script(u64);

impl Script {
    fn next(&mut self, below: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % below
    }

    fn pick<'a>(&mut self, options: &[&'a str]) -> &'a str {
        options[self.next(options.len() as u64) as usize]
    }
}

fn record(steps: usize) -> Vec<(Timestamp, Command)> {
    let mut s = Script(0x5eed_cafe_f00d_d00d);
    let users = ["ada", "bob", "cy", "Zoë"];
    let rooms = ["lobby", "dev", "ops", "random"];
    let texts = [
        "hi",
        "hello 👋",
        "",
        "<script>alert(1)</script>",
        "line\r\nbreak",
        "bell\u{7}",
    ];
    let mut now = 1_700_000_000_000;
    let mut commands = Vec::with_capacity(steps);
    let mut opens = 1;
    for _ in 0..steps {
        now += s.next(100);
        let user = s.pick(&users).to_owned();
        let room = s.pick(&rooms).to_owned();
        let command = match s.next(10) {
            0 => Command::CreateRoom { user, room },
            1 if s.next(8) == 0 => Command::DeleteRoom { user, room },
            2 => Command::OpenListener {
                user,
                room,
                resume: if s.next(2) == 0 {
                    Resume::Live
                } else {
                    Resume::After(Seq(s.next(40)))
                },
            },
            // Listener ids count up from 1, so this bounds the ones that can exist.
            3 => Command::CloseListener {
                listener: ListenerId(s.next(opens) + 1),
            },
            4 => Command::History {
                user,
                room,
                cursor: Cursor::After(Seq(s.next(30))),
                limit: 20,
            },
            5 => Command::Presence { user, room },
            6 => Command::ListRooms {
                user,
                after: None,
                limit: 10,
            },
            _ => Command::Submit(Submit {
                user,
                room,
                text: s.pick(&texts).to_owned(),
                idempotency_key: (s.next(3) == 0).then(|| format!("key-{}", s.next(5))),
            }),
        };
        opens += u64::from(matches!(command, Command::OpenListener { .. }));
        commands.push((Timestamp::from_unix_millis(now), command));
    }
    commands
}

/// Everything a core said while running the recording, timeouts included.
fn play(recording: &[(Timestamp, Command)]) -> (Vec<Result<Reply, Error>>, Vec<Event>) {
    let mut core = Core::new(Config {
        history_len: 25,
        room_idle_expiry: Some(Duration::from_secs(5)),
        limits: Limits {
            submit_rate: Some(Rate {
                burst: 2,
                per_second: 1,
            }),
            ..Limits::default()
        },
        ..Config::default()
    });
    let (mut replies, mut events) = (Vec::new(), Vec::new());
    for (now, command) in recording {
        while core.poll_timeout().is_some_and(|at| at <= *now) {
            core.handle_timeout(*now);
            events.extend(std::iter::from_fn(|| core.poll_event()));
        }
        replies.push(core.handle(*now, command.clone()));
        events.extend(std::iter::from_fn(|| core.poll_event()));
    }
    (replies, events)
}

#[test]
fn a_recording_replays_identically() {
    let recording = record(20_000);
    let (replies_a, events_a) = play(&recording);
    let (replies_b, events_b) = play(&recording);
    assert_eq!(replies_a, replies_b);
    assert_eq!(events_a, events_b);

    // The recording is rich enough to mean something: every kind of outcome appears.
    let count = |f: &dyn Fn(&Event) -> bool| events_a.iter().filter(|e| f(e)).count();
    assert!(count(&|e| matches!(e, Event::Published(_))) > 1_000);
    assert!(count(&|e| matches!(e, Event::Joined { .. })) > 10);
    assert!(count(&|e| matches!(e, Event::Left { .. })) > 10);
    assert!(count(&|e| matches!(e, Event::RoomClosed { .. })) > 10);
    let refused = |code: &str| {
        replies_a
            .iter()
            .filter(|r| matches!(r, Err(e) if e.code() == code))
            .count()
    };
    for code in [
        "room-not-found",
        "rate-limited",
        "empty-message",
        "control-character",
        "resume-ahead",
    ] {
        assert!(refused(code) > 0, "the recording exercises {code}");
    }
}
