//! The real page in headless Chromium, as people use it: two people chatting, reading back
//! through all of a room's history, links, a restart, signing out in another tab, a mistyped
//! room, the page without JavaScript, an accessibility scan, and the layout at desktop and
//! phone sizes (screenshots in `$ROOMCAST_SCREENSHOTS` when set, to look at).

use fantoccini::Client;
use roomcast_e2e::chromium::{
    DESKTOP, Driver, PHONE, accessibility_violations, available, axe_available, click,
    open_live_room, run, screenshot, sideways_overflow, sign_in_as_guest, type_into, wait_for,
};
use roomcast_e2e::{Server, create_room, get, get_unauthenticated, post_with, say};
use serde_json::{Value, json};

/// Types `text` into the composer and sends it with the button.
async fn send(client: &Client, text: &str) {
    run(
        client,
        "document.getElementById('text').value = arguments[0]; return true;",
        vec![json!(text)],
    )
    .await;
    click(client, "#composer button[type=submit]").await;
}

/// The texts of the messages on the page, once there are at least `n`.
async fn texts(client: &Client, n: usize) -> Value {
    let script = format!(
        "const t = [...document.querySelectorAll('#messages .message .text')].map(p => p.textContent); \
         return t.length >= {n} ? t : null;"
    );
    wait_for(client, &format!("{n} messages"), &script).await
}

/// Whether the element `selector` is inside the window, where the reader sees it.
async fn in_view(client: &Client, selector: &str) -> bool {
    let script = "const e = document.querySelector(arguments[0]); if (!e) return false; \
                  const r = e.getBoundingClientRect(); \
                  return r.height > 0 && r.top >= 0 && r.bottom <= window.innerHeight;";
    run(client, script, vec![json!(selector)]).await == json!(true)
}

/// A server with a room of `n` messages by cy, `message 1` to `message n`.
fn room_of(n: u64, room: &str) -> Server {
    let server = Server::smol(&["--rate-burst=0"]);
    create_room(&server, room);
    for i in 1..=n {
        say(&server, room, "cy", &format!("message {i}"));
    }
    server
}

#[tokio::test(flavor = "current_thread")]
async fn two_people_chat_live() {
    if !available() {
        return;
    }
    let server = Server::smol(&[]);
    create_room(&server, "browsers");
    let driver = Driver::start();
    let ada = driver.browser("ada").await;
    let bob = driver.browser("bob").await;
    for (client, name) in [(&ada, "ada"), (&bob, "bob")] {
        sign_in_as_guest(client, &server, name).await;
        open_live_room(client, &server, "browsers").await;
    }
    wait_for(&ada, "bob in the presence list", "return [...document.querySelectorAll('#present li')].some(li => li.textContent === 'bob') ? true : null;").await;

    let text = "hello from a real browser 🎉 <b>not bold</b>";
    send(&ada, text).await;
    assert_eq!(
        texts(&bob, 1).await,
        json!([text]),
        "it arrives, as text, with its emoji"
    );
    assert_eq!(
        run(
            &bob,
            "return document.querySelectorAll('#messages b').length;",
            vec![]
        )
        .await,
        json!(0),
        "user text never becomes markup"
    );
    wait_for(
        &ada,
        "the composer to clear",
        "return document.getElementById('text').value === '' ? true : null;",
    )
    .await;
    // Bob uses the keyboard alone: Tab to the composer, type, Enter.
    let mut tabs = 0;
    while run(&bob, "return document.activeElement?.id ?? null;", vec![]).await != json!("text") {
        tabs += 1;
        assert!(tabs < 40, "the composer is reachable by Tab");
        bob.active_element()
            .await
            .unwrap()
            .send_keys("\u{E004}")
            .await
            .unwrap();
    }
    let composer = bob.active_element().await.unwrap();
    composer.send_keys("hi ada\u{E007}").await.unwrap();
    send(&bob, "how are you?").await;
    // Once means once: each message exactly once, in order, in both browsers.
    let want = json!([text, "hi ada", "how are you?"]);
    assert_eq!(texts(&ada, 3).await, want);
    assert_eq!(texts(&bob, 3).await, want);
    // Bob's two in a row share one header; the day is said once.
    let headers = run(&ada, "return [...document.querySelectorAll('#messages .message')].map(m => m.classList.contains('continued'));", vec![]).await;
    assert_eq!(headers, json!([false, false, true]));
    assert_eq!(
        run(
            &ada,
            "return document.querySelectorAll('#messages .day').length;",
            vec![]
        )
        .await,
        json!(1)
    );
    let title = run(
        &ada,
        "return document.querySelector('#messages time').title;",
        vec![],
    )
    .await;
    assert!(
        title.as_str().unwrap().len() > 12,
        "a full timestamp on hover: {title}"
    );
    assert_eq!(
        get(&server.url("/api/v1/rooms/browsers/messages")).json()["messages"][0]["text"],
        text
    );
    // The room is deleted under them: said where they look, nobody left "here", no composer.
    assert_eq!(
        roomcast_e2e::delete(&server.url("/room/browsers")).status,
        204
    );
    let notice = wait_for(&bob, "the deletion notice", "const n = document.getElementById('notices').textContent; return n.includes('deleted') ? n : null;").await;
    assert!(
        notice.as_str().unwrap().contains("This room was deleted"),
        "{notice}"
    );
    assert!(in_view(&bob, "#notices").await);
    let after = run(&bob, "return [document.querySelectorAll('#present li').length, document.getElementById('text').disabled, document.getElementById('status').textContent];", vec![]).await;
    assert_eq!(after, json!([0, true, "Closed"]));
    ada.close().await.unwrap();
    bob.close().await.unwrap();
}

