//! Replay: a recorded sequence of inputs fed to a fresh core yields the recorded answers and
//! events, step by step ([`roomcast_core::record`], the same tooling that replays a server's
//! `--record-inputs` file), which is what lets production traffic become a test.

use std::time::Duration;

use roomcast_core::record::{self, Header, Input, Replay, Step};
use roomcast_core::{
    ChangeMember, CloseListener, Command, Config, Core, CreateRoom, Cursor, DeleteRoom, History,
    Limits, ListRooms, ListenerId, MemberChange, OpenDirect, OpenListener, Rate, Resume, Seq,
    Submit, Timestamp, ViewRoom,
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
        let command: Command = match s.next(12) {
            0 => CreateRoom {
                user,
                room,
                private: s.next(4) == 0,
            }
            .into(),
            1 if s.next(8) == 0 => DeleteRoom { user, room }.into(),
            2 => OpenListener {
                user,
                room,
                resume: if s.next(2) == 0 {
                    Resume::Live
                } else {
                    Resume::After(Seq(s.next(40)))
                },
                create_if_missing: s.next(4) == 0,
                // Listener ids count up from 1, so this bounds the ones that can exist.
                replacing: (s.next(3) == 0).then(|| ListenerId(s.next(opens) + 1)),
            }
            .into(),
            3 => CloseListener {
                listener: ListenerId(s.next(opens) + 1),
            }
            .into(),
            4 => History {
                user,
                room,
                cursor: Cursor::After(Seq(s.next(30))),
                limit: (s.next(2) == 0).then_some(20),
            }
            .into(),
            5 => ViewRoom { user, room }.into(),
            6 => ListRooms {
                user,
                after: None,
                limit: Some(10),
            }
            .into(),
            7 => ChangeMember {
                user,
                room,
                member: s.pick(&users).to_owned(),
                change: if s.next(2) == 0 {
                    MemberChange::Add
                } else {
                    MemberChange::Remove
                },
            }
            .into(),
            8 if s.next(4) == 0 => OpenDirect {
                user,
                other: s.pick(&users).to_owned(),
            }
            .into(),
            _ => Submit {
                user,
                room,
                text: s.pick(&texts).to_owned(),
                idempotency_key: (s.next(3) == 0).then(|| format!("key-{}", s.next(5))),
                create_if_missing: s.next(10) == 0,
                kind: Default::default(),
                recalled: None,
            }
            .into(),
        };
        opens += u64::from(matches!(command, Command::OpenListener(_)));
        commands.push((Timestamp::from_unix_millis(now), command));
    }
    commands
}

fn config() -> Config {
    Config {
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
    }
}

/// Runs the commands on a core as a host would (timeouts when due) and records every step.
fn play(commands: &[(Timestamp, Command)]) -> Vec<Step> {
    let mut core = Core::new(config());
    let mut steps = Vec::new();
    let mut run = |core: &mut Core, now, input: Input| {
        let outputs = record::run(core, now, input.clone());
        steps.push(Step {
            now,
            input,
            outputs,
        });
    };
    for (now, command) in commands {
        while core.poll_timeout().is_some_and(|at| at <= *now) {
            run(&mut core, *now, Input::Timeout);
        }
        run(&mut core, *now, Input::Command(command.clone()));
    }
    steps
}

fn replay(steps: Vec<Step>) -> Result<usize, Box<record::Divergence>> {
    let mut replay = Replay::new(Header { config: config() });
    for step in steps {
        replay.step(step)?;
    }
    Ok(replay.steps())
}

#[test]
fn a_recording_replays_identically() {
    let steps = play(&record(20_000));
    // Through the file format a server writes, and back.
    let text: Vec<String> = steps
        .iter()
        .map(|s| serde_json::to_string(s).unwrap())
        .collect();
    let read: Vec<Step> = text
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(read, steps);
    assert!(replay(read).unwrap() >= 20_000);

    // The recording is rich enough to mean something: every kind of outcome appears.
    let outputs: Vec<&str> = steps
        .iter()
        .flat_map(|s| s.outputs.iter().map(String::as_str))
        .collect();
    let count = |prefix: &str| outputs.iter().filter(|o| o.starts_with(prefix)).count();
    assert!(count("Published(") > 1_000);
    assert!(count("Joined {") > 10);
    assert!(count("Left {") > 10);
    assert!(count("RoomClosed {") > 10);
    assert!(
        count("ListenerClosed {") > 0,
        "members are removed while listening"
    );
    assert!(count("MemberAdded {") > 10);
    let refused = |code: &str| {
        outputs
            .iter()
            .filter(|o| o.starts_with("Err(") && o.contains(code))
            .count()
    };
    for variant in [
        "RoomNotFound",
        "RateLimited",
        "Message(Empty)",
        "ControlCharacter",
        "ResumeAhead",
        "PermissionDenied",
        "Membership(",
    ] {
        assert!(refused(variant) > 0, "the recording exercises {variant}");
    }
}

#[test]
fn a_replay_that_differs_names_the_step() {
    let mut steps = play(&record(200));
    let at = steps
        .iter()
        .position(|s| s.outputs.iter().any(|o| o.starts_with("Published(")))
        .unwrap();
    steps[at].outputs.last_mut().unwrap().push('!');
    let divergence = replay(steps).unwrap_err();
    assert_eq!(divergence.step, at);
}
