//! Identity: accounts, guests and signed tokens, the same for both hosts.
//!
//! A host turns whatever credentials a request carries (a bearer token, the session cookie, a
//! WebSocket's first frame, gRPC `authorization` metadata) into a verified [`Caller`] here, and
//! passes only that name to core, which decides what it may do.
//!
//! Tokens are JWTs. roomcast signs its own with HS256 and the server secret, carrying the user,
//! an expiry and a session id; signing out deletes the session, so its tokens stop working at
//! once. Another application holding the same secret (or the private half of a configured RS256
//! or EdDSA public key) can mint tokens for its own users: `sub` and `exp` are all it needs, and
//! such tokens are valid until they expire, the way Centrifugo and Mercure work.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::path::Path;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use roomcast_core::{NameError, Timestamp, UserName};
use roomcast_store::Store;
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// The shortest and longest password accepted, in bytes.
pub const PASSWORD_BYTES: std::ops::RangeInclusive<usize> = 8..=1024;
/// Sign-in attempts allowed back to back, per account and per address.
const ATTEMPT_BURST: f64 = 5.0;
/// Attempts regained per second after that (one every 12 s).
const ATTEMPT_REFILL: f64 = 1.0 / 12.0;
/// The token secret's file in the data dir, created on first start.
const SECRET_FILE: &str = "jwt-secret";

/// A verified user, as a host passes it on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The user's name.
    pub user: String,
    /// True for a guest (a nickname without an account).
    pub guest: bool,
    /// The session the token belongs to; `None` for tokens minted by another application.
    session: Option<String>,
}

/// A token handed to a client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Issued {
    /// The JWT: send it as `Authorization: Bearer`.
    pub token: String,
    /// Who it names.
    pub user: String,
    /// True for a guest token.
    pub guest: bool,
    /// When it expires, in seconds since the Unix epoch.
    pub expires_at: u64,
}

/// Why a caller was not identified, or an account request refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum AuthError {
    /// No credentials at all.
    #[error(
        "sign in first: send a token as `Authorization: Bearer <token>` (or the session cookie)"
    )]
    Missing,
    /// The token is malformed, wrongly signed or for an unknown algorithm.
    #[error("the token is not valid ({0})")]
    InvalidToken(String),
    /// The token's `exp` has passed.
    #[error("the token has expired: sign in again")]
    Expired,
    /// The token's session was signed out (or its guest name has since been registered).
    #[error("the token was revoked: sign in again")]
    Revoked,
    /// Wrong name or password (which of the two is not said).
    #[error("wrong user name or password")]
    BadCredentials,
    /// Too many sign-in attempts for this account or from this address.
    #[error("too many sign-in attempts: try again in {} s", retry_after.as_secs().max(1))]
    TooManyAttempts {
        /// When the next attempt is allowed.
        retry_after: Duration,
    },
    /// Registering, or a guest nickname, with a name an account holds.
    #[error("the name {0} is taken")]
    NameTaken(String),
    /// Guests are turned off on this server.
    #[error("guests are not allowed here: register or sign in")]
    GuestsOff,
    /// A password outside [`PASSWORD_BYTES`].
    #[error("a password must be 8 to 1024 bytes long")]
    BadPassword,
    /// A name that breaks the user-name rules.
    #[error("invalid user name: {0}")]
    InvalidName(NameError),
    /// The account store failed.
    #[error("accounts are unavailable: {0}")]
    Unavailable(String),
}

/// The broad kind of an [`AuthError`], for an HTTP status or gRPC code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthClass {
    /// 401 / `UNAUTHENTICATED`.
    Unauthenticated,
    /// 403 / `PERMISSION_DENIED`.
    Forbidden,
    /// 409 / `ALREADY_EXISTS`.
    Conflict,
    /// 429 / `RESOURCE_EXHAUSTED`.
    RateLimited,
    /// 400 / `INVALID_ARGUMENT`.
    Invalid,
    /// 503 / `UNAVAILABLE`.
    Unavailable,
}

