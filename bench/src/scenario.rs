//! The scenarios. Fan-out ones share one engine: listeners stay connected while an open-loop
//! publisher runs steps at given rates; each message carries the time it was due, so a slow
//! server cannot hide queueing delay, and every listener checks that sequence numbers arrive
//! in order with no gap it was not told of.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, ensure};
use hdrhistogram::Histogram;
use serde_json::{Value, json};
use tokio::task::JoinHandle;

use crate::clients::{Kind, Listener, Publisher, with_retries};
pub use crate::outcome::Outcome;
use crate::target::{Target, UNLOAD_AFTER_SECONDS, established, rss_kib};
use crate::wire::Seen;

/// A scenario (issue 7's, and G1 of issue 25's).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Scenario {
    /// One room, 1,000 listeners: the highest rate with no drops and p99 under 20 ms.
    F1,
    /// One room, 1,000 listeners at 100,000 deliveries/s: p50, p99, p99.9.
    F2,
    /// One room, 10,000 listeners: the highest rate with no drops and p99 under 20 ms.
    F3,
    /// 1,000 rooms of 10 listeners: the highest rate with no drops and p99 under 20 ms.
    R1,
    /// Publish ingress: concurrent submitters, closed loop, for acknowledgements per second.
    P1,
    /// Memory per idle connection at 10,000 connections.
    M2,
    /// F2 with one listener that stops reading: others' p99, server memory, when it is cut.
    S1,
    /// F2 with listeners connecting and disconnecting all the while.
    C1,
    /// A reconnect storm: 10,000 listeners drop at once and reconnect at once, as after a
    /// restart; the time until every one is streaming again.
    C2,
    /// Memory follows activity: 100,000 rooms with history, idle; the server's memory, and the
    /// latency of the first read of a cold room (its history comes from disk).
    M3,
    /// A reaction storm: 1,000 users react to one message within one second while 1,000
    /// listen: every reaction acknowledged, and delivered to every listener in order.
    X1,
    /// One guest at every limit at once (rooms, uploads, read markers, streams, connections,
    /// reactions): the server's memory, disk, connections, listeners and Redis keys before, at
    /// the limits and after the guest is gone (see `strangers.rs`).
    G1,
}

impl Scenario {
    /// Its name in reports.
    pub fn name(self) -> &'static str {
        match self {
            Scenario::F1 => "F1",
            Scenario::F2 => "F2",
            Scenario::F3 => "F3",
            Scenario::R1 => "R1",
            Scenario::P1 => "P1",
            Scenario::M2 => "M2",
            Scenario::S1 => "S1",
            Scenario::C1 => "C1",
            Scenario::C2 => "C2",
            Scenario::M3 => "M3",
            Scenario::X1 => "X1",
            Scenario::G1 => "G1",
        }
    }

    /// Whether it applies to `kind` (the peer and the floor only take part where compared).
    pub fn applies_to(self, kind: Kind) -> bool {
        match kind {
            // M3 reads history over REST; G1 is a stranger of the web server.
            Kind::Sse | Kind::Ws => true,
            Kind::Grpc => !matches!(self, Scenario::M3 | Scenario::G1),
            // Only roomcast has reactions and limits per user.
            Kind::Socketio | Kind::Floor if matches!(self, Scenario::X1 | Scenario::G1) => false,
            Kind::Socketio => matches!(self, Scenario::F1 | Scenario::F2 | Scenario::M2),
            Kind::Floor => matches!(self, Scenario::F1 | Scenario::F2 | Scenario::F3),
        }
    }
}

/// How big and how long.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// Every scenario briefly, at small sizes (the CI smoke run).
    pub quick: bool,
    /// Listeners (per room for R1), or connections for M2, or submitters for P1.
    pub listeners: Option<usize>,
    /// Messages per second (the fixed rate, or the ramp's first step).
    pub rate: Option<u64>,
    /// Seconds per step.
    pub seconds: Option<f64>,
    /// Bytes of padding per message text.
    pub size: usize,
}

/// Runs `scenario` against `target`.
pub async fn run(scenario: Scenario, target: &Target, s: Settings) -> anyhow::Result<Outcome> {
    let q = s.quick;
    let pick = |full: usize, quick: usize| s.listeners.unwrap_or(if q { quick } else { full });
    let rate = |full: u64, quick: u64| s.rate.unwrap_or(if q { quick } else { full });
    let seconds = s.seconds.unwrap_or(if q { 1.0 } else { 5.0 });
    // The searches: shape, first rate, most steps.
    let search = match scenario {
        Scenario::F1 => Some((Shape::new(1, pick(1000, 50)), rate(100, 20), 8)),
        Scenario::F3 => Some((Shape::new(1, pick(10_000, 200)), rate(20, 10), 6)),
        Scenario::R1 => Some((
            Shape::new(if q { 20 } else { 1000 }, pick(10, 3)),
            rate(1000, 50),
            5,
        )),
        Scenario::F2
        | Scenario::P1
        | Scenario::M2
        | Scenario::S1
        | Scenario::C1
        | Scenario::C2
        | Scenario::M3
        | Scenario::X1
        | Scenario::G1 => None,
    };
    if let Some((shape, first_rate, steps)) = search {
        let steps = if q { 1 } else { steps };
        return ramp(scenario, target, shape, first_rate, seconds, steps, s).await;
    }
    match scenario {
        Scenario::F2 => {
            let shape = Shape::new(1, pick(1000, 50));
            let seconds = s.seconds.unwrap_or(if q { 1.0 } else { 10.0 });
            fixed(scenario, target, shape, rate(100, 20), seconds, s).await
        }
        Scenario::S1 => {
            let shape = Shape::new(1, pick(1000, 50));
            let seconds = s.seconds.unwrap_or(if q { 1.0 } else { 10.0 });
            stalled(target, shape, rate(100, 20), seconds, s).await
        }
        Scenario::C1 => {
            let shape = Shape::new(1, pick(1000, 50));
            let seconds = s.seconds.unwrap_or(if q { 1.0 } else { 10.0 });
            churn(target, shape, rate(100, 20), seconds, s).await
        }
        Scenario::P1 => ingress(target, pick(64, 8), seconds.max(1.0), s).await,
        Scenario::M2 => idle(target, pick(10_000, 200), if q { 10 } else { 100 }).await,
        Scenario::C2 => storm(target, pick(10_000, 200), if q { 10 } else { 100 }).await,
        Scenario::M3 => rooms(target, pick(100_000, 200), 5, if q { 50 } else { 500 }).await,
        Scenario::X1 => reactions(target, pick(1000, 50), seconds.min(1.0)).await,
        Scenario::G1 => crate::strangers::guest_at_every_limit(target).await,
        Scenario::F1 | Scenario::F3 | Scenario::R1 => unreachable!("searched above"),
    }
}

