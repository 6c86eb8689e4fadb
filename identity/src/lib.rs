//! roomcast identity: accounts, guests and signed tokens, the same for both hosts.
//!
//! A host turns whatever credentials a request carries (a bearer token, the session cookie, a
//! WebSocket's first frame, gRPC `authorization` metadata) into a verified [`Caller`] here, and
//! passes only that user's id to core, which decides what it may do.
//!
//! **Who a user is.** Every user has a [`UserId`]: the name they took, `~`, and a tag no later
//! holder of that name gets (`zoe~k2j4m9q7x1`). Every relation core and the stores keep names
//! the id, never the bare name, so a guest's nickname taken up by someone else after the guest
//! left brings that someone nothing: not the rooms, memberships, roles, direct messages, read
//! markers or uploads. People see and type names; a name someone types is resolved to whoever
//! holds it now ([`Identity::resolve`]), and a name nobody holds is refused. Names compare as
//! people read them ([`names::key`]: case and Unicode look-alikes folded), so nobody takes a
//! look-alike of a held name, while each is shown as its holder typed it.
//!
//! Tokens are JWTs whose `sub` is the id. roomcast signs its own with HS256 and the server
//! secret, carrying the user, an expiry and a session id; signing out deletes the session, so
//! its tokens stop working at once. Another application holding the same secret (or the private
//! half of a configured RS256 or EdDSA public key) can mint tokens for its own users: `sub` (a
//! user name) and `exp` are all it needs. Its `sub` is that user's id as it is, without a tag,
//! so the application's user `ada` is always the same roomcast user `ada`, and no account or
//! guest ever gets that id (theirs are tagged). Such tokens are valid until they expire, the way
//! Centrifugo and Mercure work. Every registered claim the JWT library can check is checked:
//! `exp`, `nbf`, and `iss` and `aud` when configured (a token naming an audience is refused
//! unless it names ours).
//!
//! A name is one person's. An account holds its name for good; a guest holds its nickname
//! while its session lives and a grace after ([`IdentityOptions::guest_name_grace`]), then
//! departs ([`Identity::depart`]): the host reclaims what it left. Admins are accounts the
//! operator made ([`Identity::set_password`]): an admin's name is never a guest's and never
//! registered by a stranger. What a hostile client can spend is bounded: sign-ups per address,
//! sign-in attempts per (account, address) and per address (never per account alone, which
//! would let anyone lock anyone out), and password hashing on one thread per core with a
//! bounded queue.
//!
//! The rules sit in modules of their own, on time passed in: who holds which name and how names
//! compare (`names.rs`), which sessions live (`sessions.rs`), what an address may still try
//! (`attempts.rs`, core's [`RateLimiter`](roomcast_core::RateLimiter)). Hashing
//! (`hashing.rs`) and token signing (`tokens.rs`) are the edge; `accounts.rs` ties names to the
//! store (or a [`Directory`] shared by several nodes) and reads the clock once per call.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod accounts;
mod attempts;
mod caller;
mod directory;
mod ending;
mod error;
mod hashing;
pub mod names;
mod sessions;
mod tokens;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use jsonwebtoken::{DecodingKey, EncodingKey, Validation};
use roomcast_core::{Timestamp, UserId, UserName};
use roomcast_store::Store;

pub use accounts::Need;
pub use attempts::{Allowance, Origin};
pub use caller::{Caller, Issued, bearer};
pub use directory::{Directory, SharedAccount};
pub use ending::{Ending, SessionEnd};
pub use error::{AuthError, IdentityError};
/// The signing algorithms, as `--jwt-public-key` names them.
pub use jsonwebtoken::Algorithm;

use attempts::Attempts;
use hashing::Hashing;
use names::Names;
use sessions::Sessions;
pub use tokens::secret_fingerprint;
use tokens::{Claims, refusal, secret_file, validation};

