//! TLS end to end on both binaries: a test certificate authority (rcgen) signs the servers'
//! certificates; clients that trust the authority talk HTTPS (REST, event streams, WebSocket)
//! to roomcast-smol and gRPC to roomcast-tokio; plaintext gets a clear refusal or nothing;
//! cookies are `Secure` over HTTPS; and SIGHUP swaps in a renewed certificate without a restart.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use roomcast_e2e::sse::SseStream;
use roomcast_e2e::{Answer, PATIENCE, Server, wait_until};
use roomcast_proto::v1 as pb;
use roomcast_proto::v1::chat_client::ChatClient;
use serde_json::{Value, json};
use tonic::transport::{Certificate, Channel, ClientTlsConfig};

/// A test certificate authority.
struct Authority {
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
    pem: String,
}

/// A certificate the authority signed, and its key.
struct Issued {
    pem: String,
    key: String,
    der: Vec<u8>,
}

impl Authority {
    fn new() -> Authority {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "roomcast test CA");
        let pem = params.self_signed(&key).unwrap().pem();
        Authority {
            issuer: rcgen::Issuer::new(params, key),
            pem,
        }
    }

    /// A certificate for `localhost` and 127.0.0.1.
    fn issue(&self) -> Issued {
        let key = rcgen::KeyPair::generate().unwrap();
        let params =
            rcgen::CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
                .unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Issued {
            pem: cert.pem(),
            key: key.serialize_pem(),
            der: cert.der().to_vec(),
        }
    }

    /// A client configuration trusting only this authority.
    fn client(&self, alpn: &[&[u8]]) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        let (added, _) = roots.add_parsable_certificates(
            rustls::pki_types::pem::PemObject::pem_slice_iter(self.pem.as_bytes())
                .map(Result::unwrap),
        );
        assert_eq!(added, 1);
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Arc::new(config)
    }

    /// An HTTPS client trusting only this authority.
    fn agent(&self) -> ureq::Agent {
        let ca = ureq::tls::Certificate::from_pem(self.pem.as_bytes()).unwrap();
        let tls = ureq::tls::TlsConfig::builder()
            .root_certs(ureq::tls::RootCerts::new_with_certs(&[ca]))
            .build();
        ureq::Agent::config_builder()
            .tls_config(tls)
            .timeout_global(Some(PATIENCE))
            .http_status_as_error(false)
            .max_redirects(0)
            .build()
            .into()
    }
}

/// Where a server reads its certificate and key.
struct Files {
    cert: PathBuf,
    key: PathBuf,
}

impl Files {
    fn in_dir(dir: &Path) -> Files {
        Files {
            cert: dir.join("cert.pem"),
            key: dir.join("key.pem"),
        }
    }

    fn write(&self, issued: &Issued) {
        std::fs::write(&self.cert, &issued.pem).unwrap();
        std::fs::write(&self.key, &issued.key).unwrap();
    }

    fn args(&self) -> Vec<&str> {
        vec![
            "--tls-cert",
            self.cert.to_str().unwrap(),
            "--tls-key",
            self.key.to_str().unwrap(),
        ]
    }
}

/// A server on a certificate the test authority issued, its files in a dir of its own.
struct Secured {
    authority: Authority,
    files: Files,
    /// The certificate it started with.
    first: Issued,
    server: Server,
    _dir: tempfile::TempDir,
}

impl Secured {
    fn start(start: fn(&[&str]) -> Server, extra: &[&str]) -> Secured {
        let dir = tempfile::tempdir().unwrap();
        let authority = Authority::new();
        let files = Files::in_dir(dir.path());
        let first = authority.issue();
        files.write(&first);
        let mut args = files.args();
        args.extend(extra);
        let server = start(&args);
        server.wait_for_log("listening on https://");
        Secured {
            authority,
            files,
            first,
            server,
            _dir: dir,
        }
    }
}

type Tls = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