fn now_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 120_000_000, 3).expect("valid bounds")
}

/// Most doublings tried when measuring capacity.
const CAPACITY_STEPS: usize = 4;

/// Rooms and listeners per room.
#[derive(Debug, Clone, Copy)]
struct Shape {
    rooms: usize,
    per_room: usize,
}

impl Shape {
    fn new(rooms: usize, per_room: usize) -> Shape {
        Shape { rooms, per_room }
    }

    fn listeners(self) -> usize {
        self.rooms * self.per_room
    }

    fn describe(self) -> String {
        if self.rooms == 1 {
            format!("1 room × {}", self.per_room)
        } else {
            format!("{} rooms × {}", self.rooms, self.per_room)
        }
    }
}

/// What the listeners saw, shared by their reader tasks.
struct Probe {
    delivered: AtomicU64,
    gaps: AtomicU64,
    disorder: AtomicU64,
    ended: AtomicU64,
    /// Latency histograms, sharded so readers rarely meet on a lock.
    shards: Vec<Mutex<Histogram<u64>>>,
}

impl Probe {
    fn new() -> Arc<Probe> {
        Arc::new(Probe {
            delivered: AtomicU64::new(0),
            gaps: AtomicU64::new(0),
            disorder: AtomicU64::new(0),
            ended: AtomicU64::new(0),
            shards: (0..32).map(|_| Mutex::new(histogram())).collect(),
        })
    }

    fn reset(&self) {
        for counter in [&self.delivered, &self.gaps, &self.disorder] {
            counter.store(0, Ordering::SeqCst);
        }
        for shard in &self.shards {
            shard.lock().unwrap_or_else(PoisonError::into_inner).reset();
        }
    }

    fn latencies(&self) -> Histogram<u64> {
        let mut all = histogram();
        for shard in &self.shards {
            let _ = all.add(&*shard.lock().unwrap_or_else(PoisonError::into_inner));
        }
        all
    }
}

/// Reads `listener` until it ends, tallying into `probe`.
fn spawn_reader(mut listener: Listener, probe: Arc<Probe>, shard: usize) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut expected: Option<u64> = None;
        let mut due = Vec::with_capacity(256);
        loop {
            let (mut delivered, mut gaps, mut disorder) = (0u64, 0u64, 0u64);
            let mut closed = false;
            let open = listener
                .read(|seen| match seen {
                    Seen::Message { seq, due_micros } => {
                        if expected.is_some_and(|e| e != seq) {
                            disorder += 1;
                        }
                        expected = Some(seq + 1);
                        delivered += 1;
                        due.extend(due_micros);
                    }
                    Seen::Gap { first_held } => {
                        gaps += 1;
                        expected = Some(first_held);
                    }
                    Seen::Closed => closed = true,
                    Seen::Other => {}
                })
                .await;
            if !due.is_empty() {
                let now = now_micros();
                let mut hist = probe.shards[shard % probe.shards.len()]
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner);
                for d in due.drain(..) {
                    let _ = hist.record(now.saturating_sub(d).max(1));
                }
            }
            probe.delivered.fetch_add(delivered, Ordering::Relaxed);
            probe.gaps.fetch_add(gaps, Ordering::Relaxed);
            probe.disorder.fetch_add(disorder, Ordering::Relaxed);
            if !open || closed {
                probe.ended.fetch_add(1, Ordering::Relaxed);
                return;
            }
        }
    })
}

/// A room name no earlier run used.
fn room_name(prefix: &str, i: usize) -> String {
    format!("{prefix}{}-{i}", now_micros() % 100_000_000)
}

/// Opens `count` listeners spread over `rooms` (named `{prefix}{i}`), 64 at a time.
async fn open_many(
    target: &Target,
    rooms: &[String],
    count: usize,
    prefix: &str,
) -> anyhow::Result<Vec<Listener>> {
    let (kind, addr) = (target.kind, target.addr);
    let mut listeners = Vec::with_capacity(count);
    let mut opening = tokio::task::JoinSet::new();
    for i in 0..count {
        let (room, user) = (rooms[i % rooms.len()].clone(), format!("{prefix}{i}"));
        opening.spawn(async move {
            with_retries(|| async { Listener::open(kind, addr, &room, &user, false).await }).await
        });
        if opening.len() >= 64 {
            listeners.push(opening.join_next().await.context("a listener")???);
        }
    }
    while let Some(listener) = opening.join_next().await {
        listeners.push(listener??);
    }
    Ok(listeners)
}

