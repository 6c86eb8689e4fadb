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
//! such tokens are valid until they expire, the way Centrifugo and Mercure work. Every
//! registered claim the JWT library can check is checked: `exp`, `nbf`, and `iss` and `aud`
//! when configured (a token naming an audience is refused unless it names ours).
//!
//! A name is one person's. An account holds its name for good; a guest holds its nickname
//! while its session lives and [`GUEST_NAME_GRACE`] after, and nobody (guest or registrant)
//! can take a held name, so nobody inherits what its holder could read. What a hostile client
//! can spend is bounded: sign-ups per address, sign-in attempts per (account, address) and per
//! address (never per account alone, which would let anyone lock anyone out), and password
//! hashing on one thread per core with a bounded queue.

mod attempts;
mod hashing;

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::path::Path;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use roomcast_core::{NameError, Timestamp, UserName};
use roomcast_store::Store;
use serde::{Deserialize, Serialize};
use thiserror::Error;

pub use attempts::{Allowance, Origin};

use attempts::Buckets;
use hashing::Hashing;

/// The shortest and longest password accepted, in characters (at most 1 KiB of UTF-8, and a
/// rule a schema can state).
pub const PASSWORD_CHARS: std::ops::RangeInclusive<usize> = 8..=256;
/// Sign-in attempts for one account from one address: five, then one every 12 s.
const SIGN_IN_PER_ACCOUNT_AND_ADDRESS: Allowance = Allowance {
    burst: 5,
    every: Duration::from_secs(12),
};
/// Sign-in attempts from one address, whatever the account: twenty, then one every 3 s.
const SIGN_IN_PER_ADDRESS: Allowance = Allowance {
    burst: 20,
    every: Duration::from_secs(3),
};
/// How long a guest's nickname stays held after its session ends (signed out or expired), so
/// that a newcomer is not mistaken for the guest who just left.
pub const GUEST_NAME_GRACE: Duration = Duration::from_secs(3600);
/// Hashes waiting per hashing thread before callers are turned away.
const HASHES_WAITING_PER_THREAD: usize = 16;
/// A hash to verify against when the account does not exist, so both take as long: argon2id
/// with the default parameters (a test checks they still are), of a password nobody has.
const DECOY: &str = "$argon2id$v=19$m=19456,t=2,p=1$cm9vbWNhc3QtZGVjb3khIQ$8FIIQXCSG8Zy0kr1xTBKJWQh6sUM5VSprjbEjLRz5vs";
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
pub enum AuthError {
    /// No credentials at all.
    #[error(
        "sign in first: send a token as `Authorization: Bearer <token>` (or the session cookie)"
    )]
    Missing,
    /// The token is malformed, wrongly signed, for an unknown algorithm, or its claims do not fit.
    #[error("the token is not valid: {0}")]
    InvalidToken(String),
    /// The token's `exp` has passed.
    #[error("the token has expired: sign in again")]
    Expired,
    /// The token's `nbf` has not come yet.
    #[error("the token is not valid yet (its nbf is in the future): check the issuer's clock")]
    NotYetValid,
    /// The token's session was signed out (or its guest name has since been registered).
    #[error("the token was revoked: sign in again")]
    Revoked,
    /// Wrong name or password (which of the two is not said).
    #[error("wrong user name or password")]
    BadCredentials,
    /// Too many sign-in attempts for this account from this address, or from this address.
    #[error("too many sign-in attempts: try again in {} s", retry_after.as_secs().max(1))]
    TooManyAttempts {
        /// When the next attempt is allowed.
        retry_after: Duration,
    },
    /// Too many accounts or guests made from this address.
    #[error("too many sign-ups from this address: try again in {} s", retry_after.as_secs().max(1))]
    TooManySignUps {
        /// When the next sign-up is allowed.
        retry_after: Duration,
    },
    /// Password hashing is at capacity.
    #[error("too many sign-ins at once: try again in {} s", retry_after.as_secs().max(1))]
    Busy {
        /// When to try again.
        retry_after: Duration,
    },
    /// Registering, or a guest nickname, with a name an account or a guest holds.
    #[error("the name {0} is taken")]
    NameTaken(String),
    /// Guests are turned off on this server.
    #[error("guests are not allowed here: register or sign in")]
    GuestsOff,
    /// A password outside [`PASSWORD_CHARS`].
    #[error("a password must be 8 to 256 characters long")]
    BadPassword,
    /// A name that breaks the user-name rules.
    #[error("invalid user name: {0}")]
    InvalidName(NameError),
    /// The account store failed.
    #[error("accounts are unavailable: {0}")]
    Unavailable(String),
    /// The request names a user other than the signed-in one.
    #[error("signed in as {caller}, but the request names {named} (impersonation)")]
    Impersonation {
        /// Who the request names.
        named: String,
        /// Who signed in.
        caller: String,
    },
}

