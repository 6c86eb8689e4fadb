//! The web chat as a browser without JavaScript sees it: escaped, working forms, no outside
//! resources.

use roomcast_e2e::{Browser, Server, create_room, delete, get, say};

#[test]
fn user_text_is_escaped_in_the_page() {
    let server = Server::smol(&[]);
    create_room(&server, "xss");
    say(
        &server,
        "xss",
        "mallory",
        "<script>alert('pwned')</script><img src=x onerror=alert(1)> & \"quotes\"",
    );
    let page = get(&server.url("/room/xss")).body;
    assert!(
        !page.contains("<script>alert"),
        "raw script must not reach the page"
    );
    assert!(
        !page.contains("<img src=x"),
        "raw markup must not reach the page"
    );
    assert!(
        page.contains("&#60;script&#62;alert(&#39;pwned&#39;)&#60;/script&#62;")
            || page.contains("&lt;script&gt;"),
        "{page}"
    );
    // Room names are restricted to URL-safe characters, so they cannot carry markup either.
    let refused = get(&server.url("/room/%3Cb%3E"));
    assert_eq!(refused.status, 400);
}

#[test]
fn the_page_posts_without_javascript_and_keeps_any_text() {
    let server = Server::smol(&[]);
    create_room(&server, "plain");
    let mut zoe = Browser::guest(&server, "Zoë");
    assert_eq!(zoe.get("/room/plain").status, 200);
    let form = zoe.post_form("/room/plain", &[("text", "café ☕ 🎉\r\nsecond line")]);
    assert_eq!(form.status, 303, "{}", form.body);
    let history = get(&server.url("/api/v1/rooms/plain/messages")).json();
    assert_eq!(
        history["messages"][0]["text"], "café ☕ 🎉\nsecond line",
        "CRLF from the form becomes LF"
    );
    assert_eq!(
        history["messages"][0]["user"], "Zoë",
        "posted as the signed-in guest"
    );
    let page = zoe.get("/room/plain").body;
    assert!(page.contains("café ☕ 🎉"));
    let id = history["messages"][0]["user_id"].as_str().unwrap();
    assert!(id.starts_with("Zoë~g"), "a guest's id: {id}");
    assert!(
        page.contains(&format!("data-user=\"{id}\"")),
        "the page knows who is signed in"
    );

    let refused = zoe.post_form("/room/plain", &[("text", "   ")]);
    assert_eq!(refused.status, 400);
    assert!(refused.content_type.starts_with("text/html"));
    assert!(
        refused.body.contains("message is empty"),
        "the page says why"
    );
    // The seed's form named the poster: naming someone else is refused.
    let impersonating = zoe.post_form("/room/plain", &[("user", "ada"), ("text", "hi")]);
    assert_eq!(impersonating.status, 403);
}

