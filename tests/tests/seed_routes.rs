//! The original design's routes keep working: the HTML page, the form post, DELETE, the SSE
//! stream and `POST /submit`. The stream and submit create rooms on first use as the seed did;
//! the page never does (a mistyped link would make a room).

use roomcast_e2e::{Browser, Server, SseStream, delete, get, post_json};
use serde_json::json;

#[test]
fn the_seed_routes_work_end_to_end() {
    // The seed's stream (as `anonymous`) creates the room on first use; `anonymous` owns it and
    // may delete it later. The page only shows it.
    let server = Server::smol(&[]);
    assert_eq!(get(&server.url("/room/seedroom")).status, 404);

    let mut stream = SseStream::open(server.addr, "/stream/seedroom", None).expect("stream opens");
    assert_eq!(stream.next_event().expect("presence").event, "presence");
    let page = get(&server.url("/room/seedroom"));
    assert_eq!(page.status, 200);
    assert_eq!(page.content_type, "text/html;charset=utf-8");
    assert!(page.body.contains("#seedroom"));

    let submitted = post_json(
        &server.url("/submit"),
        &json!({"room": "seedroom", "user": "ada", "text": "via submit"}),
    );
    assert_eq!(submitted.status, 201, "{}", submitted.body);
    assert_eq!(submitted.json()["seq"], 1);

    let mut bob = Browser::guest(&server, "bob");
    bob.get("/room/seedroom");
    let form = bob.post_form(
        "/room/seedroom",
        &[("user", "bob"), ("message", "via form 👋")],
    );
    assert_eq!(form.status, 303);
    assert_eq!(form.header("location"), Some("/room/seedroom"));

    let texts: Vec<String> = (0..2)
        .map(|_| {
            stream.next_of("message").expect("message").json()["text"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(texts, ["via submit", "via form 👋"]);
    assert!(
        get(&server.url("/room/seedroom"))
            .body
            .contains("via form 👋")
    );

    assert_eq!(delete(&server.url("/room/seedroom")).status, 204);
    let closed = stream.next_of("closed").expect("the stream is told");
    assert_eq!(closed.json()["reason"], "deleted");
    assert!(stream.next_event().is_none(), "the stream ends");
    get(&server.url("/api/v1/rooms/seedroom")).problem(404, "room-not-found");
}

#[test]
fn the_stream_route_creates_its_room() {
    let server = Server::smol(&[]);
    let mut stream = SseStream::open(server.addr, "/stream/fresh", None).expect("stream opens");
    let snapshot = stream.next_event().expect("presence snapshot").json();
    assert_eq!(snapshot["users"][0]["user"], "anonymous");
    assert_eq!(get(&server.url("/api/v1/rooms/fresh")).status, 200);
}
