//! Who is who, shared by every node on one Redis: identity's [`Directory`] on Redis.
//!
//! Every identity key shares the hash tag `{id}`, so the scripts that check one name against
//! accounts and guests at once also run on Redis Cluster. Revocations and new accounts are
//! published on `rc:{id}:events`; the log thread relays them to this node's identity.

use std::sync::Mutex;

use redis::{ConnectionLike, Script};
use roomcast_core::{Timestamp, UserId};

use std::time::Duration;

use crate::identity::{Allowance, Directory, SharedAccount, secret_fingerprint};
use crate::redis::{IDENTITY_EVENTS as EVENTS, Target};

/// Accounts by name: comparison key → user id.
const USERS: &str = "rc:{id}:users";
/// Accounts' password hashes: user id → hash.
const PASSWORDS: &str = "rc:{id}:pw";
/// Guests by when their hold ends: user id → ms (the departures to reclaim).
const GUESTS: &str = "rc:{id}:guests";
/// Users of tokens another application mints, once seen: name key → id.
const MINTED: &str = "rc:{id}:minted";
/// Accounts as they were kept before ids: name → hash (moved into `USERS` and `PASSWORDS`).
const LEGACY_ACCOUNTS: &str = "rc:{id}:accounts";
const REVOKED: &str = "rc:{id}:revoked";
const SECRET: &str = "rc:{id}:secret";
const SECRET_CHECK: &str = "rc:{id}:secret-check";

/// A guest's hold on a name with this key: the guest's id, expiring when the hold ends (a
/// hold kept from before ids holds `1`, and the name it held is its id).
fn guest_key(key: &str) -> String {
    format!("rc:{{id}}:guest:{key}")
}

const CREATE_ACCOUNT: &str = r"
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then return 0 end
if redis.call('EXISTS', KEYS[3]) == 1 then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('HSET', KEYS[2], ARGV[2], ARGV[3])
redis.call('PUBLISH', ARGV[4], 'registered ' .. ARGV[1] .. ' ' .. ARGV[2])
return 1
";

const ACCOUNT: &str = r"
local id = redis.call('HGET', KEYS[1], ARGV[1])
if not id then return false end
return {id, redis.call('HGET', KEYS[2], id) or ''}
";

const SET_PASSWORD: &str = r"
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return 1
";

const HOLD_GUEST: &str = r"
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then return 0 end
if not redis.call('SET', KEYS[2], ARGV[2], 'NX', 'PXAT', ARGV[3]) then return 0 end
redis.call('ZADD', KEYS[3], ARGV[3], ARGV[2])
return 1
";

const SHORTEN_GUEST: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIREAT', KEYS[1], ARGV[2], 'LT')
  redis.call('ZADD', KEYS[2], 'LT', ARGV[2], ARGV[1])
end
return 1
";

/// Takes the guests whose holds ended, at most a few hundred at a time: each is told to the
/// one node whose call removed it.
const DEPART: &str = r"
local gone = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, 256)
for _, id in ipairs(gone) do redis.call('ZREM', KEYS[1], id) end
return gone
";

const REVOKE: &str = r"
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[3])
redis.call('PUBLISH', ARGV[4], 'revoked ' .. ARGV[1])
return 1
";

/// Identity's directory on Redis, over one blocking connection (calls come from the blocking
/// pool and the hashing threads).
pub(crate) struct RedisDirectory {
    target: Target,
    conn: Mutex<Option<Box<dyn ConnectionLike + Send>>>,
    /// The scripts, each hashed once (EVALSHA, sent again on NOSCRIPT).
    create_account: Script,
    account: Script,
    set_password: Script,
    hold_guest: Script,
    shorten_guest: Script,
    depart: Script,
    revoke: Script,
    allow: Script,
}

impl RedisDirectory {
    /// Connects, failing if Redis cannot be reached.
    pub(crate) fn connect(target: Target) -> Result<RedisDirectory, String> {
        let directory = RedisDirectory {
            target,
            conn: Mutex::new(None),
            create_account: Script::new(CREATE_ACCOUNT),
            account: Script::new(ACCOUNT),
            set_password: Script::new(SET_PASSWORD),
            hold_guest: Script::new(HOLD_GUEST),
            shorten_guest: Script::new(SHORTEN_GUEST),
            depart: Script::new(DEPART),
            revoke: Script::new(REVOKE),
            allow: Script::new(crate::redis::ALLOW),
        };
        directory.with(|_| Ok(()))?;
        directory.migrate()?;
        Ok(directory)
    }