#[test]
fn forms_without_the_csrf_token_are_refused() {
    let server = Server::smol(&[]);
    create_room(&server, "guarded");
    let mut zoe = Browser::guest(&server, "zoe");
    zoe.get("/room/guarded");
    for (path, fields) in [
        ("/room/guarded", vec![("text", "hi")]),
        ("/rooms", vec![("room", "other")]),
        ("/direct", vec![("user", "ada")]),
        ("/sign-out", vec![]),
    ] {
        let mut missing = fields.clone();
        missing.push(("csrf", ""));
        let refused = zoe.post_form(path, &missing);
        assert_eq!(refused.status, 403, "{path} without a token");
        let mut forged = fields.clone();
        forged.push(("csrf", "0123456789abcdef0123456789abcdef"));
        let refused = zoe.post_form(path, &forged);
        assert_eq!(refused.status, 403, "{path} with another token");
    }
    // A forged sign-in (login CSRF) is refused too, from a browser that never saw our page.
    let mut stranger = Browser::new(&server);
    let refused = stranger.post_form("/guest", &[("nickname", "mallory"), ("csrf", "x")]);
    assert_eq!(refused.status, 403);
    // None of the refused forms did anything: no message, no room, no direct room, and zoe is
    // still signed in.
    assert!(
        get(&server.url("/api/v1/rooms/guarded/messages")).json()["messages"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    assert_eq!(get(&server.url("/api/v1/rooms/other")).status, 404);
    let rooms = get(&server.url("/api/v1/rooms?user=ada")).json();
    assert!(
        !rooms.to_string().contains("dm-"),
        "no direct room was made: {rooms}"
    );
    // Signed out, the page would send her to sign in (303).
    assert_eq!(
        zoe.get("/room/guarded").status,
        200,
        "zoe is still signed in"
    );
}

#[test]
fn the_lobby_lists_rooms_and_opens_new_ones() {
    let server = Server::smol(&[]);
    let mut ada = Browser::guest(&server, "ada");
    let opened = ada.post_form("/rooms", &[("room", "book-club")]);
    assert_eq!(opened.status, 303);
    assert_eq!(opened.header("location"), Some("/room/book-club"));
    say(&server, "book-club", "ada", "first!");
    let lobby = ada.get("/");
    assert_eq!(lobby.status, 200);
    assert!(lobby.body.contains("href=\"/room/book-club\""));
    assert!(lobby.body.contains("1 message "), "{}", lobby.body);
    // Not signed in: the pages send you to sign in, and come back.
    let mut stranger = Browser::new(&server);
    let away = stranger.get("/room/book-club");
    assert_eq!(away.status, 303);
    assert_eq!(
        away.header("location"),
        Some("/sign-in?next=%2Froom%2Fbook-club")
    );
}

#[test]
fn accounts_register_sign_in_and_sign_out_in_the_browser() {
    let server = Server::smol(&["--guests=false"]);
    let mut ada = Browser::new(&server);
    let page = ada.get("/sign-in");
    assert!(
        !page.body.contains("action=\"/guest\""),
        "no guest form when guests are off"
    );
    ada.get("/register");
    let registered = ada.post_form(
        "/register",
        &[
            ("name", "ada"),
            ("password", "correct horse"),
            ("next", "/room/den"),
        ],
    );
    assert_eq!(registered.status, 303, "{}", registered.body);
    assert_eq!(registered.header("location"), Some("/room/den"));
    let session = registered.header("set-cookie").unwrap_or_default();
    assert!(
        session.contains("HttpOnly") && session.contains("SameSite=Lax"),
        "{session}"
    );
    // A private room, an invitation, and the member list for its owner.
    let private = ada.post_form("/rooms", &[("room", "den"), ("private", "true")]);
    assert_eq!(private.status, 303);
    // Whom one invites holds the name (an account here: guests are off).
    let mut bob = Browser::new(&server);
    bob.get("/register");
    let bob_joined = bob.post_form(
        "/register",
        &[
            ("name", "bob"),
            ("password", "battery staple"),
            ("next", "/"),
        ],
    );
    assert_eq!(bob_joined.status, 303, "{}", bob_joined.body);
    let invited = ada.post_form("/room/den/members", &[("user", "bob")]);
    assert_eq!(invited.status, 303);
    assert!(
        ada.get("/room/den").body.contains(">bob"),
        "the owner sees the members"
    );
    // Signing out ends the session for real: the old cookie no longer works.
    let old = ada.cookie("roomcast_session").unwrap().to_owned();
    assert_eq!(ada.post_form("/sign-out", &[]).status, 303);
    let mut replay = Browser::new(&server);
    replay.cookies_insert("roomcast_session", &old);
    assert_eq!(
        replay.get("/room/den").status,
        303,
        "the old session is gone"
    );
    // Signing in again, with a wrong then the right password.
    let mut again = Browser::new(&server);
    again.get("/sign-in");
    let wrong = again.post_form("/sign-in", &[("name", "ada"), ("password", "wrong guess")]);
    assert_eq!(wrong.status, 401);
    assert!(wrong.body.contains("wrong user name or password"));
    let right = again.post_form(
        "/sign-in",
        &[("name", "ada"), ("password", "correct horse")],
    );
    assert_eq!(right.status, 303);
    assert_eq!(again.get("/room/den").status, 200);
}

#[test]
fn the_page_needs_nothing_from_outside() {
    let server = Server::smol(&[]);
    create_room(&server, "offline");
    let mut visitor = Browser::guest(&server, "visitor");
    for path in [
        "/",
        "/room/offline",
        "/sign-in",
        "/register",
        "/assets/app.css",
        "/assets/app.js",
    ] {
        let res = visitor.get(path);
        assert_eq!(res.status, 200, "{path}");
        for outside in ["http://", "https://", "//cdn", "@import", "fonts.g"] {
            assert!(!res.body.contains(outside), "{path} refers to {outside}");
        }
    }
    assert!(
        get(&server.url("/assets/app.js"))
            .body
            .contains("textContent")
    );
    for script in ["/assets/app.js", "/assets/roomcast.js"] {
        let body = get(&server.url(script)).body;
        assert!(
            !body.contains("innerHTML") && !body.contains("insertAdjacentHTML"),
            "{script}: messages never go in as HTML"
        );
    }
    // The pages load only their own files, inline nothing, and are never framed.
    let policy = visitor
        .get("/")
        .header("content-security-policy")
        .map(str::to_owned);
    let policy = policy.expect("a Content-Security-Policy");
    assert!(policy.contains("script-src 'self'") && policy.contains("frame-ancestors 'none'"));
    get(&server.url("/assets/nope.js")).problem(404, "no-such-asset");
}

#[test]
fn admins_manage_members_on_the_page_as_owners_do() {
    let server = Server::smol(&["--admins=root"]);
    let mut ada = Browser::guest(&server, "ada");
    let private = ada.post_form("/rooms", &[("room", "den"), ("private", "true")]);
    assert_eq!(private.status, 303);
    // The policy lets admins manage members; the page offers them the forms to do it. (An
    // admin holds the account the operator made: nobody else may take an admin's name.)
    let mut root = Browser::new(&server);
    root.get("/sign-in");
    let signed_in = root.post_form(
        "/sign-in",
        &[
            ("name", "root"),
            ("password", roomcast_e2e::HARNESS_PASSWORD),
            ("next", "/"),
        ],
    );
    assert_eq!(signed_in.status, 303, "{}", signed_in.body);
    let mut bob = Browser::guest(&server, "bob");
    let page = root.get("/room/den");
    assert_eq!(page.status, 200);
    assert!(
        page.body.contains("action=\"/room/den/members\""),
        "an admin sees the invite form"
    );
    let invited = root.post_form("/room/den/members", &[("user", "bob")]);
    assert_eq!(invited.status, 303, "{}", invited.body);
    assert!(
        ada.get("/room/den").body.contains(">bob"),
        "bob is a member"
    );
    // A member who is neither owner nor admin gets no such form.
    let page = bob.get("/room/den");
    assert_eq!(page.status, 200);
    assert!(!page.body.contains("action=\"/room/den/members\""));
}

#[test]
fn looking_at_a_room_never_creates_or_changes_it() {
    let server = Server::smol(&[]);
    let mut zoe = Browser::guest(&server, "zoe");
    // A typo: a page that says so, with a button to make it; nothing is made.
    let typo = zoe.get("/room/lobyy");
    assert_eq!(typo.status, 404);
    assert!(typo.content_type.starts_with("text/html"));
    assert!(typo.body.contains("No room named #lobyy"), "{}", typo.body);
    assert!(typo.body.contains("action=\"/rooms\"") && typo.body.contains("value=\"lobyy\""));
    get(&server.url("/api/v1/rooms/lobyy")).problem(404, "room-not-found");
    assert!(
        !zoe.get("/").body.contains("/room/lobyy"),
        "not in the lobby"
    );
    // A stale page posting to it makes nothing either.
    let posted = zoe.post_form("/room/lobyy", &[("text", "anyone?")]);
    assert_eq!(posted.status, 404);
    get(&server.url("/api/v1/rooms/lobyy")).problem(404, "room-not-found");

    // A deleted room stays deleted when anyone reloads its page.
    let mut ada = Browser::guest(&server, "ada");
    assert_eq!(ada.post_form("/rooms", &[("room", "gone")]).status, 303);
    assert_eq!(zoe.get("/room/gone").status, 200);
    assert_eq!(
        delete(&server.url("/api/v1/rooms/gone?user=ada")).status,
        204
    );
    assert_eq!(zoe.get("/room/gone").status, 404);
    get(&server.url("/api/v1/rooms/gone")).problem(404, "room-not-found");
    // A name that cannot be a room says why, and offers nothing to create.
    let bad = zoe.get("/room/no%20spaces");
    assert_eq!(bad.status, 400);
    assert!(!bad.body.contains("action=\"/rooms\""));
}
