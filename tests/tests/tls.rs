//! TLS end to end on roomcast-tokio: a test certificate authority (rcgen) signs the server's
//! certificate; a client that trusts the authority talks gRPC over TLS, and a plaintext client
//! gets nowhere.

use roomcast_e2e::Server;
use roomcast_proto::v1 as pb;
use roomcast_proto::v1::chat_client::ChatClient;
use tonic::transport::{Certificate, Channel, ClientTlsConfig};

/// A CA, and a certificate for `localhost` and 127.0.0.1 it signed: (CA PEM, cert PEM, key PEM).
fn authority_and_certificate() -> (String, String, String) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, "roomcast test CA");
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca, ca_key);
    let key = rcgen::KeyPair::generate().unwrap();
    let params =
        rcgen::CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
            .unwrap();
    let cert = params.signed_by(&key, &issuer).unwrap();
    (ca_cert.pem(), cert.pem(), key.serialize_pem())
}

#[tokio::test(flavor = "current_thread")]
async fn grpc_over_tls_with_a_trusted_authority() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = authority_and_certificate();
    let (cert_path, key_path) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert_path, cert).unwrap();
    std::fs::write(&key_path, key).unwrap();
    let server = Server::tokio(&[
        "--tls-cert",
        cert_path.to_str().unwrap(),
        "--tls-key",
        key_path.to_str().unwrap(),
    ]);
    server.wait_for_log("listening on https://");
    let url = format!("https://localhost:{}", server.addr.port());
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(&ca))
        .domain_name("localhost");
    let channel = Channel::from_shared(url)
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .connect()
        .await
        .expect("a TLS connection to a certificate the CA signed");
    let mut chat = ChatClient::new(channel);
    let token = chat
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
fn a_certificate_without_its_key_is_refused() {
    let (status, stderr) = roomcast_e2e::refused_start(
        "roomcast-tokio",
        "roomcast-tokio",
        &["--in-memory", "--tls-cert", "/nonexistent/cert.pem"],
    );
    assert!(!status.success());
    assert!(stderr.contains("--tls-key"), "{stderr}");
}
