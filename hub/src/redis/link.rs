//! [`Link`]: a connection to Redis, standalone or a Redis Cluster, for commands or for pub/sub.
//!
//! Standalone uses the `redis` crate's connection manager (it reconnects); a cluster uses its
//! cluster connection (it follows the slot map and reconnects). Both speak RESP3, push pub/sub
//! messages to the same channel and resubscribe by themselves after a reconnect. Every key of a
//! room shares one hash tag, so each script runs on the one shard that holds the room.

use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, PushInfo, RedisFuture, RedisResult, ToRedisArgs, Value};

/// How long to wait for Redis to connect or answer.
const TIMEOUT: Duration = Duration::from_secs(5);

/// Where the nodes' Redis is.
#[derive(Clone)]
pub(crate) enum Target {
    Standalone(Box<redis::Client>),
    Cluster(Vec<String>),
}

impl Target {
    /// `url` (several, comma-separated, for a cluster's seed nodes).
    pub(crate) fn parse(url: &str, cluster: bool) -> Result<Target, String> {
        if cluster {
            let seeds = url.split(',').map(|u| resp3(u.trim())).collect();
            return Ok(Target::Cluster(seeds));
        }
        redis::Client::open(resp3(url))
            .map(|client| Target::Standalone(Box::new(client)))
            .map_err(|e| format!("--redis {}: {e}", super::redact(url)))
    }

    /// A connection for commands; with `pushes`, one that also receives pub/sub messages.
    pub(crate) async fn connect(
        &self,
        pushes: Option<&async_channel::Sender<PushInfo>>,
    ) -> RedisResult<Link> {
        let forward = pushes.map(|tx| {
            let tx = tx.clone();
            move |info: PushInfo| tx.try_send(info).map_err(|_| redis::aio::SendError)
        });
        match self {
            Target::Standalone(client) => {
                let mut config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(TIMEOUT))
                    .set_response_timeout(Some(TIMEOUT));
                if let Some(forward) = forward {
                    config = config
                        .set_push_sender(forward)
                        .set_automatic_resubscription();
                }
                let manager = client.get_connection_manager_with_config(config).await?;
                Ok(Link::Standalone(manager))
            }
            Target::Cluster(seeds) => {
                let mut builder = ClusterClient::builder(seeds.clone())
                    .use_protocol(redis::ProtocolVersion::RESP3)
                    .connection_timeout(TIMEOUT)
                    .response_timeout(TIMEOUT);
                if let Some(forward) = forward {
                    builder = builder.push_sender(forward);
                }
                let connection = builder.build()?.get_async_connection().await?;
                Ok(Link::Cluster(connection))
            }
        }
    }

    /// A blocking connection (identity's directory).
    pub(crate) fn connect_blocking(&self) -> RedisResult<Box<dyn redis::ConnectionLike + Send>> {
        match self {
            Target::Standalone(client) => {
                let conn = client.get_connection_with_timeout(TIMEOUT)?;
                conn.set_read_timeout(Some(TIMEOUT))?;
                conn.set_write_timeout(Some(TIMEOUT))?;
                Ok(Box::new(conn))
            }
            Target::Cluster(seeds) => {
                let client = ClusterClient::builder(seeds.clone())
                    .connection_timeout(TIMEOUT)
                    .response_timeout(TIMEOUT)
                    .build()?;
                Ok(Box::new(client.get_connection()?))
            }
        }
    }
}

/// Pub/sub needs RESP3 (push messages on a multiplexed connection).
fn resp3(url: &str) -> String {
    if url.contains("protocol=") {
        url.to_owned()
    } else if url.contains('?') {
        format!("{url}&protocol=resp3")
    } else {
        format!("{url}?protocol=resp3")
    }
}

/// A connection to standalone Redis or to a cluster. Cheap to clone (both multiplex).
#[derive(Clone)]
pub(crate) enum Link {
    Standalone(ConnectionManager),
    Cluster(ClusterConnection),
}

impl Link {
    pub(crate) async fn subscribe(&mut self, channel: impl ToRedisArgs) -> RedisResult<()> {
        match self {
            Link::Standalone(c) => c.subscribe(channel).await,
            Link::Cluster(c) => c.subscribe(channel).await,
        }
    }

    pub(crate) async fn unsubscribe(&mut self, channel: impl ToRedisArgs) -> RedisResult<()> {
        match self {
            Link::Standalone(c) => c.unsubscribe(channel).await,
            Link::Cluster(c) => c.unsubscribe(channel).await,
        }
    }
}

impl ConnectionLike for Link {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Link::Standalone(c) => c.req_packed_command(cmd),
            Link::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Link::Standalone(c) => c.req_packed_commands(pipeline, offset, count),
            Link::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Link::Standalone(c) => c.get_db(),
            Link::Cluster(c) => c.get_db(),
        }
    }
}
