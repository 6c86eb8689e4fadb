//! [`Caller`]: who a request comes from, once verified; how a host finds the token
//! ([`bearer`]) and the one rule about naming a user ([`Caller::check_named`]), written once
//! for both hosts.

use serde::Serialize;

use crate::error::AuthError;

/// A verified user, as a host passes it on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// Who the user is: their id (core's `UserId`), which core gets.
    pub user: String,
    /// True for a guest (a nickname without an account).
    pub guest: bool,
    /// The session the token belongs to; `None` for tokens minted by another application.
    pub(crate) session: Option<String>,
    /// When the token expires, in seconds since the Unix epoch.
    pub(crate) expires_at: u64,
}

/// A token handed to a client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Issued {
    /// The JWT: send it as `Authorization: Bearer`.
    pub token: String,
    /// Who it names: the user's id.
    pub user: String,
    /// True for a guest token.
    pub guest: bool,
    /// When it expires, in seconds since the Unix epoch.
    pub expires_at: u64,
}

/// The token in an `Authorization` header value: `Bearer <token>` (either case of the scheme).
pub fn bearer(authorization: &str) -> Option<&str> {
    authorization
        .strip_prefix("Bearer ")
        .or_else(|| authorization.strip_prefix("bearer "))
        .map(str::trim)
}

/// The name part of a user id: what people see.
fn name_of(id: &str) -> &str {
    id.split_once(roomcast_core::USER_TAG_SEPARATOR)
        .map_or(id, |(name, _)| name)
}

impl Issued {
    /// The user's name, as people see it.
    pub fn name(&self) -> &str {
        name_of(&self.user)
    }
}

impl Caller {
    /// The user's name, as people see it.
    pub fn name(&self) -> &str {
        name_of(&self.user)
    }

    /// A request may name its user (the seed's forms and routes did), by name or id, but only
    /// as the caller: naming anyone else is refused, never believed.
    pub fn check_named(&self, named: Option<&str>) -> Result<(), AuthError> {
        match named {
            Some(named) if named != self.user && named != self.name() => {
                Err(AuthError::Impersonation {
                    named: named.to_owned(),
                    caller: self.user.clone(),
                })
            }
            Some(_) | None => Ok(()),
        }
    }
}
