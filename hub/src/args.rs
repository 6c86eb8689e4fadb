//! The flags (and environment variables) both binaries take for the core and the hub.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use roomcast_core::{Config, Limits, Pace, Policy, Rate, Who};
use roomcast_store::{Retention, Store};

use crate::hub::{Hub, HubOptions, StartError};
use crate::identity::{Algorithm, Allowance, ApiKey, IdentityError, IdentityOptions};
use crate::redis::RedisOptions;

/// Core and hub settings, flattened into each binary's command line.
#[derive(Debug, Clone, clap::Args)]
pub struct CoreArgs {
    /// Read settings from this TOML file, every flag a key (`max-rooms = 1000`, `admins =
    /// ["root"]`); the environment and the command line override it.
    #[arg(long, env = "ROOMCAST_CONFIG")]
    pub config: Option<PathBuf>,
    /// Print the configuration in effect (secrets masked), then exit.
    #[arg(long)]
    pub print_config: bool,
    /// Messages kept per room for history and resume.
    #[arg(long, env = "ROOMCAST_HISTORY_LEN", default_value_t = Config::default().history_len)]
    pub history_len: usize,
    /// Largest message, in UTF-8 bytes.
    #[arg(long, env = "ROOMCAST_MAX_MESSAGE_BYTES", default_value_t = Limits::default().message_max_bytes)]
    pub max_message_bytes: usize,
    /// Most rooms at once.
    #[arg(long, env = "ROOMCAST_MAX_ROOMS", default_value_t = Limits::default().max_rooms)]
    pub max_rooms: usize,
    /// Most listeners on one room.
    #[arg(long, env = "ROOMCAST_MAX_LISTENERS_PER_ROOM", default_value_t = Limits::default().max_listeners_per_room)]
    pub max_listeners_per_room: usize,
    /// Most listeners open on the whole server.
    #[arg(long, env = "ROOMCAST_MAX_LISTENERS", default_value_t = Limits::default().max_listeners)]
    pub max_listeners: usize,
    /// Most listeners one user may hold open on one room (tabs, devices, streams).
    #[arg(long, env = "ROOMCAST_MAX_LISTENERS_PER_USER", default_value_t = Limits::default().max_listeners_per_user)]
    pub max_listeners_per_user: usize,
    /// Announce joins and leaves only while at most this many users are present in a room.
    #[arg(long, env = "ROOMCAST_ANNOUNCE_PRESENCE_UP_TO", default_value_t = Limits::default().announce_presence_up_to)]
    pub announce_presence_up_to: usize,
    /// Messages one user may send back to back; 0 turns the rate limit off.
    #[arg(long, env = "ROOMCAST_RATE_BURST", default_value_t = 10)]
    pub rate_burst: u32,
    /// Messages per second one user may sustain.
    #[arg(long, env = "ROOMCAST_RATE_PER_SECOND", default_value_t = 5)]
    pub rate_per_second: u32,
    /// Close rooms that have had no listener for this long (e.g. `30m`); rooms stay by default.
    #[arg(long, env = "ROOMCAST_ROOM_IDLE_EXPIRY", value_parser = humantime::parse_duration)]
    pub room_idle_expiry: Option<Duration>,
    /// Accounts that may do anything (names, comma separated). Nobody can register these names
    /// or take them (or one that looks like them) as a guest: make each account with
    /// `--set-password NAME` first.
    #[arg(long, env = "ROOMCAST_ADMINS", value_delimiter = ',')]
    pub admins: Vec<String>,
    /// Set the password of the account NAME from standard input (one line), making the account
    /// if there is none, then exit: how admins' accounts are made. Stop the server first (it
    /// holds the data dir); with `--redis`, nodes that run pick up a new admin at their next
    /// start.
    #[arg(long, value_name = "NAME")]
    pub set_password: Option<String>,
    /// Only admins may create rooms.
    #[arg(long, env = "ROOMCAST_ADMIN_ONLY_CREATE")]
    pub admin_only_create: bool,
    /// Only admins may delete rooms.
    #[arg(long, env = "ROOMCAST_ADMIN_ONLY_DELETE")]
    pub admin_only_delete: bool,
    /// Deliveries buffered per room; a listener further behind resumes from history.
    #[arg(long, env = "ROOMCAST_ROOM_BUFFER", default_value_t = HubOptions::default().room_buffer)]
    pub room_buffer: usize,
    /// Record every input to the core and what it answered to this file (JSON lines), to replay
    /// with `roomcast-replay`. It holds every message: keep it as private as the data dir.
    #[arg(long, env = "ROOMCAST_RECORD_INPUTS")]
    pub record_inputs: Option<PathBuf>,
    /// Where rooms and messages are kept (created if missing): `roomcast.db` with its WAL, and
    /// `roomcast.lock`, held while the server runs.
    #[arg(long, env = "ROOMCAST_DATA_DIR", default_value = "roomcast-data")]
    pub data_dir: PathBuf,
    /// Keep nothing on disk: a throwaway server whose rooms end with it.
    #[arg(long, env = "ROOMCAST_IN_MEMORY", conflicts_with = "data_dir")]
    pub in_memory: bool,
    /// Keep at most this many of each room's newest messages on disk (all by default).
    #[arg(long, env = "ROOMCAST_RETAIN_MESSAGES")]
    pub retain_messages: Option<u64>,
    /// Drop messages older than this from disk (e.g. `30d`; kept forever by default).
    #[arg(long, env = "ROOMCAST_RETAIN_FOR", value_parser = humantime::parse_duration)]
    pub retain_for: Option<Duration>,
    /// The HS256 secret that signs tokens (at least 32 bytes). Another application holding it
    /// can mint tokens for its users. Default: `jwt-secret` in the data dir, created once (a
    /// random one per run with --in-memory).
    #[arg(long, env = "ROOMCAST_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,
    /// Also accept tokens signed by the private half of this public key (PEM file).
    #[arg(long, env = "ROOMCAST_JWT_PUBLIC_KEY")]
    pub jwt_public_key: Option<PathBuf>,
    /// The public key's algorithm.
    #[arg(long, env = "ROOMCAST_JWT_PUBLIC_KEY_ALG", value_enum, default_value_t = KeyAlg::Rs256)]
    pub jwt_public_key_alg: KeyAlg,
    /// An application's key, `NAME=KEY` (repeat it, or separate with commas in the
    /// environment): a request with the header (or gRPC metadata) `x-api-key: KEY` acts as the
    /// system user NAME, which may create rooms and read, listen and post in every room. Nobody
    /// can sign in as NAME. Use at least 32 random bytes.
    #[arg(
        long = "api-key",
        env = "ROOMCAST_API_KEYS",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub api_keys: Vec<ApiKey>,
    /// Whether people may chat as guests (a nickname, no account).
    #[arg(long, env = "ROOMCAST_GUESTS", default_value_t = true, action = clap::ArgAction::Set)]
    pub guests: bool,
    /// How long the tokens roomcast issues to accounts last.
    #[arg(long, env = "ROOMCAST_TOKEN_TTL", default_value = "7d", value_parser = humantime::parse_duration)]
    pub token_ttl: Duration,
    /// How long a guest's token lasts. A guest's nickname is theirs while it does (and
    /// `--guest-name-grace` after), then free for someone else, who inherits nothing.
    #[arg(long, env = "ROOMCAST_GUEST_TTL", default_value = "24h", value_parser = humantime::parse_duration)]
    pub guest_ttl: Duration,
    /// How long a guest's nickname stays held after their token ends (signed out or expired),
    /// so a newcomer is not taken for them; then the guest's empty rooms and read markers go.
    #[arg(long, env = "ROOMCAST_GUEST_NAME_GRACE", default_value = "1h", value_parser = humantime::parse_duration)]
    pub guest_name_grace: Duration,
    /// Tokens must carry this issuer (`iss`), and roomcast's own do.
    #[arg(long, env = "ROOMCAST_JWT_ISSUER")]
    pub jwt_issuer: Option<String>,
    /// Tokens must carry this audience (`aud`), and roomcast's own do. Without it, tokens that
    /// name any audience are refused.
    #[arg(long, env = "ROOMCAST_JWT_AUDIENCE")]
    pub jwt_audience: Option<String>,
    /// Accounts and guests one address may make back to back; 0 turns the limit off.
    #[arg(long, env = "ROOMCAST_SIGN_UP_BURST", default_value_t = 30)]
    pub sign_up_burst: u32,
    /// After the burst, one more sign-up per address each time this passes.
    #[arg(long, env = "ROOMCAST_SIGN_UP_INTERVAL", default_value = "10s", value_parser = humantime::parse_duration)]
    pub sign_up_interval: Duration,
    /// Sessions one user holds at once (each sign-in opens one): one more ends their oldest.
    #[arg(long, env = "ROOMCAST_MAX_SESSIONS_PER_USER", default_value_t = IdentityOptions::default().max_sessions_per_user)]
    pub max_sessions_per_user: usize,
    /// Share rooms with other nodes through this Redis (`redis://[:password@]host:port/db`, or
    /// `rediss://` for TLS). Without it the node is a single node with the embedded store.
    #[arg(long = "redis", env = "ROOMCAST_REDIS_URL", hide_env_values = true)]
    pub redis_url: Option<String>,
    /// How long after posting a message its poster may edit or delete it (a room's owner and
    /// admins delete any message at any time).
    #[arg(long, env = "ROOMCAST_EDIT_WINDOW", value_parser = humantime::parse_duration, default_value = "15m")]
    pub edit_window: Duration,
    /// Most different emoji one message may carry as reactions.
    #[arg(long, env = "ROOMCAST_MAX_REACTIONS_PER_MESSAGE", default_value_t = Limits::default().max_reactions_per_message)]
    pub max_reactions_per_message: usize,
    /// Largest file one may upload as an attachment (bytes).
    #[arg(long, env = "ROOMCAST_MAX_ATTACHMENT_BYTES", default_value_t = Limits::default().max_attachment_bytes)]
    pub max_attachment_bytes: u64,
    /// Most files one message may carry.
    #[arg(long, env = "ROOMCAST_MAX_ATTACHMENTS_PER_MESSAGE", default_value_t = Limits::default().max_attachments_per_message)]
    pub max_attachments_per_message: usize,
    /// Bytes of files one user keeps, uploads pending and posted (a guest gets
    /// `--guest-share` of it); `1GiB`, `512MiB` or a number of bytes.
    #[arg(long, env = "ROOMCAST_MAX_FILES_BYTES_PER_USER", default_value = "1GiB", value_parser = bytes)]
    pub max_files_bytes_per_user: u64,
    /// Bytes of files every user keeps together.
    #[arg(long, env = "ROOMCAST_MAX_FILES_BYTES", default_value = "10GiB", value_parser = bytes)]
    pub max_files_bytes: u64,
    /// Uploads are refused while the disk holding the files has less than this free.
    #[arg(long, env = "ROOMCAST_MIN_FREE_DISK", default_value = "1GiB", value_parser = bytes)]
    pub min_free_disk: u64,
    /// An upload no message carries is removed after this long.
    #[arg(long, env = "ROOMCAST_UPLOAD_PENDING_FOR", default_value = "10m", value_parser = humantime::parse_duration)]
    pub upload_pending_for: Duration,
    /// Uploads one user may make: `COUNT/PERIOD` (a guest gets `--guest-share` of it).
    #[arg(long, env = "ROOMCAST_UPLOAD_RATE", default_value = "20/10m", value_parser = pace)]
    pub upload_rate: Pace,
    /// Rooms one user may create (direct-message rooms too): `COUNT/PERIOD`.
    #[arg(long, env = "ROOMCAST_ROOM_RATE", default_value = "30/1h", value_parser = pace)]
    pub room_rate: Pace,
    /// Rooms one user may own at once (a guest gets `--guest-share` of it).
    #[arg(long, env = "ROOMCAST_MAX_ROOMS_PER_USER", default_value_t = Limits::default().max_rooms_per_user)]
    pub max_rooms_per_user: usize,
    /// Listeners one user may hold open across every room (a guest gets `--guest-share` of it).
    #[arg(long, env = "ROOMCAST_MAX_USER_LISTENERS", default_value_t = Limits::default().max_user_listeners)]
    pub max_user_listeners: usize,
    /// Read markers one user may move: `COUNT/PERIOD`.
    #[arg(long, env = "ROOMCAST_READ_RATE", default_value = "120/1m", value_parser = pace)]
    pub read_rate: Pace,
    /// The share of each per-user limit a guest gets, in percent.
    #[arg(long, env = "ROOMCAST_GUEST_SHARE", default_value_t = Limits::default().guest_share, value_parser = clap::value_parser!(u8).range(1..=100))]
    pub guest_share: u8,
    /// Where attachments are kept (created if missing); by default `files` in the data dir.
    /// With `--redis`, a directory every node shares (a network file system), or each node
    /// serves only the files uploaded to it. With `--in-memory` and no directory, uploads are
    /// refused.
    #[arg(long, env = "ROOMCAST_FILES_DIR")]
    pub files_dir: Option<PathBuf>,
    /// How long a room without listeners or posts keeps its messages in memory (with
    /// `--redis`: stays loaded at all); then its history is read from the store or Redis.
    #[arg(long, env = "ROOMCAST_ROOM_UNLOAD_AFTER", value_parser = humantime::parse_duration, default_value = "10m")]
    pub room_unload_after: Duration,
    /// `--redis` names a Redis Cluster (its seed nodes, comma-separated).
    #[arg(long, env = "ROOMCAST_REDIS_CLUSTER", requires = "redis_url")]
    pub redis_cluster: bool,
    /// This node's name in logs, metrics and `/healthz` (default: hostname and process id).
    #[arg(long, env = "ROOMCAST_NODE_ID", value_parser = node_id)]
    pub node_id: Option<String>,
    /// Messages each room's stream keeps in Redis (approximately); a resume from further back
    /// gets an explicit gap.
    #[arg(long, env = "ROOMCAST_REDIS_HISTORY", default_value_t = 10_000)]
    pub redis_history: usize,
    /// Message ids each node takes from Redis at a time. Only tests lower it, to see a node
    /// move to its next block.
    #[arg(long, hide = true, default_value_t = crate::redis::ID_BLOCK, value_parser = clap::value_parser!(u64).range(2..))]
    pub redis_id_block: u64,
}

