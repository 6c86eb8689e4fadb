//! Accounts and guests: who takes which name, with which id, kept in the store (or a directory
//! several nodes share); signing in; the operator's admin accounts; resolving a name someone
//! typed to whoever holds it; and guests departing.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use roomcast_core::{GUEST_TAG, Moderation, Timestamp, USER_TAG_SEPARATOR, UserId, UserName};
use roomcast_store::{Store, StoredAccount, StoredGuest};

use crate::attempts::{self, Origin};
use crate::names::{self, Hold, Names};
use crate::{
    AuthError, DECOY, Directory, Identity, IdentityError, Issued, PASSWORD_CHARS, hashing, lock,
    now, random_bytes, read, unavailable, write,
};

/// Whom a request naming another user may name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// Someone who holds their name now: whom one invites, writes to, appoints, mutes, kicks or
    /// bans.
    Present,
    /// Anyone who ever was, named by id: from whom one takes something away (a membership, a
    /// role, a mute, a ban), even after they left.
    Known,
}

impl Need {
    /// Whom a moderation may name: anyone it takes something away from, someone present for
    /// the rest.
    pub fn to_moderate(action: Moderation) -> Need {
        match action.standing() {
            Some((_, false)) => Need::Known,
            Some((_, true)) | None => Need::Present,
        }
    }
}

/// How many random characters a user id's tag holds after its kind: 9 of 32, 45 random bits.
/// Ids are not secrets; the tag only has to differ from every earlier holder's of the name.
const TAG_LEN: usize = 9;

/// What an account's tag starts with (a guest's starts with core's `GUEST_TAG`).
const ACCOUNT_TAG: char = 'u';

/// A new id for a holder of `name`: the name, `~`, and a tag saying whether it is a guest's,
/// then fresh random characters.
fn new_id(name: &UserName, guest: bool) -> UserId {
    const ALPHABET: &[u8; 32] = b"abcdefghijkmnpqrstuvwxyz23456789";
    let kind = if guest { GUEST_TAG } else { ACCOUNT_TAG };
    let tag: String = std::iter::once(kind)
        .chain(
            random_bytes::<TAG_LEN>()
                .iter()
                .map(|b| char::from(ALPHABET[usize::from(b % 32)])),
        )
        .collect();
    // A valid name and a tag of the alphabet make a valid id.
    UserId::tagged(name, &tag).expect("a name and a tag are an id")
}

/// The stored id `text`, which the store wrote from a valid one.
fn stored_id(text: &str) -> Result<UserId, IdentityError> {
    UserId::parse(text, usize::MAX)
        .map_err(|e| IdentityError::Store(format!("a stored user id {text:?} is invalid: {e}")))
}

/// Who holds which name at start: every account, and every guest the store keeps (those whose
/// hold ended depart at the first [`Identity::depart`]). Fills in the comparison keys of rows
/// kept from before keys existed. With a shared directory, its accounts (its guests stay
/// there).
pub(crate) fn load_names(
    store: Option<&Store>,
    shared: Option<&dyn Directory>,
) -> Result<Names, IdentityError> {
    let mut loaded = Names::default();
    if let Some(directory) = shared {
        for account in directory.accounts().map_err(IdentityError::Store)? {
            loaded.register(account.key, account.id);
        }
        for minted in directory.minted().map_err(IdentityError::Store)? {
            loaded.see_minted(minted.key, minted.id);
        }
        return Ok(loaded);
    }
    let Some(store) = store else {
        return Ok(loaded);
    };
    let failed = |e: roomcast_store::StoreError| IdentityError::Store(e.to_string());
    let keyed = |id: &UserId, key: Option<String>| -> Result<String, IdentityError> {
        match key {
            Some(key) => Ok(key),
            None => {
                let key = names::key(id.name());
                store.set_key(id.as_str(), &key).map_err(failed)?;
                Ok(key)
            }
        }
    };
    for account in store.accounts().map_err(failed)? {
        let id = stored_id(&account.id)?;
        let key = keyed(&id, account.key)?;
        if let Some(first) = loaded.account(&key) {
            // Two accounts whose names read the same, both made before names compared so: the
            // older keeps the name's key, the other still signs in by its exact name.
            tracing::warn!(account = %id, older = %first, "two accounts' names look alike");
            continue;
        }
        loaded.register(key, id);
    }
    for (key, id) in store.minted().map_err(failed)? {
        loaded.see_minted(key, stored_id(&id)?);
    }
    for guest in store.guests().map_err(failed)? {
        let id = stored_id(&guest.id)?;
        let key = keyed(&id, guest.key)?;
        let later = loaded
            .guest(&key)
            .is_none_or(|hold| hold.until < guest.held_until);
        if later {
            loaded.hold(key, id, guest.held_until);
        }
    }
    Ok(loaded)
}