/// The token in an `Authorization` header value: `Bearer <token>` (either case of the scheme).
pub fn bearer(authorization: &str) -> Option<&str> {
    authorization
        .strip_prefix("Bearer ")
        .or_else(|| authorization.strip_prefix("bearer "))
        .map(str::trim)
}

impl Caller {
    /// A request may name its user (the seed's forms and routes did), but only as the caller:
    /// naming anyone else is refused, never believed.
    pub fn check_named(&self, named: Option<&str>) -> Result<(), AuthError> {
        match named {
            Some(named) if named != self.user => Err(AuthError::Impersonation {
                named: named.to_owned(),
                caller: self.user.clone(),
            }),
            Some(_) | None => Ok(()),
        }
    }
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
            | AuthError::NotYetValid
            | AuthError::Revoked
            | AuthError::BadCredentials => AuthClass::Unauthenticated,
            AuthError::GuestsOff | AuthError::Impersonation { .. } => AuthClass::Forbidden,
            AuthError::NameTaken(_) => AuthClass::Conflict,
            AuthError::TooManyAttempts { .. } | AuthError::TooManySignUps { .. } => {
                AuthClass::RateLimited
            }
            AuthError::BadPassword | AuthError::InvalidName(_) => AuthClass::Invalid,
            AuthError::Busy { .. } | AuthError::Unavailable(_) => AuthClass::Unavailable,
        }
    }

    /// A stable kebab-case name.
    pub fn code(&self) -> &'static str {
        match self {
            AuthError::Missing => "unauthenticated",
            AuthError::InvalidToken(_) => "invalid-token",
            AuthError::Expired => "token-expired",
            AuthError::NotYetValid => "token-not-yet-valid",
            AuthError::Revoked => "token-revoked",
            AuthError::BadCredentials => "bad-credentials",
            AuthError::TooManyAttempts { .. } => "too-many-attempts",
            AuthError::TooManySignUps { .. } => "too-many-sign-ups",
            AuthError::Busy { .. } => "busy",
            AuthError::NameTaken(_) => "name-taken",
            AuthError::GuestsOff => "guests-off",
            AuthError::BadPassword => "bad-password",
            AuthError::InvalidName(_) => "invalid-user-name",
            AuthError::Unavailable(_) => "accounts-unavailable",
            AuthError::Impersonation { .. } => "impersonation",
        }
    }

    /// When to try again, for the refusals that say.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            AuthError::TooManyAttempts { retry_after }
            | AuthError::TooManySignUps { retry_after }
            | AuthError::Busy { retry_after } => Some(*retry_after),
            AuthError::Missing
            | AuthError::InvalidToken(_)
            | AuthError::Expired
            | AuthError::NotYetValid
            | AuthError::Revoked
            | AuthError::BadCredentials
            | AuthError::NameTaken(_)
            | AuthError::GuestsOff
            | AuthError::BadPassword
            | AuthError::InvalidName(_)
            | AuthError::Unavailable(_)
            | AuthError::Impersonation { .. } => None,
        }
    }
}

/// How tokens are signed and checked, who may come in, and how much they may spend.
#[derive(Debug, Clone)]
pub struct IdentityOptions {
    /// The HS256 secret; `None` takes the data dir's (created once) or, in memory, a random one.
    pub secret: Option<Vec<u8>>,
    /// An extra public key for tokens minted elsewhere: RS256 or EdDSA, PEM.
    pub public_key: Option<(Algorithm, Vec<u8>)>,
    /// Tokens must carry this `iss` (and roomcast's own do).
    pub issuer: Option<String>,
    /// Tokens must carry this `aud` (and roomcast's own do); without it, a token that names any
    /// audience is refused.
    pub audience: Option<String>,
    /// Whether people may chat as guests.
    pub guests: bool,
    /// How long a token roomcast issues for an account lasts.
    pub token_ttl: Duration,
    /// How long a guest's token (and its hold on the nickname) lasts.
    pub guest_ttl: Duration,
    /// Accounts and guests one address may make; `None` for no limit.
    pub sign_ups: Option<Allowance>,
    /// Threads that hash passwords (at most this many hashes run at once).
    pub hashing_threads: usize,
    /// The longest user name, in characters (core's limit).
    pub max_name_chars: usize,
}

