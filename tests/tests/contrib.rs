//! What `contrib/` ships for deployment: the systemd unit passes `systemd-analyze verify` and
//! its offline security review, the Dockerfile builds the binaries the workspace has and runs
//! one as a non-root user, and every `ROOMCAST_*` variable either sets is one the servers read.

use std::path::Path;
use std::process::Command;

use roomcast_e2e::binary;

fn contrib(file: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../contrib")
        .join(file);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The environment variables a binary reads, from its `--help`.
fn variables(package: &str, bin: &str) -> String {
    let out = Command::new(binary(package, bin))
        .arg("--help")
        .output()
        .expect("--help runs");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Every `ROOMCAST_*` name in `text` is one of the servers reads.
fn every_variable_is_read(text: &str, file: &str) {
    let help = variables("roomcast-smol", "roomcast-smol")
        + &variables("roomcast-tokio", "roomcast-tokio");
    for word in text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
        if word.starts_with("ROOMCAST_") {
            assert!(
                help.contains(&format!("env: {word}=")),
                "{file} sets {word}, which no flag reads"
            );
        }
    }
}

#[test]
fn the_systemd_unit_verifies_and_is_hardened() {
    let unit = contrib("roomcast.service");
    every_variable_is_read(&unit, "roomcast.service");
    for hardening in [
        "DynamicUser=yes",
        "StateDirectory=roomcast",
        "ProtectSystem=strict",
        "NoNewPrivileges=yes",
        "CapabilityBoundingSet=\n",
        // `systemctl reload`: the certificate read again.
        "ExecReload=/bin/kill -HUP $MAINPID",
    ] {
        assert!(unit.contains(hardening), "the unit has {hardening:?}");
    }
    let Ok(version) = Command::new("systemd-analyze").arg("--version").output() else {
        eprintln!("systemd-analyze is not installed: only the unit's text was checked");
        return;
    };
    assert!(version.status.success());
    // Verified as installed, but running the binary this build made.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("roomcast.service");
    let built = binary("roomcast-smol", "roomcast-smol");
    std::fs::write(
        &path,
        unit.replace("/usr/local/bin/roomcast-smol", &built.display().to_string()),
    )
    .unwrap();
    let verify = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&path)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&verify.stderr);
    assert!(
        verify.status.success() && said.trim().is_empty(),
        "systemd-analyze verify: {said}"
    );
    let security = Command::new("systemd-analyze")
        .args(["security", "--offline=true", "--no-pager"])
        .arg(&path)
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&security.stdout);
    let exposure: f64 = report
        .lines()
        .find_map(|l| {
            l.split("Overall exposure level for roomcast.service: ")
                .nth(1)
        })
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("an exposure level in:\n{report}"));
    assert!(
        exposure <= 2.0,
        "exposure {exposure} (0 safest, 10 least):\n{report}"
    );
}

#[test]
fn the_dockerfile_builds_what_the_workspace_has_and_runs_it_unprivileged() {
    let docker = contrib("Dockerfile");
    let build = docker
        .lines()
        .find(|l| l.contains("cargo build"))
        .expect("a cargo build step");
    assert!(
        build.contains("--release") && build.contains("--locked"),
        "{build}"
    );
    for bin in ["roomcast-smol", "roomcast-tokio"] {
        assert!(build.contains(&format!("-p {bin}")), "{build} builds {bin}");
        assert!(
            docker.contains(&format!("/src/target/release/{bin}")),
            "the image holds {bin}"
        );
    }
    every_variable_is_read(&docker, "Dockerfile");
    let user = docker
        .lines()
        .find_map(|l| l.strip_prefix("USER "))
        .expect("a USER");
    assert!(
        user.trim() != "0" && user.trim() != "root",
        "runs as {user}"
    );
    assert!(docker.contains("ENTRYPOINT [\"roomcast-smol\"]"));
    assert!(docker.contains("ROOMCAST_LISTEN=0.0.0.0:8080") && docker.contains("EXPOSE 8080"));
    assert!(
        docker.contains("FROM debian:bookworm-slim"),
        "a slim runtime stage without the toolchain"
    );
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md"))
            .unwrap();
    assert!(
        readme.contains("docker build -f contrib/Dockerfile"),
        "the README says how to build it"
    );
}