#[tokio::test(flavor = "current_thread")]
async fn load_older_walks_back_to_the_first_message() {
    if !available() {
        return;
    }
    let server = room_of(300, "long");
    let driver = Driver::start();
    let ada = driver.browser("ada").await;
    sign_in_as_guest(&ada, &server, "ada").await;
    open_live_room(&ada, &server, "long").await;
    assert!(
        in_view(&ada, "#m300").await,
        "the page opens at the newest message"
    );
    assert_eq!(
        run(
            &ada,
            "return document.querySelectorAll('#messages .message').length;",
            vec![]
        )
        .await,
        json!(100)
    );
    // The reader scrolls up: reaching the top loads the page before, until the first message.
    for page in 1..=2 {
        let first = 200 - 100 * page;
        run(
            &ada,
            "document.getElementById('older').scrollIntoView(); return true;",
            vec![],
        )
        .await;
        let script = format!(
            "const f = document.querySelector('#messages .message'); \
             return Number(f.dataset.seq) === {} && !document.getElementById('edge').textContent.includes('Loading') ? true : null;",
            first + 1
        );
        wait_for(&ada, &format!("older page {page}"), &script).await;
    }
    let seqs = run(&ada, "return [...document.querySelectorAll('#messages .message')].map(m => Number(m.dataset.seq));", vec![]).await;
    assert_eq!(
        seqs,
        json!((1..=300).collect::<Vec<_>>()),
        "every message once, in order"
    );
    let edge = run(
        &ada,
        "return document.getElementById('edge').textContent.trim();",
        vec![],
    )
    .await;
    assert_eq!(edge, json!("This is the beginning of #long."));
    // A message arriving while the reader is far up is announced, not scrolled to.
    say(&server, "long", "cy", "a new one");
    wait_for(
        &ada,
        "the new-messages marker",
        "const j = document.getElementById('jump'); return j.hidden ? null : j.textContent;",
    )
    .await;
    click(&ada, "#jump").await;
    wait_for(&ada, "the newest message in view", "const r = document.getElementById('m301')?.getBoundingClientRect(); return r && r.bottom <= innerHeight ? true : null;").await;
    ada.close().await.unwrap();
}

#[tokio::test(flavor = "current_thread")]
async fn links_are_clickable_and_only_web_links() {
    if !available() {
        return;
    }
    let server = Server::smol(&[]);
    create_room(&server, "links");
    say(
        &server,
        "links",
        "cy",
        "see https://example.com/a_(b)?q=1, or javascript:alert(1) and data:text/html,<b>x</b>",
    );
    say(
        &server,
        "links",
        "cy",
        "run `cargo test` then\n```\nfn main() {}\n```",
    );
    let driver = Driver::start();
    let ada = driver.browser("ada").await;
    sign_in_as_guest(&ada, &server, "ada").await;
    open_live_room(&ada, &server, "links").await;
    let links = run(&ada, "return [...document.querySelectorAll('#messages a')].map(a => [a.getAttribute('href'), a.rel, a.target]);", vec![]).await;
    assert_eq!(
        links,
        json!([[
            "https://example.com/a_(b)?q=1",
            "noopener noreferrer nofollow",
            "_blank"
        ]]),
        "the web link is a link, without its trailing comma; javascript: and data: stay text"
    );
    let code = run(&ada, "return [[...document.querySelectorAll('#messages .text > code')].map(c => c.textContent), [...document.querySelectorAll('#messages pre code')].map(c => c.textContent)];", vec![]).await;
    assert_eq!(code, json!([["cargo test"], ["fn main() {}"]]));
    // A live message is formatted the same way.
    say(&server, "links", "cy", "live http://127.0.0.1/x");
    wait_for(
        &ada,
        "the live link",
        "return document.querySelector('#m3 a')?.href ?? null;",
    )
    .await;
    ada.close().await.unwrap();
}