/// Listeners connected, reading into one probe, with the publishers to drive them.
struct Audience {
    rooms: Arc<Vec<String>>,
    shape: Shape,
    probe: Arc<Probe>,
    readers: Vec<JoinHandle<()>>,
    publishers: Vec<Publisher>,
    setup_seconds: f64,
}

impl Audience {
    async fn gather(target: &Target, shape: Shape, prefix: &str) -> anyhow::Result<Audience> {
        let (kind, addr) = (target.kind, target.publish_addr);
        let started = Instant::now();
        let rooms: Vec<String> = (0..shape.rooms).map(|i| room_name(prefix, i)).collect();
        // Publishers: enough connections that a closed-loop acknowledgement per message keeps up.
        let count = (shape.rooms).clamp(8, 32);
        let mut publishers = Vec::with_capacity(count);
        for p in 0..count {
            publishers.push(Publisher::connect(kind, addr, &format!("pub{p}")).await?);
        }
        for room in &rooms {
            publishers[0].create_room(room).await?;
        }
        let probe = Probe::new();
        let readers = open_many(target, &rooms, shape.listeners(), "l")
            .await?
            .into_iter()
            .enumerate()
            .map(|(i, listener)| spawn_reader(listener, Arc::clone(&probe), i))
            .collect();
        Ok(Audience {
            rooms: Arc::new(rooms),
            shape,
            probe,
            readers,
            publishers,
            setup_seconds: started.elapsed().as_secs_f64(),
        })
    }

    /// Publishes `rate` messages a second for `seconds` (open loop, round robin over rooms)
    /// and waits a bounded while for them to be delivered.
    async fn step(
        &mut self,
        target: &Target,
        rate: u64,
        seconds: f64,
        size: usize,
    ) -> anyhow::Result<Step> {
        ensure!(
            rate > 0 && rate <= 1_000_000 && seconds <= 600.0,
            "bounded runs only"
        );
        self.probe.reset();
        let cpu_before = target.cpu_seconds();
        let total = (rate as f64 * seconds).round().max(1.0) as u64;
        let padding = Arc::new("x".repeat(size));
        let start = Instant::now() + Duration::from_millis(20);
        let start_micros = now_micros() + 20_000;
        let count = self.publishers.len() as u64;
        let mut tasks = Vec::new();
        for (p, mut publisher) in self.publishers.drain(..).enumerate() {
            let (rooms, padding) = (Arc::clone(&self.rooms), Arc::clone(&padding));
            tasks.push(tokio::spawn(async move {
                let (mut ok, mut failed) = (0u64, 0u64);
                let mut i = p as u64;
                while i < total {
                    let due = Duration::from_micros(i * 1_000_000 / rate);
                    tokio::time::sleep_until((start + due).into()).await;
                    let text = format!("t={} {padding}", start_micros + due.as_micros() as u64);
                    let room = &rooms[i as usize % rooms.len()];
                    if publisher.post(room, &text).await {
                        ok += 1;
                    } else {
                        failed += 1;
                    }
                    i += count;
                }
                (publisher, ok, failed)
            }));
        }
        let (mut published, mut failed) = (0, 0);
        for task in tasks {
            let (publisher, ok, bad) = task.await?;
            self.publishers.push(publisher);
            published += ok;
            failed += bad;
        }
        let publish_seconds = start.elapsed().as_secs_f64();
        let expected = published * self.shape.per_room as u64;
        let drain = Instant::now() + Duration::from_secs(5);
        while self.probe.delivered.load(Ordering::SeqCst) < expected && Instant::now() < drain {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let latencies = self.probe.latencies();
        let server_cpu_seconds = cpu_before
            .zip(target.cpu_seconds())
            .map(|(before, after)| after - before);
        Ok(Step {
            server_cpu_seconds,
            rate,
            published,
            failed,
            expected,
            delivered: self.probe.delivered.load(Ordering::SeqCst),
            gaps: self.probe.gaps.load(Ordering::SeqCst),
            disorder: self.probe.disorder.load(Ordering::SeqCst),
            seconds: publish_seconds,
            latencies,
        })
    }

    fn end(self) {
        for reader in self.readers {
            reader.abort();
        }
    }
}

/// One step's tally.
struct Step {
    /// CPU the server used during the step, where its process is known.
    server_cpu_seconds: Option<f64>,
    rate: u64,
    published: u64,
    failed: u64,
    expected: u64,
    delivered: u64,
    gaps: u64,
    disorder: u64,
    seconds: f64,
    latencies: Histogram<u64>,
}

impl Step {
    fn ms(&self, q: f64) -> f64 {
        self.latencies.value_at_quantile(q) as f64 / 1000.0
    }

    /// Everything published was delivered to everyone, in order, with no gap.
    fn complete(&self) -> bool {
        self.failed == 0 && self.delivered == self.expected && self.gaps == 0 && self.disorder == 0
    }

    /// Complete, and p99 under 20 ms: the F1 criterion.
    fn passes(&self) -> bool {
        self.complete() && self.ms(0.99) <= 20.0
    }

    /// The server's CPU time per delivery, in microseconds: what a delivery costs it,
    /// whatever the generator could take.
    fn cpu_us_per_delivery(&self) -> Option<f64> {
        self.server_cpu_seconds
            .map(|cpu| cpu * 1e6 / self.delivered.max(1) as f64)
    }

    fn deliveries_per_second(&self) -> f64 {
        self.delivered as f64 / self.seconds.max(1e-9)
    }

