//! TLS for both hosts (rustls on ring): the certificate chain and key of `--tls-cert` and
//! `--tls-key`, read at start and read again on SIGHUP. A renewed certificate is served to new
//! connections without a restart (ones already open keep theirs); a reload that fails keeps
//! what is served and logs why, so a half-written file never takes the server down.

use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use anyhow::Context as _;
use async_signal::{Signal, Signals};
use futures_lite::StreamExt;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

/// How long a client gets to finish its TLS handshake; a slower one is closed, its place
/// under the connection cap freed.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a TLS handshake did not finish, counted in `roomcast_tls_handshake_failures_total`.
#[derive(Debug, Clone, Copy)]
pub enum HandshakeFailure {
    /// The client's TLS was refused (no common version or cipher, a bad record, a reset).
    Error,
    /// Not done within [`HANDSHAKE_TIMEOUT`].
    Timeout,
    /// The client spoke plain HTTP to the TLS port.
    PlainHttp,
}

impl HandshakeFailure {
    /// Counts it and logs it (at debug: any client can cause one).
    pub fn record(self, peer: Option<std::net::SocketAddr>, error: &dyn std::fmt::Display) {
        let reason = match self {
            HandshakeFailure::Error => "error",
            HandshakeFailure::Timeout => "timeout",
            HandshakeFailure::PlainHttp => "plain_http",
        };
        metrics::counter!("roomcast_tls_handshake_failures_total", "reason" => reason).increment(1);
        tracing::debug!(?peer, reason, %error, "TLS handshake failed");
    }
}

/// The TLS flags both binaries take.
#[derive(Debug, Clone, clap::Args)]
pub struct TlsArgs {
    /// Serve over TLS with this certificate chain (PEM, the server's certificate first); needs
    /// --tls-key. SIGHUP reads both files again.
    #[arg(long, env = "ROOMCAST_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The private key (PEM: PKCS#8, PKCS#1 or SEC1) of --tls-cert.
    #[arg(long, env = "ROOMCAST_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
}

impl TlsArgs {
    /// The server's TLS configuration, offering `alpn` (most preferred first), or `None` when
    /// TLS is off. Fails, naming the file and the reason, when either file is unusable.
    pub fn server_config(&self, alpn: &[&[u8]]) -> anyhow::Result<Option<Tls>> {
        let (Some(cert), Some(key)) = (&self.tls_cert, &self.tls_key) else {
            return Ok(None);
        };
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let certificates = Arc::new(Certificates {
            current: RwLock::new(Arc::new(read(cert, key, &provider)?)),
            cert: cert.clone(),
            key: key.clone(),
            provider: provider.clone(),
        });
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .context("TLS protocol versions")?
            .with_no_client_auth()
            .with_cert_resolver(certificates.clone());
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Ok(Some(Tls {
            config: Arc::new(config),
            certificates,
        }))
    }
}

/// What a host serves TLS with.
#[derive(Debug, Clone)]
pub struct Tls {
    /// For the host's acceptor.
    pub config: Arc<rustls::ServerConfig>,
    /// The served certificate, which [`reload_on_hangup`] replaces.
    certificates: Arc<Certificates>,
}

/// The certificate served now, and where it is read from.
#[derive(Debug)]
struct Certificates {
    current: RwLock<Arc<CertifiedKey>>,
    cert: PathBuf,
    key: PathBuf,
    provider: Arc<CryptoProvider>,
}

impl Certificates {
    /// Reads both files again and serves them to new connections; on error what is served
    /// stays.
    fn reload(&self) -> anyhow::Result<()> {
        let fresh = read(&self.cert, &self.key, &self.provider)?;
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(fresh);
        Ok(())
    }
}

/// Catches SIGHUP from now on, forever: each reloads the certificate `tls` serves.
/// Without them there is nothing to reload, and SIGHUP (as `systemctl reload` sends) is logged
/// rather than ending the server. Call before announcing the listening address: until then
/// SIGHUP ends the process.
pub fn reload_on_hangup(tls: Option<&Tls>) -> anyhow::Result<impl Future<Output = ()> + use<>> {
    let certificates = tls.map(|tls| tls.certificates.clone());
    let mut hangups = Signals::new([Signal::Hup]).context("cannot catch SIGHUP")?;
    Ok(async move {
        while let Some(Ok(_)) = hangups.next().await {
            let Some(certificates) = &certificates else {
                tracing::info!("SIGHUP: nothing to reload (no --tls-cert)");
                continue;
            };
            match certificates.reload() {
                Ok(()) => tracing::info!(
                    cert = %certificates.cert.display(),
                    "SIGHUP: TLS certificate reloaded; new connections get it"
                ),
                Err(e) => tracing::error!(
                    error = format!("{e:#}"),
                    "SIGHUP: TLS certificate not reloaded; still serving the previous one"
                ),
            }
        }
    })
}

impl ResolvesServerCert for Certificates {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(
            self.current
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .clone(),
        )
    }
}

/// A certificate chain and its key, checked to belong together.
fn read(cert: &Path, key: &Path, provider: &CryptoProvider) -> anyhow::Result<CertifiedKey> {
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(Iterator::collect::<Result<Vec<_>, _>>)
        .with_context(|| {
            format!(
                "cannot read a PEM certificate chain from {}",
                cert.display()
            )
        })?;
    anyhow::ensure!(
        !chain.is_empty(),
        "{} holds no PEM certificate",
        cert.display()
    );
    let private = PrivateKeyDer::from_pem_file(key)
        .with_context(|| format!("cannot read a PEM private key from {}", key.display()))?;
    CertifiedKey::from_der(chain, private, provider).with_context(|| {
        format!(
            "the key in {} does not fit the certificate in {}, or is of an unsupported kind",
            key.display(),
            cert.display()
        )
    })
}