/// The shortest and longest password accepted, in characters (at most 1 KiB of UTF-8, and a
/// rule a schema can state).
pub const PASSWORD_CHARS: std::ops::RangeInclusive<usize> = 8..=256;
/// Hashes waiting per hashing thread before callers are turned away.
const HASHES_WAITING_PER_THREAD: usize = 16;
/// A hash to verify against when the account does not exist, so both take as long: argon2id
/// with the default parameters (a test checks they still are), of a password nobody has.
const DECOY: &str = "$argon2id$v=19$m=19456,t=2,p=1$cm9vbWNhc3QtZGVjb3khIQ$8FIIQXCSG8Zy0kr1xTBKJWQh6sUM5VSprjbEjLRz5vs";
/// The token secret's file in the data dir, created on first start.
const SECRET_FILE: &str = "jwt-secret";

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
    /// How long a guest's nickname stays held after its session ends (signed out or expired),
    /// so that a newcomer is not mistaken for the guest who just left (default an hour).
    pub guest_name_grace: Duration,
    /// Accounts and guests one address may make; `None` for no limit.
    pub sign_ups: Option<Allowance>,
    /// Sessions one user holds at once: signing in once more ends their oldest (default 32).
    pub max_sessions_per_user: usize,
    /// Threads that hash passwords (at most this many hashes run at once).
    pub hashing_threads: usize,
    /// The longest user name, in characters (core's limit).
    pub max_name_chars: usize,
    /// The admins' names: only the operator makes their accounts ([`Identity::set_password`]);
    /// nobody registers or takes them (or a look-alike) as a guest.
    pub reserved: HashSet<String>,
    /// Applications' keys (`--api-key NAME=KEY`): each acts as its system user, a name nobody
    /// can register, take as a guest, or hold a token for.
    pub api_keys: Vec<ApiKey>,
}

/// An application's key: whoever presents `key` acts as the system user `user` (see core's
/// `Policy::systems`).
#[derive(Clone)]
pub struct ApiKey {
    /// The system user it acts as.
    pub user: String,
    /// The key itself: at least [`API_KEY_MIN_BYTES`] long.
    pub key: String,
}

/// Where an application sends its API key: an HTTP header, or gRPC metadata, of this name.
pub const API_KEY_HEADER: &str = "x-api-key";

/// The shortest API key accepted.
pub const API_KEY_MIN_BYTES: usize = 32;

impl std::fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiKey")
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

impl std::str::FromStr for ApiKey {
    type Err = String;

    /// `NAME=KEY`.
    fn from_str(s: &str) -> Result<Self, String> {
        let (user, key) = s
            .split_once('=')
            .ok_or("an API key is NAME=KEY: the system user it acts as, then the key")?;
        if key.len() < API_KEY_MIN_BYTES {
            return Err(format!(
                "the API key for {user} is {} bytes: use at least {API_KEY_MIN_BYTES} random ones",
                key.len()
            ));
        }
        UserName::parse(user, usize::MAX).map_err(|e| format!("{user}: {e}"))?;
        Ok(ApiKey {
            user: user.to_owned(),
            key: key.to_owned(),
        })
    }
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
            guest_name_grace: Duration::from_secs(3600),
            sign_ups: Some(Allowance {
                burst: 30,
                every: Duration::from_secs(10),
            }),
            max_sessions_per_user: 32,
            hashing_threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            max_name_chars: roomcast_core::Limits::default().user_name_max_chars,
            reserved: HashSet::new(),
            api_keys: Vec::new(),
        }
    }
}

/// Accounts, sessions, guest names and token keys. Shared by every connection. Password work
/// runs on the hashing threads; store writes on the blocking pool; both through the async
/// methods here, so hosts never block their runtime. Each public call reads the wall clock
/// once and hands that time to the rules (`Names`, `Sessions`, `Attempts`).
pub struct Identity {
    encoding: EncodingKey,
    decoding: DecodingKey,
    /// Signs the web pages' CSRF tokens.
    csrf_key: [u8; 32],
    /// What an HS256 token must satisfy, made once.
    validation: Validation,
    /// Tokens minted elsewhere: their algorithm, key, and what they must satisfy.
    external: Option<(Algorithm, DecodingKey, Validation)>,
    store: Option<Arc<Store>>,
    /// Shared with other nodes instead of the store, when set.
    shared: Option<Arc<dyn Directory>>,
    /// With a shared directory: sessions revoked on any node (tokens are otherwise good on
    /// every node until they expire).
    revoked: RwLock<HashSet<String>>,
    /// Accounts when there is no store: id → password hash.
    memory: Mutex<HashMap<UserId, String>>,
    /// Users of minted tokens seen for the first time, to be kept (in the store or the
    /// directory) at the next [`Identity::keep_minted`].
    seen_minted: Mutex<Vec<(String, UserId)>>,
    /// Who holds which name. Its lock also orders "is this name free?" before "take it", for
    /// guests and registrations alike.
    names: RwLock<Names>,
    /// The comparison keys of the admins' names and the system users' names: nobody registers
    /// them or takes them as a guest.
    reserved: HashSet<String>,
    sessions: RwLock<Sessions>,
    /// Streams watching their session, told when it ends.
    endings: Arc<ending::Endings>,
    attempts: Mutex<Attempts>,
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

/// The wall clock, read once per call and passed to the rules.
fn now() -> Timestamp {
    Timestamp::from(SystemTime::now())
}

/// Whole seconds since the Unix epoch, as JWT claims count time.
fn seconds(t: Timestamp) -> u64 {
    t.as_unix_millis() / 1000
}

/// A lock's data even if a panicking thread poisoned it: every update here is one step.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn read<T>(m: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    m.read().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn write<T>(m: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    m.write().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Identity {
    /// Sets up keys, loads accounts, live sessions and guests, and starts the hashing threads.
    pub fn new(
        options: IdentityOptions,
        store: Option<Arc<Store>>,
    ) -> Result<Identity, IdentityError> {
        Identity::build(options, store, None)
    }

