//! Tokens at the edge: the claims roomcast signs and reads, what each algorithm must satisfy,
//! the library's refusals in words a client can act on, and the data dir's secret.

use std::path::Path;

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, Validation};
use serde::{Deserialize, Serialize};

use crate::error::{AuthError, IdentityError};
use crate::{IdentityOptions, hex, random_bytes};

/// The claims of a token: `sub` and `exp` are all another application needs to mint one.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Claims {
    pub(crate) sub: String,
    pub(crate) exp: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) iat: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) iss: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) aud: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) sid: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub(crate) guest: bool,
}

/// What a token signed with `alg` must satisfy: a signature, `exp` and `sub`, `nbf` if it has
/// one, and the configured issuer and audience (without a configured audience, a token that
/// names one is refused by the library).
pub(crate) fn validation(alg: Algorithm, options: &IdentityOptions) -> Validation {
    let mut validation = Validation::new(alg);
    validation.leeway = 5;
    validation.validate_nbf = true;
    let mut required = vec!["exp", "sub"];
    if let Some(issuer) = &options.issuer {
        validation.set_issuer(&[issuer]);
        required.push("iss");
    }
    if let Some(audience) = &options.audience {
        validation.set_audience(&[audience]);
        required.push("aud");
    }
    validation.set_required_spec_claims(&required);
    validation
}

/// A token the JWT library refused, said in words a client can act on.
#[allow(
    clippy::wildcard_enum_match_arm,
    reason = "jsonwebtoken's error kinds are non_exhaustive; the rest are malformed tokens"
)]
pub(crate) fn refusal(e: jsonwebtoken::errors::Error) -> AuthError {
    let why = match e.kind() {
        ErrorKind::ExpiredSignature => return AuthError::Expired,
        ErrorKind::ImmatureSignature => return AuthError::NotYetValid,
        ErrorKind::InvalidSignature => "its signature does not match".to_owned(),
        ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => {
            "it is signed with an algorithm that is not accepted here".to_owned()
        }
        ErrorKind::InvalidIssuer => "it was issued by someone this server does not trust".into(),
        ErrorKind::InvalidAudience => "it is meant for another audience".to_owned(),
        ErrorKind::MissingRequiredClaim(claim) => format!("it lacks the {claim} claim"),
        ErrorKind::InvalidClaimFormat(claim) => format!("its {claim} claim is malformed"),
        _ => "it is malformed".to_owned(),
    };
    AuthError::InvalidToken(why)
}

/// Reads the data dir's secret, creating it (readable by the owner only) on first start.
pub(crate) fn secret_file(path: &Path) -> Result<Vec<u8>, IdentityError> {
    let failed = |source| IdentityError::SecretFile {
        path: path.to_owned(),
        source,
    };
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(text.trim().as_bytes().to_vec()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            use std::io::Write as _;
            use std::os::unix::fs::OpenOptionsExt as _;
            let secret = hex(&random_bytes::<32>());
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)
                .map_err(failed)?;
            writeln!(file, "{secret}")
                .and_then(|()| file.sync_all())
                .map_err(failed)?;
            Ok(secret.into_bytes())
        }
        Err(e) => Err(failed(e)),
    }
}

/// What tells two secrets apart without showing either: the signature of a fixed token made
/// with it. Nodes sharing rooms compare theirs, so one started with another secret refuses to
/// start rather than refusing everyone else's tokens.
pub fn secret_fingerprint(secret: &[u8]) -> String {
    let claims = Claims {
        sub: "roomcast secret check".into(),
        exp: 0,
        iat: None,
        iss: None,
        aud: None,
        sid: None,
        guest: false,
    };
    let token = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret),
    )
    .unwrap_or_default();
    token.rsplit('.').next().unwrap_or_default().to_owned()
}

/// The key that signs CSRF tokens: made from the token secret, so every node sharing the
/// secret issues tokens every other accepts.
pub(crate) fn csrf_key(secret: &[u8]) -> [u8; 32] {
    use hmac::Mac as _;
    let mut mac = <hmac::Hmac<sha2::Sha256> as hmac::Mac>::new_from_slice(secret)
        .expect("HMAC takes a key of any length");
    mac.update(b"roomcast csrf tokens");
    mac.finalize().into_bytes().into()
}

/// The MAC of a CSRF token's nonce under `key`, in hex (128 bits).
fn csrf_mac(key: &[u8; 32], nonce: &str) -> String {
    use hmac::Mac as _;
    let mut mac = <hmac::Hmac<sha2::Sha256> as hmac::Mac>::new_from_slice(key)
        .expect("HMAC takes a key of any length");
    mac.update(nonce.as_bytes());
    hex(&mac.finalize().into_bytes()[..16])
}

/// A new CSRF token: a random nonce, `.`, and its MAC.
pub(crate) fn csrf_token(key: &[u8; 32]) -> String {
    let nonce = hex(&random_bytes::<16>());
    let mac = csrf_mac(key, &nonce);
    format!("{nonce}.{mac}")
}

/// Whether `token` is one [`csrf_token`] made with `key` (compared in constant time).
pub(crate) fn csrf_issued(key: &[u8; 32], token: &str) -> bool {
    let Some((nonce, mac)) = token.split_once('.') else {
        return false;
    };
    if nonce.len() != 32 || !nonce.bytes().all(|b| b.is_ascii_hexdigit()) {
        return false;
    }
    let expected = csrf_mac(key, nonce);
    expected.len() == mac.len()
        && expected
            .bytes()
            .zip(mac.bytes())
            .fold(0u8, |d, (a, b)| d | (a ^ b))
            == 0
}