#[tokio::test(flavor = "current_thread")]
async fn a_restart_is_survived_and_said_where_it_is_seen() {
    if !available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let data = format!("--data-dir={}", dir.path().display());
    let mut server = Server::smol(&[&data]);
    create_room(&server, "steady");
    say(&server, "steady", "cy", "before");
    let driver = Driver::start();
    let ada = driver.browser("ada").await;
    sign_in_as_guest(&ada, &server, "ada").await;
    open_live_room(&ada, &server, "steady").await;

    let addr = server.addr;
    server.signal("TERM");
    server.wait();
    wait_for(&ada, "the restart notice", "return document.getElementById('notices').textContent.includes('restarting') ? true : null;").await;
    assert!(
        in_view(&ada, "#notices").await,
        "the notice is where the reader looks"
    );
    let server = Server::smol_on(addr, &[&data]);
    wait_for(
        &ada,
        "the page live again",
        "return document.getElementById('status').textContent === 'Live' ? true : null;",
    )
    .await;
    wait_for(&ada, "the reconnected notice", "return document.getElementById('notices').textContent.includes('Reconnected') ? true : null;").await;
    say(&server, "steady", "cy", "after");
    assert_eq!(
        texts(&ada, 2).await,
        json!(["before", "after"]),
        "nothing twice, nothing lost"
    );
    ada.close().await.unwrap();
}

#[tokio::test(flavor = "current_thread")]
async fn signing_out_in_another_tab_leads_to_sign_in() {
    if !available() {
        return;
    }
    let server = Server::smol(&[]);
    create_room(&server, "tabs");
    let driver = Driver::start();
    let ada = driver.browser("ada").await;
    sign_in_as_guest(&ada, &server, "ada").await;
    open_live_room(&ada, &server, "tabs").await;
    let first = ada.window().await.unwrap();
    let second = ada.new_window(true).await.unwrap();
    ada.switch_to_window(second.handle).await.unwrap();
    ada.goto(&server.url("/")).await.unwrap();
    click(&ada, ".who-am-i button").await;
    wait_for(
        &ada,
        "the sign-in page in the second tab",
        "return location.pathname === '/sign-in' ? true : null;",
    )
    .await;
    ada.switch_to_window(first).await.unwrap();
    let at = wait_for(
        &ada,
        "the first tab at sign-in",
        "return location.pathname === '/sign-in' ? location.search : null;",
    )
    .await;
    assert_eq!(
        at,
        json!("?next=%2Froom%2Ftabs"),
        "and it comes back to the room after"
    );
    ada.close().await.unwrap();
}

#[tokio::test(flavor = "current_thread")]
async fn a_mistyped_room_is_not_created_by_looking_at_it() {
    if !available() {
        return;
    }
    let server = Server::smol(&[]);
    let driver = Driver::start();
    let ada = driver.browser("ada").await;
    sign_in_as_guest(&ada, &server, "ada").await;
    ada.goto(&server.url("/room/lobyy")).await.unwrap();
    let heading = wait_for(
        &ada,
        "the no-such-room page",
        "return document.querySelector('h1')?.textContent ?? null;",
    )
    .await;
    assert_eq!(heading, json!("No room named #lobyy"));
    get(&server.url("/api/v1/rooms/lobyy")).problem(404, "room-not-found");
    ada.goto(&server.url("/")).await.unwrap();
    assert_eq!(
        run(
            &ada,
            "return document.querySelectorAll('.rooms li').length;",
            vec![]
        )
        .await,
        json!(0),
        "no room in the lobby"
    );
    // Its button makes it, on purpose.
    ada.goto(&server.url("/room/lobyy")).await.unwrap();
    click(&ada, "main form button").await;
    wait_for(
        &ada,
        "the new room, live",
        "return document.getElementById('status')?.textContent === 'Live' ? true : null;",
    )
    .await;
    assert_eq!(
        get(&server.url("/api/v1/rooms/lobyy")).json()["owner"],
        "ada"
    );
    ada.close().await.unwrap();
}

