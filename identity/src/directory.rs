//! [`Directory`]: who is who when several nodes share it.
//!
//! A single node keeps accounts, sessions and guests in its own store. Nodes that share rooms
//! (through Redis) must also share these, or a guest could take on one node a name someone
//! holds on another and pass for them. The hub implements this on Redis; each call is atomic
//! there, so two nodes can never both hand out one name. Names are compared by their key
//! ([`names::key`](crate::names::key)). Sessions become a revocation list: a token is good on
//! every node until it expires or is revoked, and revocations reach every node at once
//! ([`Identity::on_revoked`](crate::Identity::on_revoked)).

use std::time::Duration;

use roomcast_core::{Timestamp, UserId};

use crate::Allowance;

/// An account as the directory lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedAccount {
    /// Its name's comparison key.
    pub key: String,
    /// Who it is.
    pub id: UserId,
}

/// What several nodes share about identities. Calls block (they are made from the blocking
/// pool or a hashing thread); an `Err` says why the directory could not answer.
pub trait Directory: Send + Sync {
    /// Makes the account `id` unless an account or a guest holds a name with this key; false if
    /// one does.
    fn create_account(&self, key: &str, id: &UserId, hash: &str) -> Result<bool, String>;
    /// The account holding a name with this key: its id and password hash.
    fn account(&self, key: &str) -> Result<Option<(UserId, String)>, String>;
    /// Replaces the password of the account `id`; false if there is no such account.
    fn set_password(&self, id: &UserId, hash: &str) -> Result<bool, String>;
    /// Holds a name with this key for the guest `id` until `until` unless an account or another
    /// guest holds one; false if one does.
    fn hold_guest(&self, key: &str, id: &UserId, until: Timestamp) -> Result<bool, String>;
    /// Who holds a name with this key now besides accounts: a guest, or another application's
    /// user seen by some node.
    fn holder(&self, key: &str) -> Result<Option<UserId>, String>;
    /// Keeps the users of minted tokens seen (by name key), for every node.
    fn keep_minted(&self, seen: &[(String, UserId)]) -> Result<(), String>;
    /// Every minted token's user seen by any node.
    fn minted(&self) -> Result<Vec<SharedAccount>, String>;
    /// Ends the guest `id`'s hold of a name with this key at `until` at the latest (signing
    /// out).
    fn shorten_guest_hold(&self, key: &str, id: &UserId, until: Timestamp) -> Result<(), String>;
    /// The guests whose holds ended by `now`, each told to one node only (the caller
    /// reclaims what they left).
    fn depart(&self, now: Timestamp) -> Result<Vec<UserId>, String>;
    /// Revokes a session on every node; its tokens expire by `until` in any case.
    fn revoke_session(&self, sid: &str, until: Timestamp) -> Result<(), String>;
    /// The sessions revoked that could still be used at `now`.
    fn revoked_sessions(&self, now: Timestamp) -> Result<Vec<String>, String>;
    /// Every account.
    fn accounts(&self) -> Result<Vec<SharedAccount>, String>;
    /// Takes one from each named allowance shared by every node, or from none: `Ok(Err(wait))`
    /// when one is spent (sign-ups per address, sign-in attempts per account and address and
    /// per address, so a node more is no attempt more).
    fn admit(&self, allowances: &[(String, Allowance)]) -> Result<Result<(), Duration>, String>;
}