/// A TLS session with the server at `addr`, for `localhost`, handshake done.
fn connect(addr: SocketAddr, config: &Arc<rustls::ClientConfig>) -> Tls {
    let tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(PATIENCE)).unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let conn = rustls::ClientConnection::new(config.clone(), name).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    while tls.conn.is_handshaking() {
        tls.conn
            .complete_io(&mut tls.sock)
            .expect("a TLS handshake with a certificate the authority signed");
    }
    tls
}

/// A TLS session that says goodbye (close_notify) when dropped, as a browser may: a server
/// that only peeked at the socket for its end would take the alert for data.
struct Polite(Tls);

impl Read for Polite {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.0.read(buf)
    }
}

impl Write for Polite {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

impl Drop for Polite {
    fn drop(&mut self) {
        self.0.conn.send_close_notify();
        let _ = self.0.flush();
    }
}

/// The certificate the server at `addr` serves a new connection now.
fn served(addr: SocketAddr, config: &Arc<rustls::ClientConfig>) -> Vec<u8> {
    let tls = connect(addr, config);
    let chain = tls.conn.peer_certificates().expect("a certificate");
    chain[0].to_vec()
}

fn send_json(agent: &ureq::Agent, url: &str, token: &str, body: &Value) -> Answer {
    roomcast_e2e::answer(
        agent
            .post(url)
            .header("Authorization", format!("Bearer {token}"))
            .header("Content-Type", "application/json")
            .send(body.to_string()),
    )
}

fn guest(agent: &ureq::Agent, server: &Server, name: &str) -> String {
    let res = roomcast_e2e::answer(
        agent
            .post(server.url("/api/v1/auth/guest"))
            .header("Content-Type", "application/json")
            .send(json!({ "nickname": name }).to_string()),
    );
    assert_eq!(res.status, 201, "{}", res.body);
    res.json()["token"].as_str().unwrap().to_owned()
}

fn set_cookies(res: &Answer) -> Vec<&str> {
    res.headers
        .iter()
        .filter(|(n, _)| n == "set-cookie")
        .map(|(_, v)| v.as_str())
        .collect()
}

#[test]
fn roomcast_smol_serves_pages_api_streams_and_websocket_over_https() {
    // Heartbeats an hour apart: a hang-up is noticed by the connection's watch, or not at all.
    let Secured {
        authority, server, ..
    } = Secured::start(Server::smol, &["--heartbeat", "1h"]);
    let agent = authority.agent();

    // REST.
    let ada = guest(&agent, &server, "ada");
    let bob = guest(&agent, &server, "bob");
    let created = send_json(
        &agent,
        &server.url("/api/v1/rooms"),
        &ada,
        &json!({ "room": "tls" }),
    );
    assert_eq!(created.status, 201, "{}", created.body);

    // An event stream, over a TLS session of its own.
    let config = authority.client(&[b"http/1.1"]);
    let mut events = SseStream::open_over(
        Polite(connect(server.addr, &config)),
        server.addr,
        "/api/v1/rooms/tls/events",
        None,
        Some(format!("Bearer {ada}")),
    )
    .expect("an event stream over TLS");
    let posted = send_json(
        &agent,
        &server.url("/api/v1/rooms/tls/messages"),
        &bob,
        &json!({ "text": "over TLS" }),
    );
    assert_eq!(posted.status, 201, "{}", posted.body);
    let message = std::iter::from_fn(|| events.next_event())
        .find(|e| e.event == "message")
        .expect("the message on the stream");
    assert_eq!(message.json()["text"], "over TLS");

    // A WebSocket over TLS.
    let request = tungstenite::http::Request::builder()
        .uri(server.ws_url("/api/v1/rooms/tls/ws"))
        .header("Host", format!("localhost:{}", server.addr.port()))
        .header("Authorization", format!("Bearer {bob}"))
        .header("Connection", "Upgrade")
        .header("Upgrade", "websocket")
        .header("Sec-WebSocket-Version", "13")
        .header(
            "Sec-WebSocket-Key",
            tungstenite::handshake::client::generate_key(),
        )
        .body(())
        .unwrap();
    let (mut socket, response) =
        tungstenite::client(request, connect(server.addr, &config)).expect("a WebSocket over TLS");
    assert_eq!(response.status(), 101);
    let frame = json!({ "type": "submit", "text": "framed", "ref": "w" });
    socket
        .send(tungstenite::Message::text(frame.to_string()))
        .unwrap();
    let ack = loop {
        if let tungstenite::Message::Text(text) = socket.read().expect("a frame") {
            let frame: Value = serde_json::from_str(&text).unwrap();
            if frame["type"] == "ack" {
                break frame;
            }
        }
    };
    assert_eq!(ack["message"]["seq"], 2);
    let framed = std::iter::from_fn(|| events.next_event())
        .find(|e| e.event == "message")
        .expect("the WebSocket's message on the stream");
    assert_eq!(framed.json()["text"], "framed");

    // The stream's client says goodbye and hangs up: presence says so at once, not at the next
    // heartbeat.
    let present = |user: &str| {
        let res = roomcast_e2e::answer(
            agent
                .get(server.url("/api/v1/rooms/tls/presence"))
                .header("Authorization", format!("Bearer {bob}"))
                .call(),
        );
        res.json()["users"]
            .as_array()
            .unwrap()
            .iter()
            .any(|u| u == user || u["user"] == user)
    };
    assert!(present("ada"));
    drop(events);
    wait_until("ada's hang-up over TLS is noticed", || {
        (!present("ada")).then_some(())
    });

    // Plain HTTP to the HTTPS port is told what to do.
    let plain = roomcast_e2e::get_unauthenticated(&format!("http://{}/healthz", server.addr));
    plain.problem(400, "https-required");
    let metrics = roomcast_e2e::answer(agent.get(server.url("/metrics")).call());
    let counted = roomcast_e2e::metric(
        &metrics.body,
        "roomcast_tls_handshake_failures_total{reason=\"plain_http\"}",
    );
    assert_eq!(counted, Some(1.0), "{}", metrics.body);
}

#[test]
fn cookies_are_secure_over_https_and_behind_a_proxy_that_says_so() {
    let Secured {
        authority, server, ..
    } = Secured::start(Server::smol, &[]);
    let agent = authority.agent();
    let page = roomcast_e2e::answer(agent.get(server.url("/sign-in")).call());
    assert_eq!(page.status, 200);
    let csrf_cookie = set_cookies(&page)
        .into_iter()
        .find(|c| c.starts_with("roomcast_csrf="))
        .expect("a CSRF cookie");
    assert!(csrf_cookie.ends_with("; Secure"), "{csrf_cookie}");
    let csrf = csrf_cookie
        .split(';')
        .next()
        .unwrap()
        .trim_start_matches("roomcast_csrf=");
    let signed_in = roomcast_e2e::answer(
        agent
            .post(server.url("/guest"))
            .header("Content-Type", "application/x-www-form-urlencoded")
            .header("Cookie", format!("roomcast_csrf={csrf}"))
            .send(format!("nickname=ada&csrf={csrf}&next=/")),
    );
    assert_eq!(signed_in.status, 303, "{}", signed_in.body);
    let session = set_cookies(&signed_in)
        .into_iter()
        .find(|c| c.starts_with("roomcast_session="))
        .expect("a session cookie");
    assert!(session.contains("; HttpOnly"), "{session}");
    assert!(session.ends_with("; Secure"), "{session}");

    // Plain HTTP: Secure only when a trusted proxy says its client used HTTPS.
    let proxied = Server::smol(&["--trusted-proxies", "127.0.0.1"]);
    let direct = Server::smol(&[]);
    let csrf_cookie_of = |server: &Server, proto: Option<&str>| {
        let headers: Vec<(&str, &str)> = proto
            .map(|p| vec![("X-Forwarded-Proto", p)])
            .unwrap_or_default();
        let res = roomcast_e2e::request_with("GET", &server.url("/sign-in"), &headers, None);
        set_cookies(&res)
            .into_iter()
            .find(|c| c.starts_with("roomcast_csrf="))
            .expect("a CSRF cookie")
            .to_owned()
    };
    assert!(csrf_cookie_of(&proxied, Some("https")).ends_with("; Secure"));
    assert!(!csrf_cookie_of(&proxied, Some("http")).contains("Secure"));
    assert!(!csrf_cookie_of(&proxied, None).contains("Secure"));
    // An untrusted peer's claim is not believed.
    assert!(!csrf_cookie_of(&direct, Some("https")).contains("Secure"));
}

/// SIGHUP makes the server serve a renewed certificate to new connections; a broken file then
/// keeps the renewed one served, and says why.
fn sighup_reloads(secured: &Secured) {
    let Secured {
        authority,
        files,
        first,
        server,
        ..
    } = secured;
    let config = authority.client(&[]);
    assert_eq!(served(server.addr, &config), first.der);
    let renewed = authority.issue();
    files.write(&renewed);
    // Until told, the server keeps what it read.
    assert_eq!(served(server.addr, &config), first.der);
    server.signal("HUP");
    wait_until("the renewed certificate is served", || {
        (served(server.addr, &config) == renewed.der).then_some(())
    });
    server.wait_for_log("TLS certificate reloaded");

    let mut half_written = std::fs::File::create(&files.key).unwrap();
    half_written
        .write_all(b"-----BEGIN PRIVATE KEY-----\nAAAA")
        .unwrap();
    drop(half_written);
    server.signal("HUP");
    let refused = server.wait_for_log("TLS certificate not reloaded");
    assert!(refused.contains("key.pem"), "{refused}");
    assert_eq!(served(server.addr, &config), renewed.der);
}

#[test]
fn sighup_reloads_roomcast_smol_certificate() {
    let secured = Secured::start(Server::smol, &[]);
    sighup_reloads(&secured);
    // Still serving, and still running.
    let agent = secured.authority.agent();
    let health = roomcast_e2e::answer(agent.get(secured.server.url("/healthz")).call());
    assert_eq!(health.status, 200);
}

#[test]
fn sighup_reloads_roomcast_tokio_certificate() {
    let secured = Secured::start(Server::tokio, &[]);
    sighup_reloads(&secured);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let token = runtime.block_on(async {
        tls_channel(&secured.server, &secured.authority)
            .await
            .guest(pb::GuestRequest {
                nickname: "ada".into(),
            })
            .await
            .expect("a call over TLS after the reloads")
            .into_inner()
    });
    assert_eq!(token.user, "ada");
}

async fn tls_channel(server: &Server, authority: &Authority) -> ChatClient<Channel> {
    let url = format!("https://localhost:{}", server.addr.port());
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(&authority.pem))
        .domain_name("localhost");
    let channel = Channel::from_shared(url)
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .connect()
        .await
        .expect("a TLS connection to a certificate the CA signed");
    ChatClient::new(channel)
}