    /// An identity shared with other nodes through `directory` (the secret must be the
    /// cluster's, in `options`).
    pub fn shared(
        options: IdentityOptions,
        directory: Arc<dyn Directory>,
    ) -> Result<Identity, IdentityError> {
        if options.secret.is_none() {
            return Err(IdentityError::Store(
                "a shared identity needs the cluster's secret".into(),
            ));
        }
        Identity::build(options, None, Some(directory))
    }

    #[allow(
        clippy::wildcard_enum_match_arm,
        reason = "the key flag accepts EdDSA and the RSA family only"
    )]
    fn build(
        options: IdentityOptions,
        store: Option<Arc<Store>>,
        shared: Option<Arc<dyn Directory>>,
    ) -> Result<Identity, IdentityError> {
        let now = now();
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
        let names = accounts::load_names(store.as_deref(), shared.as_deref())?;
        let sessions = match &store {
            Some(store) => store
                .live_sessions(now)
                .map_err(|e| IdentityError::Store(e.to_string()))?
                .into_iter()
                .map(|(id, user, exp)| (id, (user, exp)))
                .collect(),
            None => HashMap::new(),
        };
        let revoked = match &shared {
            Some(directory) => directory
                .revoked_sessions(now)
                .map_err(IdentityError::Store)?
                .into_iter()
                .collect(),
            None => HashSet::new(),
        };
        let reserved = options
            .reserved
            .iter()
            .chain(options.api_keys.iter().map(|k| &k.user))
            .map(|name| names::key(name))
            .collect();
        let threads = options.hashing_threads.max(1);
        let hashing = Hashing::start(threads, threads * HASHES_WAITING_PER_THREAD)
            .map_err(IdentityError::Threads)?;
        Ok(Identity {
            csrf_key: tokens::csrf_key(&secret),
            encoding: EncodingKey::from_secret(&secret),
            validation: validation(Algorithm::HS256, &options),
            decoding: DecodingKey::from_secret(&secret),
            external,
            store,
            shared,
            revoked: RwLock::new(revoked),
            memory: Mutex::new(HashMap::new()),
            seen_minted: Mutex::new(Vec::new()),
            names: RwLock::new(names),
            reserved,
            sessions: RwLock::new(Sessions::new(sessions, options.max_sessions_per_user)),
            endings: Arc::default(),
            attempts: Mutex::new(Attempts::new(options.sign_ups)),
            hashing,
            options,
        })
    }

    /// Resolves when `caller`'s session ends (signed out here or on another node, or its token
    /// expires), so a stream opened with it can close.
    pub fn session_end(&self, caller: &Caller) -> SessionEnd {
        let expires = SystemTime::UNIX_EPOCH + Duration::from_secs(caller.expires_at);
        let end = self.endings.watch(caller.session.as_deref(), expires);
        // Watched first, then checked: an end between the two is not missed.
        if let Some(sid) = &caller.session
            && !self.live(sid, &caller.user)
        {
            self.endings.end(sid);
        }
        end
    }

    /// Whether session `sid` of `user` has not ended.
    fn live(&self, sid: &str, user: &str) -> bool {
        match &self.shared {
            Some(_) => !read(&self.revoked).contains(sid),
            None => read(&self.sessions).belongs_to(sid, user),
        }
    }

    /// A CSRF token for the web pages' forms: only tokens made here (by a node sharing the
    /// secret) pass [`Identity::csrf_issued`], so a cookie and form field that merely agree,
    /// planted by someone else, do not.
    pub fn csrf_token(&self) -> String {
        tokens::csrf_token(&self.csrf_key)
    }

    /// Whether `token` is a CSRF token this server issued.
    pub fn csrf_issued(&self, token: &str) -> bool {
        tokens::csrf_issued(&self.csrf_key, token)
    }

    /// Whether guests may chat.
    pub fn guests_allowed(&self) -> bool {
        self.options.guests
    }

    /// Who a request's credentials name: an application's API key (the `x-api-key` header or
    /// metadata, [`API_KEY_HEADER`]) if it carries one, else its token.
    pub fn authenticate(
        &self,
        api_key: Option<&str>,
        token: Option<&str>,
    ) -> Result<Caller, AuthError> {
        match (api_key, token) {
            (Some(key), _) => self.verify_api_key(key),
            (None, Some(token)) => self.verify(token),
            (None, None) => Err(AuthError::Missing),
        }
    }

    /// Checks an application's API key and says which system user it acts as.
    pub fn verify_api_key(&self, presented: &str) -> Result<Caller, AuthError> {
        // Compared whole, every key, whatever matched first: no early exit to time.
        let mut found = None;
        for api_key in &self.options.api_keys {
            let same = api_key.key.len() == presented.len()
                && api_key
                    .key
                    .bytes()
                    .zip(presented.bytes())
                    .fold(0u8, |diff, (a, b)| diff | (a ^ b))
                    == 0;
            if same {
                found = Some(api_key.user.clone());
            }
        }
        let user = found.ok_or_else(|| {
            AuthError::InvalidToken("the API key is not one this server was given".into())
        })?;
        Ok(Caller {
            user,
            guest: false,
            session: None,
            expires_at: u64::MAX,
        })
    }

    /// Whether `name` is (or looks like) an application's system user, which acts only with
    /// its API key.
    fn is_system(&self, name: &str) -> bool {
        let key = names::key(name);
        self.options
            .api_keys
            .iter()
            .any(|k| k.user == name || names::key(&k.user) == key)
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
        let id = UserId::parse(&claims.sub, self.options.max_name_chars)
            .map_err(|e| AuthError::InvalidToken(format!("its sub is not a user id: {e}")))?;
        if self.is_system(id.name()) {
            return Err(AuthError::InvalidToken(format!(
                "{} is a system user: it acts only with its API key",
                claims.sub
            )));
        }
        if let Some(sid) = &claims.sid
            && !self.live(sid, &claims.sub)
        {
            return Err(AuthError::Revoked);
        }
        if claims.guest {
            if !self.options.guests {
                return Err(AuthError::GuestsOff);
            }
            // A reserved name (an admin's) never was a guest's.
            if self.reserved.contains(&names::key(id.name())) {
                return Err(AuthError::Revoked);
            }
        } else if claims.sid.is_none() && !id.as_str().contains(roomcast_core::USER_TAG_SEPARATOR) {
            // Another application's user: from now on their name is theirs here too.
            self.saw_minted(id);
        }
        Ok(Caller {
            user: claims.sub,
            guest: claims.guest,
            session: claims.sid,
            expires_at: claims.exp,
        })
    }

    /// Ends the caller's session: its tokens stop working everywhere at once. A guest's name
    /// stays held for [`IdentityOptions::guest_name_grace`] more.
    pub async fn sign_out(self: &Arc<Self>, caller: Caller) -> Result<(), AuthError> {
        let now = now();
        let me = Arc::clone(self);
        blocking::unblock(move || me.end_session(&caller, now)).await
    }

    /// Another node revoked this session: its tokens stop working here too.
    pub fn on_revoked(&self, sid: &str) {
        write(&self.revoked).insert(sid.to_owned());
        self.endings.end(sid);
    }

    /// Reads every revocation and account again (after the link to the other nodes was
    /// down, when some may have been missed).
    pub fn reload_shared(&self) -> Result<(), AuthError> {
        let Some(directory) = &self.shared else {
            return Ok(());
        };
        let revoked = directory
            .revoked_sessions(now())
            .map_err(AuthError::Unavailable)?;
        let accounts = directory.accounts().map_err(AuthError::Unavailable)?;
        write(&self.revoked).extend(revoked);
        let mut known = write(&self.names);
        for account in accounts {
            known.register(account.key, account.id);
        }
        Ok(())
    }

    fn end_session(&self, caller: &Caller, now: Timestamp) -> Result<(), AuthError> {
        let Some(sid) = &caller.session else {
            return Ok(()); // Minted elsewhere: only its expiry ends it.
        };
        write(&self.sessions).end(sid);
        self.forget_session(sid, now)?;
        if caller.guest {
            self.shorten_guest_hold(caller, now.saturating_add(self.options.guest_name_grace))?;
        }
        tracing::info!(user = %caller.user, "signed out");
        Ok(())
    }

    /// Session `sid` ended (its owner signed out, or opened one too many): its streams end,
    /// and its tokens stop working here and, with several nodes, on every node.
    fn forget_session(&self, sid: &str, now: Timestamp) -> Result<(), AuthError> {
        self.endings.end(sid);
        if let Some(store) = &self.store {
            store.remove_session(sid).map_err(unavailable)?;
        }
        if let Some(directory) = &self.shared {
            let longest = self.options.token_ttl.max(self.options.guest_ttl);
            directory
                .revoke_session(sid, now.saturating_add(longest))
                .map_err(AuthError::Unavailable)?;
            write(&self.revoked).insert(sid.to_owned());
        }
        Ok(())
    }

    /// Opens a session for `user` lasting `ttl` and signs a token for it.
    fn issue(
        &self,
        user: UserId,
        guest: bool,
        ttl: Duration,
        now: Timestamp,
    ) -> Result<Issued, AuthError> {
        let expires = now.saturating_add(ttl.max(Duration::from_secs(1)));
        let sid = random_token();
        let user = user.as_str().to_owned();
        if let Some(store) = &self.store {
            store
                .add_session(&sid, &user, expires)
                .map_err(unavailable)?;
        }
        let opened = write(&self.sessions).open(sid.clone(), user.clone(), expires, now);
        if let Some(ended) = &opened.ended {
            // One more than a user may hold: their oldest ends.
            self.forget_session(ended, now)?;
        }
        if opened.pruned
            && let Some(store) = &self.store
        {
            store.prune_sessions(now).map_err(unavailable)?;
        }
        let claims = Claims {
            sub: user.clone(),
            exp: seconds(expires),
            iat: Some(seconds(now)),
            iss: self.options.issuer.clone(),
            aud: self.options.audience.clone(),
            sid: Some(sid),
            guest,
        };
        let token = jsonwebtoken::encode(
            &jsonwebtoken::Header::new(Algorithm::HS256),
            &claims,
            &self.encoding,
        )
        .map_err(|e| AuthError::Unavailable(e.to_string()))?;
        Ok(Issued {
            token,
            user,
            guest,
            expires_at: seconds(expires),
        })
    }
}