impl AuthError {
    /// The broad kind.
    pub fn class(&self) -> AuthClass {
        match self {
            AuthError::Missing
            | AuthError::InvalidToken(_)
            | AuthError::Expired
            | AuthError::Revoked
            | AuthError::BadCredentials => AuthClass::Unauthenticated,
            AuthError::GuestsOff => AuthClass::Forbidden,
            AuthError::NameTaken(_) => AuthClass::Conflict,
            AuthError::TooManyAttempts { .. } => AuthClass::RateLimited,
            AuthError::BadPassword | AuthError::InvalidName(_) => AuthClass::Invalid,
            AuthError::Unavailable(_) => AuthClass::Unavailable,
        }
    }

    /// A stable kebab-case name.
    pub fn code(&self) -> &'static str {
        match self {
            AuthError::Missing => "unauthenticated",
            AuthError::InvalidToken(_) => "invalid-token",
            AuthError::Expired => "token-expired",
            AuthError::Revoked => "token-revoked",
            AuthError::BadCredentials => "bad-credentials",
            AuthError::TooManyAttempts { .. } => "too-many-attempts",
            AuthError::NameTaken(_) => "name-taken",
            AuthError::GuestsOff => "guests-off",
            AuthError::BadPassword => "bad-password",
            AuthError::InvalidName(_) => "invalid-user-name",
            AuthError::Unavailable(_) => "accounts-unavailable",
        }
    }
}

/// How tokens are signed and checked, and who may come in.
#[derive(Debug, Clone)]
pub struct IdentityOptions {
    /// The HS256 secret; `None` takes the data dir's (created once) or, in memory, a random one.
    pub secret: Option<Vec<u8>>,
    /// An extra public key for tokens minted elsewhere: RS256 or EdDSA, PEM.
    pub public_key: Option<(Algorithm, Vec<u8>)>,
    /// Whether people may chat as guests.
    pub guests: bool,
    /// How long a token roomcast issues lasts.
    pub token_ttl: Duration,
    /// The longest user name, in characters (core's limit).
    pub max_name_chars: usize,
}

