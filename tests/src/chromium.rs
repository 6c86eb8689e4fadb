//! Headless Chromium through chromedriver, for tests of the real page and the client library.
//! Needs Debian's `chromium` and `chromium-driver` (`.ci/run` installs them); without them a
//! test says so and passes only outside CI.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};

use crate::PATIENCE;

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// Desktop and phone window sizes the pages are checked at.
pub const DESKTOP: (u32, u32) = (1280, 800);
/// A phone, portrait.
pub const PHONE: (u32, u32) = (390, 844);

/// Whether Chromium is here; outside CI, a test without it says so and passes.
pub fn available() -> bool {
    crate::installed(
        Path::new(CHROMIUM).exists() && Path::new(CHROMEDRIVER).exists(),
        "Debian's chromium and chromium-driver, for the browser tests",
    )
}

/// A running chromedriver and the profiles of the browsers it started; all gone when dropped.
pub struct Driver {
    child: Child,
    port: u16,
    profiles: tempfile::TempDir,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // A browser whose session was not closed outlives its driver: end each one started on
        // this driver's profiles, by its process id (its helpers go with it).
        for pid in browsers_on(self.profiles.path()) {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
        }
    }
}

/// The processes started with a `--user-data-dir` under `profiles`.
fn browsers_on(profiles: &std::path::Path) -> Vec<u32> {
    let flag = format!("--user-data-dir={}", profiles.display());
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    procs
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|cmdline| {
                cmdline
                    .split(|b| *b == 0)
                    .any(|arg| arg.starts_with(flag.as_bytes()))
            })
        })
        .collect()
}

impl Driver {
    /// Starts chromedriver on a free loopback port.
    pub fn start() -> Driver {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let deadline = Instant::now() + PATIENCE;
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not come up");
            std::thread::sleep(Duration::from_millis(50));
        }
        Driver {
            child,
            port,
            profiles: tempfile::tempdir().expect("a profiles dir"),
        }
    }

    /// A new browser (its own profile: its own cookies), desktop-sized.
    pub async fn browser(&self, name: &str) -> Client {
        self.launch(name, true, false).await
    }

    /// A browser with JavaScript turned off.
    pub async fn browser_without_scripts(&self, name: &str) -> Client {
        self.launch(name, false, false).await
    }

    /// A browser whose reader prefers a dark colour scheme.
    pub async fn browser_in_the_dark(&self, name: &str) -> Client {
        self.launch(name, true, true).await
    }

    async fn launch(&self, name: &str, scripts: bool, dark: bool) -> Client {
        let profile: PathBuf = self.profiles.path().join(name);
        let mut options = json!({
            "binary": CHROMIUM,
            "args": [
                "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
                "--no-first-run", "--disable-background-networking", "--disable-component-update",
                "--disable-sync", format!("--window-size={},{}", DESKTOP.0, DESKTOP.1),
                // Servers under test serve HTTPS with a test authority's certificates.
                "--ignore-certificate-errors",
                format!("--user-data-dir={}", profile.display()),
            ]
        });
        if !scripts {
            options["prefs"] = json!({ "profile.managed_default_content_settings.javascript": 2 });
        }
        if dark && let Some(args) = options["args"].as_array_mut() {
            args.push(json!("--force-dark-mode"));
            args.push(json!("--blink-settings=preferredColorScheme=0"));
        }
        let mut caps = serde_json::Map::new();
        caps.insert("goog:chromeOptions".into(), options);
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        ClientBuilder::new(connector)
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{}", self.port))
            .await
            .expect("a browser session")
    }
}

