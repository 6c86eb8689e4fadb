//! The load generator's quick mode, as CI's smoke test: every scenario of `roomcast-load`
//! runs briefly against the real binaries (and the Socket.IO peer and the floor), and the run
//! fails unless every listener got every message in order. No timing is judged.

use std::process::Command;

use roomcast_e2e::binary;

#[test]
fn every_load_scenario_runs_and_delivers_everything() {
    let load = binary("roomcast-bench", "roomcast-load");
    binary("roomcast-smol", "roomcast-smol");
    binary("roomcast-tokio", "roomcast-tokio");
    let bin_dir = load.parent().expect("the binaries' directory");
    let mut command = Command::new(&load);
    command.args(["suite", "--quick", "--bin-dir"]).arg(bin_dir);
    // CI installs the Socket.IO peer (`npm ci`); elsewhere the suite says so and skips it.
    if std::env::var_os("CI").is_some() {
        command.arg("--require-peer");
    }
    let out = command.output().expect("roomcast-load runs");
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the quick suite failed:\n{report}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for scenario in ["F1", "F2", "F3", "R1", "P1", "M2", "S1", "C1"] {
        for target in ["sse", "ws", "grpc"] {
            assert!(
                report.contains(&format!("| {scenario} | {target} |")),
                "{scenario} on {target} is missing from the report:\n{report}"
            );
        }
    }
    assert!(report.contains("| F1 | floor |"), "{report}");
}