#[tokio::test(flavor = "current_thread")]
async fn without_javascript_the_page_opens_at_the_newest_and_says_it_is_not_live() {
    if !available() {
        return;
    }
    let server = room_of(130, "plain");
    let driver = Driver::start();
    let ada = driver.browser_without_scripts("ada").await;
    // Signing in and posting are plain forms.
    ada.goto(&server.url("/room/plain")).await.unwrap();
    type_into(&ada, "#nickname", "ada").await;
    click(&ada, "form[action='/guest'] button").await;
    wait_for(
        &ada,
        "the room",
        "return location.pathname === '/room/plain' ? true : null;",
    )
    .await;
    let status = run(
        &ada,
        "return document.getElementById('status').textContent;",
        vec![],
    )
    .await;
    assert_eq!(status, json!("Not live: reload for new messages"));
    assert!(
        in_view(&ada, "#m130").await,
        "it opens at the newest message"
    );
    assert!(!in_view(&ada, "#m1").await);
    let time = run(
        &ada,
        "return document.querySelector('#m130 time').textContent;",
        vec![],
    )
    .await;
    assert!(
        time.as_str().unwrap().ends_with(" UTC"),
        "times say their zone: {time}"
    );
    type_into(&ada, "#text", "from a plain page").await;
    click(&ada, "#composer button[type=submit]").await;
    wait_for(
        &ada,
        "the posted message",
        "return document.getElementById('m131') ? true : null;",
    )
    .await;
    assert!(
        in_view(&ada, "#m131").await,
        "after posting, still at the newest"
    );
    // The older messages are a link away.
    run(
        &ada,
        "document.getElementById('older').scrollIntoView(); return true;",
        vec![],
    )
    .await;
    click(&ada, "#older").await;
    wait_for(
        &ada,
        "the older page",
        "return document.getElementById('m1') ? true : null;",
    )
    .await;
    ada.close().await.unwrap();
}

/// Sets up what the layout and accessibility tests look at: a public room with a
/// conversation, a private room with a member, and a direct-message room.
async fn furnished(server: &Server, driver: &Driver) -> (Client, String) {
    let ada = driver.browser("ada").await;
    sign_in_as_guest(&ada, server, "ada").await;
    let bob = roomcast_e2e::guest_token(server.addr, "bob").expect("bob");
    create_room(server, "lobby");
    for (user, text) in [
        (
            "bob",
            "Has anyone tried the new build? https://example.com/builds/42",
        ),
        ("cy", "Yes, `cargo test` passes here."),
        ("cy", "Took about two minutes on my laptop."),
    ] {
        say(server, "lobby", user, text);
    }
    // The private room: made through the lobby's form, so ada owns it, then bob is invited.
    ada.goto(&server.url("/")).await.unwrap();
    run(&ada, "const f = document.querySelector('form[action=\"/rooms\"]'); f.room.value = 'design-review'; f.private.checked = true; f.submit(); return true;", vec![]).await;
    wait_for(
        &ada,
        "the private room",
        "return location.pathname === '/room/design-review' ? true : null;",
    )
    .await;
    run(&ada, "const f = document.querySelector('form.invite'); f.user.value = 'bob'; f.submit(); return true;", vec![]).await;
    wait_for(
        &ada,
        "bob a member",
        "return document.querySelector('#members [data-user^=\"bob~\"]') ? true : null;",
    )
    .await;
    let as_bob = [
        ("Content-Type", "application/json"),
        ("Authorization", &*format!("Bearer {bob}")),
    ];
    let dm = post_with(
        &server.url("/api/v1/direct"),
        &as_bob,
        &json!({"user": "ada"}).to_string(),
    );
    assert_eq!(dm.status, 201, "{}", dm.body);
    let dm_room = dm.json()["id"].as_str().unwrap().to_owned();
    let path = format!("/api/v1/rooms/{dm_room}/messages");
    let posted = post_with(
        &server.url(&path),
        &as_bob,
        &json!({"text": "lunch tomorrow?"}).to_string(),
    );
    assert_eq!(posted.status, 201, "{}", posted.body);
    (ada, dm_room)
}

#[tokio::test(flavor = "current_thread")]
async fn pages_fit_desktops_and_phones_and_direct_messages_show_names() {
    if !available() {
        return;
    }
    let server = Server::smol(&[]);
    let driver = Driver::start();
    let (ada, dm) = furnished(&server, &driver).await;
    let pages = [
        ("lobby", "/".to_owned()),
        ("room", "/room/lobby".to_owned()),
        ("private-room", "/room/design-review".to_owned()),
        ("direct", format!("/room/{dm}")),
    ];
    for (size, (width, height)) in [("desktop", DESKTOP), ("phone", PHONE)] {
        ada.set_window_size(width, height).await.unwrap();
        for (name, path) in &pages {
            ada.goto(&server.url(path)).await.unwrap();
            if path.starts_with("/room/") {
                wait_for(&ada, "live", "return document.getElementById('status').textContent === 'Live' ? true : null;").await;
            }
            assert_eq!(
                sideways_overflow(&ada).await,
                0,
                "{name} scrolls sideways at {size}"
            );
            let cut = run(&ada, "const h = document.querySelector('.room-name, h1'); return h.scrollWidth > h.clientWidth;", vec![]).await;
            assert_eq!(cut, json!(false), "the {name} heading is cut off at {size}");
            screenshot(&ada, &format!("{name}-{size}")).await;
        }
    }
    ada.goto(&server.url(&format!("/room/{dm}"))).await.unwrap();
    let title = run(
        &ada,
        "return [document.querySelector('.room-name').textContent, document.title];",
        vec![],
    )
    .await;
    assert_eq!(
        title,
        json!(["Direct messages with bob", "bob · roomcast"]),
        "a DM is named for the other person"
    );
    let side = run(&ada, "return [...document.querySelectorAll('[aria-labelledby=dm-heading] a')].map(a => a.textContent);", vec![]).await;
    assert_eq!(side, json!(["bob"]));
    // The owner is not offered removing themselves; presence is said in words.
    ada.goto(&server.url("/room/design-review")).await.unwrap();
    let members = run(&ada, "return [...document.querySelectorAll('#members li')].map(li => [li.querySelector('.member-name').textContent, li.dataset.user.split('~')[0], li.querySelector('.state').textContent, !!li.querySelector('form')]);", vec![]).await;
    assert_eq!(
        members,
        json!([["ada", "ada", "here", false], ["bob", "bob", "away", true]]),
        "names shown, ids behind them"
    );
    ada.close().await.unwrap();
}

