//! Who is who, shared by every node on one Redis: identity's [`Directory`] on Redis.
//!
//! Every identity key shares the hash tag `{id}`, so the scripts that check one name against
//! accounts and guests at once also run on Redis Cluster. Revocations and new accounts are
//! published on `rc:{id}:events`; the log thread relays them to this node's identity.

use std::sync::Mutex;

use redis::{ConnectionLike, Script};
use roomcast_core::Timestamp;

use std::time::Duration;

use crate::identity::{Allowance, Directory, secret_fingerprint};
use crate::redis::{IDENTITY_EVENTS as EVENTS, Target};

const ACCOUNTS: &str = "rc:{id}:accounts";
const REVOKED: &str = "rc:{id}:revoked";
const SECRET: &str = "rc:{id}:secret";
const SECRET_CHECK: &str = "rc:{id}:secret-check";

fn guest_key(name: &str) -> String {
    format!("rc:{{id}}:guest:{name}")
}

const CREATE_ACCOUNT: &str = r"
if redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
if redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2]) == 0 then return 0 end
redis.call('PUBLISH', ARGV[3], 'registered ' .. ARGV[1])
return 1
";

const HOLD_GUEST: &str = r"
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then return 0 end
if not redis.call('SET', KEYS[2], '1', 'NX', 'PXAT', ARGV[2]) then return 0 end
return 1
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
    hold_guest: Script,
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
            hold_guest: Script::new(HOLD_GUEST),
            revoke: Script::new(REVOKE),
            allow: Script::new(crate::redis::ALLOW),
        };
        directory.with(|_| Ok(()))?;
        Ok(directory)
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

impl Directory for RedisDirectory {
    fn create_account(&self, name: &str, hash: &str) -> Result<bool, String> {
        self.with(|c| {
            self.create_account
                .key(ACCOUNTS)
                .key(guest_key(name))
                .arg(name)
                .arg(hash)
                .arg(EVENTS)
                .invoke::<i64>(c)
        })
        .map(|created| created == 1)
    }

    fn password_hash(&self, name: &str) -> Result<Option<String>, String> {
        self.with(|c| redis::cmd("HGET").arg(ACCOUNTS).arg(name).query(c))
    }

    fn hold_guest_name(&self, name: &str, until: Timestamp) -> Result<bool, String> {
        self.with(|c| {
            self.hold_guest
                .key(ACCOUNTS)
                .key(guest_key(name))
                .arg(name)
                .arg(until.as_unix_millis())
                .invoke::<i64>(c)
        })
        .map(|held| held == 1)
    }

    fn shorten_guest_hold(&self, name: &str, until: Timestamp) -> Result<(), String> {
        self.with(|c| {
            redis::cmd("PEXPIREAT")
                .arg(guest_key(name))
                .arg(until.as_unix_millis())
                .arg("LT")
                .exec(c)
        })
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

    fn account_names(&self) -> Result<Vec<String>, String> {
        self.with(|c| redis::cmd("HKEYS").arg(ACCOUNTS).query(c))
    }
}
