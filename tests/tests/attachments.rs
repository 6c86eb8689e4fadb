//! Attachments against the real binaries: uploaded (streamed), posted, served with the
//! headers that keep a hostile file from running, ranges, deleted with their message or room,
//! kept across a restart, over REST, SSE, gRPC and two nodes sharing a files directory.

use roomcast_e2e::grpc::{self, as_user};
use roomcast_e2e::redis::{self, Redis};
use roomcast_e2e::sse::SseStream;
use roomcast_e2e::{
    Answer, Server, call, call_bytes, create_room, guest_token, known_token, raw_request,
    remember_token,
};
use roomcast_proto::v1 as pb;
use serde_json::{Value, json};
use tonic::Code;

/// A 1×1 PNG.
const PNG: &[u8] = &[
    0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A, 0x00, 0x00, 0x00, 0x0D, 0x49, 0x48, 0x44, 0x52,
    0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x06, 0x00, 0x00, 0x00, 0x1F, 0x15, 0xC4,
    0x89, 0x00, 0x00, 0x00, 0x0A, 0x49, 0x44, 0x41, 0x54, 0x78, 0x9C, 0x63, 0x00, 0x01, 0x00, 0x00,
    0x05, 0x00, 0x01, 0x0D, 0x0A, 0x2D, 0xB4, 0x00, 0x00, 0x00, 0x00, 0x49, 0x45, 0x4E, 0x44, 0xAE,
    0x42, 0x60, 0x82,
];

const HOSTILE_HTML: &[u8] =
    b"<!DOCTYPE html><html><body><script>document.title='owned'</script></body></html>";
const HOSTILE_SVG: &[u8] =
    b"<svg xmlns=\"http://www.w3.org/2000/svg\"><script>document.title='owned'</script></svg>";

fn upload(server: &Server, user: &str, room: &str, name: &str, bytes: &[u8]) -> Answer {
    let url = server.url(&format!(
        "/api/v1/rooms/{room}/attachments?user={user}&name={name}"
    ));
    call_bytes(
        "POST",
        &url,
        &[("Content-Type", "application/octet-stream")],
        bytes,
    )
}

fn uploaded(server: &Server, user: &str, room: &str, name: &str, bytes: &[u8]) -> Value {
    let res = upload(server, user, room, name, bytes);
    assert_eq!(res.status, 201, "{}", res.body);
    res.json()
}

fn post(server: &Server, user: &str, room: &str, text: &str, attachments: &[&str]) -> Answer {
    let url = server.url(&format!("/api/v1/rooms/{room}/messages?user={user}"));
    call(
        "POST",
        &url,
        Some(&json!({ "text": text, "attachments": attachments })),
    )
}

fn download(server: &Server, user: &str, url: &str, headers: &[(&str, &str)]) -> Answer {
    let sep = if url.contains('?') { '&' } else { '?' };
    call_bytes(
        "GET",
        &server.url(&format!("{url}{sep}user={user}")),
        headers,
        &[],
    )
}

/// How many distinct contents the files directory keeps.
fn blobs(data: &std::path::Path) -> usize {
    std::fs::read_dir(data.join("files/blobs")).map_or(0, Iterator::count)
}

