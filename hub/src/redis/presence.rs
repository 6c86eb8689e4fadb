//! Presence across nodes: each node's heartbeat, and the reaping of nodes gone silent.

use std::sync::Arc;

use redis::Value;

use super::keys::{Keys, NODES, node_rooms};
use super::{DEAD_AFTER, HEARTBEAT_EVERY};

use super::node::Node;

impl Node {
    /// Removes `node`'s presence from every room it had any in.
    pub(super) async fn reap(&self, node: &str) {
        let mut conn = self.conn();
        let rooms: Vec<String> = redis::cmd("SMEMBERS")
            .arg(node_rooms(node))
            .query_async(&mut conn)
            .await
            .unwrap_or_default();
        for room in rooms {
            let keys = Keys::of(&room);
            let _: redis::RedisResult<Value> = self
                .scripts
                .reap
                .key(&keys.present)
                .key(&keys.users)
                .arg(node)
                .arg(&keys.channel)
                .invoke_async(&mut conn)
                .await;
        }
        // Two keys in different slots of a cluster: two commands.
        let _: redis::RedisResult<Value> = redis::cmd("DEL")
            .arg(node_rooms(node))
            .query_async(&mut conn)
            .await;
        let _: redis::RedisResult<Value> = redis::cmd("ZREM")
            .arg(NODES)
            .arg(node)
            .query_async(&mut conn)
            .await;
    }

    /// Says every [`HEARTBEAT_EVERY`] that this node lives, and reaps the presence of nodes
    /// silent for [`DEAD_AFTER`] (one survivor each, by a lease).
    pub(super) async fn heartbeat(self: Arc<Self>) {
        // A node restarted under the same id: what its last run left is stale.
        self.reap(&self.options.node_id).await;
        loop {
            let now = u64::try_from(
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_millis()),
            )
            .unwrap_or(u64::MAX);
            let mut conn = self.conn();
            let _: redis::RedisResult<Value> = redis::cmd("ZADD")
                .arg(NODES)
                .arg(now)
                .arg(&self.options.node_id)
                .query_async(&mut conn)
                .await;
            let dead: Vec<String> = redis::cmd("ZRANGE")
                .arg(NODES)
                .arg("-inf")
                .arg(now.saturating_sub(u64::try_from(DEAD_AFTER.as_millis()).unwrap_or(0)))
                .arg("BYSCORE")
                .query_async(&mut conn)
                .await
                .unwrap_or_default();
            for node in dead {
                let lease: redis::RedisResult<Option<String>> = redis::cmd("SET")
                    .arg(format!("rc:reap:{node}"))
                    .arg(&self.options.node_id)
                    .arg("NX")
                    .arg("PX")
                    .arg(30_000)
                    .query_async(&mut conn)
                    .await;
                if let Ok(Some(_)) = lease {
                    tracing::warn!(%node, "a node went silent; its users leave");
                    self.reap(&node).await;
                }
            }
            smol::Timer::after(HEARTBEAT_EVERY).await;
        }
    }
}
