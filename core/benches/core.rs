//! Core benchmarks: submit throughput into a room with 10,000 listeners, and the cost of
//! resuming a listener from various points in a full history ring.
//!
//! Run with `cargo bench -p roomcast-core --bench core`.

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use roomcast_core::{
    CloseListener, Config, Core, CreateRoom, Limits, OpenListener, Resume, Seq, Submit, Timestamp,
};

fn core_with_listeners(listeners: usize) -> Core {
    let config = Config {
        limits: Limits {
            submit_rate: None,
            max_listeners_per_room: listeners + 1,
            ..Limits::default()
        },
        ..Config::default()
    };
    let mut core = Core::new(config);
    let now = Timestamp::from_unix_millis(1);
    let create = CreateRoom {
        user: "bench".into(),
        room: "lobby".into(),
        private: false,
    };
    core.ask(now, create).expect("valid room");
    for i in 0..listeners {
        core.ask(now, open(&format!("user{i}"), Resume::Live))
            .expect("under the limit");
    }
    while core.poll_event().is_some() {}
    core
}

fn open(user: &str, resume: Resume) -> OpenListener {
    OpenListener {
        user: user.into(),
        room: "lobby".into(),
        resume,
        create_if_missing: false,
        replacing: None,
    }
}

fn submit(c: &mut Criterion) {
    let mut group = c.benchmark_group("submit");
    group.throughput(Throughput::Elements(1));
    for listeners in [0, 10_000] {
        let mut core = core_with_listeners(listeners);
        let mut t = 1;
        group.bench_with_input(
            BenchmarkId::new("listeners", listeners),
            &listeners,
            |b, _| {
                b.iter(|| {
                    t += 1;
                    let submit = Submit {
                        user: "poster".into(),
                        room: "lobby".into(),
                        text: "hello, room: a message of typical chat length 👋".into(),
                        idempotency_key: None,
                        create_if_missing: false,
                        kind: Default::default(),
                        recalled: None,
                    };
                    let done = core
                        .ask(Timestamp::from_unix_millis(t), submit)
                        .expect("accepted");
                    black_box(done);
                    while let Some(event) = core.poll_event() {
                        black_box(event);
                    }
                });
            },
        );
    }
    group.finish();
}

fn resume(c: &mut Criterion) {
    let mut group = c.benchmark_group("resume");
    let mut core = core_with_listeners(0);
    let now = Timestamp::from_unix_millis(2);
    for i in 0..2_000 {
        let submit = Submit {
            user: "poster".into(),
            room: "lobby".into(),
            text: format!("message {i}"),
            idempotency_key: None,
            create_if_missing: false,
            kind: Default::default(),
            recalled: None,
        };
        core.ask(now, submit).expect("accepted");
    }
    while core.poll_event().is_some() {}
    // The ring holds 1001..=2000. Resume with nothing missed, 100 missed, 1,000 missed, and from too long ago (a gap).
    for (name, after) in [
        ("0_missed", 2_000),
        ("100_missed", 1_900),
        ("1000_missed", 1_000),
        ("gap", 10),
    ] {
        group.bench_function(name, |b| {
            b.iter(|| {
                let opened = core
                    .ask(now, open("reader", Resume::After(Seq(after))))
                    .expect("open");
                let listener = black_box(opened).listener;
                let _ = core.ask(now, CloseListener { listener });
                while let Some(event) = core.poll_event() {
                    black_box(event);
                }
            });
        });
    }
    group.finish();
}

criterion_group!(benches, submit, resume);
criterion_main!(benches);
