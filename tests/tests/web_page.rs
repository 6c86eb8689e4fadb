//! The web chat as a browser without JavaScript sees it: escaped, working forms, no outside
//! resources.

use roomcast_e2e::{Server, get, post, say};

#[test]
fn user_text_is_escaped_in_the_page() {
    let server = Server::smol(&[]);
    get(&server.url("/room/xss"));
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
    let form = post(
        &server.url("/room/plain"),
        "application/x-www-form-urlencoded",
        "user=Zo%C3%AB&text=caf%C3%A9+%E2%98%95+%F0%9F%8E%89%0D%0Asecond+line",
    );
    assert_eq!(form.status, 303);
    assert!(
        form.header("set-cookie")
            .is_some_and(|c| c.starts_with("roomcast_user=Zo%C3%AB")),
        "the name is remembered"
    );
    let history = get(&server.url("/api/v1/rooms/plain/messages")).json();
    assert_eq!(
        history["messages"][0]["text"], "café ☕ 🎉\nsecond line",
        "CRLF from the form becomes LF"
    );
    assert_eq!(history["messages"][0]["user"], "Zoë");
    let page = get(&server.url("/room/plain")).body;
    assert!(page.contains("café ☕ 🎉"));

    let refused = post(
        &server.url("/room/plain"),
        "application/x-www-form-urlencoded",
        "user=Zo%C3%AB&text=+++",
    );
    assert_eq!(refused.status, 400);
    assert!(refused.content_type.starts_with("text/html"));
    assert!(
        refused.body.contains("message is empty"),
        "the page says why"
    );
    assert!(
        refused.body.contains("value=\"Zoë\""),
        "and keeps the name typed"
    );
}

#[test]
fn the_lobby_lists_rooms_and_opens_new_ones() {
    let server = Server::smol(&[]);
    let opened = post(
        &server.url("/rooms"),
        "application/x-www-form-urlencoded",
        "room=book-club",
    );
    assert_eq!(opened.status, 303);
    assert_eq!(opened.header("location"), Some("/room/book-club"));
    say(&server, "book-club", "ada", "first!");
    let lobby = get(&server.url("/"));
    assert_eq!(lobby.status, 200);
    assert!(lobby.body.contains("href=\"/room/book-club\""));
    assert!(lobby.body.contains("1 message "), "{}", lobby.body);
}

#[test]
fn the_page_needs_nothing_from_outside() {
    let server = Server::smol(&[]);
    for path in ["/", "/room/offline", "/assets/app.css", "/assets/app.js"] {
        let res = get(&server.url(path));
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
    assert!(
        !get(&server.url("/assets/app.js"))
            .body
            .contains("innerHTML"),
        "live messages never go in as HTML"
    );
    get(&server.url("/assets/nope.js")).problem(404, "no-such-asset");
}