#[tokio::test(flavor = "current_thread")]
async fn grpc_over_tls_with_a_trusted_authority() {
    let Secured {
        authority, server, ..
    } = Secured::start(Server::tokio, &[]);
    let token = tls_channel(&server, &authority)
        .await
        .guest(pb::GuestRequest {
            nickname: "ada".into(),
        })
        .await
        .expect("a call over TLS")
        .into_inner();
    assert_eq!(token.user, "ada");

    // Plain HTTP/2 to the TLS port gets no answer.
    let plain = Channel::from_shared(format!("http://127.0.0.1:{}", server.addr.port()))
        .unwrap()
        .connect()
        .await;
    if let Ok(channel) = plain {
        let refused = ChatClient::new(channel)
            .guest(pb::GuestRequest {
                nickname: "eve".into(),
            })
            .await;
        assert!(refused.is_err(), "plaintext is not served: {refused:?}");
    }
}

#[test]
fn unusable_certificates_are_refused_at_start_by_both_binaries() {
    let dir = tempfile::tempdir().unwrap();
    let authority = Authority::new();
    let files = Files::in_dir(dir.path());
    files.write(&authority.issue());
    // A key that is not the certificate's.
    let other = authority.issue();
    let stray_key = dir.path().join("other-key.pem");
    std::fs::write(&stray_key, other.key).unwrap();
    for (package, bin) in [
        ("roomcast-smol", "roomcast-smol"),
        ("roomcast-tokio", "roomcast-tokio"),
    ] {
        let (status, stderr) = roomcast_e2e::refused_start(
            package,
            bin,
            &["--in-memory", "--tls-cert", "/nonexistent/cert.pem"],
        );
        assert!(!status.success());
        assert!(stderr.contains("--tls-key"), "{stderr}");

        let (status, stderr) = roomcast_e2e::refused_start(
            package,
            bin,
            &[
                "--in-memory",
                "--tls-cert",
                files.cert.to_str().unwrap(),
                "--tls-key",
                stray_key.to_str().unwrap(),
            ],
        );
        assert!(!status.success());
        assert!(
            stderr.contains("does not fit the certificate"),
            "{bin}: {stderr}"
        );

        let (status, stderr) = roomcast_e2e::refused_start(
            package,
            bin,
            &[
                "--in-memory",
                "--tls-cert",
                files.key.to_str().unwrap(),
                "--tls-key",
                files.key.to_str().unwrap(),
            ],
        );
        assert!(!status.success());
        assert!(
            stderr.contains("holds no PEM certificate"),
            "{bin}: {stderr}"
        );
    }
}