#[tokio::test(flavor = "current_thread")]
async fn the_pages_pass_an_accessibility_scan() {
    if !available() || !axe_available() {
        return;
    }
    let server = Server::smol(&[]);
    let driver = Driver::start();
    let visitor = driver.browser("visitor").await;
    visitor.goto(&server.url("/sign-in")).await.unwrap();
    let mut found = vec![("sign-in", accessibility_violations(&visitor).await)];
    visitor.goto(&server.url("/register")).await.unwrap();
    found.push(("register", accessibility_violations(&visitor).await));
    let (ada, _) = furnished(&server, &driver).await;
    for (name, path) in [
        ("lobby", "/"),
        ("room", "/room/lobby"),
        ("private room", "/room/design-review"),
        ("no such room", "/room/nowhere"),
    ] {
        ada.goto(&server.url(path)).await.unwrap();
        found.push((name, accessibility_violations(&ada).await));
    }
    // The dark scheme, for readers who prefer it, meets the same bar.
    let dark = driver.browser_in_the_dark("dee").await;
    let prefers = run(
        &dark,
        "return matchMedia('(prefers-color-scheme: dark)').matches;",
        vec![],
    )
    .await;
    assert_eq!(prefers, json!(true), "the browser asks for the dark scheme");
    dark.goto(&server.url("/sign-in")).await.unwrap();
    found.push(("sign-in, dark", accessibility_violations(&dark).await));
    sign_in_as_guest(&dark, &server, "dee").await;
    for (name, path) in [
        ("lobby, dark", "/"),
        ("room, dark", "/room/lobby"),
        ("no such room, dark", "/room/nowhere"),
    ] {
        dark.goto(&server.url(path)).await.unwrap();
        screenshot(&dark, &name.replace(", ", "-").replace(' ', "-")).await;
        found.push((name, accessibility_violations(&dark).await));
    }
    let failing: Vec<_> = found.iter().filter(|(_, v)| !v.is_empty()).collect();
    assert!(
        failing.is_empty(),
        "serious or critical violations: {failing:#?}"
    );
    visitor.close().await.unwrap();
    ada.close().await.unwrap();
    dark.close().await.unwrap();
}

/// The message's text as shown, once `script` (given the message's list item as `m`) holds.
async fn message_state(client: &Client, seq: u64, what: &str, check: &str) -> Value {
    let script =
        format!("const m = document.getElementById('m{seq}'); if (!m) return null; {check}");
    wait_for(client, what, &script).await
}