impl Identity {
    /// The user name `name` if it follows the rules.
    pub(crate) fn name(&self, name: &str) -> Result<UserName, AuthError> {
        UserName::parse(name, self.options.max_name_chars).map_err(AuthError::InvalidName)
    }

    /// Whether a name with this key may not be taken by strangers: an admin's or a system
    /// user's (or one that looks like them).
    fn is_reserved(&self, key: &str) -> bool {
        self.reserved.contains(key)
    }

    /// Creates an account and signs it in. The name must be free (no account, no guest holding
    /// it or one that looks like it, not an admin's), and the address within its sign-ups.
    pub async fn register(
        self: &Arc<Self>,
        name: String,
        password: String,
        from: IpAddr,
    ) -> Result<Issued, AuthError> {
        let now = now();
        let name = self.name(&name)?;
        let key = names::key(name.as_str());
        if self.is_reserved(&key) {
            return Err(AuthError::NameTaken(name.as_str().to_owned()));
        }
        if !PASSWORD_CHARS.contains(&password.chars().count()) {
            return Err(AuthError::BadPassword);
        }
        self.admit_sign_up(from, now).await?;
        // Checked again when the account is made; this spares the hashing.
        if read(&self.names).is_taken(&key, now) {
            return Err(AuthError::NameTaken(name.as_str().to_owned()));
        }
        let hash = self.hash(password).await?;
        let me = Arc::clone(self);
        let id = blocking::unblock(move || me.create_account(&name, key, &hash, now)).await?;
        tracing::info!(user = %id, "account registered");
        self.issue(id, false, self.options.token_ttl, now)
    }

    /// Sets the password of the account holding `name`, making the account if there is none:
    /// the operator's way to make admins' accounts (`--set-password`), which nobody else can
    /// register. Answers the account's id and whether it was made.
    pub async fn set_password(
        self: &Arc<Self>,
        name: String,
        password: String,
    ) -> Result<(UserId, bool), AuthError> {
        let now = now();
        let name = self.name(&name)?;
        if !PASSWORD_CHARS.contains(&password.chars().count()) {
            return Err(AuthError::BadPassword);
        }
        let key = names::key(name.as_str());
        let hash = self.hash(password).await?;
        let me = Arc::clone(self);
        blocking::unblock(move || {
            let existing = read(&me.names).account(&key).cloned();
            match existing {
                Some(id) => {
                    let changed = match (&me.shared, &me.store) {
                        (Some(directory), _) => directory
                            .set_password(&id, &hash)
                            .map_err(AuthError::Unavailable)?,
                        (None, Some(store)) => store
                            .set_password(id.as_str(), &hash)
                            .map_err(unavailable)?,
                        (None, None) => lock(&me.memory).insert(id.clone(), hash).is_some(),
                    };
                    match changed {
                        true => Ok((id, false)),
                        false => Err(AuthError::Unavailable(format!("the account {id} is gone"))),
                    }
                }
                None => me
                    .create_account(&name, key, &hash, now)
                    .map(|id| (id, true)),
            }
        })
        .await
    }

    /// Hashes a password on a hashing thread.
    async fn hash(self: &Arc<Self>, password: String) -> Result<String, AuthError> {
        let salt = random_bytes::<16>();
        self.hashing
            .run(move |memory| memory.hash(password.as_bytes(), &salt))
            .await?
            .map_err(AuthError::Unavailable)
    }

