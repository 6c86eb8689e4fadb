//! [`Directory`]: who is who when several nodes share it.
//!
//! A single node keeps accounts, sessions and guest names in its own store. Nodes that share
//! rooms (through Redis) must also share these, or a guest could take on one node the name
//! someone holds on another and speak as them. The hub implements this on Redis; each call is
//! atomic there, so two nodes can never both hand out one name. Sessions become a revocation
//! list: a token is good on every node until it expires or is revoked, and revocations reach
//! every node at once ([`Identity::on_revoked`](crate::Identity::on_revoked)).

use std::time::Duration;

use roomcast_core::Timestamp;

use crate::Allowance;

/// What several nodes share about identities. Calls block (they are made from the blocking
/// pool or a hashing thread); an `Err` says why the directory could not answer.
pub trait Directory: Send + Sync {
    /// Makes the account unless an account or a guest holds the name; false if one does.
    fn create_account(&self, name: &str, hash: &str) -> Result<bool, String>;
    /// The account's password hash, if there is such an account.
    fn password_hash(&self, name: &str) -> Result<Option<String>, String>;
    /// Holds `name` for a guest until `until` unless an account or another guest holds it;
    /// false if one does.
    fn hold_guest_name(&self, name: &str, until: Timestamp) -> Result<bool, String>;
    /// Ends a guest's hold of `name` at `until` at the latest (signing out).
    fn shorten_guest_hold(&self, name: &str, until: Timestamp) -> Result<(), String>;
    /// Revokes a session on every node; its tokens expire by `until` in any case.
    fn revoke_session(&self, sid: &str, until: Timestamp) -> Result<(), String>;
    /// The sessions revoked that could still be used at `now`.
    fn revoked_sessions(&self, now: Timestamp) -> Result<Vec<String>, String>;
    /// Every account's name.
    fn account_names(&self) -> Result<Vec<String>, String>;
    /// Takes one from each named allowance shared by every node, or from none: `Ok(Err(wait))`
    /// when one is spent (sign-ups per address, sign-in attempts per account and address and
    /// per address, so a node more is no attempt more).
    fn admit(&self, allowances: &[(String, Allowance)]) -> Result<Result<(), Duration>, String>;
}