fn unavailable(e: roomcast_store::StoreError) -> AuthError {
    AuthError::Unavailable(e.to_string())
}

/// A fresh random 128-bit token, as 32 hex digits (session ids, CSRF tokens).
pub fn random_token() -> String {
    hex(&random_bytes::<16>())
}

pub(crate) fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    // The OS random source failing is not something a chat server can work around.
    getrandom::fill(&mut bytes).expect("the OS provides random bytes");
    bytes
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use futures_lite::future::block_on;
    use jsonwebtoken::Header;

    use super::*;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

    fn unix_seconds() -> u64 {
        seconds(now())
    }

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
    fn only_csrf_tokens_made_here_pass() {
        let id = identity(options());
        let token = id.csrf_token();
        assert!(id.csrf_issued(&token));
        assert!(!id.csrf_issued("z"));
        assert!(!id.csrf_issued(&random_token()), "an unsigned nonce");
        let (nonce, _) = token.split_once('.').unwrap();
        assert!(!id.csrf_issued(&format!("{nonce}.{}", "0".repeat(32))));
        let other = identity(IdentityOptions {
            secret: Some(b"another secret of thirty-two bytes!!".to_vec()),
            ..options()
        });
        assert!(!other.csrf_issued(&token), "another server's token");
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
        assert_eq!((caller.name(), caller.guest), ("ada", false));
        assert!(caller.user.starts_with("ada~"), "{}", caller.user);
        assert_eq!(caller.user, issued.user);
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
        let again = sign_in(&id, "ADA", "correct horse", here()).unwrap();
        assert_eq!(
            again.user, issued.user,
            "signing in by any way of writing the name"
        );
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
    fn an_admins_name_is_the_operators_alone() {
        let reserved = IdentityOptions {
            reserved: HashSet::from(["root".to_owned()]),
            ..options()
        };
        // A guest token for the name, minted with the secret (no session to look up).
        let before = mint(&serde_json::json!({
            "sub": "root", "exp": unix_seconds() + 60, "guest": true
        }));
        let id = identity(reserved);
        for name in ["root", "Root", "r o o t"] {
            assert_eq!(guest(&id, name), Err(AuthError::NameTaken(name.into())));
            assert_eq!(
                register(&id, name, "correct horse"),
                Err(AuthError::NameTaken(name.into())),
                "first come never makes an admin"
            );
        }
        assert!(matches!(id.verify(&before), Err(AuthError::Revoked)));
        assert_eq!(
            id.admin_accounts(&["root".into()]),
            vec![("root".into(), None)]
        );
        let (root, made) =
            block_on(id.set_password("root".into(), "the operator's".into())).unwrap();
        assert!(made);
        assert_eq!(
            id.admin_accounts(&["root".into()]),
            vec![("root".into(), Some(root.clone()))]
        );
        let signed_in = sign_in(&id, "root", "the operator's", here()).unwrap();
        assert_eq!(signed_in.user, root.as_str());
        let (again, made) = block_on(id.set_password("root".into(), "a new one!".into())).unwrap();
        assert_eq!(
            (again, made),
            (root, false),
            "the same account, a new password"
        );
        assert_eq!(
            sign_in(&id, "root", "the operator's", here()),
            Err(AuthError::BadCredentials)
        );
    }

    #[test]
    fn look_alike_names_are_taken_and_shown_as_typed() {
        let id = identity(options());
        let alice = register(&id, "alice", "correct horse").unwrap();
        for look_alike in [
            "Alice",
            "ALICE",
            "\u{430}lice",
            "\u{ff41}\u{ff4c}\u{ff49}\u{ff43}\u{ff45}",
            "al\u{131}ce",
            "a l i c e",
        ] {
            assert_eq!(
                guest(&id, look_alike),
                Err(AuthError::NameTaken(look_alike.into())),
                "{look_alike}"
            );
        }
        let zoe = guest(&id, "Zoë").unwrap();
        assert_eq!(zoe.name(), "Zoë", "shown as typed");
        assert_ne!(alice.user, zoe.user);
    }

    #[test]
    fn a_name_resolves_to_whoever_holds_it_now() {
        let id = identity(IdentityOptions {
            guest_ttl: Duration::from_secs(1),
            guest_name_grace: Duration::ZERO,
            ..options()
        });
        let ada = register(&id, "ada", "correct horse").unwrap();
        assert_eq!(
            block_on(id.resolve("Ada", Need::Present)).unwrap().as_str(),
            ada.user
        );
        assert_eq!(
            block_on(id.resolve(&ada.user, Need::Present))
                .unwrap()
                .as_str(),
            ada.user
        );
        assert_eq!(
            block_on(id.resolve("nobody-here", Need::Present)),
            Err(AuthError::UserNotFound("nobody-here".into()))
        );
        let zoe = guest(&id, "zoe").unwrap();
        assert_eq!(
            block_on(id.resolve("zoe", Need::Present)).unwrap().as_str(),
            zoe.user
        );
        std::thread::sleep(Duration::from_millis(1100));
        assert!(
            block_on(id.resolve("zoe", Need::Present)).is_err(),
            "the guest left"
        );
        assert_eq!(block_on(id.depart()).unwrap().len(), 1);
        let next = guest(&id, "zoe").unwrap();
        assert_ne!(next.user, zoe.user, "the next zoe is someone else");
        assert_eq!(
            block_on(id.resolve(&zoe.user, Need::Present)),
            Err(AuthError::UserNotFound(zoe.user.clone())),
            "the old zoe is nobody now"
        );
        assert_eq!(
            block_on(id.resolve(&zoe.user, Need::Known))
                .unwrap()
                .as_str(),
            zoe.user,
            "but what she was given can be taken back"
        );
        // Another application's user is someone once seen: their name is theirs.
        assert!(block_on(id.resolve("app-user", Need::Present)).is_err());
        let minted = mint(&serde_json::json!({"sub": "app-user", "exp": unix_seconds() + 60}));
        id.verify(&minted).unwrap();
        assert_eq!(
            block_on(id.resolve("App-User", Need::Present))
                .unwrap()
                .as_str(),
            "app-user"
        );
        assert_eq!(
            guest(&id, "app-user"),
            Err(AuthError::NameTaken("app-user".into()))
        );
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