    /// Checks a name and password and signs in. Attempts are limited per (account, address)
    /// and per address, successful or not, before any hashing is spent on them.
    pub async fn sign_in(
        self: &Arc<Self>,
        name: String,
        password: String,
        from: IpAddr,
    ) -> Result<Issued, AuthError> {
        let now = now();
        let key = self.name(&name).ok().map(|n| names::key(n.as_str()));
        let attempt = match &self.shared {
            // Several nodes: the allowances are theirs together, so a node more is no try more.
            Some(directory) => {
                let directory = Arc::clone(directory);
                let allowances = attempts::sign_in_allowances(key.as_deref(), Origin::from(from));
                blocking::unblock(move || directory.admit(&allowances))
                    .await
                    .map_err(AuthError::Unavailable)
                    .and_then(|admitted| {
                        admitted.map_err(|retry_after| AuthError::TooManyAttempts { retry_after })
                    })
            }
            None => lock(&self.attempts)
                .sign_in(key.as_deref(), Origin::from(from), now)
                .map_err(|retry_after| AuthError::TooManyAttempts { retry_after }),
        };
        let outcome = match (attempt, key) {
            (Err(e), _) => Err(e),
            (Ok(()), None) => Err(AuthError::BadCredentials), // No such account can exist.
            (Ok(()), Some(key)) => {
                let me = Arc::clone(self);
                self.hashing
                    .run(move |memory| me.check_password(memory, &key, &password, now))
                    .await
                    .and_then(|checked| checked)
            }
        };
        match &outcome {
            Ok(issued) => tracing::info!(user = %issued.user, %from, "signed in"),
            Err(e @ AuthError::TooManyAttempts { .. }) => {
                tracing::warn!(user = ?name, %from, reason = e.code(), "sign-in attempts limited");
            }
            Err(e) => tracing::info!(user = ?name, %from, reason = e.code(), "sign-in refused"),
        }
        if let Err(e) = &outcome {
            metrics::counter!("roomcast_sign_in_failures_total", "reason" => e.code()).increment(1);
        }
        outcome
    }

    /// A guest token for `nickname`, if guests are allowed, the name (or one that looks like
    /// it) is free and the address within its sign-ups. The guest holds the name while the
    /// token lives, and a while after; then it departs, and its id with it.
    pub async fn guest(
        self: &Arc<Self>,
        nickname: String,
        from: IpAddr,
    ) -> Result<Issued, AuthError> {
        let now = now();
        if !self.options.guests {
            return Err(AuthError::GuestsOff);
        }
        let name = self.name(&nickname)?;
        let key = names::key(name.as_str());
        if self.is_reserved(&key) {
            tracing::info!(user = ?nickname, %from, "guest refused: a reserved name");
            return Err(AuthError::NameTaken(name.as_str().to_owned()));
        }
        self.admit_sign_up(from, now).await?;
        let me = Arc::clone(self);
        let outcome = blocking::unblock(move || me.take_guest_name(&name, key, now)).await;
        if let Err(e @ AuthError::NameTaken(_)) = &outcome {
            tracing::info!(user = ?nickname, %from, reason = e.code(), "guest refused");
        }
        outcome
    }

    /// Who `typed` names, for a request that names another user (an invite, a direct message,
    /// a moderation): a name is whoever holds it now (an account, a guest whose hold lasts, or
    /// another application's user seen here, whose tokens it mints);
    /// an id (`name~tag`) is that user, if they still hold their name, or, to take something
    /// away from them ([`Need::Known`]), whoever they were. Anyone else is
    /// [`AuthError::UserNotFound`]: a typo, or a guest who left, is never invited.
    pub async fn resolve(self: &Arc<Self>, typed: &str, need: Need) -> Result<UserId, AuthError> {
        let now = now();
        let not_found = || AuthError::UserNotFound(typed.to_owned());
        if typed.contains(USER_TAG_SEPARATOR) {
            let id = UserId::parse(typed, self.options.max_name_chars)
                .map_err(AuthError::InvalidName)?;
            if need == Need::Known {
                return Ok(id);
            }
            let key = names::key(id.name());
            let holder = self.holder(key, now).await?;
            return match holder == Some(id.clone()) {
                true => Ok(id),
                false => Err(not_found()),
            };
        }
        let name = self.name(typed)?;
        let key = names::key(name.as_str());
        self.holder(key, now).await?.ok_or_else(not_found)
    }

    /// Whoever holds the name with this key at `now`: asked of the directory too when several
    /// nodes share it (a guest may have taken the name, or a minted user been seen, on another
    /// node).
    async fn holder(
        self: &Arc<Self>,
        key: String,
        now: Timestamp,
    ) -> Result<Option<UserId>, AuthError> {
        if let Some(id) = read(&self.names).holder(&key, now) {
            return Ok(Some(id.clone()));
        }
        let Some(directory) = &self.shared else {
            return Ok(None);
        };
        let directory = Arc::clone(directory);
        blocking::unblock(move || directory.holder(&key))
            .await
            .map_err(AuthError::Unavailable)
    }

