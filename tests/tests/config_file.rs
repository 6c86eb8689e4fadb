//! The configuration file on the real binaries: its settings take effect, the environment
//! overrides it, the command line overrides both, `--print-config` shows what is in effect with
//! secrets masked, and a bad file stops the start with a reason.

use std::process::{Command, Stdio};

use roomcast_e2e::{Server, binary, create_room, post_json};
use serde_json::json;

const SECRET: &str = "a configured secret that is more than thirty-two bytes long";

fn file(dir: &tempfile::TempDir, text: &str) -> String {
    let path = dir.path().join("roomcast.toml");
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

/// What `--print-config` prints, with these arguments and environment.
fn printed(bin: (&str, &str), args: &[&str], env: &[(&str, &str)]) -> (bool, String, String) {
    let out = Command::new(binary(bin.0, bin.1))
        .args(args)
        .arg("--print-config")
        .env_remove("ROOMCAST_MAX_MESSAGE_BYTES")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .expect("it runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn the_file_the_environment_and_the_command_line_in_that_order() {
    let dir = tempfile::tempdir().unwrap();
    let path = file(
        &dir,
        &format!(
            "max-message-bytes = 16\nadmins = [\"root\", \"ops\"]\njwt-secret = \"{SECRET}\"\n"
        ),
    );
    for bin in [
        ("roomcast-smol", "roomcast-smol"),
        ("roomcast-tokio", "roomcast-tokio"),
    ] {
        let (ok, out, err) = printed(bin, &["--in-memory", "--config", &path], &[]);
        assert!(ok, "{err}");
        assert!(
            out.contains("max-message-bytes = 16  # the command line or the file"),
            "{out}"
        );
        assert!(out.contains("admins = [\"root\", \"ops\"]"), "{out}");
        assert!(out.contains("jwt-secret = \"***\""), "{out}");
        assert!(!out.contains(SECRET), "the secret is never printed");
        let env = [("ROOMCAST_MAX_MESSAGE_BYTES", "20")];
        let (_, out, _) = printed(bin, &["--in-memory", "--config", &path], &env);
        assert!(
            out.contains("max-message-bytes = 20  # the environment"),
            "{out}"
        );
        let (_, out, _) = printed(
            bin,
            &["--in-memory", "--config", &path, "--max-message-bytes=24"],
            &env,
        );
        assert!(
            out.contains("max-message-bytes = 24  # the command line"),
            "{out}"
        );
    }

    // The running server keeps to it.
    let server = Server::smol(&["--config", &path, "--rate-burst=0"]);
    create_room(&server, "c");
    let long = post_json(
        &server.url("/api/v1/rooms/c/messages"),
        &json!({ "user": "ada", "text": "seventeen bytes!!" }),
    );
    long.problem(413, "message-too-large");
}

#[test]
fn a_bad_file_stops_the_start_with_its_reason() {
    let dir = tempfile::tempdir().unwrap();
    let start_with = |path: &str| {
        printed(
            ("roomcast-smol", "roomcast-smol"),
            &["--in-memory", "--config", path],
            &[],
        )
    };
    let (ok, _, err) = start_with(&file(&dir, "max-roms = 5\n"));
    assert!(!ok);
    assert!(err.contains("max-roms is not a setting"), "{err}");
    let (ok, _, err) = start_with(&file(&dir, "max-rooms = \"many\"\n"));
    assert!(!ok);
    assert!(err.contains("many"), "{err}");
    let (ok, _, err) = start_with("/nonexistent/roomcast.toml");
    assert!(!ok);
    assert!(err.contains("cannot read the configuration file"), "{err}");
}