impl Default for IdentityOptions {
    fn default() -> Self {
        IdentityOptions {
            secret: None,
            public_key: None,
            guests: true,
            token_ttl: Duration::from_secs(7 * 24 * 3600),
            max_name_chars: roomcast_core::Limits::default().user_name_max_chars,
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: String,
    exp: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    iat: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sid: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    guest: bool,
}

/// Accounts, sessions and token keys. Shared by every connection; the password work is
/// blocking (argon2id takes tens of milliseconds by design), so hosts call it from a blocking pool
/// through the async wrappers on [`Hub`](crate::Hub).
pub struct Identity {
    encoding: EncodingKey,
    decoding: DecodingKey,
    external: Option<(Algorithm, DecodingKey)>,
    store: Option<Arc<Store>>,
    /// Accounts when there is no store: name → password hash.
    memory: Mutex<HashMap<String, String>>,
    /// Every registered name, for guest checks on each request.
    names: RwLock<HashSet<String>>,
    /// Live sessions: id → (user, expiry in Unix seconds). Expired ones are pruned as new
    /// ones open, so the map stays as large as the sessions in use.
    sessions: RwLock<HashMap<String, (String, u64)>>,
    attempts: Mutex<Attempts>,
    options: IdentityOptions,
    /// A hash to verify against when the account does not exist, so both take as long.
    decoy: String,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("guests", &self.options.guests)
            .field("external", &self.external.as_ref().map(|(alg, _)| *alg))
            .finish_non_exhaustive()
    }
}

/// Why identity could not be set up (reported as one line at start).
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum IdentityError {
    /// The configured secret is too short to be safe.
    #[error("--jwt-secret must be at least 32 bytes; generate one with `openssl rand -hex 32`")]
    WeakSecret,
    /// The secret file cannot be read or written.
    #[error("cannot use the token secret {path}: {source}")]
    SecretFile {
        /// The file.
        path: std::path::PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The public key cannot be parsed.
    #[error("cannot use --jwt-public-key: {0}")]
    PublicKey(String),
    /// Accounts or sessions could not be loaded.
    #[error("cannot load accounts: {0}")]
    Store(String),
}

impl Identity {
    /// Sets up keys, loads accounts and live sessions.
    pub fn new(
        options: IdentityOptions,
        store: Option<Arc<Store>>,
    ) -> Result<Identity, IdentityError> {
        let secret = match (&options.secret, &store) {
            (Some(secret), _) if secret.len() < 32 => return Err(IdentityError::WeakSecret),
            (Some(secret), _) => secret.clone(),
            (None, Some(store)) => secret_file(&store.dir().join(SECRET_FILE))?,
            (None, None) => random_bytes::<32>().to_vec(),
        };
        let external = match &options.public_key {
            None => None,
            Some((alg, pem)) => {
                let key = match alg {
                    Algorithm::EdDSA => DecodingKey::from_ed_pem(pem),
                    _ => DecodingKey::from_rsa_pem(pem),
                }
                .map_err(|e| IdentityError::PublicKey(e.to_string()))?;
                Some((*alg, key))
            }
        };
        let load = |e: roomcast_store::StoreError| IdentityError::Store(e.to_string());
        let (names, sessions) = match &store {
            Some(store) => (
                store.account_names().map_err(load)?.into_iter().collect(),
                store
                    .live_sessions(now())
                    .map_err(load)?
                    .into_iter()
                    .map(|(id, user, exp)| (id, (user, exp.as_unix_millis() / 1000)))
                    .collect(),
            ),
            None => (HashSet::new(), HashMap::new()),
        };
        Ok(Identity {
            encoding: EncodingKey::from_secret(&secret),
            decoding: DecodingKey::from_secret(&secret),
            external,
            store,
            memory: Mutex::new(HashMap::new()),
            names: RwLock::new(names),
            sessions: RwLock::new(sessions),
            attempts: Mutex::new(Attempts::default()),
            decoy: hash_password("not a real password").map_err(IdentityError::Store)?,
            options,
        })
    }

    /// Whether guests may chat.
    pub fn guests_allowed(&self) -> bool {
        self.options.guests
    }

    /// Checks a token and says who it names.
    pub fn verify(&self, token: &str) -> Result<Caller, AuthError> {
        let invalid = |e: jsonwebtoken::errors::Error| match e.kind() {
            jsonwebtoken::errors::ErrorKind::ExpiredSignature => AuthError::Expired,
            _ => AuthError::InvalidToken(e.to_string()),
        };
        let header = jsonwebtoken::decode_header(token).map_err(invalid)?;
        let key = match (&self.external, header.alg) {
            (_, Algorithm::HS256) => &self.decoding,
            (Some((alg, key)), used) if *alg == used => key,
            (_, used) => {
                return Err(AuthError::InvalidToken(format!(
                    "algorithm {used:?} is not accepted"
                )));
            }
        };
        let mut validation = Validation::new(header.alg);
        validation.leeway = 5;
        validation.set_required_spec_claims(&["exp", "sub"]);
        let claims = jsonwebtoken::decode::<Claims>(token, key, &validation)
            .map_err(invalid)?
            .claims;
        UserName::parse(&claims.sub, self.options.max_name_chars)
            .map_err(|e| AuthError::InvalidToken(format!("sub: {e}")))?;
        if let Some(sid) = &claims.sid {
            let sessions = self.sessions.read().unwrap_or_else(|e| e.into_inner());
            if sessions.get(sid).map(|(user, _)| user) != Some(&claims.sub) {
                return Err(AuthError::Revoked);
            }
        }
        if claims.guest {
            if !self.options.guests {
                return Err(AuthError::GuestsOff);
            }
            // A name registered since the guest took it belongs to its account now.
            if self.is_registered(&claims.sub) {
                return Err(AuthError::Revoked);
            }
        }
        Ok(Caller {
            user: claims.sub,
            guest: claims.guest,
            session: claims.sid,
        })
    }

    /// Creates an account and signs it in. Blocking (hashes the password).
    pub fn register(&self, name: &str, password: &str) -> Result<Issued, AuthError> {
        let name = self.name(name)?;
        if !PASSWORD_BYTES.contains(&password.len()) {
            return Err(AuthError::BadPassword);
        }
        let hash = hash_password(password).map_err(AuthError::Unavailable)?;
        let created = match &self.store {
            Some(store) => store
                .create_account(&name, &hash, now())
                .map_err(|e| AuthError::Unavailable(e.to_string()))?,
            None => {
                let mut memory = self.memory.lock().unwrap_or_else(|e| e.into_inner());
                !memory.contains_key(&name) && memory.insert(name.clone(), hash).is_none()
            }
        };
        if !created {
            return Err(AuthError::NameTaken(name));
        }
        self.names
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name.clone());
        self.issue(name, false)
    }

    /// Checks a name and password and signs in. Blocking (verifies the hash). Attempts are
    /// limited per account and per address, successful or not.
    pub fn sign_in(&self, name: &str, password: &str, from: IpAddr) -> Result<Issued, AuthError> {
        self.attempts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take(
                &[format!("name:{name}"), format!("addr:{from}")],
                Instant::now(),
            )
            .map_err(|retry_after| AuthError::TooManyAttempts { retry_after })?;
        let stored = match &self.store {
            Some(store) => store
                .password_hash(name)
                .map_err(|e| AuthError::Unavailable(e.to_string()))?,
            None => self
                .memory
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(name)
                .cloned(),
        };
        // Without an account, check against a decoy so the answer takes as long.
        let hash = stored.as_deref().unwrap_or(&self.decoy);
        let matches = PasswordHash::new(hash).is_ok_and(|parsed| {
            Argon2::default()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok()
        });
        if !matches || stored.is_none() {
            return Err(AuthError::BadCredentials);
        }
        self.issue(name.to_owned(), false)
    }

    /// A guest token for `nickname`, if guests are allowed and no account holds the name.
    pub fn guest(&self, nickname: &str) -> Result<Issued, AuthError> {
        if !self.options.guests {
            return Err(AuthError::GuestsOff);
        }
        let name = self.name(nickname)?;
        if self.is_registered(&name) {
            return Err(AuthError::NameTaken(name));
        }
        self.issue(name, true)
    }

    /// Ends the caller's session: its tokens stop working everywhere at once.
    pub fn sign_out(&self, caller: &Caller) -> Result<(), AuthError> {
        let Some(sid) = &caller.session else {
            return Ok(()); // Minted elsewhere: only its expiry ends it.
        };
        self.sessions
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(sid);
        if let Some(store) = &self.store {
            store
                .remove_session(sid)
                .map_err(|e| AuthError::Unavailable(e.to_string()))?;
        }
        Ok(())
    }

    fn is_registered(&self, name: &str) -> bool {
        self.names
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .contains(name)
    }

    fn name(&self, name: &str) -> Result<String, AuthError> {
        UserName::parse(name, self.options.max_name_chars)
            .map(|n| n.as_str().to_owned())
            .map_err(AuthError::InvalidName)
    }

    /// Opens a session for `user` and signs a token for it.
    fn issue(&self, user: String, guest: bool) -> Result<Issued, AuthError> {
        let issued_at = unix_seconds();
        let expires_at = issued_at + self.options.token_ttl.as_secs().max(1);
        let sid = random_token();
        if let Some(store) = &self.store {
            store
                .add_session(&sid, &user, Timestamp::from_unix_millis(expires_at * 1000))
                .map_err(|e| AuthError::Unavailable(e.to_string()))?;
        }
        let mut sessions = self.sessions.write().unwrap_or_else(|e| e.into_inner());
        sessions.insert(sid.clone(), (user.clone(), expires_at));
        // Forget expired sessions whenever the map reaches a power of two: amortised O(1).
        let prune = sessions.len() >= 1024 && sessions.len().is_power_of_two();
        if prune {
            sessions.retain(|_, (_, exp)| *exp > issued_at);
        }
        drop(sessions);
        if prune && let Some(store) = &self.store {
            store
                .prune_sessions(now())
                .map_err(|e| AuthError::Unavailable(e.to_string()))?;
        }
        let claims = Claims {
            sub: user.clone(),
            exp: expires_at,
            iat: Some(issued_at),
            sid: Some(sid),
            guest,
        };
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .map_err(|e| AuthError::Unavailable(e.to_string()))?;
        Ok(Issued {
            token,
            user,
            guest,
            expires_at,
        })
    }
}

/// Token buckets for sign-in attempts, by key.
#[derive(Debug, Default)]
struct Attempts {
    buckets: HashMap<String, (f64, Instant)>,
}

impl Attempts {
    /// Takes one attempt from every key's bucket, or says when the emptiest refills.
    fn take(&mut self, keys: &[String], now: Instant) -> Result<(), Duration> {
        if self.buckets.len() > 100_000 {
            // Forget buckets that have refilled: they hold nothing worth remembering.
            self.buckets.retain(|_, (tokens, at)| {
                *tokens + now.duration_since(*at).as_secs_f64() * ATTEMPT_REFILL < ATTEMPT_BURST
            });
        }
        let level = |bucket: Option<&(f64, Instant)>| match bucket {
            Some((tokens, at)) => {
                (tokens + now.duration_since(*at).as_secs_f64() * ATTEMPT_REFILL).min(ATTEMPT_BURST)
            }
            None => ATTEMPT_BURST,
        };
        let lowest = keys
            .iter()
            .map(|k| level(self.buckets.get(k)))
            .fold(ATTEMPT_BURST, f64::min);
        if lowest < 1.0 {
            return Err(Duration::from_secs_f64((1.0 - lowest) / ATTEMPT_REFILL));
        }
        for key in keys {
            let tokens = level(self.buckets.get(key)) - 1.0;
            self.buckets.insert(key.clone(), (tokens, now));
        }
        Ok(())
    }
}

fn hash_password(password: &str) -> Result<String, String> {
    let salt = SaltString::encode_b64(&random_bytes::<16>()).map_err(|e| e.to_string())?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| e.to_string())
}