    /// Moves accounts kept from before user ids (name → hash) to where they are kept now: each
    /// keeps its name as its id. Safe to run on several nodes at once.
    fn migrate(&self) -> Result<(), String> {
        let legacy: Vec<(String, String)> =
            self.with(|c| redis::cmd("HGETALL").arg(LEGACY_ACCOUNTS).query(c))?;
        if legacy.is_empty() {
            return Ok(());
        }
        for (name, hash) in &legacy {
            let key = crate::identity::names::key(name);
            self.with(|c| {
                redis::pipe()
                    .atomic()
                    .cmd("HSETNX")
                    .arg(USERS)
                    .arg(&key)
                    .arg(name)
                    .ignore()
                    .cmd("HSETNX")
                    .arg(PASSWORDS)
                    .arg(name)
                    .arg(hash)
                    .ignore()
                    .cmd("HDEL")
                    .arg(LEGACY_ACCOUNTS)
                    .arg(name)
                    .ignore()
                    .exec(c)
            })?;
        }
        tracing::info!(accounts = legacy.len(), "accounts moved to user ids");
        Ok(())
    }

    /// Every name key and its holder's id in the hash `hash` (accounts', or minted users').
    fn holders(&self, hash: &str) -> Result<Vec<SharedAccount>, String> {
        let all: Vec<(String, String)> = self.with(|c| redis::cmd("HGETALL").arg(hash).query(c))?;
        all.into_iter()
            .map(|(key, id)| {
                Ok(SharedAccount {
                    key,
                    id: user_id(&id)?,
                })
            })
            .collect()
    }

    /// Runs `f` on the connection, connecting (again) first if needed.
    fn with<T>(
        &self,
        f: impl FnOnce(&mut dyn ConnectionLike) -> redis::RedisResult<T>,
    ) -> Result<T, String> {
        let mut slot = self
            .conn
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if slot.is_none() {
            let conn = self
                .target
                .connect_blocking()
                .map_err(|e| format!("Redis: {e}"))?;
            *slot = Some(conn);
        }
        let conn = slot.as_mut().expect("connected just now");
        let result = f(conn.as_mut());
        if let Err(e) = &result
            && (e.is_io_error() || e.is_connection_dropped() || e.is_timeout())
        {
            *slot = None; // Reconnect on the next call.
        }
        result.map_err(|e| format!("Redis: {e}"))
    }

    /// The secret every node signs tokens with: `flag` if given, else one kept in Redis (made
    /// by the first node). Refuses when another node signs with a different one.
    pub(crate) fn agree_secret(&self, flag: Option<&[u8]>) -> Result<Vec<u8>, String> {
        let secret = match flag {
            Some(secret) => secret.to_vec(),
            None => {
                let candidate = crate::identity::random_token() + &crate::identity::random_token();
                self.with(|c| {
                    redis::cmd("SET")
                        .arg(SECRET)
                        .arg(&candidate)
                        .arg("NX")
                        .exec(c)?;
                    redis::cmd("GET").arg(SECRET).query::<String>(c)
                })?
                .into_bytes()
            }
        };
        let mine = secret_fingerprint(&secret);
        let theirs: String = self.with(|c| {
            redis::cmd("SET")
                .arg(SECRET_CHECK)
                .arg(&mine)
                .arg("NX")
                .exec(c)?;
            redis::cmd("GET").arg(SECRET_CHECK).query(c)
        })?;
        if theirs != mine {
            return Err(
                "this node's token secret differs from the one the other nodes on this Redis \
                 sign with: start every node with the same --jwt-secret (or every node without \
                 one, to share the one kept in Redis)"
                    .into(),
            );
        }
        Ok(secret)
    }
}

/// A user id Redis kept, which a node wrote from a valid one.
fn user_id(text: &str) -> Result<UserId, String> {
    UserId::parse(text, usize::MAX)
        .map_err(|e| format!("Redis holds an invalid user id {text:?}: {e}"))
}

impl Directory for RedisDirectory {
    fn create_account(&self, key: &str, id: &UserId, hash: &str) -> Result<bool, String> {
        self.with(|c| {
            self.create_account
                .key(USERS)
                .key(PASSWORDS)
                .key(guest_key(key))
                .arg(key)
                .arg(id.as_str())
                .arg(hash)
                .arg(EVENTS)
                .invoke::<i64>(c)
        })
        .map(|created| created == 1)
    }