#[tokio::test(flavor = "current_thread")]
async fn reply_edit_react_and_delete_in_the_page() {
    if !available() {
        return;
    }
    let server = Server::smol(&["--rate-burst=0"]);
    let driver = Driver::start();
    let ada = driver.browser("ada").await;
    let bob = driver.browser("bob").await;
    sign_in_as_guest(&ada, &server, "ada").await;
    sign_in_as_guest(&bob, &server, "bob").await;
    // Ada creates the room, so she owns it.
    let create = "return fetch('/api/v1/rooms', { method: 'POST', headers: { 'Content-Type': 'application/json' }, \
                  body: JSON.stringify({ room: 'changes' }) }).then(r => r.status);";
    assert_eq!(run(&ada, create, vec![]).await, json!(201));
    for client in [&ada, &bob] {
        open_live_room(client, &server, "changes").await;
    }
    send(&bob, "the first thing").await;
    texts(&ada, 1).await;

    // Ada replies to it with the Reply button.
    click(&ada, "#m1 .actions button:nth-child(1)").await;
    let banner = run(
        &ada,
        "return document.getElementById('composing').textContent;",
        vec![],
    )
    .await;
    assert!(
        banner
            .as_str()
            .unwrap()
            .contains("Replying to bob: the first thing"),
        "{banner}"
    );
    send(&ada, "an answer").await;
    let quote = message_state(
        &bob,
        2,
        "the reply's quote",
        "const q = m.querySelector('.quote'); return q ? q.textContent : null;",
    )
    .await;
    assert_eq!(quote, json!("Replying to bob: the first thing"));

    // Bob edits his message: the composer holds its text; both see the new one, marked.
    click(&bob, "#m1 .actions button:nth-child(3)").await;
    let held = run(
        &bob,
        "return document.getElementById('text').value;",
        vec![],
    )
    .await;
    assert_eq!(held, json!("the first thing"));
    send(&bob, "the first thing, better said").await;
    let text = message_state(
        &ada,
        1,
        "the edit",
        "return m.querySelector('.edited') ? m.querySelector('.text').textContent : null;",
    )
    .await;
    assert_eq!(text, json!("the first thing, better said"));
    let quote = message_state(
        &ada,
        2,
        "the quote to follow the edit",
        "const q = m.querySelector('.quote').textContent; return q.includes('better') ? q : null;",
    )
    .await;
    assert!(quote.as_str().unwrap().contains("better said"));
    // Ada may not edit it: she is offered no Edit button.
    let labels = run(
        &ada,
        "return [...document.querySelectorAll('#m1 .actions button')].map(b => b.textContent);",
        vec![],
    )
    .await;
    assert_eq!(
        labels,
        json!(["Reply", "React", "Delete", "Mute 10 min", "Kick", "Ban"]),
        "the owner may delete and moderate, not edit"
    );

    // Bob reacts with the picker; ada sees it, pressed for nobody but bob.
    click(&bob, "#m2 .actions button:nth-child(2)").await;
    click(&bob, "#m2 .picker button").await;
    let chip = message_state(&ada, 2, "the reaction", "const r = m.querySelector('.reaction'); return r ? [r.textContent, r.getAttribute('aria-pressed')] : null;").await;
    assert_eq!(chip, json!(["👍 1", "false"]));
    // Ada adds hers by pressing the chip; bob takes his back the same way.
    click(&ada, "#m2 .reaction").await;
    message_state(
        &bob,
        2,
        "two reactions",
        "return m.querySelector('.reaction').textContent === '👍 2' ? true : null;",
    )
    .await;
    click(&bob, "#m2 .reaction").await;
    let chip = message_state(&ada, 2, "one reaction left", "const r = m.querySelector('.reaction'); return r.textContent === '👍 1' ? r.getAttribute('aria-pressed') : null;").await;
    assert_eq!(chip, json!("true"));

    // The owner deletes bob's message, asked in place; its text is gone everywhere.
    click(&ada, "#m1 .actions button:nth-child(3)").await;
    click(&ada, "#m1 .confirm .danger").await;
    let gone = message_state(
        &bob,
        1,
        "the deletion",
        "return m.classList.contains('deleted') ? m.textContent : null;",
    )
    .await;
    assert!(!gone.as_str().unwrap().contains("better said"), "{gone}");
    let quote = message_state(
        &bob,
        2,
        "the quote of a deleted message",
        "const q = m.querySelector('.quote').textContent; return q.includes('deleted') ? q : null;",
    )
    .await;
    assert_eq!(quote, json!("Replying to a deleted message"));

    // Reloaded, the server's page says the same.
    open_live_room(&bob, &server, "changes").await;
    let page = run(
        &bob,
        "return document.getElementById('messages').textContent;",
        vec![],
    )
    .await;
    let page = page.as_str().unwrap();
    assert!(
        page.contains("This message was deleted.") && !page.contains("better said"),
        "{page}"
    );
    let chip = run(
        &bob,
        "return document.querySelector('#m2 .reaction').textContent;",
        vec![],
    )
    .await;
    assert_eq!(chip, json!("👍 1"));
    screenshot(&bob, "changes").await;
    ada.close().await.unwrap();
    bob.close().await.unwrap();
}

/// Ada and bob, signed in as guests, each with `room` open and live.
async fn ada_and_bob_in(driver: &Driver, server: &Server, room: &str) -> (Client, Client) {
    let ada = driver.browser("ada").await;
    let bob = driver.browser("bob").await;
    for (client, name) in [(&ada, "ada"), (&bob, "bob")] {
        sign_in_as_guest(client, server, name).await;
        open_live_room(client, server, room).await;
    }
    (ada, bob)
}

#[tokio::test(flavor = "current_thread")]
async fn someone_typing_is_shown_until_their_message_arrives() {
    if !available() {
        return;
    }
    let server = Server::smol(&["--rate-burst=0"]);
    create_room(&server, "typing");
    let driver = Driver::start();
    let (ada, bob) = ada_and_bob_in(&driver, &server, "typing").await;
    type_into(&bob, "#text", "hello the").await;
    let shown = wait_for(
        &ada,
        "bob typing",
        "const t = document.getElementById('typing').textContent; return t ? t : null;",
    )
    .await;
    assert_eq!(shown, json!("bob is typing…"));
    let own = run(
        &bob,
        "return document.getElementById('typing').textContent;",
        vec![],
    )
    .await;
    assert_eq!(own, json!(""), "nobody is told they are typing themselves");
    bob.active_element()
        .await
        .unwrap()
        .send_keys("re\u{E007}")
        .await
        .unwrap();
    texts(&ada, 1).await;
    let after = run(
        &ada,
        "return document.getElementById('typing').textContent;",
        vec![],
    )
    .await;
    assert_eq!(after, json!(""), "the message ends the typing line");
    ada.close().await.unwrap();
    bob.close().await.unwrap();
}

