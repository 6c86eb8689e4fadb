//! `roomcast-load`: drives servers as real clients do (SSE, WebSocket, gRPC, Socket.IO) and
//! reports what it measured: a JSON result per scenario and a markdown table.
//!
//! - `run <scenario> --target <kind>`: one scenario on one server.
//! - `suite`: every scenario on every server kind, each on a fresh server; `--quick` runs them
//!   all briefly at small sizes and fails unless everything was delivered (CI's smoke test).
//! - `floor-server`: the floor writer, started by the generator itself.
//!
//! Servers are started by the generator as separate processes on loopback (one process may
//! hold at most 20,000 open files here, so server and generator must not share one), unless
//! `--addr` names one already running. Every run is bounded in connections and time.

mod clients;
mod floor;
mod outcome;
mod scenario;
mod strangers;
mod target;
mod wire;

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail, ensure};
use clap::{Parser, Subcommand};
use serde_json::json;

use crate::clients::Kind;
use crate::scenario::{Outcome, Scenario, Settings};
use crate::target::{Target, socketio_installed};

#[derive(Parser)]
#[command(
    name = "roomcast-load",
    version,
    about = "Load generator for roomcast servers and their peers"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// One scenario against one server.
    Run {
        /// The scenario (F1 F2 F3 R1 P1 M2 S1 C1 C2 M3 X1 G1).
        #[arg(value_enum, ignore_case = true)]
        scenario: Scenario,
        /// Which server and protocol.
        #[arg(long, value_enum)]
        target: Kind,
        /// A server already running here (loopback only); otherwise one is started.
        #[arg(long)]
        addr: Option<SocketAddr>,
        /// The running server's process id (for memory readings).
        #[arg(long)]
        pid: Option<u32>,
        #[command(flatten)]
        common: Common,
        /// Listeners (per room for R1), connections for M2, submitters for P1.
        #[arg(long)]
        listeners: Option<usize>,
        /// Messages per second: the fixed rate, or a ramp's first step.
        #[arg(long)]
        rate: Option<u64>,
        /// Seconds per step.
        #[arg(long)]
        seconds: Option<f64>,
    },
    /// Every scenario on every target, each on a fresh server.
    Suite {
        #[command(flatten)]
        common: Common,
        /// Targets to run (default: all; the Socket.IO peer is skipped if not installed).
        #[arg(long, value_enum, value_delimiter = ',')]
        targets: Vec<Kind>,
        /// Scenarios to run (default: all that apply to each target).
        #[arg(long, value_enum, value_delimiter = ',', ignore_case = true)]
        scenarios: Vec<Scenario>,
        /// Fail if the Socket.IO peer is not installed instead of skipping it.
        #[arg(long)]
        require_peer: bool,
        /// Also write the markdown report here.
        #[arg(long)]
        markdown: Option<PathBuf>,
    },
    /// Serves as the floor writer (the generator starts this itself).
    FloorServer {
        /// Where to listen (loopback).
        #[arg(long)]
        listen: SocketAddr,
    },
}

#[derive(clap::Args)]
struct Common {
    /// Run briefly at small sizes, and fail unless everything was delivered.
    #[arg(long)]
    quick: bool,
    /// Where roomcast-smol and roomcast-tokio are (default: beside this binary).
    #[arg(long)]
    bin_dir: Option<PathBuf>,
    /// Start roomcast with a store in a fresh data dir rather than in memory.
    #[arg(long)]
    durable: bool,
    /// Start this many roomcast nodes sharing rooms through a fresh `redis-server` (listeners
    /// on the first, publishers on the last, so every delivery crosses Redis).
    #[arg(long, default_value_t = 1)]
    nodes: usize,
    /// Bytes of padding per message.
    #[arg(long, default_value_t = 64)]
    size: usize,
    /// Append each result, one JSON object per line, to this file.
    #[arg(long)]
    json: Option<PathBuf>,
}

impl Target {
    /// The server `scenario` runs against: G1 on a durable store, with the limits of
    /// [`strangers::FLAGS`] and every other at its default; the others with the per-user
    /// limits off, as they measure throughput rather than what a stranger may take.
    fn for_scenario(scenario: Scenario, kind: Kind, common: &Common) -> anyhow::Result<Target> {
        let bin_dir = common.bin_dir()?;
        match scenario {
            Scenario::G1 => {
                let flags: Vec<String> = strangers::FLAGS.iter().map(|f| (*f).to_owned()).collect();
                Target::spawn_with(kind, &bin_dir, true, common.nodes, &flags, false)
            }
            Scenario::F1
            | Scenario::F2
            | Scenario::F3
            | Scenario::R1
            | Scenario::P1
            | Scenario::M2
            | Scenario::M3
            | Scenario::S1
            | Scenario::C1
            | Scenario::C2
            | Scenario::X1 => {
                Target::spawn_with(kind, &bin_dir, common.durable, common.nodes, &[], true)
            }
        }
    }
}

impl Common {
    fn bin_dir(&self) -> anyhow::Result<PathBuf> {
        match &self.bin_dir {
            Some(dir) => Ok(dir.clone()),
            None => Ok(std::env::current_exe()?
                .parent()
                .context("the binary's directory")?
                .to_path_buf()),
        }
    }
}

fn main() -> anyhow::Result<()> {
    // Servers started from here inherit the raised limit.
    let _ = rlimit::increase_nofile_limit(20_000);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async_main())
}