    fn account(&self, key: &str) -> Result<Option<(UserId, String)>, String> {
        let found: Option<(String, String)> =
            self.with(|c| self.account.key(USERS).key(PASSWORDS).arg(key).invoke(c))?;
        found
            .map(|(id, hash)| Ok((user_id(&id)?, hash)))
            .transpose()
    }

    fn set_password(&self, id: &UserId, hash: &str) -> Result<bool, String> {
        self.with(|c| {
            self.set_password
                .key(PASSWORDS)
                .arg(id.as_str())
                .arg(hash)
                .invoke::<i64>(c)
        })
        .map(|set| set == 1)
    }

    fn hold_guest(&self, key: &str, id: &UserId, until: Timestamp) -> Result<bool, String> {
        self.with(|c| {
            self.hold_guest
                .key(USERS)
                .key(guest_key(key))
                .key(GUESTS)
                .arg(key)
                .arg(id.as_str())
                .arg(until.as_unix_millis())
                .invoke::<i64>(c)
        })
        .map(|held| held == 1)
    }

    fn holder(&self, key: &str) -> Result<Option<UserId>, String> {
        let (held, minted): (Option<String>, Option<String>) = self.with(|c| {
            redis::pipe()
                .cmd("GET")
                .arg(guest_key(key))
                .cmd("HGET")
                .arg(MINTED)
                .arg(key)
                .query(c)
        })?;
        match (held.as_deref(), minted) {
            // Held from before ids: the name it held is its id.
            (Some("1"), _) => user_id(key).map(Some),
            (Some(id), _) => user_id(id).map(Some),
            (None, Some(id)) => user_id(&id).map(Some),
            (None, None) => Ok(None),
        }
    }

    fn keep_minted(&self, seen: &[(String, UserId)]) -> Result<(), String> {
        self.with(|c| {
            let mut pipe = redis::pipe();
            for (key, id) in seen {
                pipe.cmd("HSETNX")
                    .arg(MINTED)
                    .arg(key)
                    .arg(id.as_str())
                    .ignore();
            }
            pipe.exec(c)
        })
    }

    fn minted(&self) -> Result<Vec<SharedAccount>, String> {
        self.holders(MINTED)
    }

    fn shorten_guest_hold(&self, key: &str, id: &UserId, until: Timestamp) -> Result<(), String> {
        self.with(|c| {
            self.shorten_guest
                .key(guest_key(key))
                .key(GUESTS)
                .arg(id.as_str())
                .arg(until.as_unix_millis())
                .invoke::<i64>(c)
        })
        .map(drop)
    }

    fn depart(&self, now: Timestamp) -> Result<Vec<UserId>, String> {
        let gone: Vec<String> =
            self.with(|c| self.depart.key(GUESTS).arg(now.as_unix_millis()).invoke(c))?;
        gone.iter().map(|id| user_id(id)).collect()
    }

    fn revoke_session(&self, sid: &str, until: Timestamp) -> Result<(), String> {
        let now = Timestamp::from(std::time::SystemTime::now());
        self.with(|c| {
            self.revoke
                .key(REVOKED)
                .arg(sid)
                .arg(until.as_unix_millis())
                .arg(now.as_unix_millis())
                .arg(EVENTS)
                .invoke::<i64>(c)
        })
        .map(drop)
    }

    fn revoked_sessions(&self, now: Timestamp) -> Result<Vec<String>, String> {
        self.with(|c| {
            redis::cmd("ZRANGE")
                .arg(REVOKED)
                .arg(now.as_unix_millis())
                .arg("+inf")
                .arg("BYSCORE")
                .query(c)
        })
    }

    fn admit(&self, allowances: &[(String, Allowance)]) -> Result<Result<(), Duration>, String> {
        let mut call = self.allow.prepare_invoke();
        for (name, allowance) in allowances {
            let (interval, tolerance) = crate::redis::gcra(allowance.burst, allowance.every);
            call.key(format!("rc:{{id}}:allow:{name}"))
                .arg(interval)
                .arg(tolerance);
        }
        let wait: u64 = self.with(|c| call.invoke(c))?;
        Ok(match wait {
            0 => Ok(()),
            ms => Err(Duration::from_millis(ms)),
        })
    }

    fn accounts(&self) -> Result<Vec<SharedAccount>, String> {
        self.holders(USERS)
    }
}
