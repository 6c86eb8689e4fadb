//! The end-to-end harness: start a real server binary on an ephemeral loopback port, and talk to
//! it through real clients (HTTP, an EventSource-conformant SSE reader, WebSocket).

use std::ffi::OsStr;
use std::io::{BufRead, BufReader, Read};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Mutex, OnceLock, mpsc};
use std::time::{Duration, Instant};

use serde_json::Value;

pub mod grpc;
pub mod sse;

pub use sse::{SseEvent, SseStream};

/// How long any single wait in a test may take before the test fails (never a timing assertion:
/// only a bound so a broken server fails the test instead of hanging it).
pub const PATIENCE: Duration = Duration::from_secs(20);

/// Builds a workspace binary once per test process and returns its path.
pub fn binary(package: &str, bin: &str) -> PathBuf {
    static BUILT: OnceLock<Mutex<Vec<String>>> = OnceLock::new();
    let built = BUILT.get_or_init(|| Mutex::new(Vec::new()));
    let mut built = built.lock().unwrap_or_else(|e| e.into_inner());
    // Test executables live in <target>/<profile>/deps; binaries one level up.
    let exe = std::env::current_exe().expect("test executable path");
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target profile dir")
        .to_path_buf();
    if !built.iter().any(|b| b == bin) {
        let status = Command::new(env!("CARGO"))
            .args(["build", "--quiet", "--package", package, "--bin", bin])
            .env("CARGO_TARGET_DIR", dir.parent().expect("target dir"))
            .status()
            .expect("cargo runs");
        assert!(status.success(), "building {bin} failed");
        built.push(bin.to_owned());
    }
    dir.join(bin)
}

/// A running server process, killed when dropped. Unless the flags name a `--data-dir` (or
/// `--in-memory`), it keeps its data in a fresh temporary dir of its own.
pub struct Server {
    child: Child,
    /// Where it listens.
    pub addr: SocketAddr,
    log: mpsc::Receiver<String>,
    _data: Option<tempfile::TempDir>,
}

impl Server {
    /// Starts `roomcast-smol` on a free loopback port with these extra flags.
    pub fn smol(args: &[&str]) -> Server {
        Server::start(binary("roomcast-smol", "roomcast-smol"), args)
    }

    /// Starts `roomcast-tokio` (gRPC) on a free loopback port with these extra flags.
    pub fn tokio(args: &[&str]) -> Server {
        Server::start(binary("roomcast-tokio", "roomcast-tokio"), args)
    }

    fn start(path: PathBuf, args: &[&str]) -> Server {
        let chosen = args
            .iter()
            .any(|a| a.starts_with("--data-dir") || *a == "--in-memory");
        let data = (!chosen).then(|| tempfile::tempdir().expect("a temporary data dir"));
        let mut child = Command::new(&path)
            .args(["--listen", "127.0.0.1:0"])
            .args(
                data.iter()
                    .flat_map(|d| [OsStr::new("--data-dir"), d.path().as_os_str()]),
            )
            .args(args)
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", path.display()));
        let stderr = child.stderr.take().expect("piped stderr");
        let (tx, log) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("[server] {line}");
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let deadline = Instant::now() + PATIENCE;
        let addr = loop {
            let line = log
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
                .expect("the server logs where it listens");
            if let Some(rest) = line.split("listening on http://").nth(1) {
                break rest.trim().parse().expect("a socket address");
            }
        };
        Server {
            child,
            addr,
            log,
            _data: data,
        }
    }

    /// `http://127.0.0.1:PORT` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// `ws://127.0.0.1:PORT` + `path`.
    pub fn ws_url(&self, path: &str) -> String {
        format!("ws://{}{path}", self.addr)
    }