/// The unread badge beside room `room` in the sidebar, once `check` (a JS expression on `n`,
/// the badge's text or null) holds.
async fn badge(client: &Client, room: &str, check: &str) -> Value {
    let script = format!(
        "const b = document.querySelector('.sidebar a[data-room=\"{room}\"] .unread'); \
         const n = b ? b.dataset.count : null; return ({check}) ? (n ?? 'none') : null;"
    );
    wait_for(client, &format!("the badge of {room}"), &script).await
}

#[tokio::test(flavor = "current_thread")]
async fn the_sidebar_counts_what_is_unread_and_reading_clears_it() {
    if !available() {
        return;
    }
    let server = Server::smol(&["--rate-burst=0"]);
    create_room(&server, "news");
    create_room(&server, "elsewhere");
    say(&server, "news", "cy", "first");
    let driver = Driver::start();
    let bob = driver.browser("bob").await;
    sign_in_as_guest(&bob, &server, "bob").await;
    // Seeing the room marks it read (up to "first").
    open_live_room(&bob, &server, "news").await;
    let read = "return fetch('/api/v1/rooms', {credentials: 'same-origin'}).then(r => r.json()) \
                .then(l => l.rooms.find(r => r.id === 'news').unread === 0 ? true : null);";
    wait_for(&bob, "the room marked read", read).await;
    open_live_room(&bob, &server, "elsewhere").await;
    assert_eq!(badge(&bob, "news", "n === null").await, json!("none"));
    say(&server, "news", "cy", "second");
    say(&server, "news", "cy", "third");
    // Shown when the page is drawn, and when the sidebar refreshes (the page is shown again).
    open_live_room(&bob, &server, "elsewhere").await;
    assert_eq!(badge(&bob, "news", "n !== null").await, json!("2"));
    say(&server, "news", "cy", "fourth");
    run(
        &bob,
        "document.dispatchEvent(new Event('visibilitychange')); return true;",
        vec![],
    )
    .await;
    assert_eq!(badge(&bob, "news", "n === '3'").await, json!("3"));
    // Reading it clears it.
    open_live_room(&bob, &server, "news").await;
    texts(&bob, 4).await;
    wait_for(&bob, "the room marked read", read).await;
    open_live_room(&bob, &server, "elsewhere").await;
    let cleared = wait_for(
        &bob,
        "the badge gone",
        "return document.querySelector('.sidebar a[data-room=\"news\"] .unread') ? null : true;",
    )
    .await;
    assert_eq!(cleared, json!(true));
    bob.close().await.unwrap();
}

/// Drops a file made of `bytes` (base64) named `name` on the conversation, as a person dragging
/// it there would.
async fn drop_file(client: &Client, name: &str, base64: &str, kind: &str) {
    let script = "const bytes = Uint8Array.from(atob(arguments[1]), c => c.charCodeAt(0)); \
                  const file = new File([bytes], arguments[0], { type: arguments[2] }); \
                  const data = new DataTransfer(); data.items.add(file); \
                  const target = document.getElementById('main'); \
                  for (const type of ['dragover', 'drop']) \
                    target.dispatchEvent(new DragEvent(type, { dataTransfer: data, bubbles: true, cancelable: true })); \
                  return true;";
    run(
        client,
        script,
        vec![json!(name), json!(base64), json!(kind)],
    )
    .await;
}

/// A 1×1 PNG, base64.
const DOT_PNG: &str = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==";