    /// The accounts of the admins named: each name with its account's id, or `None` where
    /// there is no such account yet (the operator makes it with `--set-password`).
    pub fn admin_accounts(&self, admins: &[String]) -> Vec<(String, Option<UserId>)> {
        let names = read(&self.names);
        admins
            .iter()
            .map(|name| (name.clone(), names.account(&names::key(name)).cloned()))
            .collect()
    }

    /// The guests who departed since last asked (their holds ended: the session and the grace
    /// after are over): nobody will act as them again, so the host reclaims what they left
    /// (empty rooms, read markers), then calls [`Identity::reclaimed`]. With several nodes,
    /// each departure is told to one node.
    pub async fn depart(self: &Arc<Self>) -> Result<Vec<UserId>, AuthError> {
        let now = now();
        let here = write(&self.names).depart(now);
        let Some(directory) = &self.shared else {
            return Ok(here);
        };
        let directory = Arc::clone(directory);
        blocking::unblock(move || directory.depart(now))
            .await
            .map_err(AuthError::Unavailable)
    }

    /// What these departed guests left is reclaimed: they are forgotten for good.
    pub async fn reclaimed(self: &Arc<Self>, gone: Vec<UserId>) -> Result<(), AuthError> {
        let Some(store) = self.store.clone() else {
            return Ok(());
        };
        let ids: Vec<String> = gone.iter().map(|id| id.as_str().to_owned()).collect();
        blocking::unblock(move || store.remove_guests(&ids))
            .await
            .map_err(unavailable)
    }

    /// A minted token's user was seen: their name is held from now on (kept by the next
    /// [`Identity::keep_minted`]). A name an account or a guest holds stays theirs.
    pub(crate) fn saw_minted(&self, id: UserId) {
        let key = names::key(id.name());
        let now = now();
        if read(&self.names).holder(&key, now).is_some() {
            return;
        }
        if write(&self.names).see_minted(key.clone(), id.clone()) {
            lock(&self.seen_minted).push((key, id));
        }
    }

    /// Keeps the minted tokens' users seen since last called (in the store, or the directory
    /// every node reads), so their names stay theirs across restarts and nodes. Called now and
    /// then, off the requests' path.
    pub async fn keep_minted(self: &Arc<Self>) -> Result<(), AuthError> {
        let seen = std::mem::take(&mut *lock(&self.seen_minted));
        if seen.is_empty() {
            return Ok(());
        }
        let me = Arc::clone(self);
        let (kept, seen) = blocking::unblock(move || {
            let kept = match (&me.shared, &me.store) {
                (Some(directory), _) => {
                    directory.keep_minted(&seen).map_err(AuthError::Unavailable)
                }
                (None, Some(store)) => {
                    let rows: Vec<(String, String)> = seen
                        .iter()
                        .map(|(key, id)| (key.clone(), id.as_str().to_owned()))
                        .collect();
                    store.keep_minted(&rows).map_err(unavailable)
                }
                (None, None) => Ok(()),
            };
            (kept, seen)
        })
        .await;
        if kept.is_err() {
            // Kept at the next call instead.
            lock(&self.seen_minted).extend(seen);
        }
        kept
    }

    /// Another node registered this name (by key) for the account `id`: a guest can no longer
    /// take it here.
    pub fn on_registered(&self, key: &str, id: UserId) {
        write(&self.names).register(key.to_owned(), id);
    }

    /// Takes one sign-up from `from`'s allowance.
    async fn admit_sign_up(
        self: &Arc<Self>,
        from: IpAddr,
        now: Timestamp,
    ) -> Result<(), AuthError> {
        let admitted = match (&self.shared, self.options.sign_ups) {
            (Some(directory), Some(allowance)) => {
                let directory = Arc::clone(directory);
                let named = attempts::sign_up_allowance(Origin::from(from), allowance);
                blocking::unblock(move || directory.admit(&[named]))
                    .await
                    .map_err(AuthError::Unavailable)?
            }
            (Some(_), None) => Ok(()),
            (None, _) => lock(&self.attempts).sign_up(Origin::from(from), now),
        };
        admitted.map_err(|retry_after| {
            tracing::warn!(%from, "sign-ups limited");
            AuthError::TooManySignUps { retry_after }
        })
    }