/// A size in bytes: a number, or one with `KiB`, `MiB`, `GiB` or `TiB` (`K`, `M`, `G`, `T` the
/// same).
fn bytes(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let digits = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (number, unit) = s.split_at(digits);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("{s:?} is not a size: give bytes, or 512MiB, 10GiB"))?;
    let shift = match unit.trim().trim_end_matches("iB").trim_end_matches('B') {
        "" => 0,
        "K" | "k" => 10,
        "M" => 20,
        "G" => 30,
        "T" => 40,
        other => return Err(format!("{other:?} is not a unit: use KiB, MiB, GiB or TiB")),
    };
    number
        .checked_mul(1 << shift)
        .ok_or_else(|| format!("{s} is too large"))
}

/// A pace: `COUNT/PERIOD`, at most COUNT in any PERIOD (`30/1h`, `20/10m`); `0/1s` turns it
/// off.
fn pace(s: &str) -> Result<Pace, String> {
    let (count, per) = s
        .split_once('/')
        .ok_or_else(|| format!("{s:?} is not COUNT/PERIOD, like 30/1h"))?;
    let count: u32 = count
        .trim()
        .parse()
        .map_err(|_| format!("{count:?} is not a count"))?;
    let per = humantime::parse_duration(per.trim()).map_err(|e| format!("{per:?}: {e}"))?;
    if per.is_zero() {
        return Err("the period must be longer than nothing".into());
    }
    Ok(Pace::new(count, per))
}