/// Polls `script` in the page until it returns something other than `null`.
pub async fn wait_for(client: &Client, what: &str, script: &str) -> Value {
    let deadline = Instant::now() + PATIENCE;
    loop {
        // A page between two documents (a redirect) may not run the script: try again.
        if let Ok(value) = client.execute(script, vec![]).await
            && !value.is_null()
        {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Runs `script` in the page.
pub async fn run(client: &Client, script: &str, args: Vec<Value>) -> Value {
    client
        .execute(script, args)
        .await
        .unwrap_or_else(|e| panic!("the script failed: {e}\n{script}"))
}

/// Clicks the element `css` selects, as a person would.
pub async fn click(client: &Client, css: &str) {
    client
        .find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("no {css}: {e}"))
        .click()
        .await
        .unwrap_or_else(|e| panic!("cannot click {css}: {e}"));
}

/// Types `text` into the element `css` selects, key by key.
pub async fn type_into(client: &Client, css: &str, text: &str) {
    client
        .find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("no {css}: {e}"))
        .send_keys(text)
        .await
        .unwrap_or_else(|e| panic!("cannot type into {css}: {e}"));
}

/// Signs the browser in as a guest named `name` (through the sign-in page's form).
pub async fn sign_in_as_guest(client: &Client, server: &crate::Server, name: &str) {
    client
        .goto(&server.url("/sign-in"))
        .await
        .expect("page loads");
    wait_for(
        client,
        "the sign-in page",
        "return document.getElementById('nickname') ? true : null;",
    )
    .await;
    let join = "const n = document.getElementById('nickname'); n.value = arguments[0]; \
                n.form.submit(); return true;";
    run(client, join, vec![json!(name)]).await;
    wait_for(
        client,
        "the lobby",
        "return location.pathname === '/' && document.querySelector('.lobby') ? true : null;",
    )
    .await;
}

/// Opens a room page and waits until its stream is live.
pub async fn open_live_room(client: &Client, server: &crate::Server, room: &str) {
    client
        .goto(&server.url(&format!("/room/{room}")))
        .await
        .expect("page loads");
    wait_for(
        client,
        "the live stream",
        "return document.getElementById('status')?.textContent === 'Live' ? true : null;",
    )
    .await;
}

/// Saves a screenshot as `name.png` in `$ROOMCAST_SCREENSHOTS`, if that is set.
pub async fn screenshot(client: &Client, name: &str) {
    if let Ok(dir) = std::env::var("ROOMCAST_SCREENSHOTS") {
        let png = client.screenshot().await.expect("a screenshot");
        std::fs::write(Path::new(&dir).join(format!("{name}.png")), png).expect("saved");
    }
}

/// How far the page scrolls sideways (0 when it fits its window).
pub async fn sideways_overflow(client: &Client) -> i64 {
    run(
        client,
        "const e = document.scrollingElement; return e.scrollWidth - e.clientWidth;",
        vec![],
    )
    .await
    .as_i64()
    .expect("a number")
}

fn axe() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("browser/node_modules/axe-core/axe.min.js")
}

/// Whether axe-core is installed; outside CI, a test without it says so and passes.
pub fn axe_available() -> bool {
    crate::installed(
        axe().exists(),
        "axe-core (`npm ci --prefix tests/browser`), for the accessibility scan",
    )
}

/// The serious and critical violations axe-core finds in the page, as `id: target…` lines.
pub async fn accessibility_violations(client: &Client) -> Vec<String> {
    let source =
        std::fs::read_to_string(axe()).expect("axe-core, from `npm ci --prefix tests/browser`");
    run(client, &source, vec![]).await;
    let found = client
        .execute_async(
            "const done = arguments[arguments.length - 1];
             axe.run(document, { runOnly: { type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'wcag22aa', 'best-practice'] } })
               .then((r) => done(r.violations
                 .filter((v) => v.impact === 'serious' || v.impact === 'critical')
                 .map((v) => `${v.id} (${v.impact}): ${v.nodes.map((n) => n.target.join(' ')).join(', ')}`)),
                 (e) => done([`axe failed: ${e}`]));",
            vec![],
        )
        .await
        .expect("axe runs");
    serde_json::from_value(found).expect("a list of strings")
}