#[test]
fn a_file_is_uploaded_posted_served_and_deleted_with_its_message() {
    let dir = tempfile::tempdir().unwrap();
    let data = format!("--data-dir={}", dir.path().display());
    let mut server = Server::smol(&[&data, "--rate-burst=0"]);
    create_room(&server, "r");
    let mut live = SseStream::open(server.addr, "/api/v1/rooms/r/events?user=cy", Some("0"))
        .expect("the stream opens");

    let png = uploaded(&server, "bob", "r", "dot.png", PNG);
    assert_eq!(png["name"], "dot.png");
    assert_eq!(png["content_type"], "image/png");
    assert_eq!(png["size"], PNG.len());
    let id = png["id"].as_str().expect("an id").to_owned();
    let posted = post(&server, "bob", "r", "", &[&id]);
    assert_eq!(posted.status, 201, "{}", posted.body);
    assert_eq!(posted.json()["attachments"][0]["id"], id.as_str());
    let shown = loop {
        let event = live.next_event().expect("the message arrives");
        if event.event == "message" {
            break event.json();
        }
    };
    assert_eq!(shown["attachments"][0]["name"], "dot.png");
    let url = shown["attachments"][0]["url"].as_str().unwrap().to_owned();

    // Anyone who may read the room gets it, as an image a browser only draws.
    let got = download(&server, "cy", &url, &[]);
    assert_eq!(got.status, 200);
    assert_eq!(got.bytes, PNG);
    assert_eq!(got.header("content-type"), Some("image/png"));
    assert_eq!(got.header("x-content-type-options"), Some("nosniff"));
    assert!(
        got.header("content-disposition")
            .unwrap()
            .starts_with("inline; filename=\"dot.png\"")
    );
    assert!(
        got.header("content-security-policy")
            .unwrap()
            .contains("sandbox")
    );
    let etag = got.header("etag").expect("an etag").to_owned();
    assert_eq!(
        download(&server, "cy", &url, &[("If-None-Match", &etag)]).status,
        304
    );
    let part = download(&server, "cy", &url, &[("Range", "bytes=1-3")]);
    assert_eq!(part.status, 206);
    assert_eq!(part.bytes, &PNG[1..=3]);
    assert_eq!(
        part.header("content-range"),
        Some(format!("bytes 1-3/{}", PNG.len()).as_str())
    );
    let outside = download(&server, "cy", &url, &[("Range", "bytes=500-")]);
    outside.problem(416, "range-not-satisfiable");
    assert_eq!(
        outside.header("content-range"),
        Some(format!("bytes */{}", PNG.len()).as_str())
    );

    // A hostile page or drawing is only ever a download, and never runs in our origin.
    for (name, bytes) in [("evil.html", HOSTILE_HTML), ("evil.svg", HOSTILE_SVG)] {
        let kept = uploaded(&server, "bob", "r", name, bytes);
        let url = kept["url"].as_str().unwrap();
        let got = download(&server, "cy", url, &[]);
        assert_eq!(got.bytes, bytes);
        assert_eq!(got.header("content-type"), Some("application/octet-stream"));
        assert!(
            got.header("content-disposition")
                .unwrap()
                .starts_with("attachment;")
        );
        assert_eq!(got.header("x-content-type-options"), Some("nosniff"));
        assert!(
            got.header("content-security-policy")
                .unwrap()
                .contains("sandbox")
        );
    }

    // The same content again is kept once; deleting one message keeps the other's file.
    let again = uploaded(&server, "ada", "r", "same.png", PNG);
    let again_id = again["id"].as_str().unwrap().to_owned();
    let second = post(&server, "ada", "r", "the same dot", &[&again_id]);
    assert_eq!(second.status, 201, "{}", second.body);
    let kept_before = blobs(dir.path());
    let seq = posted.json()["seq"].as_u64().unwrap();
    let deleted = call(
        "DELETE",
        &server.url(&format!("/api/v1/rooms/r/messages/{seq}?user=bob")),
        None,
    );
    assert_eq!(deleted.status, 201, "{}", deleted.body);
    roomcast_e2e::wait_until("the deleted message's file is gone", || {
        (download(&server, "cy", &url, &[]).status == 404).then_some(())
    });
    assert_eq!(
        blobs(dir.path()),
        kept_before,
        "the other upload keeps the content"
    );
    let history = call("GET", &server.url("/api/v1/rooms/r/messages?user=cy"), None).json();
    let first = history["messages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["seq"].as_u64() == Some(seq))
        .expect("the deleted message")
        .clone();
    assert!(first.get("attachments").is_none(), "{first}");

    // Across a restart: the message and its file.
    drop(live);
    server.signal("TERM");
    server.wait();
    let server = Server::smol(&[&data, "--rate-burst=0"]);
    let url = second.json()["attachments"][0]["url"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(download(&server, "cy", &url, &[]).bytes, PNG);

    // Deleting the room lets go of everything it held.
    let room = call(
        "DELETE",
        &server.url("/api/v1/rooms/r?user=anonymous"),
        None,
    );
    assert!(room.status == 204 || room.status == 200, "{}", room.body);
    roomcast_e2e::wait_until("the room's files are gone", || {
        (blobs(dir.path()) == 0).then_some(())
    });
}

#[test]
fn bad_uploads_and_attachments_are_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let data = format!("--data-dir={}", dir.path().display());
    let server = Server::smol(&[&data, "--rate-burst=0", "--max-attachment-bytes=1000"]);
    create_room(&server, "r");
    upload(&server, "bob", "r", "empty.txt", b"").problem(400, "empty-attachment");
    upload(&server, "bob", "r", "big.bin", &[7; 1001]).problem(413, "attachment-too-large");
    // Without a length, it is cut off at the limit as it arrives.
    let token = guest_token(server.addr, "bob").expect("a token");
    let mut chunked = format!(
        "POST /api/v1/rooms/r/attachments?name=big.bin HTTP/1.1\r\nHost: x\r\n\
         Authorization: Bearer {token}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    )
    .into_bytes();
    for _ in 0..3 {
        chunked.extend_from_slice(b"200\r\n");
        chunked.extend_from_slice(&[b'x'; 0x200]);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    let (status, body) = raw_request(server.addr, &chunked);
    assert_eq!(status, 413, "{body}");
    assert!(body.contains("attachment-too-large"), "{body}");
    upload(&server, "bob", "nowhere", "a.png", PNG).problem(404, "room-not-found");
    assert_eq!(
        std::fs::read_dir(dir.path().join("files/tmp"))
            .unwrap()
            .count(),
        0,
        "nothing half-written is left"
    );

    let bobs = uploaded(&server, "bob", "r", "a.png", PNG)["id"]
        .as_str()
        .unwrap()
        .to_owned();
    post(&server, "cy", "r", "mine now", &[&bobs]).problem(404, "attachment-not-found");
    post(&server, "bob", "r", "x", &["../../etc/passwd"]).problem(400, "invalid-attachment");
    post(&server, "bob", "r", "x", &[&bobs, &bobs]).problem(400, "invalid-attachment");
    let missing = "0123456789abcdef0123456789abcdef";
    post(&server, "bob", "r", "x", &[missing]).problem(404, "attachment-not-found");
    let eleven: Vec<&str> = std::iter::repeat_n(missing, 11).collect();
    post(&server, "bob", "r", "x", &eleven).problem(400, "too-many-attachments");
    download(
        &server,
        "cy",
        &format!("/api/v1/rooms/r/attachments/{missing}"),
        &[],
    )
    .problem(404, "attachment-not-found");

    // A private room's files are its members' alone.
    let url = server.url("/api/v1/rooms?user=ada");
    let den = call(
        "POST",
        &url,
        Some(&json!({ "room": "den", "private": true })),
    );
    assert_eq!(den.status, 201, "{}", den.body);
    let secret = uploaded(&server, "ada", "den", "s.png", PNG);
    let url = secret["url"].as_str().unwrap();
    assert_eq!(download(&server, "ada", url, &[]).bytes, PNG);
    download(&server, "eve", url, &[]).problem(403, "permission-denied");
    upload(&server, "eve", "den", "x.png", PNG).problem(403, "permission-denied");
}

#[tokio::test(flavor = "current_thread")]
async fn files_over_grpc() {
    let server = Server::tokio(&["--rate-burst=0", "--max-attachment-bytes=100000"]);
    let mut c = grpc::client(&server).await;
    grpc::create(&mut c, "g").await;
    let chunk = |room: &str, name: &str, data: &[u8]| pb::UploadChunk {
        room: room.into(),
        name: name.into(),
        data: data.to_vec(),
    };
    let chunks = vec![chunk("g", "dot.png", &PNG[..20]), chunk("", "", &PNG[20..])];
    let req = as_user(&mut c, "bob", futures_util::stream::iter(chunks)).await;
    let kept = c.upload(req).await.expect("uploaded").into_inner();
    assert_eq!(
        (kept.content_type.as_str(), kept.size),
        ("image/png", PNG.len() as u64)
    );
    let req = as_user(
        &mut c,
        "bob",
        pb::SubmitRequest {
            room: "g".into(),
            text: String::new(),
            idempotency_key: String::new(),
            reply_to: 0,
            attachments: vec![kept.id.clone()],
        },
    )
    .await;
    let posted = c.submit(req).await.expect("posted").into_inner();
    let message = posted.message.expect("the message");
    assert_eq!(message.attachments[0].name, "dot.png");

    let req = as_user(
        &mut c,
        "cy",
        pb::DownloadRequest {
            room: "g".into(),
            id: kept.id.clone(),
        },
    )
    .await;
    let mut stream = c.download(req).await.expect("a download").into_inner();
    let first = stream.message().await.unwrap().expect("the description");
    assert_eq!(first.attachment.expect("described").id, kept.id);
    let mut bytes = Vec::new();
    while let Some(chunk) = stream.message().await.unwrap() {
        bytes.extend(chunk.data);
    }
    assert_eq!(bytes, PNG);

    let req = as_user(
        &mut c,
        "bob",
        futures_util::stream::iter(vec![chunk("g", "e", b"")]),
    )
    .await;
    assert_eq!(
        c.upload(req).await.unwrap_err().code(),
        Code::InvalidArgument
    );
    let big = vec![chunk("g", "big", &[1; 60_000]), chunk("", "", &[2; 60_000])];
    let req = as_user(&mut c, "bob", futures_util::stream::iter(big)).await;
    assert_eq!(
        c.upload(req).await.unwrap_err().code(),
        Code::ResourceExhausted
    );
    let req = as_user(
        &mut c,
        "cy",
        pb::DownloadRequest {
            room: "g".into(),
            id: "nope".into(),
        },
    )
    .await;
    assert_eq!(c.download(req).await.unwrap_err().code(), Code::NotFound);
}

#[test]
fn nodes_sharing_a_files_directory_serve_each_others_uploads() {
    if !redis::available() {
        eprintln!("redis-server is not installed: skipping");
        return;
    }
    let redis = Redis::start(&[]);
    let files = tempfile::tempdir().unwrap();
    let url = redis.url();
    let files_dir = format!("--files-dir={}", files.path().display());
    let args = redis::node_args(&url, &[&files_dir]);
    let a = Server::smol(&args);
    let b = Server::smol(&args);
    create_room(&a, "r");
    let kept = uploaded(&a, "bob", "r", "dot.png", PNG);
    let id = kept["id"].as_str().unwrap().to_owned();
    for user in ["bob", "cy"] {
        let token = guest_token(a.addr, user)
            .or_else(|| known_token(a.addr, user))
            .expect("a token from node a");
        remember_token(b.addr, user, &token);
    }
    let posted = post(&b, "bob", "r", "from b", &[&id]);
    assert_eq!(posted.status, 201, "{}", posted.body);
    let url = posted.json()["attachments"][0]["url"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(download(&a, "cy", &url, &[]).bytes, PNG);
    assert_eq!(download(&b, "cy", &url, &[]).bytes, PNG);
}

#[test]
fn an_unusable_files_directory_is_refused_at_start() {
    let (status, stderr) = roomcast_e2e::refused_start(
        "roomcast-smol",
        "roomcast-smol",
        &["--in-memory", "--files-dir", "/dev/null/never"],
    );
    assert!(!status.success());
    assert!(
        stderr.contains("cannot keep attachments in /dev/null/never"),
        "{stderr}"
    );
}

#[test]
fn a_file_is_posted_over_websocket() {
    use tungstenite::Message;
    let dir = tempfile::tempdir().unwrap();
    let data = format!("--data-dir={}", dir.path().display());
    let server = Server::smol(&[&data, "--rate-burst=0"]);
    create_room(&server, "ws");
    let id = uploaded(&server, "bob", "ws", "dot.png", PNG)["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut bob = roomcast_e2e::ws_connect(&server, "/api/v1/rooms/ws/ws?user=bob");
    let frame = json!({ "type": "submit", "text": "", "attachments": [id], "ref": "a" });
    bob.send(Message::text(frame.to_string())).expect("send");
    let ack = loop {
        if let Message::Text(text) = bob.read().expect("a frame") {
            let frame: Value = serde_json::from_str(&text).expect("JSON");
            if frame["type"] == "ack" || frame["type"] == "error" {
                break frame;
            }
        }
    };
    assert_eq!(
        ack["message"]["attachments"][0]["content_type"], "image/png",
        "{ack}"
    );
}

#[test]
fn files_pass_through_without_being_held_in_memory() {
    const MIB: usize = 1024 * 1024;
    let dir = tempfile::tempdir().unwrap();
    let data = format!("--data-dir={}", dir.path().display());
    let server = Server::smol(&[&data, "--rate-burst=0"]);
    create_room(&server, "big");
    let file: Vec<u8> = (0..10 * MIB).map(|i| (i % 251) as u8).collect();
    let kept = uploaded(&server, "bob", "big", "warmup.bin", &file);
    let url = kept["url"].as_str().unwrap().to_owned();
    assert_eq!(download(&server, "cy", &url, &[]).bytes.len(), file.len());
    let before = server.peak_rss_kib();
    // Eight 10 MiB uploads and eight downloads at once: 160 MiB through the server.
    std::thread::scope(|s| {
        for i in 0..8 {
            let (server, file, url) = (&server, &file, &url);
            s.spawn(move || {
                let up = uploaded(server, "bob", "big", &format!("f{i}.bin"), file);
                assert_eq!(up["size"], file.len());
                assert_eq!(&download(server, "cy", url, &[]).bytes, file);
            });
        }
    });
    let grown_mib = (server.peak_rss_kib() - before) / 1024;
    eprintln!("peak memory grew by {grown_mib} MiB");
    assert!(
        grown_mib < 24,
        "the server's peak memory grew by {grown_mib} MiB for 160 MiB of files in flight"
    );
}

/// Whether an upload was posted follows from the stored message, not from the marker the
/// server removes after answering: a crash (or a cancelled call) between the two leaves the
/// marker, and the sweep of uploads never posted must still keep the file a message names.
#[test]
fn a_posted_file_outlives_a_crash_before_its_marker_went() {
    let dir = tempfile::tempdir().unwrap();
    let data = format!("--data-dir={}", dir.path().display());
    let flags = [data.as_str(), "--rate-burst=0", "--upload-pending-for=2s"];
    let mut server = Server::smol(&flags);
    create_room(&server, "kept");
    let id = uploaded(&server, "bob", "kept", "dot.png", PNG)["id"]
        .as_str()
        .expect("an id")
        .to_owned();
    let posted = post(&server, "bob", "kept", "", &[&id]);
    assert_eq!(posted.status, 201, "{}", posted.body);
    let url = format!("/api/v1/rooms/kept/attachments/{id}");
    assert_eq!(download(&server, "cy", &url, &[]).status, 200);
    server.signal("TERM");
    assert!(server.wait().success(), "a clean stop");

    // The state a crash right after the answer leaves: the message stored, the marker there.
    let marker = dir
        .path()
        .join("files/rooms/kept")
        .join(format!("{id}.pending"));
    assert!(marker.parent().expect("a room dir").is_dir(), "{marker:?}");
    std::fs::write(&marker, b"").unwrap();
    let server = Server::smol(&flags);
    // The sweep runs every second and looks at markers older than two: once it went by, the
    // marker is gone either way (dropped with the file, or found posted).
    roomcast_e2e::wait_until("the sweep to look at the upload", || {
        (!marker.exists()).then_some(())
    });
    let got = download(&server, "cy", &url, &[]);
    assert_eq!(got.status, 200, "{}", got.body);
    assert_eq!(got.bytes, PNG);
}