async fn async_main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let command_line = std::env::args().collect::<Vec<_>>().join(" ");
    match cli.command {
        Command::FloorServer { listen } => {
            ensure!(listen.ip().is_loopback(), "loopback only, not {listen}");
            floor::serve(listen).await
        }
        Command::Run {
            scenario,
            target: kind,
            addr,
            pid,
            common,
            listeners,
            rate,
            seconds,
        } => {
            let settings = Settings {
                quick: common.quick,
                listeners,
                rate,
                seconds,
                size: common.size,
            };
            let target = match addr {
                Some(addr) => {
                    ensure!(addr.ip().is_loopback(), "loopback only, not {addr}");
                    Target::attach(kind, addr, pid)
                }
                None => Target::for_scenario(scenario, kind, &common)?,
            };
            let outcome = scenario::run(scenario, &target, settings).await?;
            report(&command_line, &[outcome], &common, None)
        }
        Command::Suite {
            common,
            targets,
            scenarios,
            require_peer,
            markdown,
        } => {
            let mut targets = if targets.is_empty() {
                vec![Kind::Sse, Kind::Ws, Kind::Grpc, Kind::Socketio, Kind::Floor]
            } else {
                targets
            };
            if targets.contains(&Kind::Socketio) && !socketio_installed() {
                ensure!(
                    !require_peer,
                    "the Socket.IO peer is not installed: run `npm ci` in bench/peers/socketio"
                );
                eprintln!("skipping the Socket.IO peer: run `npm ci` in bench/peers/socketio");
                targets.retain(|k| *k != Kind::Socketio);
            }
            let scenarios = if scenarios.is_empty() {
                use Scenario::*;
                vec![F1, F2, F3, R1, P1, M2, S1, C1, C2]
            } else {
                scenarios
            };
            let settings = Settings {
                quick: common.quick,
                listeners: None,
                rate: None,
                seconds: None,
                size: common.size,
            };
            let mut outcomes = Vec::new();
            for scenario in &scenarios {
                for kind in &targets {
                    if !scenario.applies_to(*kind) {
                        continue;
                    }
                    eprintln!("{} on {} ...", scenario.name(), kind.name());
                    let target = Target::for_scenario(*scenario, *kind, &common)?;
                    let outcome = scenario::run(*scenario, &target, settings)
                        .await
                        .with_context(|| format!("{} on {}", scenario.name(), kind.name()))?;
                    eprintln!("  {}", outcome.row.join(" | "));
                    outcomes.push(outcome);
                }
            }
            report(&command_line, &outcomes, &common, markdown.as_deref())
        }
    }
}

/// Prints the markdown report (and writes it and the JSON where asked); in quick mode, fails
/// unless every scenario delivered everything.
fn report(
    command_line: &str,
    outcomes: &[Outcome],
    common: &Common,
    markdown: Option<&Path>,
) -> anyhow::Result<()> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let date = humantime::format_rfc3339_seconds(std::time::SystemTime::now());
    let mut text = format!(
        "`{command_line}` on {cores} cores, {date}\n\n| scenario | target | shape | result | p50 ms | p99 ms | p99.9 ms | notes |\n|---|---|---|---|---|---|---|---|\n"
    );
    for outcome in outcomes {
        text.push_str(&format!("| {} |\n", outcome.row.join(" | ")));
    }
    text.push_str(&ratios(outcomes));
    println!("{text}");
    if let Some(path) = markdown {
        std::fs::write(path, &text)?;
    }
    if let Some(path) = &common.json {
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        for outcome in outcomes {
            let mut line = outcome.json.clone();
            line["command"] = json!(command_line);
            line["cores"] = json!(cores);
            line["date"] = json!(date.to_string());
            line["complete"] = json!(outcome.complete);
            writeln!(file, "{line}")?;
        }
    }
    let incomplete: Vec<String> = outcomes
        .iter()
        .filter(|o| !o.complete)
        .map(|o| format!("{} on {}", o.row[0], o.row[1]))
        .collect();
    if common.quick && !incomplete.is_empty() {
        bail!("not everything was delivered: {}", incomplete.join(", "));
    }
    Ok(())
}

/// roomcast against the Socket.IO peer and the floor, where both ran.
fn ratios(outcomes: &[Outcome]) -> String {
    let find = |scenario: &str, target: &str| {
        outcomes
            .iter()
            .find(|o| o.json["scenario"] == scenario && o.json["target"] == target)
    };
    let f1 = |target: &str| {
        find("F1", target).and_then(|o| o.json["best"]["deliveries_per_second"].as_f64())
    };
    let f2_p99 = |target: &str| {
        find("F2", target).and_then(|o| o.json["step"]["latency_ms"]["p99"].as_f64())
    };
    let mut lines = String::new();
    for ours in ["sse", "ws", "grpc"] {
        let Some(rate) = f1(ours) else { continue };
        if let Some(peer) = f1("socketio") {
            lines.push_str(&format!(
                "- F1 {ours}: {:.1}× Socket.IO's deliveries/s\n",
                rate / peer.max(1.0)
            ));
        }
        if let Some(floor) = f1("floor") {
            lines.push_str(&format!(
                "- F1 {ours}: {:.0}% of the floor's deliveries/s\n",
                rate / floor.max(1.0) * 100.0
            ));
        }
        if let (Some(p99), Some(peer)) = (f2_p99(ours), f2_p99("socketio")) {
            lines.push_str(&format!(
                "- F2 {ours}: p99 {p99:.2} ms against Socket.IO's {peer:.2} ms\n"
            ));
        }
    }
    if lines.is_empty() {
        lines
    } else {
        format!("\n{lines}")
    }
}