impl Default for IdentityOptions {
    fn default() -> Self {
        IdentityOptions {
            secret: None,
            public_key: None,
            issuer: None,
            audience: None,
            guests: true,
            token_ttl: Duration::from_secs(7 * 24 * 3600),
            guest_ttl: Duration::from_secs(24 * 3600),
            sign_ups: Some(Allowance {
                burst: 30,
                every: Duration::from_secs(10),
            }),
            hashing_threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
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
    iss: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    aud: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sid: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    guest: bool,
}

/// What hostile clients may spend, by where they come from.
#[derive(Debug)]
struct Limits {
    sign_in_pairs: Buckets<(String, Origin)>,
    sign_in_origins: Buckets<Origin>,
    sign_ups: Option<Buckets<Origin>>,
}

/// Guest nicknames held, with when each is released (Unix seconds).
#[derive(Debug, Default)]
struct GuestNames {
    held: HashMap<String, u64>,
    sweep_at: usize,
}

impl GuestNames {
    fn is_held(&self, name: &str, now: u64) -> bool {
        self.held.get(name).is_some_and(|until| *until > now)
    }

    fn hold(&mut self, name: String, until: u64, now: u64) {
        self.held.insert(name, until);
        if self.held.len() >= self.sweep_at.max(1024) {
            self.held.retain(|_, until| *until > now);
            self.sweep_at = self.held.len() * 2;
        }
    }
}

/// Accounts, sessions, guest names and token keys. Shared by every connection. Password work
/// runs on the hashing threads; store writes on the blocking pool; both through the async
/// methods here, so hosts never block their runtime.
pub struct Identity {
    encoding: EncodingKey,
    decoding: DecodingKey,
    /// What an HS256 token must satisfy, made once.
    validation: Validation,
    /// Tokens minted elsewhere: their algorithm, key, and what they must satisfy.
    external: Option<(Algorithm, DecodingKey, Validation)>,
    store: Option<Arc<Store>>,
    /// Accounts when there is no store: name → password hash.
    memory: Mutex<HashMap<String, String>>,
    /// Every registered name, for guest checks on each request.
    names: RwLock<HashSet<String>>,
    /// Live sessions: id → (user, expiry in Unix seconds). Expired ones are pruned as new
    /// ones open, so the map stays as large as the sessions in use.
    sessions: RwLock<HashMap<String, (String, u64)>>,
    /// Held guest nicknames. Its lock also orders "is this name free?" before "take it", for
    /// guests and registrations alike.
    guests: Mutex<GuestNames>,
    limits: Mutex<Limits>,
    hashing: Hashing,
    options: IdentityOptions,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("guests", &self.options.guests)
            .field("external", &self.external.as_ref().map(|(alg, _, _)| *alg))
            .finish_non_exhaustive()
    }
}

/// Why identity could not be set up (reported as one line at start).
#[derive(Debug, Error)]
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
    /// The hashing threads could not be started.
    #[error("cannot start the password hashing threads: {0}")]
    Threads(std::io::Error),
}

