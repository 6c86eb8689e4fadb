//! Why a caller was not identified or an account request refused ([`AuthError`], with its
//! class, core's [`ErrorClass`], and a stable code for the hosts' edges), and why identity could
//! not start.

use std::time::Duration;

use roomcast_core::{ErrorClass, NameError};
use thiserror::Error;

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
    /// The token's session was signed out (or it is a guest's for a name reserved since).
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
    /// A password outside [`PASSWORD_CHARS`](crate::PASSWORD_CHARS).
    #[error("a password must be 8 to 256 characters long")]
    BadPassword,
    /// A name that breaks the user-name rules.
    #[error("invalid user name: {0}")]
    InvalidName(NameError),
    /// The account store failed.
    #[error("accounts are unavailable: {0}")]
    Unavailable(String),
    /// A request names a user (to invite, write to, moderate) whom nobody is: no account, no
    /// guest holds that name (or that id) now.
    #[error("no user {0} here: nobody holds that name now")]
    UserNotFound(String),
    /// The request names a user other than the signed-in one.
    #[error("signed in as {caller}, but the request names {named} (impersonation)")]
    Impersonation {
        /// Who the request names.
        named: String,
        /// Who signed in.
        caller: String,
    },
}

impl AuthError {
    /// The broad kind.
    pub fn class(&self) -> ErrorClass {
        match self {
            AuthError::Missing
            | AuthError::InvalidToken(_)
            | AuthError::Expired
            | AuthError::NotYetValid
            | AuthError::Revoked
            | AuthError::BadCredentials => ErrorClass::Unauthenticated,
            AuthError::GuestsOff | AuthError::Impersonation { .. } => ErrorClass::Denied,
            AuthError::NameTaken(_) => ErrorClass::Conflict,
            AuthError::UserNotFound(_) => ErrorClass::NotFound,
            AuthError::TooManyAttempts { .. } | AuthError::TooManySignUps { .. } => {
                ErrorClass::RateLimited
            }
            AuthError::BadPassword | AuthError::InvalidName(_) => ErrorClass::Invalid,
            AuthError::Busy { .. } | AuthError::Unavailable(_) => ErrorClass::Unavailable,
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
            AuthError::UserNotFound(_) => "user-not-found",
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
            | AuthError::UserNotFound(_)
            | AuthError::GuestsOff
            | AuthError::BadPassword
            | AuthError::InvalidName(_)
            | AuthError::Unavailable(_)
            | AuthError::Impersonation { .. } => None,
        }
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