/// The page in Chromium over HTTPS: signing in, a live room on both sides, and a session
/// cookie the browser keeps only for HTTPS.
#[tokio::test(flavor = "current_thread")]
async fn the_page_chats_over_https_in_chromium() {
    use roomcast_e2e::chromium::{Driver, available, open_live_room, run, sign_in_as_guest};
    if !available() {
        return;
    }
    let Secured {
        authority, server, ..
    } = Secured::start(Server::smol, &[]);
    let cy = guest(&authority.agent(), &server, "cy");
    let created = send_json(
        &authority.agent(),
        &server.url("/api/v1/rooms"),
        &cy,
        &json!({ "room": "secure" }),
    );
    assert_eq!(created.status, 201, "{}", created.body);

    let driver = Driver::start();
    let ada = driver.browser("ada").await;
    let bob = driver.browser("bob").await;
    for (client, name) in [(&ada, "ada"), (&bob, "bob")] {
        sign_in_as_guest(client, &server, name).await;
        open_live_room(client, &server, "secure").await;
        assert_eq!(
            run(client, "return location.protocol;", vec![]).await,
            json!("https:")
        );
        let session = client
            .get_named_cookie("roomcast_session")
            .await
            .expect("a session cookie");
        assert_eq!(session.secure(), Some(true));
        assert_eq!(session.http_only(), Some(true));
    }
    run(
        &ada,
        "document.getElementById('text').value = 'sealed'; \
         document.querySelector('#composer button[type=submit]').click(); return true;",
        vec![],
    )
    .await;
    roomcast_e2e::chromium::wait_for(
        &bob,
        "ada's message over HTTPS",
        "return [...document.querySelectorAll('#messages .message .text')] \
         .some(p => p.textContent === 'sealed') ? true : null;",
    )
    .await;
}

/// `systemctl reload` sends SIGHUP whether or not TLS is on: without a certificate to reload,
/// both servers say so and keep serving (SIGHUP's default would end them).
#[test]
fn sighup_without_tls_is_logged_and_both_servers_keep_serving() {
    let smol = Server::smol(&[]);
    let tokio = Server::tokio(&[]);
    for server in [&smol, &tokio] {
        server.signal("HUP");
        server.wait_for_log("SIGHUP: nothing to reload");
    }
    assert_eq!(roomcast_e2e::get(&smol.url("/healthz")).status, 200);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let url = format!("http://{}", tokio.addr);
        let mut chat = ChatClient::connect(url).await.expect("still serving");
        let token = chat
            .guest(pb::GuestRequest {
                nickname: "ada".into(),
            })
            .await
            .expect("a call after SIGHUP");
        assert_eq!(token.into_inner().user, "ada");
    });
}