impl Identity {
    /// Sets up keys, loads accounts, live sessions and held guest names, and starts the hashing
    /// threads.
    #[allow(
        clippy::wildcard_enum_match_arm,
        reason = "the key flag accepts EdDSA and the RSA family only"
    )]
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
                Some((*alg, key, validation(*alg, &options)))
            }
        };
        let load = |e: roomcast_store::StoreError| IdentityError::Store(e.to_string());
        let (names, sessions, guests) = match &store {
            Some(store) => (
                store.account_names().map_err(load)?.into_iter().collect(),
                store
                    .live_sessions(now())
                    .map_err(load)?
                    .into_iter()
                    .map(|(id, user, exp)| (id, (user, exp.as_unix_millis() / 1000)))
                    .collect(),
                store
                    .guest_names(now())
                    .map_err(load)?
                    .into_iter()
                    .map(|(name, until)| (name, until.as_unix_millis() / 1000))
                    .collect(),
            ),
            None => (HashSet::new(), HashMap::new(), HashMap::new()),
        };
        let limits = Limits {
            sign_in_pairs: Buckets::new(SIGN_IN_PER_ACCOUNT_AND_ADDRESS),
            sign_in_origins: Buckets::new(SIGN_IN_PER_ADDRESS),
            sign_ups: options.sign_ups.map(Buckets::new),
        };
        let threads = options.hashing_threads.max(1);
        let hashing = Hashing::start(threads, threads * HASHES_WAITING_PER_THREAD)
            .map_err(IdentityError::Threads)?;
        Ok(Identity {
            encoding: EncodingKey::from_secret(&secret),
            validation: validation(Algorithm::HS256, &options),
            decoding: DecodingKey::from_secret(&secret),
            external,
            store,
            memory: Mutex::new(HashMap::new()),
            names: RwLock::new(names),
            sessions: RwLock::new(sessions),
            guests: Mutex::new(GuestNames {
                held: guests,
                sweep_at: 1024,
            }),
            limits: Mutex::new(limits),
            hashing,
            options,
        })
    }

    /// Whether guests may chat.
    pub fn guests_allowed(&self) -> bool {
        self.options.guests
    }

    /// Checks a token and says who it names.
    pub fn verify(&self, token: &str) -> Result<Caller, AuthError> {
        let header = jsonwebtoken::decode_header(token).map_err(refusal)?;
        let (key, validation) = match (&self.external, header.alg) {
            (_, Algorithm::HS256) => (&self.decoding, &self.validation),
            (Some((alg, key, validation)), used) if *alg == used => (key, validation),
            (_, used) => {
                return Err(AuthError::InvalidToken(format!(
                    "tokens signed with {used:?} are not accepted here"
                )));
            }
        };
        let claims = jsonwebtoken::decode::<Claims>(token, key, validation)
            .map_err(refusal)?
            .claims;
        UserName::parse(&claims.sub, self.options.max_name_chars)
            .map_err(|e| AuthError::InvalidToken(format!("its sub is not a user name: {e}")))?;
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

    /// Creates an account and signs it in. The name must be free (no account, no guest holding
    /// it), and the address within its sign-ups.
    pub async fn register(
        self: &Arc<Self>,
        name: String,
        password: String,
        from: IpAddr,
    ) -> Result<Issued, AuthError> {
        let name = self.name(&name)?;
        if !PASSWORD_CHARS.contains(&password.chars().count()) {
            return Err(AuthError::BadPassword);
        }
        self.admit_sign_up(from)?;
        // Checked again when the account is made; this spares the hashing.
        if self.is_taken(&name, unix_seconds()) {
            return Err(AuthError::NameTaken(name));
        }
        let salt = random_bytes::<16>();
        let hash = self
            .hashing
            .run(move |memory| memory.hash(password.as_bytes(), &salt))
            .await?
            .map_err(AuthError::Unavailable)?;
        let me = Arc::clone(self);
        blocking::unblock(move || me.create_account(name, hash)).await
    }

    /// Checks a name and password and signs in. Attempts are limited per (account, address)
    /// and per address, successful or not, before any hashing is spent on them.
    pub async fn sign_in(
        self: &Arc<Self>,
        name: String,
        password: String,
        from: IpAddr,
    ) -> Result<Issued, AuthError> {
        let attempt = self.admit_sign_in(&name, from);
        let outcome = match attempt {
            Err(e) => Err(e),
            Ok(None) => Err(AuthError::BadCredentials), // Not a user name: no such account.
            Ok(Some(name)) => {
                let me = Arc::clone(self);
                self.hashing
                    .run(move |memory| me.check_password(memory, name, &password))
                    .await
                    .and_then(|checked| checked)
            }
        };
        match &outcome {
            Ok(_) => tracing::info!(user = %name, %from, "signed in"),
            Err(e @ AuthError::TooManyAttempts { .. }) => {
                tracing::warn!(user = ?name, %from, reason = e.code(), "sign-in attempts limited");
            }
            Err(e) => tracing::info!(user = ?name, %from, reason = e.code(), "sign-in refused"),
        }
        outcome
    }

    /// A guest token for `nickname`, if guests are allowed, the name is free and the address
    /// within its sign-ups. The guest holds the name while the token lives, and a while after.
    pub async fn guest(
        self: &Arc<Self>,
        nickname: String,
        from: IpAddr,
    ) -> Result<Issued, AuthError> {
        if !self.options.guests {
            return Err(AuthError::GuestsOff);
        }
        let name = self.name(&nickname)?;
        self.admit_sign_up(from)?;
        let me = Arc::clone(self);
        let outcome = blocking::unblock(move || me.take_guest_name(name)).await;
        if let Err(e @ AuthError::NameTaken(_)) = &outcome {
            tracing::info!(user = ?nickname, %from, reason = e.code(), "guest refused");
        }
        outcome
    }

    /// Ends the caller's session: its tokens stop working everywhere at once. A guest's name
    /// stays held for [`GUEST_NAME_GRACE`] more.
    pub async fn sign_out(self: &Arc<Self>, caller: Caller) -> Result<(), AuthError> {
        let me = Arc::clone(self);
        blocking::unblock(move || me.end_session(&caller)).await
    }

    fn end_session(&self, caller: &Caller) -> Result<(), AuthError> {
        let Some(sid) = &caller.session else {
            return Ok(()); // Minted elsewhere: only its expiry ends it.
        };
        self.sessions
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(sid);
        if let Some(store) = &self.store {
            store.remove_session(sid).map_err(unavailable)?;
        }
        if caller.guest {
            let now = unix_seconds();
            let until = now + GUEST_NAME_GRACE.as_secs();
            let mut guests = self.guests.lock().unwrap_or_else(|e| e.into_inner());
            if guests
                .held
                .get(&caller.user)
                .is_some_and(|held| *held > until)
            {
                guests.hold(caller.user.clone(), until, now);
                drop(guests);
                if let Some(store) = &self.store {
                    store
                        .hold_guest_name(&caller.user, Timestamp::from_unix_millis(until * 1000))
                        .map_err(unavailable)?;
                }
            }
        }
        tracing::info!(user = %caller.user, "signed out");
        Ok(())
    }

    /// Takes one sign-up from `from`'s allowance.
    fn admit_sign_up(&self, from: IpAddr) -> Result<(), AuthError> {
        let mut limits = self.limits.lock().unwrap_or_else(|e| e.into_inner());
        let Some(sign_ups) = &mut limits.sign_ups else {
            return Ok(());
        };
        sign_ups
            .admit(Origin::from(from), Instant::now())
            .map_err(|retry_after| {
                tracing::warn!(%from, "sign-ups limited");
                AuthError::TooManySignUps { retry_after }
            })
    }

    /// Takes one sign-in attempt for `name` from `from`, from both the pair's and the
    /// address's allowance (or from neither). `Ok(None)` if `name` cannot be a user's.
    fn admit_sign_in(&self, name: &str, from: IpAddr) -> Result<Option<String>, AuthError> {
        let origin = Origin::from(from);
        let now = Instant::now();
        let mut limits = self.limits.lock().unwrap_or_else(|e| e.into_inner());
        let name = self.name(name).ok();
        // A name that cannot exist costs the address only, and keeps no per-name state.
        let pair = name.clone().map(|n| (n, origin));
        let refused = limits
            .sign_in_origins
            .check(&origin, now)
            .err()
            .or_else(|| {
                pair.as_ref()
                    .and_then(|p| limits.sign_in_pairs.check(p, now).err())
            });
        if let Some(retry_after) = refused {
            return Err(AuthError::TooManyAttempts { retry_after });
        }
        limits.sign_in_origins.take(origin, now);
        if let Some(pair) = pair {
            limits.sign_in_pairs.take(pair, now);
        }
        Ok(name)
    }

    /// On a hashing thread: checks the password (against a decoy when there is no such
    /// account, so both take as long) and, if it matches, opens a session.
    fn check_password(
        &self,
        memory: &mut hashing::Memory,
        name: String,
        password: &str,
    ) -> Result<Issued, AuthError> {
        let stored = match &self.store {
            Some(store) => store.password_hash(&name).map_err(unavailable)?,
            None => self
                .memory
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(&name)
                .cloned(),
        };
        let hash = stored.as_deref().unwrap_or(DECOY);
        let matches = memory.verify(password.as_bytes(), hash);
        if !matches || stored.is_none() {
            return Err(AuthError::BadCredentials);
        }
        self.issue(name, false, self.options.token_ttl)
    }

    /// Makes the account if the name is still free, under the lock that orders name takers.
    fn create_account(&self, name: String, hash: String) -> Result<Issued, AuthError> {
        {
            let guests = self.guests.lock().unwrap_or_else(|e| e.into_inner());
            if guests.is_held(&name, unix_seconds()) {
                return Err(AuthError::NameTaken(name));
            }
            let created = match &self.store {
                Some(store) => store
                    .create_account(&name, &hash, now())
                    .map_err(unavailable)?,
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
        }
        tracing::info!(user = %name, "account registered");
        self.issue(name, false, self.options.token_ttl)
    }

    /// Holds `name` for a new guest if it is free, and signs a token for it.
    fn take_guest_name(&self, name: String) -> Result<Issued, AuthError> {
        let now = unix_seconds();
        let ttl = self.options.guest_ttl;
        let until = now + ttl.as_secs().max(1) + GUEST_NAME_GRACE.as_secs();
        {
            let mut guests = self.guests.lock().unwrap_or_else(|e| e.into_inner());
            if self.is_registered(&name) || guests.is_held(&name, now) {
                return Err(AuthError::NameTaken(name));
            }
            guests.hold(name.clone(), until, now);
        }
        if let Some(store) = &self.store {
            store
                .hold_guest_name(&name, Timestamp::from_unix_millis(until * 1000))
                .map_err(unavailable)?;
        }
        self.issue(name, true, ttl)
    }

    /// Whether an account or a guest holds `name`.
    fn is_taken(&self, name: &str, now: u64) -> bool {
        self.is_registered(name)
            || self
                .guests
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .is_held(name, now)
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

    /// Opens a session for `user` lasting `ttl` and signs a token for it.
    fn issue(&self, user: String, guest: bool, ttl: Duration) -> Result<Issued, AuthError> {
        let issued_at = unix_seconds();
        let expires_at = issued_at + ttl.as_secs().max(1);
        let sid = random_token();
        if let Some(store) = &self.store {
            store
                .add_session(&sid, &user, Timestamp::from_unix_millis(expires_at * 1000))
                .map_err(unavailable)?;
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
            store.prune_sessions(now()).map_err(unavailable)?;
        }
        let claims = Claims {
            sub: user.clone(),
            exp: expires_at,
            iat: Some(issued_at),
            iss: self.options.issuer.clone(),
            aud: self.options.audience.clone(),
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

/// What a token signed with `alg` must satisfy: a signature, `exp` and `sub`, `nbf` if it has
/// one, and the configured issuer and audience (without a configured audience, a token that
/// names one is refused by the library).
fn validation(alg: Algorithm, options: &IdentityOptions) -> Validation {
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
fn refusal(e: jsonwebtoken::errors::Error) -> AuthError {
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

fn unavailable(e: roomcast_store::StoreError) -> AuthError {
    AuthError::Unavailable(e.to_string())
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
    use futures_lite::future::block_on;

    use super::*;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

    fn options() -> IdentityOptions {
        IdentityOptions {
            secret: Some(SECRET.to_vec()),
            token_ttl: Duration::from_secs(3600),
            hashing_threads: 1,
            max_name_chars: 32,
            ..IdentityOptions::default()
        }
    }

    fn identity(options: IdentityOptions) -> Arc<Identity> {
        Arc::new(Identity::new(options, None).unwrap())
    }

    fn here() -> IpAddr {
        IpAddr::from([127, 0, 0, 1])
    }

    fn register(id: &Arc<Identity>, name: &str, password: &str) -> Result<Issued, AuthError> {
        block_on(id.register(name.into(), password.into(), here()))
    }

    fn sign_in(
        id: &Arc<Identity>,
        name: &str,
        password: &str,
        from: IpAddr,
    ) -> Result<Issued, AuthError> {
        block_on(id.sign_in(name.into(), password.into(), from))
    }

    fn guest(id: &Arc<Identity>, name: &str) -> Result<Issued, AuthError> {
        block_on(id.guest(name.into(), here()))
    }

    fn mint(claims: &serde_json::Value) -> String {
        jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            claims,
            &EncodingKey::from_secret(SECRET),
        )
        .unwrap()
    }

    #[test]
    fn the_decoy_costs_what_a_real_hash_costs() {
        let decoy = argon2::PasswordHash::new(DECOY).unwrap();
        let params = argon2::Params::try_from(&decoy).unwrap();
        let defaults = argon2::Argon2::default();
        assert_eq!(
            (params.m_cost(), params.t_cost(), params.p_cost()),
            (
                defaults.params().m_cost(),
                defaults.params().t_cost(),
                defaults.params().p_cost()
            )
        );
        let real = hashing::Memory::default()
            .hash(b"whatever", &[1; 16])
            .unwrap();
        let real = argon2::PasswordHash::new(&real).unwrap();
        assert_eq!(
            (decoy.algorithm, decoy.version),
            (real.algorithm, real.version)
        );
    }

    #[test]
    fn register_sign_in_and_sign_out() {
        let id = identity(options());
        let issued = register(&id, "ada", "correct horse").unwrap();
        let caller = id.verify(&issued.token).unwrap();
        assert_eq!((caller.user.as_str(), caller.guest), ("ada", false));
        assert_eq!(
            register(&id, "ada", "another one"),
            Err(AuthError::NameTaken("ada".into()))
        );
        assert_eq!(
            sign_in(&id, "ada", "wrong pass", here()),
            Err(AuthError::BadCredentials)
        );
        assert_eq!(
            sign_in(&id, "nobody", "whatever", here()),
            Err(AuthError::BadCredentials)
        );
        let again = sign_in(&id, "ada", "correct horse", here()).unwrap();
        block_on(id.sign_out(id.verify(&again.token).unwrap())).unwrap();
        assert_eq!(id.verify(&again.token), Err(AuthError::Revoked));
        assert!(id.verify(&issued.token).is_ok(), "other sessions stay");
        assert_eq!(register(&id, "bo", "short"), Err(AuthError::BadPassword));
        assert!(matches!(
            register(&id, "", "long enough"),
            Err(AuthError::InvalidName(_))
        ));
    }

    #[test]
    fn a_name_belongs_to_one_guest_or_account() {
        let id = identity(options());
        register(&id, "ada", "correct horse").unwrap();
        assert_eq!(guest(&id, "ada"), Err(AuthError::NameTaken("ada".into())));
        let bob = guest(&id, "bob").unwrap();
        assert!(id.verify(&bob.token).unwrap().guest);
        assert_eq!(guest(&id, "bob"), Err(AuthError::NameTaken("bob".into())));
        // Nor can an account be registered over a guest who holds the name.
        assert_eq!(
            register(&id, "bob", "bob's password"),
            Err(AuthError::NameTaken("bob".into()))
        );
        assert!(id.verify(&bob.token).is_ok(), "the guest keeps its name");
        // Signing out keeps the name held for the grace period.
        block_on(id.sign_out(id.verify(&bob.token).unwrap())).unwrap();
        assert_eq!(guest(&id, "bob"), Err(AuthError::NameTaken("bob".into())));
        let off = identity(IdentityOptions {
            guests: false,
            ..options()
        });
        assert_eq!(guest(&off, "cy"), Err(AuthError::GuestsOff));
    }

    #[test]
    fn sign_ups_are_limited_per_address() {
        let id = identity(IdentityOptions {
            sign_ups: Some(Allowance {
                burst: 2,
                every: Duration::from_secs(3600),
            }),
            ..options()
        });
        guest(&id, "g1").unwrap();
        register(&id, "r1", "a long password").unwrap();
        assert!(matches!(
            guest(&id, "g2"),
            Err(AuthError::TooManySignUps { .. })
        ));
        assert!(matches!(
            register(&id, "r2", "a long password"),
            Err(AuthError::TooManySignUps { .. })
        ));
        let elsewhere = block_on(id.guest("g3".into(), IpAddr::from([10, 0, 0, 1])));
        assert!(elsewhere.is_ok(), "another address is not held up");
    }

    #[test]
    fn every_registered_claim_is_checked() {
        let id = identity(IdentityOptions {
            issuer: Some("https://id.example".into()),
            audience: Some("roomcast".into()),
            ..options()
        });
        let now = unix_seconds();
        let ok = serde_json::json!({"sub": "app-user", "exp": now + 60, "iss": "https://id.example", "aud": "roomcast"});
        assert_eq!(id.verify(&mint(&ok)).unwrap().user, "app-user");
        let with = |key: &str, value: serde_json::Value| {
            let mut claims = ok.clone();
            claims[key] = value;
            id.verify(&mint(&claims))
        };
        let without = |key: &str| {
            let mut claims = ok.clone();
            claims.as_object_mut().unwrap().remove(key);
            id.verify(&mint(&claims))
        };
        assert_eq!(with("nbf", (now + 60).into()), Err(AuthError::NotYetValid));
        assert!(with("nbf", (now - 60).into()).is_ok());
        assert_eq!(with("exp", (now - 60).into()), Err(AuthError::Expired));
        for refused in [
            with("iss", "https://evil.example".into()),
            with("aud", "elsewhere".into()),
            with("sub", "bad/name".into()),
            without("exp"),
            without("sub"),
            without("iss"),
            without("aud"),
        ] {
            assert!(
                matches!(refused, Err(AuthError::InvalidToken(_))),
                "{refused:?}"
            );
        }
        // roomcast's own tokens carry what it checks.
        let own = guest(&id, "own").unwrap();
        assert!(id.verify(&own.token).is_ok());
        // Without a configured audience, a token for some audience is not for us.
        let plain = identity(options());
        assert!(matches!(
            plain.verify(&mint(
                &serde_json::json!({"sub": "u", "exp": now + 60, "aud": "x"})
            )),
            Err(AuthError::InvalidToken(_))
        ));
    }

    #[test]
    fn tampered_expired_and_foreign_tokens_are_refused() {
        let id = identity(options());
        let token = register(&id, "ada", "correct horse").unwrap().token;
        // A changed payload (another user) keeps the signature of the original.
        let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
        let forged = mint(&serde_json::json!({"sub": "root", "exp": unix_seconds() + 60}));
        parts[1] = forged.split('.').nth(1).unwrap().to_owned();
        assert!(matches!(
            id.verify(&parts.join(".")),
            Err(AuthError::InvalidToken(_))
        ));
        let other = identity(IdentityOptions {
            secret: Some(b"another secret of thirty-two bytes!!".to_vec()),
            ..options()
        });
        assert!(matches!(
            other.verify(&token),
            Err(AuthError::InvalidToken(_))
        ));
        // Minted by another application with the same secret: no session, trusted to expiry.
        let minted = |exp: u64| mint(&serde_json::json!({"sub": "app-user", "exp": exp}));
        assert_eq!(
            id.verify(&minted(unix_seconds() + 60)).unwrap().user,
            "app-user"
        );
        assert_eq!(
            id.verify(&minted(unix_seconds() - 60)),
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
        let id = identity(IdentityOptions {
            public_key: Some((Algorithm::EdDSA, PUBLIC.as_bytes().to_vec())),
            ..options()
        });
        let claims = serde_json::json!({"sub": "sso-user", "exp": unix_seconds() + 60});
        let key = EncodingKey::from_ed_pem(PRIVATE.as_bytes()).unwrap();
        let token = jsonwebtoken::encode(&Header::new(Algorithm::EdDSA), &claims, &key).unwrap();
        assert_eq!(id.verify(&token).unwrap().user, "sso-user");
        // Without the key configured, the same token is refused.
        assert!(matches!(
            identity(options()).verify(&token),
            Err(AuthError::InvalidToken(_))
        ));
    }

    #[test]
    fn sign_in_attempts_are_limited_per_account_and_address_not_per_account() {
        let id = identity(options());
        register(&id, "ada", "correct horse").unwrap();
        let attacker = IpAddr::from([10, 0, 0, 9]);
        for _ in 0..5 {
            assert_eq!(
                sign_in(&id, "ada", "guess", attacker),
                Err(AuthError::BadCredentials)
            );
        }
        assert!(matches!(
            sign_in(&id, "ada", "correct horse", attacker),
            Err(AuthError::TooManyAttempts { .. })
        ));
        assert!(
            sign_in(&id, "ada", "correct horse", here()).is_ok(),
            "the owner, elsewhere, still gets in"
        );
        // The attacker's address runs dry across accounts.
        let limited = (0..40).any(|n| {
            matches!(
                sign_in(&id, &format!("user{n}"), "guess", attacker),
                Err(AuthError::TooManyAttempts { .. })
            )
        });
        assert!(limited);
    }
}