    fn json(&self) -> Value {
        json!({
            "rate": self.rate,
            "published": self.published,
            "publish_failures": self.failed,
            "expected_deliveries": self.expected,
            "deliveries": self.delivered,
            "gaps": self.gaps,
            "out_of_order": self.disorder,
            "seconds": self.seconds,
            "deliveries_per_second": self.deliveries_per_second(),
            "server_cpu_seconds": self.server_cpu_seconds,
            "server_cpu_us_per_delivery": self.cpu_us_per_delivery(),
            "latency_ms": {
                "p50": self.ms(0.5), "p99": self.ms(0.99), "p999": self.ms(0.999),
                "max": self.latencies.max() as f64 / 1000.0,
            },
            "passes": self.passes(),
        })
    }

    fn row(&self, scenario: Scenario, kind: Kind, shape: Shape, note: String) -> [String; 8] {
        let note = match self.cpu_us_per_delivery() {
            Some(us) => format!("{note}; server {us:.1} µs CPU/delivery"),
            None => note,
        };
        [
            scenario.name().into(),
            kind.name().into(),
            format!("{}, {}/s", shape.describe(), self.rate),
            format!("{:.0} deliveries/s", self.deliveries_per_second()),
            format!("{:.2}", self.ms(0.5)),
            format!("{:.2}", self.ms(0.99)),
            format!("{:.2}", self.ms(0.999)),
            note,
        ]
    }
}

/// F1, F3, R1: searches for the highest rate that passes (complete, p99 under 20 ms):
/// doubling from the first rate while steps pass, halving while they fail, then bisecting
/// between the best pass and the lowest failure, within `max_steps`.
async fn ramp(
    scenario: Scenario,
    target: &Target,
    shape: Shape,
    first_rate: u64,
    seconds: f64,
    max_steps: usize,
    s: Settings,
) -> anyhow::Result<Outcome> {
    let mut audience = Audience::gather(target, shape, scenario.name()).await?;
    let mut steps = Vec::new();
    let mut best: Option<Step> = None;
    let mut lowest_failure: Option<Step> = None;
    let mut most_complete: Option<f64> = None;
    let mut rate = first_rate;
    for _ in 0..max_steps {
        let step = audience.step(target, rate, seconds, s.size).await?;
        let passed = step.passes();
        eprintln!(
            "  {} {}: {rate}/s → {:.0} deliveries/s, p99 {:.2} ms, {}/{} delivered, {} gaps{}",
            scenario.name(),
            target.kind.name(),
            step.deliveries_per_second(),
            step.ms(0.99),
            step.delivered,
            step.expected,
            step.gaps,
            if passed { "" } else { " (fails)" }
        );
        steps.push(step.json());
        if step.complete() {
            most_complete = Some(
                most_complete
                    .unwrap_or(0.0)
                    .max(step.deliveries_per_second()),
            );
        }
        // The smoke run judges completeness of the first step only, never its timing.
        if s.quick && steps.len() == 1 && !step.complete() {
            lowest_failure = Some(step);
            break;
        }
        if passed {
            best = Some(step);
        } else if lowest_failure.as_ref().is_none_or(|f| f.rate > rate) {
            lowest_failure = Some(step);
        }
        let next = match (
            best.as_ref().map(|b| b.rate),
            lowest_failure.as_ref().map(|f| f.rate),
        ) {
            (Some(pass), None) => pass * 2,
            (None, Some(fail)) => fail / 2,
            (Some(pass), Some(fail)) => pass + (fail - pass) / 2,
            (None, None) => break,
        };
        // Stop once the bracket is within a quarter of the rate, or nothing lower is left.
        if next == 0
            || next == rate
            || best
                .as_ref()
                .zip(lowest_failure.as_ref())
                .is_some_and(|(b, f)| f.rate - b.rate <= b.rate / 4)
        {
            break;
        }
        rate = next;
    }
    // Capacity: how much goes through at all. From the highest complete rate, double while
    // every message still arrives and latency stays bounded (p99 under a second, so the
    // server is keeping up rather than queueing).
    let mut capacity: Option<Step> = None;
    if !s.quick {
        let mut rate = steps
            .iter()
            .filter(|st| st["deliveries"] == st["expected_deliveries"] && st["gaps"] == 0)
            .filter_map(|st| st["rate"].as_u64())
            .max()
            .unwrap_or(first_rate)
            * 2;
        for _ in 0..CAPACITY_STEPS {
            let step = audience.step(target, rate, seconds, s.size).await?;
            eprintln!(
                "  {} {} capacity: {rate}/s → {:.0} deliveries/s, p99 {:.2} ms, {}/{} delivered",
                scenario.name(),
                target.kind.name(),
                step.deliveries_per_second(),
                step.ms(0.99),
                step.delivered,
                step.expected,
            );
            steps.push(step.json());
            if !(step.complete() && step.ms(0.99) < 1000.0) {
                break;
            }
            rate *= 2;
            capacity = Some(step);
        }
    }
    if let Some(c) = &capacity {
        most_complete = Some(most_complete.unwrap_or(0.0).max(c.deliveries_per_second()));
    }
    let setup = audience.setup_seconds;
    audience.end();
    let failed_at = lowest_failure.as_ref().map(|f| f.rate);
    let (shown, note) = match (best, lowest_failure) {
        (Some(best), Some(f)) => (best, format!("highest passing rate; {}/s failed", f.rate)),
        (Some(best), None) => (best, "highest rate tried; all passed".into()),
        (None, Some(f)) => (f, "no step passed: lowest step shown".into()),
        (None, None) => anyhow::bail!("no step ran"),
    };
    let note = match &capacity {
        Some(c) => format!(
            "{note}; capacity {:.0}/s (at {}/s, p99 {:.0} ms)",
            c.deliveries_per_second(),
            c.rate,
            c.ms(0.99)
        ),
        None => note,
    };
    Ok(Outcome {
        row: shown.row(scenario, target.kind, shape, note),
        complete: if s.quick {
            steps.first().is_some_and(|f| {
                f["deliveries"] == f["expected_deliveries"]
                    && f["gaps"] == 0
                    && f["out_of_order"] == 0
                    && f["publish_failures"] == 0
            })
        } else {
            shown.complete()
        },
        json: json!({
            "scenario": scenario.name(), "target": target.kind.name(),
            "rooms": shape.rooms, "listeners_per_room": shape.per_room,
            "setup_seconds": setup, "best": shown.json(), "passed": shown.passes(),
            "lowest_failing_rate": failed_at, "most_complete_deliveries_per_second": most_complete,
            "capacity": capacity.as_ref().map(Step::json),
            "steps": steps,
        }),
    })
}

/// F2: one fixed rate.
async fn fixed(
    scenario: Scenario,
    target: &Target,
    shape: Shape,
    rate: u64,
    seconds: f64,
    s: Settings,
) -> anyhow::Result<Outcome> {
    let mut audience = Audience::gather(target, shape, scenario.name()).await?;
    let step = audience.step(target, rate, seconds, s.size).await?;
    audience.end();
    Ok(Outcome {
        row: step.row(scenario, target.kind, shape, format!("{} gaps", step.gaps)),
        complete: step.complete(),
        json: json!({
            "scenario": scenario.name(), "target": target.kind.name(),
            "rooms": shape.rooms, "listeners_per_room": shape.per_room, "step": step.json(),
        }),
    })
}

/// S1: F2 as a baseline, then again with one more listener that never reads; watches the
/// server's memory and when it cuts the stalled connection.
async fn stalled(
    target: &Target,
    shape: Shape,
    rate: u64,
    seconds: f64,
    s: Settings,
) -> anyhow::Result<Outcome> {
    let mut audience = Audience::gather(target, shape, "S1").await?;
    // Long enough for the stalled socket's buffers to fill and the server's write timeout
    // (5 s) to run out; the baseline runs as long, so the two p99s compare like for like.
    let stall_seconds = seconds.max(if s.quick { 1.0 } else { 20.0 });
    let baseline = audience.step(target, rate, stall_seconds, s.size).await?;
    let room = audience.rooms[0].clone();
    let stalled = Listener::open(target.kind, target.addr, &room, "stalled", true).await?;
    let port = stalled.local_port();
    let server_port = target.addr.port();
    let rss_before = target.rss_kib();
    let watching = Arc::new(AtomicBool::new(true));
    let stalled_at = Instant::now();
    let watch = {
        let watching = Arc::clone(&watching);
        let pid_target = target.pid;
        tokio::spawn(async move {
            let (mut cut_after, mut rss_max) = (None, 0u64);
            while watching.load(Ordering::SeqCst) {
                if cut_after.is_none()
                    && port.is_some_and(|p| established(server_port, p) != Some(true))
                {
                    cut_after = Some(stalled_at.elapsed().as_secs_f64());
                }
                if let Some(rss) = pid_target.and_then(rss_kib) {
                    rss_max = rss_max.max(rss);
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            (cut_after, rss_max)
        })
    };
    let with_stall = audience.step(target, rate, stall_seconds, s.size).await?;
    watching.store(false, Ordering::SeqCst);
    let (cut_after, rss_max) = watch.await?;
    drop(stalled);
    audience.end();
    let p99_change = (with_stall.ms(0.99) / baseline.ms(0.99).max(1e-3) - 1.0) * 100.0;
    let rss_growth = rss_before.map(|b| rss_max.saturating_sub(b));
    let cut = cut_after.map_or("not cut".into(), |c| format!("cut after {c:.1} s"));
    let note = format!(
        "{cut}; others' p99 {:.2} → {:.2} ms ({p99_change:+.0}%); server RSS +{} KiB",
        baseline.ms(0.99),
        with_stall.ms(0.99),
        rss_growth.map_or("?".into(), |g| g.to_string()),
    );
    Ok(Outcome {
        row: with_stall.row(Scenario::S1, target.kind, shape, note),
        complete: baseline.complete() && with_stall.complete(),
        json: json!({
            "scenario": "S1", "target": target.kind.name(),
            "rooms": 1, "listeners_per_room": shape.per_room,
            "baseline": baseline.json(), "with_stall": with_stall.json(),
            "stalled_cut_after_seconds": cut_after, "p99_change_percent": p99_change,
            "server_rss_before_kib": rss_before, "server_rss_max_kib": rss_max,
        }),
    })
}

/// C1: F2 while other clients keep connecting, waiting to be live, and hanging up.
async fn churn(
    target: &Target,
    shape: Shape,
    rate: u64,
    seconds: f64,
    s: Settings,
) -> anyhow::Result<Outcome> {
    let mut audience = Audience::gather(target, shape, "C1").await?;
    let room = audience.rooms[0].clone();
    let churning = Arc::new(AtomicBool::new(true));
    let cycles = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let churners: Vec<_> = (0..8)
        .map(|c| {
            let (churning, cycles, errors) = (
                Arc::clone(&churning),
                Arc::clone(&cycles),
                Arc::clone(&errors),
            );
            let (kind, addr, room) = (target.kind, target.addr, room.clone());
            tokio::spawn(async move {
                while churning.load(Ordering::SeqCst) {
                    match Listener::open(kind, addr, &room, &format!("churn{c}"), false).await {
                        Ok(listener) => {
                            cycles.fetch_add(1, Ordering::Relaxed);
                            drop(listener);
                        }
                        Err(_) => {
                            errors.fetch_add(1, Ordering::Relaxed);
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                    }
                }
            })
        })
        .collect();
    let step = audience.step(target, rate, seconds, s.size).await?;
    churning.store(false, Ordering::SeqCst);
    for churner in churners {
        let _ = churner.await;
    }
    audience.end();
    let (cycles, errors) = (cycles.load(Ordering::SeqCst), errors.load(Ordering::SeqCst));
    let per_second = cycles as f64 / step.seconds.max(1e-9);
    Ok(Outcome {
        row: step.row(
            Scenario::C1,
            target.kind,
            shape,
            format!("{per_second:.0} connect+disconnect/s, {errors} failed"),
        ),
        complete: step.complete() && cycles > 0,
        json: json!({
            "scenario": "C1", "target": target.kind.name(),
            "rooms": 1, "listeners_per_room": shape.per_room, "step": step.json(),
            "churn_cycles": cycles, "churn_per_second": per_second, "churn_errors": errors,
        }),
    })
}

/// P1: `submitters` connections each submitting as soon as the previous one is acknowledged.
async fn ingress(
    target: &Target,
    submitters: usize,
    seconds: f64,
    s: Settings,
) -> anyhow::Result<Outcome> {
    ensure!(
        (1..=5_000).contains(&submitters) && seconds <= 600.0,
        "bounded runs only"
    );
    let room = room_name("P1", 0);
    let mut admin = Publisher::connect(target.kind, target.publish_addr, "admin").await?;
    admin.create_room(&room).await?;
    let text = Arc::new(format!("t=0 {}", "x".repeat(s.size)));
    // Everyone connected and signed in first: the window measures posting alone.
    let mut publishers = Vec::with_capacity(submitters);
    for i in 0..submitters {
        publishers
            .push(Publisher::connect(target.kind, target.publish_addr, &format!("sub{i}")).await?);
    }
    let cpu_before = target.cpu_seconds();
    let until = Instant::now() + Duration::from_secs_f64(seconds);
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(submitters);
    for mut publisher in publishers {
        let (room, text) = (room.clone(), Arc::clone(&text));
        tasks.push(tokio::spawn(async move {
            let mut hist = histogram();
            let (mut acked, mut failed) = (0u64, 0u64);
            while Instant::now() < until {
                let sent = Instant::now();
                if publisher.post(&room, &text).await {
                    let _ = hist.record((sent.elapsed().as_micros() as u64).max(1));
                    acked += 1;
                } else {
                    failed += 1;
                }
            }
            (hist, acked, failed)
        }));
    }
    let mut hist = histogram();
    let (mut acked, mut failed) = (0, 0);
    for task in tasks {
        let (h, a, f) = task.await?;
        hist.add(h)?;
        acked += a;
        failed += f;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let cpu_us_per_ack = cpu_before
        .zip(target.cpu_seconds())
        .map(|(before, after)| (after - before) * 1e6 / acked.max(1) as f64);
    let ms = |q: f64| hist.value_at_quantile(q) as f64 / 1000.0;
    let per_second = acked as f64 / elapsed;
    let via = if target.kind == Kind::Grpc {
        "Submit"
    } else {
        "POST"
    };
    Ok(Outcome {
        row: [
            "P1".into(),
            target.kind.name().into(),
            format!("{submitters} submitters via {via}"),
            format!("{per_second:.0} acks/s"),
            format!("{:.2}", ms(0.5)),
            format!("{:.2}", ms(0.99)),
            format!("{:.2}", ms(0.999)),
            match cpu_us_per_ack {
                Some(cpu) => format!("{failed} failed; server {cpu:.1} µs CPU/ack"),
                None => format!("{failed} failed"),
            },
        ],
        complete: failed == 0 && acked > 0,
        json: json!({
            "scenario": "P1", "target": target.kind.name(), "submitters": submitters,
            "seconds": elapsed, "acknowledged": acked, "failed": failed,
            "acks_per_second": per_second, "server_cpu_us_per_ack": cpu_us_per_ack,
            "ack_latency_ms": { "p50": ms(0.5), "p99": ms(0.99), "p999": ms(0.999) },
        }),
    })
}

/// Emoji the reaction storm spreads its reactions over.
const STORM_EMOJI: [&str; 6] = ["👍", "❤️", "😂", "🎉", "😮", "😢"];

/// X1: `users` users each add a reaction to one message, evenly spread over `seconds` (open
/// loop), while `users` listeners listen to the room. Reports the acknowledgement latency and
/// how long after the last reaction every listener had every one, in order.
async fn reactions(target: &Target, users: usize, seconds: f64) -> anyhow::Result<Outcome> {
    ensure!((1..=5_000).contains(&users), "bounded runs only");
    let (kind, addr) = (target.kind, target.publish_addr);
    let room = room_name("X1", 0);
    let mut admin = Publisher::connect(kind, addr, "admin").await?;
    admin.create_room(&room).await?;
    let probe = Probe::new();
    let readers: Vec<JoinHandle<()>> = open_many(target, std::slice::from_ref(&room), users, "x")
        .await?
        .into_iter()
        .enumerate()
        .map(|(i, listener)| spawn_reader(listener, Arc::clone(&probe), i))
        .collect();
    let mut connecting = tokio::task::JoinSet::new();
    let mut reactors = Vec::with_capacity(users);
    for i in 0..users {
        connecting.spawn(async move {
            let user = format!("react{i}");
            with_retries(|| Publisher::connect(kind, addr, &user)).await
        });
        if connecting.len() >= 64 {
            reactors.push(connecting.join_next().await.context("a reactor")???);
        }
    }
    while let Some(reactor) = connecting.join_next().await {
        reactors.push(reactor??);
    }
    // The message itself, to every listener, before the storm.
    ensure!(
        admin.post(&room, "t=0 react to me").await,
        "the message was not posted"
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while probe.delivered.load(Ordering::SeqCst) < users as u64 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    probe.reset();
    let cpu_before = target.cpu_seconds();
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for (i, mut reactor) in reactors.into_iter().enumerate() {
        let room = room.clone();
        let at = started + Duration::from_secs_f64(seconds * i as f64 / users as f64);
        tasks.spawn(async move {
            tokio::time::sleep_until(at.into()).await;
            let sent = Instant::now();
            let added = reactor
                .react(&room, 1, STORM_EMOJI[i % STORM_EMOJI.len()])
                .await;
            (added, sent.elapsed())
        });
    }
    let mut acks = histogram();
    let (mut added, mut failed) = (0u64, 0u64);
    while let Some(joined) = tasks.join_next().await {
        let (ok, took) = joined?;
        if ok {
            added += 1;
            let _ = acks.record((took.as_micros() as u64).max(1));
        } else {
            failed += 1;
        }
    }
    let last_sent = started.elapsed().as_secs_f64();
    let want = added * users as u64;
    let deadline = Instant::now() + Duration::from_secs(30);
    while probe.delivered.load(Ordering::SeqCst) < want && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let all_delivered = started.elapsed().as_secs_f64();
    let cpu = cpu_before
        .zip(target.cpu_seconds())
        .map(|(before, after)| after - before);
    let delivered = probe.delivered.load(Ordering::SeqCst);
    let (gaps, disorder) = (
        probe.gaps.load(Ordering::SeqCst),
        probe.disorder.load(Ordering::SeqCst),
    );
    for reader in readers {
        reader.abort();
    }
    let ms = |q: f64| acks.value_at_quantile(q) as f64 / 1000.0;
    let via = if kind == Kind::Grpc { "React" } else { "PUT" };
    Ok(Outcome {
        row: [
            "X1".into(),
            kind.name().into(),
            format!("{users} react via {via} in {seconds:.0} s, {users} listening"),
            format!(
                "every listener had all {added} {:.0} ms after the last was sent",
                (all_delivered - last_sent) * 1000.0
            ),
            format!("{:.2}", ms(0.5)),
            format!("{:.2}", ms(0.99)),
            format!("{:.2}", ms(0.999)),
            match cpu {
                Some(cpu) => format!(
                    "{failed} failed, {gaps} gaps, {disorder} out of order; server {:.1} s CPU",
                    cpu
                ),
                None => format!("{failed} failed, {gaps} gaps, {disorder} out of order"),
            },
        ],
        complete: failed == 0 && delivered == want && gaps == 0 && disorder == 0,
        json: json!({
            "scenario": "X1", "target": kind.name(), "users": users, "listeners": users,
            "seconds": seconds, "added": added, "failed": failed,
            "last_sent_seconds": last_sent, "all_delivered_seconds": all_delivered,
            "delivered": delivered, "expected": want, "gaps": gaps, "disorder": disorder,
            "server_cpu_seconds": cpu,
            "ack_latency_ms": { "p50": ms(0.5), "p99": ms(0.99), "p999": ms(0.999) },
        }),
    })
}

/// How often a storm listener tries to reconnect before it is counted as failed.
const STORM_ATTEMPTS: u32 = 40;

/// C2: `connections` live listeners over `rooms` drop their connections at the same moment
/// and reconnect at once (each as its own client, keeping its token, as a page does after a
/// restart). Reports the time until every one is live again, and the spread.
async fn storm(target: &Target, connections: usize, rooms: usize) -> anyhow::Result<Outcome> {
    ensure!(connections <= 15_000 && rooms >= 1, "bounded runs only");
    let (kind, addr) = (target.kind, target.addr);
    let names: Vec<String> = (0..rooms).map(|i| room_name("C2", i)).collect();
    let mut admin = Publisher::connect(kind, addr, "admin").await?;
    for room in &names {
        admin.create_room(room).await?;
    }
    let held = open_many(target, &names, connections, "storm").await?;
    let go = Arc::new(tokio::sync::Barrier::new(connections + 1));
    let mut tasks = tokio::task::JoinSet::new();
    for (i, listener) in held.into_iter().enumerate() {
        let (go, room, user) = (
            Arc::clone(&go),
            names[i % names.len()].clone(),
            format!("storm{i}"),
        );
        tasks.spawn(async move {
            go.wait().await;
            let dropped = Instant::now();
            drop(listener);
            for attempt in 0..STORM_ATTEMPTS {
                match Listener::open(kind, addr, &room, &user, false).await {
                    // Held until every one is back, so the server sees them all at once.
                    Ok(listener) => return Some((dropped.elapsed(), attempt, listener)),
                    Err(_) => tokio::time::sleep(Duration::from_millis(250)).await,
                }
            }
            None
        });
    }
    go.wait().await;
    let started = Instant::now();
    let mut times = histogram();
    let (mut back, mut failed, mut retried) = (0u64, 0u64, 0u64);
    let mut live = Vec::with_capacity(connections);
    while let Some(joined) = tasks.join_next().await {
        match joined? {
            Some((took, attempts, listener)) => {
                back += 1;
                retried += u64::from(attempts > 0);
                let _ = times.record((took.as_micros() as u64).max(1));
                live.push(listener);
            }
            None => failed += 1,
        }
    }
    let all_back = started.elapsed().as_secs_f64();
    drop(live);
    let ms = |q: f64| times.value_at_quantile(q) as f64 / 1000.0;
    Ok(Outcome {
        row: [
            "C2".into(),
            kind.name().into(),
            format!("{connections} reconnect at once, {rooms} rooms"),
            format!("all streaming again after {:.2} s", all_back),
            format!("{:.2}", ms(0.5)),
            format!("{:.2}", ms(0.99)),
            format!("{:.2}", ms(0.999)),
            format!("{failed} failed, {retried} retried; max {:.0} ms", ms(1.0)),
        ],
        complete: failed == 0 && back == connections as u64,
        json: json!({
            "scenario": "C2", "target": kind.name(), "connections": connections, "rooms": rooms,
            "all_back_seconds": all_back, "back": back, "failed": failed, "retried": retried,
            "reconnect_ms": { "p50": ms(0.5), "p99": ms(0.99), "p999": ms(0.999), "max": ms(1.0) },
        }),
    })
}

/// M3: `count` rooms with `per` messages each, left idle until their messages leave memory;
/// the server's memory then, and the latency of the first history read of `reads` of them.
async fn rooms(target: &Target, count: usize, per: usize, reads: usize) -> anyhow::Result<Outcome> {
    ensure!(count <= 200_000, "bounded runs only");
    let (kind, addr) = (target.kind, target.publish_addr);
    let prefix = room_name("M3", 0);
    let before = target.rss_kib().context("M3 needs the server's pid")?;
    let started = Instant::now();
    // 32 connections, each creating and filling its share of the rooms.
    let mut filling = tokio::task::JoinSet::new();
    for p in 0..32 {
        let prefix = prefix.clone();
        filling.spawn(async move {
            let mut publisher = Publisher::connect(kind, addr, &format!("m3pub{p}")).await?;
            for i in (p..count).step_by(32) {
                let room = format!("{prefix}-{i}");
                publisher.create_room(&room).await?;
                for m in 0..per {
                    ensure!(
                        publisher.post(&room, &format!("m{m}")).await,
                        "a post failed"
                    );
                }
            }
            anyhow::Ok(())
        });
    }
    while let Some(done) = filling.join_next().await {
        done??;
    }
    let fill_seconds = started.elapsed().as_secs_f64();
    let warm = target.rss_kib().context("the server's memory")?;
    tokio::time::sleep(Duration::from_secs(UNLOAD_AFTER_SECONDS + 2)).await;
    let cold = target.rss_kib().context("the server's memory")?;
    let mut reader = Publisher::connect(kind, addr, "m3reader").await?;
    let mut times = Histogram::<u64>::new(3)?;
    let mut failed = 0u64;
    for r in 0..reads {
        // Spread over the rooms, each read once: every read is a first read.
        let room = format!("{prefix}-{}", r * (count / reads.max(1)).max(1) % count);
        let took = Instant::now();
        if reader.history(&room).await? == per {
            let _ = times.record((took.elapsed().as_micros() as u64).max(1));
        } else {
            failed += 1;
        }
    }
    let ms = |q: f64| times.value_at_quantile(q) as f64 / 1000.0;
    Ok(Outcome {
        row: [
            "M3".into(),
            kind.name().into(),
            format!("{count} rooms × {per} messages, idle"),
            format!(
                "RSS {cold} KiB cold ({:.0} B/room)",
                (cold.saturating_sub(before) * 1024) as f64 / count as f64
            ),
            format!("{:.2}", ms(0.5)),
            format!("{:.2}", ms(0.99)),
            format!("{:.2}", ms(0.999)),
            format!(
                "first reads of cold rooms; RSS {before} → {warm} (filled) → {cold} KiB; {failed} failed"
            ),
        ],
        complete: failed == 0,
        json: json!({
            "scenario": "M3", "target": kind.name(), "rooms": count, "messages_per_room": per,
            "fill_seconds": fill_seconds, "rss_before_kib": before, "rss_filled_kib": warm,
            "rss_cold_kib": cold, "reads": reads, "failed": failed,
            "first_read_ms": { "p50": ms(0.5), "p99": ms(0.99), "p999": ms(0.999), "max": ms(1.0) },
        }),
    })
}

/// M2: the server's resident memory before and after opening `connections` idle listeners.
async fn idle(target: &Target, connections: usize, rooms: usize) -> anyhow::Result<Outcome> {
    ensure!(connections <= 15_000 && rooms >= 1, "bounded runs only");
    let (kind, addr) = (target.kind, target.addr);
    let names: Vec<String> = (0..rooms).map(|i| room_name("M2", i)).collect();
    let mut admin = Publisher::connect(kind, addr, "admin").await?;
    for room in &names {
        admin.create_room(room).await?;
    }
    // A few first, so allocator and executor start-up are not counted per connection.
    let mut held = Vec::with_capacity(connections + 10);
    for i in 0..10 {
        held.push(Listener::open(kind, addr, &names[0], &format!("warm{i}"), false).await?);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = target.rss_kib().context("M2 needs the server's pid")?;
    let started = Instant::now();
    held.extend(open_many(target, &names, connections, "idle").await?);
    let open_seconds = started.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = target.rss_kib().context("the server's memory")?;
    let per = (after.saturating_sub(before) * 1024) as f64 / connections as f64;
    drop(held);
    Ok(Outcome {
        row: [
            "M2".into(),
            kind.name().into(),
            format!("{connections} idle, {rooms} rooms"),
            format!("{:.1} KB/connection", per / 1000.0),
            "".into(),
            "".into(),
            "".into(),
            format!("RSS {before} → {after} KiB"),
        ],
        complete: true,
        json: json!({
            "scenario": "M2", "target": kind.name(), "connections": connections, "rooms": rooms,
            "rss_before_kib": before, "rss_after_kib": after, "bytes_per_connection": per,
            "open_seconds": open_seconds,
        }),
    })
}
