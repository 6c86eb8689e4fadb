//! The real page in headless Chromium: two browsers open the same room, one posts, the other
//! sees it arrive live. Needs Debian's `chromium` and `chromium-driver` (`.ci/run` installs
//! them); without them the test says so and passes only outside CI.

use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use roomcast_e2e::{PATIENCE, Server, get, say};
use serde_json::{Value, json};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_driver() -> (Driver, u16) {
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
    (Driver(child), port)
}

async fn browser(port: u16, profile: &Path) -> Client {
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": CHROMIUM,
            "args": [
                "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
                "--no-first-run", "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--window-size=1200,800", format!("--user-data-dir={}", profile.display()),
            ]
        }),
    );
    let connector = hyper_util::client::legacy::connect::HttpConnector::new();
    ClientBuilder::new(connector)
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{port}"))
        .await
        .expect("a browser session")
}

/// Polls `script` in the page until it returns something other than `null`.
async fn wait_for(client: &Client, what: &str, script: &str) -> Value {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let value = client.execute(script, vec![]).await.expect("script runs");
        if !value.is_null() {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Opens the room: the page sends the browser to sign in, it joins as a guest, and comes back.
async fn open_room(client: &Client, url: &str, name: &str) {
    client.goto(url).await.expect("page loads");
    wait_for(
        client,
        "the sign-in page",
        "return document.getElementById('nickname') ? true : null;",
    )
    .await;
    let join = "const n = document.getElementById('nickname'); n.value = arguments[0]; \
                n.form.submit(); return true;";
    client
        .execute(join, vec![json!(name)])
        .await
        .expect("the guest form posts");
    wait_for(
        client,
        "the room page",
        "return document.getElementById('chat') ? true : null;",
    )
    .await;
    wait_for(
        client,
        "the live stream",
        "return document.getElementById('status').textContent === 'live' ? true : null;",
    )
    .await;
}

#[tokio::test(flavor = "current_thread")]
async fn a_message_posted_in_one_browser_appears_in_another() {
    if !Path::new(CHROMIUM).exists() || !Path::new(CHROMEDRIVER).exists() {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must install chromium and chromium-driver"
        );
        eprintln!("SKIPPED: install Debian's chromium and chromium-driver to run the browser test");
        return;
    }
    let server = Server::smol(&[]);
    let (_driver, port) = start_driver();
    let profiles = std::env::temp_dir().join(format!("roomcast-browser-{}", std::process::id()));
    let ada = browser(port, &profiles.join("ada")).await;
    let bob = browser(port, &profiles.join("bob")).await;
    let room = server.url("/room/browsers");
    open_room(&ada, &room, "ada").await;
    open_room(&bob, &room, "bob").await;
    wait_for(&ada, "bob in the presence list", "return [...document.querySelectorAll('#present li')].some(li => li.textContent === 'bob') ? true : null;").await;

    let text = "hello from a real browser 🎉 <b>not bold</b>";
    ada.execute(
        "document.getElementById('text').value = arguments[0]; return true;",
        vec![json!(text)],
    )
    .await
    .unwrap();
    ada.find(Locator::Css("#composer button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();

    let seen = wait_for(&bob, "the message in the other browser", "const t = [...document.querySelectorAll('#messages .message .text')].map(p => p.textContent); return t.length ? t : null;").await;
    assert_eq!(
        seen,
        json!([text]),
        "it arrives once, as text, with its emoji"
    );
    let bold = bob
        .execute(
            "return document.querySelectorAll('#messages b').length;",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(bold, json!(0), "user text never becomes markup");
    let who = bob
        .execute(
            "return document.querySelector('#messages .message .who').textContent;",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(who, json!("ada"));
    wait_for(
        &ada,
        "the composer to clear",
        "return document.getElementById('text').value === '' ? true : null;",
    )
    .await;
    assert_eq!(
        get(&server.url("/api/v1/rooms/browsers/messages")).json()["messages"][0]["text"],
        text
    );
    // Once means once: after a second message arrives, the first is still there only once.
    say(&server, "browsers", "cy", "second");
    let seen = wait_for(&bob, "the second message", "const t = [...document.querySelectorAll('#messages .message .text')].map(p => p.textContent); return t.length >= 2 ? t : null;").await;
    assert_eq!(
        seen,
        json!([text, "second"]),
        "each message exactly once, in order"
    );

    if let Ok(dir) = std::env::var("ROOMCAST_SCREENSHOTS") {
        std::fs::write(
            Path::new(&dir).join("room-desktop.png"),
            bob.screenshot().await.unwrap(),
        )
        .unwrap();
        bob.set_window_size(390, 844).await.unwrap();
        std::fs::write(
            Path::new(&dir).join("room-phone.png"),
            bob.screenshot().await.unwrap(),
        )
        .unwrap();
    }
    ada.close().await.unwrap();
    bob.close().await.unwrap();
    let _ = std::fs::remove_dir_all(&profiles);
}