/// Reads the data dir's secret, creating it (readable by the owner only) on first start.
fn secret_file(path: &Path) -> Result<Vec<u8>, IdentityError> {
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

/// A fresh random 128-bit token, as 32 hex digits (session ids, CSRF tokens).
pub fn random_token() -> String {
    hex(&random_bytes::<16>())
}

fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    // The OS random source failing is not something a chat server can work around.
    getrandom::fill(&mut bytes).expect("the OS provides random bytes");
    bytes
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unix_seconds() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn now() -> Timestamp {
    Timestamp::from(SystemTime::now())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity(guests: bool) -> Identity {
        Identity::new(
            IdentityOptions {
                secret: Some(b"0123456789abcdef0123456789abcdef".to_vec()),
                public_key: None,
                guests,
                token_ttl: Duration::from_secs(3600),
                max_name_chars: 32,
            },
            None,
        )
        .unwrap()
    }

    fn localhost() -> IpAddr {
        IpAddr::from([127, 0, 0, 1])
    }

    #[test]
    fn register_sign_in_and_sign_out() {
        let id = identity(true);
        let issued = id.register("ada", "correct horse").unwrap();
        let caller = id.verify(&issued.token).unwrap();
        assert_eq!((caller.user.as_str(), caller.guest), ("ada", false));
        assert_eq!(
            id.register("ada", "another one"),
            Err(AuthError::NameTaken("ada".into()))
        );
        assert_eq!(
            id.sign_in("ada", "wrong pass", localhost()),
            Err(AuthError::BadCredentials)
        );
        assert_eq!(
            id.sign_in("nobody", "whatever", localhost()),
            Err(AuthError::BadCredentials)
        );
        let again = id.sign_in("ada", "correct horse", localhost()).unwrap();
        id.sign_out(&id.verify(&again.token).unwrap()).unwrap();
        assert_eq!(id.verify(&again.token), Err(AuthError::Revoked));
        assert!(id.verify(&issued.token).is_ok(), "other sessions stay");
        assert_eq!(id.register("bo", "short"), Err(AuthError::BadPassword));
        assert!(matches!(
            id.register("", "long enough"),
            Err(AuthError::InvalidName(_))
        ));
    }

    #[test]
    fn guests_cannot_take_an_account_name_and_lose_one_registered_later() {
        let id = identity(true);
        id.register("ada", "correct horse").unwrap();
        assert_eq!(id.guest("ada"), Err(AuthError::NameTaken("ada".into())));
        let guest = id.guest("bob").unwrap();
        assert!(id.verify(&guest.token).unwrap().guest);
        id.register("bob", "bob's password").unwrap();
        assert_eq!(id.verify(&guest.token), Err(AuthError::Revoked));
        assert_eq!(identity(false).guest("cy"), Err(AuthError::GuestsOff));
    }

    #[test]
    fn tampered_expired_and_foreign_tokens_are_refused() {
        let id = identity(true);
        let token = id.register("ada", "correct horse").unwrap().token;
        let mut tampered = token.clone();
        tampered.pop();
        tampered.push(if token.ends_with('A') { 'B' } else { 'A' });
        assert!(matches!(
            id.verify(&tampered),
            Err(AuthError::InvalidToken(_))
        ));
        let other = Identity::new(
            IdentityOptions {
                secret: Some(b"another secret of thirty-two bytes!!".to_vec()),
                ..identity(true).options.clone()
            },
            None,
        )
        .unwrap();
        assert!(matches!(
            other.verify(&token),
            Err(AuthError::InvalidToken(_))
        ));
        // Minted by another application with the same secret: no session, trusted to expiry.
        let mint = |exp: u64| {
            let claims = Claims {
                sub: "app-user".into(),
                exp,
                iat: None,
                sid: None,
                guest: false,
            };
            jsonwebtoken::encode(
                &Header::new(Algorithm::HS256),
                &claims,
                &EncodingKey::from_secret(b"0123456789abcdef0123456789abcdef"),
            )
            .unwrap()
        };
        assert_eq!(
            id.verify(&mint(unix_seconds() + 60)).unwrap().user,
            "app-user"
        );
        assert_eq!(
            id.verify(&mint(unix_seconds() - 60)),
            Err(AuthError::Expired)
        );
        assert!(matches!(
            id.verify("not.a.token"),
            Err(AuthError::InvalidToken(_))
        ));
    }

    #[test]
    fn tokens_signed_with_a_configured_public_key_are_accepted() {
        // A throwaway Ed25519 pair made for this test with `openssl genpkey -algorithm ed25519`.
        const PRIVATE: &str = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIDN5tjubzyuDl+1V9NjtG7YD8s7davSseARoeRTijqd6\n-----END PRIVATE KEY-----\n";
        const PUBLIC: &str = "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEAWsvOPso1HSEaQByGY22JZ4Kr4+utUbAVZBMZyxGPXrM=\n-----END PUBLIC KEY-----\n";
        let id = Identity::new(
            IdentityOptions {
                public_key: Some((Algorithm::EdDSA, PUBLIC.as_bytes().to_vec())),
                ..identity(true).options.clone()
            },
            None,
        )
        .unwrap();
        let claims = Claims {
            sub: "sso-user".into(),
            exp: unix_seconds() + 60,
            iat: None,
            sid: None,
            guest: false,
        };
        let key = EncodingKey::from_ed_pem(PRIVATE.as_bytes()).unwrap();
        let token = jsonwebtoken::encode(&Header::new(Algorithm::EdDSA), &claims, &key).unwrap();
        assert_eq!(id.verify(&token).unwrap().user, "sso-user");
        // Without the key configured, the same token is refused.
        assert!(matches!(
            identity(true).verify(&token),
            Err(AuthError::InvalidToken(_))
        ));
    }

    #[test]
    fn sign_in_attempts_are_limited_per_account_and_address() {
        let id = identity(true);
        id.register("ada", "correct horse").unwrap();
        for _ in 0..5 {
            assert_eq!(
                id.sign_in("ada", "guess", localhost()),
                Err(AuthError::BadCredentials)
            );
        }
        assert!(
            matches!(
                id.sign_in("ada", "correct horse", IpAddr::from([10, 0, 0, 9])),
                Err(AuthError::TooManyAttempts { .. })
            ),
            "the account is held whatever the address"
        );
        assert!(
            matches!(
                id.sign_in("someone", "guess", localhost()),
                Err(AuthError::TooManyAttempts { .. })
            ),
            "and the address whatever the account"
        );
    }
}