    /// On a hashing thread: checks the password of the account holding the name with this key
    /// (against a decoy when there is none, so both take as long) and, if it matches, opens a
    /// session.
    fn check_password(
        &self,
        memory: &mut hashing::Memory,
        key: &str,
        password: &str,
        now: Timestamp,
    ) -> Result<Issued, AuthError> {
        let stored: Option<(String, String)> = match (&self.shared, &self.store) {
            (Some(directory), _) => directory
                .account(key)
                .map_err(AuthError::Unavailable)?
                .map(|(id, hash)| (id.as_str().to_owned(), hash)),
            (None, Some(store)) => store.account_by_key(key).map_err(unavailable)?,
            (None, None) => read(&self.names).account(key).and_then(|id| {
                let hash = lock(&self.memory).get(id).cloned()?;
                Some((id.as_str().to_owned(), hash))
            }),
        };
        let hash = stored.as_ref().map_or(DECOY, |(_, hash)| hash.as_str());
        let matches = memory.verify(password.as_bytes(), hash);
        let Some((id, _)) = stored.filter(|_| matches) else {
            return Err(AuthError::BadCredentials);
        };
        let id = UserId::parse(&id, usize::MAX)
            .map_err(|e| AuthError::Unavailable(format!("a stored user id is invalid: {e}")))?;
        self.issue(id, false, self.options.token_ttl, now)
    }

    /// Makes the account if the name (by key) is still free, under the lock that orders name
    /// takers; answers its new id.
    fn create_account(
        &self,
        name: &UserName,
        key: String,
        hash: &str,
        now: Timestamp,
    ) -> Result<UserId, AuthError> {
        let taken = || AuthError::NameTaken(name.as_str().to_owned());
        let id = new_id(name, false);
        let mut names = write(&self.names);
        if names.is_taken(&key, now) {
            return Err(taken());
        }
        let created = match (&self.shared, &self.store) {
            (Some(directory), _) => directory
                .create_account(&key, &id, hash)
                .map_err(AuthError::Unavailable)?,
            (None, Some(store)) => {
                let account = StoredAccount {
                    id: id.as_str().to_owned(),
                    name: name.as_str().to_owned(),
                    key: Some(key.clone()),
                };
                store
                    .create_account(&account, hash, now)
                    .map_err(unavailable)?
            }
            (None, None) => lock(&self.memory)
                .insert(id.clone(), hash.to_owned())
                .is_none(),
        };
        if !created {
            return Err(taken());
        }
        names.register(key, id.clone());
        Ok(id)
    }

    /// Holds `name` for a new guest if it (and every name that looks like it) is free, and
    /// signs a token for the new guest's id.
    fn take_guest_name(
        &self,
        name: &UserName,
        key: String,
        now: Timestamp,
    ) -> Result<Issued, AuthError> {
        let taken = || AuthError::NameTaken(name.as_str().to_owned());
        let ttl = self.options.guest_ttl.max(Duration::from_secs(1));
        let until = now.saturating_add(ttl + self.options.guest_name_grace);
        let id = new_id(name, true);
        {
            let mut names = write(&self.names);
            if names.is_taken(&key, now) || self.is_system(name.as_str()) {
                return Err(taken());
            }
            if let Some(directory) = &self.shared
                && !directory
                    .hold_guest(&key, &id, until)
                    .map_err(AuthError::Unavailable)?
            {
                return Err(taken());
            }
            names.hold(key.clone(), id.clone(), until);
        }
        if let Some(store) = &self.store {
            let guest = StoredGuest {
                id: id.as_str().to_owned(),
                key: Some(key),
                held_until: until,
            };
            store.hold_guest(&guest).map_err(unavailable)?;
        }
        self.issue(id, true, ttl, now)
    }

    /// A guest signing out keeps their name only until `until` (the grace after).
    pub(crate) fn shorten_guest_hold(
        &self,
        caller: &crate::Caller,
        until: Timestamp,
    ) -> Result<(), AuthError> {
        let Ok(id) = UserId::parse(&caller.user, usize::MAX) else {
            return Ok(());
        };
        let key = names::key(id.name());
        let mut names = write(&self.names);
        let shortened = names
            .guest(&key)
            .is_some_and(|hold: &Hold| hold.id == id && hold.until > until);
        if shortened {
            names.hold(key.clone(), id.clone(), until);
        }
        drop(names);
        if shortened && let Some(store) = &self.store {
            let guest = StoredGuest {
                id: id.as_str().to_owned(),
                key: Some(key.clone()),
                held_until: until,
            };
            store.hold_guest(&guest).map_err(unavailable)?;
        }
        if let Some(directory) = &self.shared {
            directory
                .shorten_guest_hold(&key, &id, until)
                .map_err(AuthError::Unavailable)?;
        }
        Ok(())
    }
}