/// A node id names keys and presence entries in Redis: letters, digits, `-`, `_` and `.`.
fn node_id(s: &str) -> Result<String, String> {
    let fits = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    if s.is_empty() || s.len() > 64 || !s.chars().all(fits) {
        return Err("1 to 64 letters, digits, '-', '_' or '.'".into());
    }
    Ok(s.to_owned())
}

/// The algorithm of `--jwt-public-key`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum KeyAlg {
    /// RSA with SHA-256.
    #[value(name = "RS256")]
    Rs256,
    /// Ed25519.
    #[value(name = "EdDSA")]
    EdDsa,
}

/// Says in one line why the server cannot start, and exits with status 1.
pub fn refuse_to_start(error: &StartError) -> ! {
    eprintln!("error: {error}");
    std::process::exit(1);
}

impl CoreArgs {
    /// The core configuration these flags describe.
    pub fn config(&self) -> Config {
        let who = |admin_only: bool| if admin_only { Who::Admins } else { Who::Anyone };
        Config {
            limits: Limits {
                message_max_bytes: self.max_message_bytes,
                max_rooms: self.max_rooms,
                max_listeners_per_room: self.max_listeners_per_room,
                max_listeners_per_user: self.max_listeners_per_user,
                max_listeners: self.max_listeners,
                announce_presence_up_to: self.announce_presence_up_to,
                max_reactions_per_message: self.max_reactions_per_message,
                max_attachment_bytes: self.max_attachment_bytes,
                max_attachments_per_message: self.max_attachments_per_message,
                guest_share: self.guest_share,
                max_rooms_per_user: self.max_rooms_per_user,
                max_user_listeners: self.max_user_listeners,
                room_pace: Some(self.room_rate).filter(|p| p.count > 0),
                upload_pace: Some(self.upload_rate).filter(|p| p.count > 0),
                read_pace: Some(self.read_rate).filter(|p| p.count > 0),
                submit_rate: (self.rate_burst > 0).then_some(Rate {
                    burst: self.rate_burst,
                    per_second: self.rate_per_second,
                }),
                ..Limits::default()
            },
            history_len: self.history_len,
            room_idle_expiry: self.room_idle_expiry,
            unload_after: Some(self.room_unload_after),
            policy: Policy {
                admins: self.admins.iter().cloned().collect::<BTreeSet<_>>(),
                create_rooms: who(self.admin_only_create),
                delete_rooms: who(self.admin_only_delete),
                edit_window: self.edit_window,
                systems: self.api_keys.iter().map(|k| k.user.clone()).collect(),
            },
            ..Config::default()
        }
    }

