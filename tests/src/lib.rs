//! The end-to-end harness: start a real server binary on an ephemeral loopback port, and talk to
//! it through real clients (HTTP, an EventSource-conformant SSE reader, WebSocket).

use std::ffi::OsStr;
use std::io::{BufRead, BufReader, Read};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Mutex, OnceLock, mpsc};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

pub mod chromium;
pub mod grpc;
pub mod raw;
pub mod redis;
pub mod sse;

pub use sse::{SseEvent, SseStream};

/// How long any single wait in a test may take before the test fails (never a timing assertion:
/// only a bound so a broken server fails the test instead of hanging it).
pub const PATIENCE: Duration = Duration::from_secs(20);

/// Asks `check` every 20 ms until it gives an answer, for up to [`PATIENCE`] (then panics
/// saying it was waiting for `what`): for what the server does after it answers.
pub fn wait_until<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = std::time::Instant::now() + PATIENCE;
    loop {
        if let Some(found) = check() {
            return found;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Whether something a test needs (`found`) is installed. Outside CI a missing one is said
/// (`missing`: what to install) and the test passes without running; under CI, where `.ci/run`
/// installs it, it fails the test.
pub fn installed(found: bool, missing: &str) -> bool {
    assert!(
        found || std::env::var_os("CI").is_none(),
        "CI must install it: {missing}"
    );
    if !found {
        eprintln!("SKIPPED: {missing}");
    }
    found
}

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
        // Build with the profile whose directory this test runs from, so `cargo test --release`
        // never runs a stale release binary left by `cargo run --release`.
        let profile = match dir.file_name().and_then(|n| n.to_str()) {
            Some("debug") | None => "dev",
            Some(name) => name,
        };
        let status = Command::new(env!("CARGO"))
            .args(["build", "--quiet", "--profile", profile])
            .args(["--package", package, "--bin", bin])
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
    /// Whether it serves TLS.
    https: bool,
    log: Mutex<mpsc::Receiver<String>>,
    /// Every log line received so far.
    seen: Mutex<Vec<String>>,
    _data: Option<tempfile::TempDir>,
}

impl Server {
    /// Starts `roomcast-smol` on a free loopback port with these extra flags.
    pub fn smol(args: &[&str]) -> Server {
        Server::start(
            binary("roomcast-smol", "roomcast-smol"),
            "127.0.0.1:0",
            args,
        )
    }

    /// Starts `roomcast-smol` on `addr`: where a stopped server listened, so that its clients
    /// (a browser page) reconnect to the new one.
    pub fn smol_on(addr: SocketAddr, args: &[&str]) -> Server {
        Server::start(
            binary("roomcast-smol", "roomcast-smol"),
            &addr.to_string(),
            args,
        )
    }

    /// Starts `roomcast-tokio` (gRPC) on a free loopback port with these extra flags.
    pub fn tokio(args: &[&str]) -> Server {
        Server::start(
            binary("roomcast-tokio", "roomcast-tokio"),
            "127.0.0.1:0",
            args,
        )
    }

    fn start(path: PathBuf, listen: &str, args: &[&str]) -> Server {
        let chosen = args
            .iter()
            .any(|a| a.starts_with("--data-dir") || *a == "--in-memory");
        let data = (!chosen).then(|| tempfile::tempdir().expect("a temporary data dir"));
        let data_args: Vec<&OsStr> = data
            .iter()
            .flat_map(|d| [OsStr::new("--data-dir"), d.path().as_os_str()])
            .collect();
        for admin in admins(args) {
            make_account(&path, &data_args, args, &admin);
        }
        let mut child = Command::new(&path)
            .args(["--listen", listen])
            .args(&data_args)
            .args(RELAXED)
            .args(args)
            .env("RUST_LOG", "info")
            .env_remove("NO_COLOR")
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
        let mut early = Vec::new();
        let (addr, https) = loop {
            let line = log
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
                .expect("the server logs where it listens");
            let addr = line
                .split("listening on http://")
                .nth(1)
                .map(|rest| (rest, false))
                .or_else(|| Some((line.split("listening on https://").nth(1)?, true)))
                .map(|(rest, https)| (rest.trim().parse().expect("a socket address"), https));
            early.push(line);
            if let Some(addr) = addr {
                break addr;
            }
        };
        remember_server(addr, data_key(args, data.as_ref()));
        Server {
            child,
            addr,
            https,
            log: Mutex::new(log),
            seen: Mutex::new(early),
            _data: data,
        }
    }

    /// `http://127.0.0.1:PORT` + `path` (`https://localhost:PORT` when it serves TLS, the name
    /// test certificates are for).
    pub fn url(&self, path: &str) -> String {
        match self.https {
            true => format!("https://localhost:{}{path}", self.addr.port()),
            false => format!("http://{}{path}", self.addr),
        }
    }

    /// `ws://127.0.0.1:PORT` + `path` (`wss://localhost:PORT` when it serves TLS).
    pub fn ws_url(&self, path: &str) -> String {
        match self.https {
            true => format!("wss://localhost:{}{path}", self.addr.port()),
            false => format!("ws://{}{path}", self.addr),
        }
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

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The server's resident memory, in KiB, from `/proc`.
    pub fn rss_kib(&self) -> u64 {
        self.proc_status_kib("VmRSS:")
    }

    /// The most memory the server has held at once (KiB, `VmHWM`).
    pub fn peak_rss_kib(&self) -> u64 {
        self.proc_status_kib("VmHWM:")
    }

    fn proc_status_kib(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .expect("the server's /proc status");
        status
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{field} in /proc status"))
    }

    /// Log lines received so far that contain `needle`.
    pub fn log_lines_containing(&self, needle: &str) -> Vec<String> {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        let log = self.log.lock().unwrap_or_else(|e| e.into_inner());
        seen.extend(log.try_iter());
        seen.iter()
            .filter(|l| l.contains(needle))
            .cloned()
            .collect()
    }

    /// Waits (at most [`PATIENCE`]) for a log line containing `needle`, and returns it.
    pub fn wait_for_log(&self, needle: &str) -> String {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(line) = self.log_lines_containing(needle).pop() {
                return line;
            }
            assert!(Instant::now() < deadline, "no log line with {needle:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What one stranger may take, relaxed for the tests that are about something else: they act
/// as a handful of users (the harness's `anonymous` among them) from one address, making more
/// rooms, uploads, streams and connections than one guest may. The tests of those limits give
/// their own values, which come later on the command line and win.
const RELAXED: &[&str] = &[
    "--room-rate=0/1s",
    "--upload-rate=0/1s",
    "--max-rooms-per-user=100000",
    "--max-user-listeners=100000",
    "--max-connections-per-address=100000",
    "--max-fresh-connections-per-address=100000",
];

/// The names `--admins` gives in `args` (`--admins=a,b` or `--admins a,b`).
fn admins(args: &[&str]) -> Vec<String> {
    let mut names = Vec::new();
    for (i, arg) in args.iter().enumerate() {
        let list = match arg.strip_prefix("--admins=") {
            Some(list) => Some(list),
            None if *arg == "--admins" => args.get(i + 1).copied(),
            None => None,
        };
        names.extend(
            list.into_iter()
                .flat_map(|l| l.split(','))
                .map(str::to_owned),
        );
    }
    names
}

/// Makes the account `name` with the harness's password as an operator does, with
/// `--set-password` on the server's data dir (or Redis) before it starts: the only way an
/// admin's account is made.
fn make_account(binary: &std::path::Path, data_args: &[&OsStr], args: &[&str], name: &str) {
    use std::io::Write as _;
    let mut child = Command::new(binary)
        .args(data_args)
        .args(args)
        .args(["--set-password", name])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the server binary runs");
    child
        .stdin
        .take()
        .expect("piped stdin")
        .write_all(format!("{HARNESS_PASSWORD}\n").as_bytes())
        .expect("the password is written");
    let out = child.wait_with_output().expect("--set-password ends");
    assert!(
        out.status.success(),
        "--set-password {name}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
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
    /// The body as text (any bytes that are not UTF-8 replaced).
    pub body: String,
    /// The body's bytes.
    pub bytes: Vec<u8>,
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

/// A user signed in over REST: their token and id.
#[derive(Debug, Clone)]
pub struct User {
    /// Their bearer token.
    pub token: String,
    /// Their user id (`name~tag`).
    pub id: String,
}

impl User {
    /// A new guest named `nickname` (asserts the server takes it).
    pub fn guest(server: &Server, nickname: &str) -> User {
        let res = post_json(
            &server.url("/api/v1/auth/guest"),
            &json!({ "nickname": nickname }),
        );
        assert_eq!(res.status, 201, "guest {nickname}: {}", res.body);
        User::from_answer(&res)
    }

    /// A new account named `name` (asserts the server takes it).
    pub fn register(server: &Server, name: &str) -> User {
        let res = post_json(
            &server.url("/api/v1/auth/register"),
            &json!({ "name": name, "password": "a long password" }),
        );
        assert_eq!(res.status, 201, "register {name}: {}", res.body);
        User::from_answer(&res)
    }

    /// The user an auth answer (`token`, `user_id`) names.
    pub fn from_answer(res: &Answer) -> User {
        let body = res.json();
        User {
            token: body["token"].as_str().expect("a token").to_owned(),
            id: body["user_id"].as_str().expect("an id").to_owned(),
        }
    }
}

/// `method path` on `server` as `who`, with a JSON body (`{}` when a POST, PUT or PATCH has
/// none).
pub fn call_as(
    server: &Server,
    method: &str,
    path: &str,
    who: &User,
    body: Option<Value>,
) -> Answer {
    let auth = format!("Bearer {}", who.token);
    let headers = [
        ("Content-Type", "application/json"),
        ("Authorization", auth.as_str()),
    ];
    let body = match method {
        "POST" | "PUT" | "PATCH" => Some(body.unwrap_or(json!({})).to_string()),
        _ => None,
    };
    request_with(method, &server.url(path), &headers, body.as_deref())
}

/// `value` without its `user_id`s, each checked first to be the id of the `user` beside it
/// (that name, `~`, a tag): for comparing answers whose ids are random.
pub fn ids_checked(value: Value) -> Value {
    match value {
        Value::Object(mut fields) => {
            if let (Some(Value::String(name)), Some(id)) =
                (fields.get("user"), fields.get("user_id"))
            {
                let id = id.as_str().unwrap_or_default();
                assert!(
                    id.strip_prefix(name.as_str())
                        .is_some_and(|tag| tag.starts_with('~') && tag.len() > 1),
                    "{id:?} is not an id of {name:?}"
                );
                fields.remove("user_id");
            }
            Value::Object(
                fields
                    .into_iter()
                    .map(|(k, v)| (k, ids_checked(v)))
                    .collect(),
            )
        }
        Value::Array(items) => Value::Array(items.into_iter().map(ids_checked).collect()),
        scalar @ (Value::Null | Value::Bool(_) | Value::Number(_) | Value::String(_)) => scalar,
    }
}

/// The JSON of a 2xx answer (`null` when empty); fails the test with the answer otherwise.
pub fn ok(res: Answer) -> Value {
    assert!(
        (200..300).contains(&res.status),
        "{} {}",
        res.status,
        res.body
    );
    if res.body.is_empty() {
        Value::Null
    } else {
        res.json()
    }
}

/// The password of the admins' accounts the harness makes before a server starts (with
/// `--set-password`, as an operator would).
pub const HARNESS_PASSWORD: &str = "harness password";

/// A guest token for `user` on the server at `addr`, fetched once per data dir and name through
/// `POST /api/v1/auth/guest` (for a name only an account may hold, an admin's, an account's
/// token). `None` if the server refuses (an invalid name, guests off).
///
/// Tests name the acting user the way clients used to (`?user=` in a URL, `"user"` in a JSON
/// body); the helpers turn that name into a real token, so the server sees a signed-in caller
/// whose name matches, and a mismatch would be refused.
///
/// Tokens belong to a data dir (its secret and sessions): a server restarted on the same dir
/// takes the tokens issued before, as a real client keeps its token across a restart; and a
/// guest name stays held, so asking again would be refused.
pub fn guest_token(addr: SocketAddr, user: &str) -> Option<String> {
    if let Some(token) = known_token(addr, user) {
        return Some(token);
    }
    let post = |path: &str, body: serde_json::Value| {
        answer(
            agent()
                .post(&format!("http://{addr}{path}"))
                .header("Content-Type", "application/json")
                .send(body.to_string()),
        )
    };
    let mut res = post(
        "/api/v1/auth/guest",
        serde_json::json!({ "nickname": user }),
    );
    if res.status == 409 {
        // A name only an account may hold (an admin's, made with `--set-password` when the
        // server started): the harness signs in to it, or registers it.
        let account = serde_json::json!({ "name": user, "password": HARNESS_PASSWORD });
        res = post("/api/v1/auth/sign-in", account.clone());
        if res.status != 201 && res.status != 200 {
            res = post("/api/v1/auth/register", account);
        }
    }
    if res.status != 201 && res.status != 200 {
        return None;
    }
    let token = res.json()["token"].as_str()?.to_owned();
    remember_token(addr, user, &token);
    Some(token)
}

type Keys = Mutex<std::collections::HashMap<SocketAddr, String>>;
type TokenCache = Mutex<std::collections::HashMap<(String, String), String>>;

/// Tokens by data dir and name.
fn tokens() -> &'static TokenCache {
    static TOKENS: OnceLock<TokenCache> = OnceLock::new();
    TOKENS.get_or_init(Default::default)
}

/// The data dir of the server now listening on each address.
fn servers() -> &'static Keys {
    static SERVERS: OnceLock<Keys> = OnceLock::new();
    SERVERS.get_or_init(Default::default)
}

/// What a server's tokens are keyed by: its data dir, or (in memory) this run of it alone.
fn data_key(args: &[&str], temp: Option<&tempfile::TempDir>) -> String {
    static RUNS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    if args.contains(&"--in-memory") {
        return format!(
            "memory-{}",
            RUNS.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
        );
    }
    let named = args.iter().enumerate().find_map(|(i, a)| {
        a.strip_prefix("--data-dir=")
            .map(str::to_owned)
            .or_else(|| (*a == "--data-dir").then(|| args.get(i + 1).map(|d| (*d).to_owned()))?)
    });
    named
        .or_else(|| temp.map(|t| t.path().display().to_string()))
        .unwrap_or_default()
}

fn remember_server(addr: SocketAddr, key: String) {
    servers()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(addr, key);
}

/// The data-dir key of the server at `addr`.
pub fn server_key(addr: SocketAddr) -> String {
    servers()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(&addr)
        .cloned()
        .unwrap_or_else(|| addr.to_string())
}

/// Keeps a token `user` got from the server at `addr`.
pub fn remember_token(addr: SocketAddr, user: &str, token: &str) {
    tokens()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert((server_key(addr), user.to_owned()), token.to_owned());
}

/// A token `user` already got from the server at `addr` (or one on the same data dir).
pub fn known_token(addr: SocketAddr, user: &str) -> Option<String> {
    tokens()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(&(server_key(addr), user.to_owned()))
        .cloned()
}

/// The user a request acts as: `?user=` in its URL, else `"user"` in its JSON body, else
/// `anonymous`.
fn acting_user(url: &str, body: Option<&str>) -> String {
    let from_query = url.split_once('?').and_then(|(_, q)| {
        serde_urlencoded::from_str::<Vec<(String, String)>>(q)
            .ok()?
            .into_iter()
            .find(|(k, _)| k == "user")
            .map(|(_, v)| v)
    });
    let from_body = || {
        let body: Value = serde_json::from_str(body?).ok()?;
        body["user"].as_str().map(str::to_owned)
    };
    from_query
        .or_else(from_body)
        .unwrap_or_else(|| "anonymous".into())
}

/// The `Authorization` value for a request to `url` acting as the user it names (`?user=`, or
/// `"user"` in the JSON `body`, else `anonymous`), if the server grants that name a guest token.
pub fn authorization(url: &str, body: Option<&str>) -> Option<String> {
    let addr: SocketAddr = url
        .strip_prefix("http://")?
        .split('/')
        .next()?
        .parse()
        .ok()?;
    guest_token(addr, &acting_user(url, body)).map(|t| format!("Bearer {t}"))
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(Some(PATIENCE))
        .http_status_as_error(false)
        .max_redirects(0)
        .build()
        .into()
}

/// A ureq response as an [`Answer`].
pub fn answer(res: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> Answer {
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
    let mut bytes = Vec::new();
    res.body_mut()
        .as_reader()
        .read_to_end(&mut bytes)
        .expect("the body arrives");
    Answer {
        status: res.status().as_u16(),
        content_type,
        headers,
        body: String::from_utf8_lossy(&bytes).into_owned(),
        bytes,
    }
}

/// `method url` (GET or POST) as the user the URL names, with these headers and, for a POST,
/// these bytes as the body.
pub fn call_bytes(method: &str, url: &str, headers: &[(&str, &str)], body: &[u8]) -> Answer {
    let auth = authorization(url, None);
    if method == "GET" {
        let mut req = agent().get(url);
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        if let Some(auth) = &auth {
            req = req.header("Authorization", auth);
        }
        return answer(req.call());
    }
    assert_eq!(method, "POST", "no helper for {method}");
    let mut req = agent().post(url);
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    if let Some(auth) = &auth {
        req = req.header("Authorization", auth);
    }
    answer(req.send(body))
}

/// `GET url` as the user it names (see [`guest_token`]).
pub fn get(url: &str) -> Answer {
    let mut req = agent().get(url);
    if let Some(auth) = authorization(url, None) {
        req = req.header("Authorization", auth);
    }
    answer(req.call())
}

/// Any request with exactly these headers (no credentials added) and an optional body.
pub fn request_with(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> Answer {
    if let Some(body) = body {
        let mut req = match method {
            "PATCH" => agent().patch(url),
            "PUT" => agent().put(url),
            _ => agent().post(url),
        };
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        return answer(req.send(body));
    }
    let mut req = match method {
        "DELETE" => agent().delete(url),
        "OPTIONS" => agent().options(url),
        _ => agent().get(url),
    };
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    answer(req.call())
}

/// `method url` (GET, POST, PATCH, PUT or DELETE), with an optional JSON body, as the user the
/// URL names (`?user=`).
pub fn call(method: &str, url: &str, body: Option<&Value>) -> Answer {
    call_with(method, url, authorization(url, None).as_deref(), body)
}

/// `method url` with this `Authorization` value (if any) and an optional JSON body.
pub fn call_with(method: &str, url: &str, auth: Option<&str>, body: Option<&Value>) -> Answer {
    let agent = agent();
    let with_auth = |req: ureq::RequestBuilder<ureq::typestate::WithBody>| match auth {
        Some(a) => req.header("Authorization", a),
        None => req,
    };
    let body = body.map(Value::to_string);
    let res = match method {
        "POST" => with_auth(agent.post(url)),
        "PATCH" => with_auth(agent.patch(url)),
        "PUT" => with_auth(agent.put(url)),
        "DELETE" | "GET" => {
            let req = if method == "GET" {
                agent.get(url)
            } else {
                agent.delete(url)
            };
            let req = match auth {
                Some(a) => req.header("Authorization", a),
                None => req,
            };
            return answer(req.call());
        }
        other => panic!("no helper for {other}"),
    };
    let res = res.header("Content-Type", "application/json");
    answer(res.send(body.unwrap_or_default()))
}

/// `GET url` with no credentials at all.
pub fn get_unauthenticated(url: &str) -> Answer {
    answer(agent().get(url).call())
}

/// `DELETE url` as the user it names.
pub fn delete(url: &str) -> Answer {
    let mut req = agent().delete(url);
    if let Some(auth) = authorization(url, None) {
        req = req.header("Authorization", auth);
    }
    answer(req.call())
}

/// `POST url` with a JSON body.
pub fn post_json(url: &str, body: &Value) -> Answer {
    post(url, "application/json", &body.to_string())
}

/// `POST url` with any content type and body, as the user the URL or JSON body names.
pub fn post(url: &str, content_type: &str, body: &str) -> Answer {
    post_with(url, &[("Content-Type", content_type)], body)
}

/// `POST url` with extra headers, as the user the URL or JSON body names (unless the headers
/// carry their own `Authorization`).
pub fn post_with(url: &str, headers: &[(&str, &str)], body: &str) -> Answer {
    let mut req = agent().post(url);
    let own = headers
        .iter()
        .any(|(n, _)| n.eq_ignore_ascii_case("authorization"));
    if !own && let Some(auth) = authorization(url, Some(body)) {
        req = req.header("Authorization", auth);
    }
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

/// The value of one Prometheus series (its name and labels exactly as exposed) in `text`.
pub fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .find_map(|line| {
            line.strip_prefix(series)?
                .strip_prefix(' ')?
                .trim()
                .parse()
                .ok()
        })
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

/// A browser without JavaScript: keeps cookies, follows nothing by itself, and fills in the
/// CSRF field of the forms it posts from its `roomcast_csrf` cookie, as the pages' forms do.
pub struct Browser {
    base: String,
    cookies: std::collections::BTreeMap<String, String>,
}

impl Browser {
    /// A browser with no cookies yet.
    pub fn new(server: &Server) -> Browser {
        Browser {
            base: server.url(""),
            cookies: Default::default(),
        }
    }

    /// A browser signed in as a guest through the sign-in page's form.
    pub fn guest(server: &Server, nickname: &str) -> Browser {
        let mut browser = Browser::new(server);
        assert_eq!(browser.get("/sign-in").status, 200);
        let joined = browser.post_form("/guest", &[("nickname", nickname), ("next", "/")]);
        assert_eq!(joined.status, 303, "guest sign-in: {}", joined.body);
        // The session cookie is the guest's token: API helpers acting as this nickname use it
        // (asking for a second guest of the same name would be refused).
        let token = browser
            .cookie("roomcast_session")
            .expect("a session cookie")
            .to_owned();
        remember_token(server.addr, nickname, &token);
        browser
    }

    /// Sets a cookie, as a browser that kept an old one would send it.
    pub fn cookies_insert(&mut self, name: &str, value: &str) {
        self.cookies.insert(name.to_owned(), value.to_owned());
    }

    /// A cookie's current value.
    pub fn cookie(&self, name: &str) -> Option<&str> {
        self.cookies.get(name).map(String::as_str)
    }

    /// `GET path` with the cookies.
    pub fn get(&mut self, path: &str) -> Answer {
        let req = agent().get(&format!("{}{path}", self.base));
        let res = answer(self.with_cookies(req).call());
        self.keep_cookies(&res);
        res
    }

    /// Posts a form with the cookies, adding `csrf` from the cookie unless `fields` has one.
    pub fn post_form(&mut self, path: &str, fields: &[(&str, &str)]) -> Answer {
        let mut fields: Vec<(&str, &str)> = fields.to_vec();
        let csrf = self.cookie("roomcast_csrf").unwrap_or("").to_owned();
        if !fields.iter().any(|(k, _)| *k == "csrf") {
            fields.push(("csrf", &csrf));
        }
        let body = serde_urlencoded::to_string(&fields).expect("a form");
        let req = agent()
            .post(&format!("{}{path}", self.base))
            .header("Content-Type", "application/x-www-form-urlencoded");
        let res = answer(self.with_cookies(req).send(body));
        self.keep_cookies(&res);
        res
    }

    fn with_cookies<B>(&self, req: ureq::RequestBuilder<B>) -> ureq::RequestBuilder<B> {
        if self.cookies.is_empty() {
            return req;
        }
        let header: Vec<String> = self
            .cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        req.header("Cookie", header.join("; "))
    }

    fn keep_cookies(&mut self, res: &Answer) {
        for (name, value) in &res.headers {
            if name != "set-cookie" {
                continue;
            }
            let pair = value.split(';').next().unwrap_or("");
            if let Some((k, v)) = pair.split_once('=') {
                if v.is_empty() || value.contains("Max-Age=0") {
                    self.cookies.remove(k);
                } else {
                    self.cookies.insert(k.to_owned(), v.to_owned());
                }
            }
        }
    }
}

/// A client WebSocket, as [`ws_connect`] opens it.
pub type WsSocket = tungstenite::WebSocket<tungstenite::stream::MaybeTlsStream<TcpStream>>;

/// Opens a WebSocket on `path`, signed in (with `Authorization` in the handshake) as the user
/// `?user=` names.
pub fn ws_connect(
    server: &Server,
    path: &str,
) -> tungstenite::WebSocket<tungstenite::stream::MaybeTlsStream<TcpStream>> {
    use tungstenite::client::IntoClientRequest;
    let mut request = server.ws_url(path).into_client_request().expect("a ws URL");
    if let Some(auth) = authorization(&server.url(path), None) {
        request
            .headers_mut()
            .insert("Authorization", auth.parse().expect("ASCII"));
    }
    let (socket, response) = tungstenite::connect(request).expect("the upgrade succeeds");
    assert_eq!(response.status(), 101);
    if let tungstenite::stream::MaybeTlsStream::Plain(tcp) = socket.get_ref() {
        tcp.set_read_timeout(Some(PATIENCE)).expect("timeout");
    }
    socket
}