    /// Sends a signal (`TERM`, `INT`, `KILL`) to the server.
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status();
        assert!(status.is_ok_and(|s| s.success()), "kill -{name} failed");
    }

    /// Waits for the server to exit, failing the test if it does not within [`PATIENCE`].
    pub fn wait(&mut self) -> ExitStatus {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(Instant::now() < deadline, "the server did not exit");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Log lines received so far that contain `needle`.
    pub fn log_lines_containing(&self, needle: &str) -> Vec<String> {
        self.log.try_iter().filter(|l| l.contains(needle)).collect()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs a server binary that must refuse to start; returns its exit status and what it wrote
/// to stderr.
pub fn refused_start(package: &str, bin: &str, args: &[&str]) -> (ExitStatus, String) {
    let mut child = Command::new(binary(package, bin))
        .args(["--listen", "127.0.0.1:0"])
        .args(args)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the server starts");
    let deadline = Instant::now() + PATIENCE;
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("{bin} {args:?} did not refuse to start");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .expect("piped stderr")
        .read_to_string(&mut stderr)
        .expect("stderr");
    (status, stderr)
}

/// An HTTP answer: status, headers that matter, body.
#[derive(Debug)]
pub struct Answer {
    /// The status code.
    pub status: u16,
    /// The Content-Type, if any.
    pub content_type: String,
    /// Every header, lower-cased names.
    pub headers: Vec<(String, String)>,
    /// The body as text.
    pub body: String,
}

impl Answer {
    /// The body as JSON (panics with the body if it is not).
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }

    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Asserts this is a problem response with this status and code; returns the problem.
    pub fn problem(&self, status: u16, code: &str) -> Value {
        assert_eq!(self.status, status, "status of {}", self.body);
        assert_eq!(
            self.content_type, "application/problem+json",
            "problem content type for {}",
            self.body
        );
        let p = self.json();
        assert_eq!(p["code"], code, "problem code in {p}");
        assert_eq!(p["status"], status);
        assert_eq!(p["type"], format!("urn:roomcast:problem:{code}"));
        assert!(
            p["detail"].as_str().is_some_and(|d| !d.is_empty()),
            "a problem names its cause: {p}"
        );
        p
    }
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(Some(PATIENCE))
        .http_status_as_error(false)
        .max_redirects(0)
        .build()
        .into()
}

fn answer(res: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> Answer {
    let mut res = res.expect("the request completes");
    let headers = res
        .headers()
        .iter()
        .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or("").to_owned()))
        .collect::<Vec<_>>();
    let content_type = headers
        .iter()
        .find(|(k, _)| k == "content-type")
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    let mut body = String::new();
    res.body_mut()
        .as_reader()
        .read_to_string(&mut body)
        .expect("a UTF-8 body");
    Answer {
        status: res.status().as_u16(),
        content_type,
        headers,
        body,
    }
}

/// `GET url`.
pub fn get(url: &str) -> Answer {
    answer(agent().get(url).call())
}

/// `DELETE url`.
pub fn delete(url: &str) -> Answer {
    answer(agent().delete(url).call())
}

/// `POST url` with a JSON body.
pub fn post_json(url: &str, body: &Value) -> Answer {
    post(url, "application/json", &body.to_string())
}

/// `POST url` with any content type and body.
pub fn post(url: &str, content_type: &str, body: &str) -> Answer {
    answer(
        agent()
            .post(url)
            .header("Content-Type", content_type)
            .send(body),
    )
}

/// `POST url` with extra headers.
pub fn post_with(url: &str, headers: &[(&str, &str)], body: &str) -> Answer {
    let mut req = agent().post(url);
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    answer(req.send(body))
}

/// Creates a room through the API, asserting it worked.
pub fn create_room(server: &Server, room: &str) {
    let res = post_json(
        &server.url("/api/v1/rooms"),
        &serde_json::json!({ "room": room }),
    );
    assert!(
        res.status == 201 || res.status == 200,
        "create {room}: {} {}",
        res.status,
        res.body
    );
}

/// Posts a message through the API, asserting it was accepted; returns the stored message.
pub fn say(server: &Server, room: &str, user: &str, text: &str) -> Value {
    let res = post_json(
        &server.url(&format!("/api/v1/rooms/{room}/messages")),
        &serde_json::json!({ "user": user, "text": text }),
    );
    assert_eq!(res.status, 201, "post to {room}: {}", res.body);
    res.json()
}

/// A raw HTTP/1.1 request over a fresh socket, for what an HTTP client library will not send
/// (a lying Content-Length, a broken header). Returns the status code and the body.
pub fn raw_request(addr: SocketAddr, request: &[u8]) -> (u16, String) {
    use std::io::Write;
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(PATIENCE)).expect("timeout");
    stream.write_all(request).expect("send");
    let mut reader = BufReader::new(stream);
    let head = sse::read_head(&mut reader).expect("a response head");
    let body = sse::read_sized_body(&mut reader, &head);
    (head.status, String::from_utf8_lossy(&body).into_owned())
}
