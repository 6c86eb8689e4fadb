//! `roomcast-replay FILE`: replays a server's `--record-inputs` recording through a fresh core
//! and checks that every step gives the recorded outputs. Exits 0 if all do, 1 at the first
//! step that differs (naming it), 2 if the file cannot be read.

use std::io::BufRead;
use std::process::ExitCode;

use roomcast_core::record::{Header, Replay, Step};

fn main() -> ExitCode {
    let Some(path) = std::env::args_os().nth(1) else {
        eprintln!("usage: roomcast-replay FILE (written by a server run with --record-inputs)");
        return ExitCode::from(2);
    };
    let file = match std::fs::File::open(&path) {
        Ok(file) => file,
        Err(e) => {
            eprintln!("cannot open {}: {e}", path.display());
            return ExitCode::from(2);
        }
    };
    let mut lines = std::io::BufReader::new(file).lines().enumerate();
    let header: Header = match lines
        .next()
        .map(|(_, l)| l.map(|l| serde_json::from_str(&l)))
    {
        Some(Ok(Ok(header))) => header,
        _ => {
            eprintln!(
                "{}: the first line is not a recording header",
                path.display()
            );
            return ExitCode::from(2);
        }
    };
    let mut replay = Replay::new(header);
    for (n, line) in lines {
        let step: Step = match line.map(|l| serde_json::from_str(&l)) {
            Ok(Ok(step)) => step,
            // A server killed mid-write leaves a torn last line.
            Ok(Err(e)) => {
                eprintln!("line {}: not a step ({e}); stopping there", n + 1);
                break;
            }
            Err(e) => {
                eprintln!("cannot read {}: {e}", path.display());
                return ExitCode::from(2);
            }
        };
        if let Err(divergence) = replay.step(step) {
            eprintln!("line {}: {divergence}", n + 1);
            return ExitCode::from(1);
        }
    }
    println!(
        "{} steps replayed with the recorded outputs",
        replay.steps()
    );
    ExitCode::SUCCESS
}