    /// This node's name when it shares rooms with others (`--redis`), for its logs.
    pub fn shared_node_id(&self) -> Option<String> {
        self.redis_url.as_ref().map(|_| self.node_id())
    }

    /// This node's name: `--node-id`, or the hostname and process id.
    pub fn node_id(&self) -> String {
        self.node_id.clone().unwrap_or_else(|| {
            let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|h| h.trim().to_owned())
                .unwrap_or_else(|_| "node".to_owned());
            let host: String = host
                .chars()
                .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
                .take(40)
                .collect();
            format!("{host}-{}", std::process::id())
        })
    }

    /// Where attachments are kept: `--files-dir`, or `files` in the data dir (none with
    /// `--in-memory`).
    pub fn files_dir(&self) -> Option<PathBuf> {
        match (&self.files_dir, self.in_memory) {
            (Some(dir), _) => Some(dir.clone()),
            (None, true) => None,
            (None, false) => {
                if self.redis_url.is_some() {
                    tracing::warn!(
                        "attachments are kept in this node's data dir: give every node one \
                         --files-dir they share, or each serves only what was uploaded to it"
                    );
                }
                Some(self.data_dir.join("files"))
            }
        }
    }

    /// With `--set-password NAME`: sets that account's password from standard input (making
    /// the account if there is none) in the data dir, or in Redis with `--redis`, says what it
    /// did and exits; otherwise returns. Exits with 1 and the reason if it cannot.
    pub fn set_password_or_continue(&self) {
        let Some(name) = &self.set_password else {
            return;
        };
        match self.set_password(name) {
            Ok(said) => {
                println!("{said}");
                std::process::exit(0);
            }
            Err(e) => refuse_to_start(&e),
        }
    }

    fn set_password(&self, name: &str) -> Result<String, StartError> {
        use std::io::BufRead as _;
        if self.in_memory && self.redis_url.is_none() {
            return Err(StartError::Account(
                "--set-password needs a data dir or --redis: --in-memory keeps no account".into(),
            ));
        }
        let mut password = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut password)
            .map_err(|e| StartError::Account(format!("cannot read the password: {e}")))?;
        let password = password.trim_end_matches(['\n', '\r']).to_owned();
        let store = match &self.redis_url {
            Some(_) => None,
            None => Some(Arc::new(Store::open(&self.data_dir)?)),
        };
        let hub = self.hub_options();
        let identity =
            crate::hub::open_identity(self.identity_options()?, hub.redis.as_ref(), store)?;
        let identity = Arc::new(identity);
        let (id, made) =
            futures_lite::future::block_on(identity.set_password(name.to_owned(), password))
                .map_err(|e| StartError::Account(e.to_string()))?;
        let admin = if self.admins.iter().any(|a| a == name) {
            " (an admin)"
        } else {
            ""
        };
        Ok(match made {
            true => format!("made the account {name}{admin}: {id}"),
            false => format!("set the password of {name}{admin}: {id}"),
        })
    }

    /// Opens the data dir (unless `--in-memory`), restores from it and starts the hub.
    pub fn start_hub(&self) -> Result<Hub, StartError> {
        let store = if self.in_memory {
            tracing::warn!("--in-memory: nothing is kept when the server stops");
            None
        } else {
            let store = Store::open(&self.data_dir)?;
            let retention = Retention {
                messages_per_room: self.retain_messages,
                max_age: self.retain_for,
            };
            Some((Arc::new(store), retention))
        };
        Hub::start(
            self.config(),
            self.hub_options(),
            store,
            self.identity_options()?,
        )
    }

    /// The identity options these flags describe (reads the public key file).
    pub fn identity_options(&self) -> Result<IdentityOptions, StartError> {
        let public_key = match &self.jwt_public_key {
            None => None,
            Some(path) => {
                let pem = std::fs::read(path)
                    .map_err(|e| IdentityError::PublicKey(format!("{}: {e}", path.display())))?;
                let alg = match self.jwt_public_key_alg {
                    KeyAlg::Rs256 => Algorithm::RS256,
                    KeyAlg::EdDsa => Algorithm::EdDSA,
                };
                Some((alg, pem))
            }
        };
        Ok(IdentityOptions {
            secret: self.jwt_secret.as_ref().map(|s| s.as_bytes().to_vec()),
            public_key,
            issuer: self.jwt_issuer.clone(),
            audience: self.jwt_audience.clone(),
            api_keys: self.api_keys.clone(),
            guests: self.guests,
            token_ttl: self.token_ttl,
            guest_ttl: self.guest_ttl,
            guest_name_grace: self.guest_name_grace,
            sign_ups: (self.sign_up_burst > 0).then_some(Allowance {
                burst: self.sign_up_burst,
                every: self.sign_up_interval,
            }),
            max_sessions_per_user: self.max_sessions_per_user,
            max_name_chars: Limits::default().user_name_max_chars,
            // An admin's name is the operator's account's alone.
            reserved: self.admins.iter().cloned().collect(),
            ..IdentityOptions::default()
        })
    }

    /// The hub options these flags describe.
    pub fn hub_options(&self) -> HubOptions {
        HubOptions {
            room_buffer: self.room_buffer,
            record_inputs: self.record_inputs.clone(),
            redis: self.redis_url.as_ref().map(|url| RedisOptions {
                url: url.clone(),
                node_id: self.node_id(),
                history: self.redis_history.max(1),
                rate: self.config().limits.submit_rate,
                cluster: self.redis_cluster,
                id_block: self.redis_id_block,
            }),
            files: self.files_dir(),
            file_quotas: crate::files::Quotas {
                per_user: self.max_files_bytes_per_user,
                total: self.max_files_bytes,
                min_free: self.min_free_disk,
                pending_for: self.upload_pending_for,
                guest_share: self.guest_share,
            },
            ..HubOptions::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        core: CoreArgs,
    }

    #[test]
    fn defaults_match_the_core_defaults() {
        let cli = Cli::parse_from(["roomcast"]);
        assert_eq!(cli.core.config(), Config::default());
        let files = Some(PathBuf::from("roomcast-data/files"));
        assert_eq!(
            cli.core.hub_options(),
            HubOptions {
                files,
                ..HubOptions::default()
            }
        );
    }

    #[test]
    fn flags_reach_the_config() {
        let cli = Cli::parse_from([
            "roomcast",
            "--rate-burst=0",
            "--room-idle-expiry=90s",
            "--admins=root,ops",
            "--admin-only-delete",
            "--history-len=50",
            "--retain-for=30d",
            "--data-dir=/srv/chat",
        ]);
        assert_eq!(cli.core.retain_for, Some(Duration::from_secs(30 * 86_400)));
        assert_eq!(cli.core.data_dir, PathBuf::from("/srv/chat"));
        assert!(!cli.core.in_memory);
        assert!(Cli::try_parse_from(["roomcast", "--in-memory", "--data-dir=x"]).is_err());
        let config = cli.core.config();
        assert_eq!(config.limits.submit_rate, None);
        assert_eq!(config.room_idle_expiry, Some(Duration::from_secs(90)));
        assert_eq!(config.history_len, 50);
        assert_eq!(config.policy.delete_rooms, Who::Admins);
        assert_eq!(config.policy.create_rooms, Who::Anyone);
        assert!(config.policy.admins.contains("ops"));
    }
}