#[tokio::test(flavor = "current_thread")]
async fn files_are_attached_shown_and_never_run() {
    if !available() {
        return;
    }
    let data = tempfile::tempdir().unwrap();
    let data_dir = data.path().display().to_string();
    let server = Server::smol(&["--rate-burst=0", "--data-dir", &data_dir]);
    create_room(&server, "files");
    let driver = Driver::start();
    let (ada, bob) = ada_and_bob_in(&driver, &server, "files").await;

    // An image dropped on the conversation goes with the next message, and shows as a picture.
    drop_file(&ada, "dot.png", DOT_PNG, "image/png").await;
    wait_for(
        &ada,
        "the upload",
        "const p = document.getElementById('pending'); \
         return !p.hidden && !p.textContent.includes('uploading') ? p.textContent : null;",
    )
    .await;
    send(&ada, "look").await;
    let drawn = wait_for(
        &bob,
        "the picture",
        "const img = document.querySelector('#messages img.thumb'); \
         return img && img.complete && img.naturalWidth > 0 ? img.alt : null;",
    )
    .await;
    assert_eq!(drawn, json!("dot.png"));

    // A hostile page and drawing are links to download, and never run here.
    let html = "PCFET0NUWVBFIGh0bWw+PHNjcmlwdD50b3AuZG9jdW1lbnQudGl0bGU9J293bmVkJztsb2NhbFN0b3JhZ2Uub3duZWQ9MTwvc2NyaXB0Pg==";
    let svg = "PHN2ZyB4bWxucz0iaHR0cDovL3d3dy53My5vcmcvMjAwMC9zdmciPjxzY3JpcHQ+dG9wLmRvY3VtZW50LnRpdGxlPSdvd25lZCc7bG9jYWxTdG9yYWdlLm93bmVkPTE8L3NjcmlwdD48L3N2Zz4=";
    drop_file(&ada, "evil.html", html, "text/html").await;
    drop_file(&ada, "evil.svg", svg, "image/svg+xml").await;
    wait_for(
        &ada,
        "both uploads",
        "const p = document.getElementById('pending'); \
         return p.children.length === 2 && !p.textContent.includes('uploading') ? true : null;",
    )
    .await;
    send(&ada, "").await;
    let links = wait_for(
        &bob,
        "the files as links",
        "const l = [...document.querySelectorAll('#messages a.file')].map(a => a.textContent); \
         return l.length === 2 ? l : null;",
    )
    .await;
    assert_eq!(links, json!(["evil.html", "evil.svg"]));
    // Loaded in a frame of the page, neither runs.
    let loaded = "const urls = [...document.querySelectorAll('#messages a.file')].map(a => a.href); \
                  return Promise.all(urls.map(u => new Promise(done => { \
                    const f = document.createElement('iframe'); f.src = u; f.onload = () => done(true); \
                    setTimeout(() => done(false), 3000); document.body.append(f); }))) \
                  .then(() => new Promise(r => setTimeout(r, 500))).then(() => true);";
    run(&bob, loaded, vec![]).await;
    let state = run(
        &bob,
        "return [document.title, localStorage.getItem('owned')];",
        vec![],
    )
    .await;
    assert_ne!(state[0], json!("owned"));
    assert_eq!(state[1], Value::Null, "the hostile script never ran");
    for url in run(
        &bob,
        "return [...document.querySelectorAll('#messages a.file')].map(a => a.href);",
        vec![],
    )
    .await
    .as_array()
    .unwrap()
    {
        let res = get_unauthenticated(url.as_str().unwrap());
        assert_eq!(
            res.status, 401,
            "files are for those signed in who may read the room"
        );
    }
    screenshot(&bob, "files").await;
    ada.close().await.unwrap();
    bob.close().await.unwrap();
}

#[tokio::test(flavor = "current_thread")]
async fn a_moderator_removes_someone_from_the_page() {
    if !available() {
        return;
    }
    let server = Server::smol(&["--rate-burst=0"]);
    let driver = Driver::start();
    let ada = driver.browser("ada").await;
    let bob = driver.browser("bob").await;
    sign_in_as_guest(&ada, &server, "ada").await;
    // Made through the lobby's form, so ada owns it.
    ada.goto(&server.url("/")).await.unwrap();
    run(&ada, "const f = document.querySelector('form[action=\"/rooms\"]'); f.room.value = 'mods'; f.submit(); return true;", vec![]).await;
    wait_for(
        &ada,
        "the room",
        "return location.pathname === '/room/mods' ? true : null;",
    )
    .await;
    open_live_room(&ada, &server, "mods").await;
    sign_in_as_guest(&bob, &server, "bob").await;
    open_live_room(&bob, &server, "mods").await;
    send(&bob, "hello").await;
    texts(&ada, 1).await;
    let own = run(
        &bob,
        "return document.querySelector('#messages [aria-label=\"Kick bob\"]') !== null;",
        vec![],
    )
    .await;
    assert_eq!(own, json!(false), "only moderators see the buttons");
    click(&ada, "#messages [aria-label=\"Kick bob\"]").await;
    let told = wait_for(
        &bob,
        "bob told",
        "const n = document.getElementById('notices').textContent; \
         return n.includes('removed from this room by ada') ? n : null;",
    )
    .await;
    assert!(
        told.as_str().unwrap().contains("you may come back"),
        "{told}"
    );
    let seen = wait_for(
        &ada,
        "the room told",
        "const n = document.getElementById('notices').textContent; \
         return n.includes('bob was removed') ? n : null;",
    )
    .await;
    assert!(seen.as_str().unwrap().contains("by ada"), "{seen}");
    ada.close().await.unwrap();
    bob.close().await.unwrap();
}
