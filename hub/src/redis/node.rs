//! [`Node`]: the log thread's state, its connections, and how it runs the hub's jobs.

use std::collections::BTreeSet;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use redis::Value;
use roomcast_core::log::{Committed, LogRead};
use roomcast_core::{MessageId, Seq};

use super::keys::{Keys, ROOMS, node_rooms};
use super::link::{Link, Target};
use super::reply::entries;
use super::scripts::{Scripts, new_epoch};
use super::{Job, LogHealth, OlderRead, Outcome, RedisOptions, redact};

/// The log thread's state.
pub(super) struct Node {
    pub(super) target: Target,
    pub(super) options: RedisOptions,
    pub(super) commands: Link,
    pub(super) pubsub: Mutex<Link>,
    /// Channels subscribed to (the rooms this node serves).
    pub(super) channels: Mutex<BTreeSet<String>>,
    pub(super) outcomes: async_channel::Sender<Outcome>,
    pub(super) scripts: Scripts,
    pub(super) health: Arc<LogHealth>,
    /// When the last probe came back.
    pub(super) probed: Mutex<Instant>,
    pub(super) pushes: async_channel::Receiver<redis::PushInfo>,
    pub(super) push_tx: async_channel::Sender<redis::PushInfo>,
}

impl Node {
    pub(super) async fn connect(
        target: Target,
        options: RedisOptions,
        outcomes: async_channel::Sender<Outcome>,
        health: Arc<LogHealth>,
    ) -> Result<(Node, MessageId), String> {
        let url = redact(&options.url);
        let unreachable = |e: redis::RedisError| format!("cannot reach Redis at {url}: {e}");
        let mut commands = target.connect(None).await.map_err(unreachable)?;
        let (push_tx, pushes) = async_channel::unbounded();
        let pubsub = target.connect(Some(&push_tx)).await.map_err(unreachable)?;
        let end: u64 = redis::cmd("INCRBY")
            .arg("rc:ids")
            .arg(options.id_block)
            .query_async(&mut commands)
            .await
            .map_err(|e| format!("cannot reserve message ids on Redis at {url}: {e}"))?;
        health.pubsub_ok.store(true, Ordering::SeqCst);
        let node = Node {
            target,
            options,
            commands,
            pubsub: Mutex::new(pubsub),
            channels: Mutex::new(BTreeSet::new()),
            outcomes,
            scripts: Scripts::new(),
            health,
            probed: Mutex::new(Instant::now()),
            pushes,
            push_tx,
        };
        node.subscribe(node.probe_channel()).await;
        node.subscribe(super::keys::IDENTITY_EVENTS.to_owned())
            .await;
        let first = MessageId(end - node.options.id_block + 1);
        Ok((node, first))
    }

    pub(super) fn probe_channel(&self) -> String {
        format!("rc:probe:{}", self.options.node_id)
    }

    pub(super) fn tell(&self, outcome: Outcome) {
        let _ = self.outcomes.try_send(outcome);
    }

    pub(super) fn conn(&self) -> Link {
        self.commands.clone()
    }

    pub(super) async fn subscribe(&self, channel: String) {
        let mut pubsub = self.pubsub.lock().expect("not poisoned").clone();
        if let Err(e) = pubsub.subscribe(&channel).await {
            tracing::warn!(%channel, error = %e, "subscribe failed; the room is read every few seconds");
        }
        self.channels.lock().expect("not poisoned").insert(channel);
    }

    pub(super) async fn run(self: Arc<Self>, job: Job) {
        match job {
            Job::Append(draft) => {
                let (id, room) = (draft.id, draft.room.clone());
                let result = self.append(draft).await;
                self.tell(Outcome::Appended { id, room, result });
            }
            Job::Fetch { room, after } => {
                if let Some(outcome) = self.read(&room, after).await {
                    self.tell(outcome);
                }
            }
            Job::Load { room, history_len } => {
                let stored = self.load(&room, history_len).await;
                if let Ok(Some(_)) = &stored {
                    self.subscribe(Keys::of(room.as_str()).channel).await;
                }
                self.tell(Outcome::Loaded { room, stored });
            }
            Job::CatchUp { room, after } => {
                // In this order, each read made after the hub asked: the room's standing (no
                // messages: a refused stranger costs Redis little), then its log, then the
                // word that both are in.
                let stored = self.load(&room, 0).await;
                self.tell(Outcome::Loaded {
                    room: room.clone(),
                    stored,
                });
                if let Some(read) = self.read(&room, after).await {
                    self.tell(read);
                }
                self.tell(Outcome::CaughtUp(room));
            }
            Job::Recreate {
                room,
                access,
                created_at,
            } => {
                let epoch = new_epoch();
                let _ = self.create(&room, &access, created_at, epoch).await;
                let _: redis::RedisResult<Value> = redis::cmd("ZADD")
                    .arg(ROOMS)
                    .arg(0)
                    .arg(room.as_str())
                    .query_async(&mut self.conn())
                    .await;
                tracing::warn!(%room, "Redis lost this room's history; recreated it under a new epoch");
                self.tell(Outcome::Committed(Committed {
                    read: Some(LogRead {
                        after: Seq::ZERO,
                        first_held: Seq(1),
                        latest: Seq::ZERO,
                    }),
                    ..Committed::of(room, epoch)
                }));
            }
            Job::Typing { room, user } => {
                let published: redis::RedisResult<Value> = redis::cmd("PUBLISH")
                    .arg(Keys::of(room.as_str()).channel)
                    .arg(format!("typing {user}"))
                    .query_async(&mut self.conn())
                    .await;
                if let Err(e) = published {
                    tracing::debug!(%room, %user, error = %e, "typing not shared");
                }
            }
            Job::Here { room, user, here } => {
                let keys = Keys::of(room.as_str());
                let node = &self.options.node_id;
                let mut conn = self.conn();
                if here {
                    let _: redis::RedisResult<Value> = redis::cmd("SADD")
                        .arg(node_rooms(node))
                        .arg(room.as_str())
                        .query_async(&mut conn)
                        .await;
                }
                let done: redis::RedisResult<Value> = self
                    .scripts
                    .here
                    .key(&keys.present)
                    .key(&keys.users)
                    .arg(format!("{node}|{user}"))
                    .arg(user.as_str())
                    .arg(if here { "1" } else { "0" })
                    .arg(&keys.channel)
                    .invoke_async(&mut conn)
                    .await;
                if let Err(e) = done {
                    tracing::warn!(%room, %user, error = %e, "presence not shared");
                }
            }
            Job::Older { room, read, reply } => {
                let log = Keys::of(room.as_str()).log;
                let cmd = match read {
                    OlderRead::After {
                        after,
                        below,
                        limit,
                    } => {
                        let mut cmd = redis::cmd("XRANGE");
                        cmd.arg(&log)
                            .arg(format!("({}-0", after.0))
                            .arg(format!("({}-0", below.0))
                            .arg("COUNT")
                            .arg(limit.max(1));
                        cmd
                    }
                    OlderRead::Before { before, limit } => {
                        let mut cmd = redis::cmd("XREVRANGE");
                        cmd.arg(&log)
                            .arg(format!("({}-0", before.0))
                            .arg("-")
                            .arg("COUNT")
                            .arg(limit.max(1));
                        cmd
                    }
                    OlderRead::First => {
                        let mut cmd = redis::cmd("XRANGE");
                        cmd.arg(&log).arg("-").arg("+").arg("COUNT").arg(1);
                        cmd
                    }
                };
                let read_back: redis::RedisResult<Value> = cmd.query_async(&mut self.conn()).await;
                let answer = match read_back {
                    Ok(v) => {
                        let mut messages = entries(&v);
                        if matches!(read, OlderRead::Before { .. }) {
                            messages.reverse();
                        }
                        self.erase(&room, &mut messages)
                            .await
                            .map(|()| messages)
                            .map_err(|e| e.to_string())
                    }
                    Err(e) => Err(e.to_string()),
                };
                let _ = reply.try_send(answer);
            }
            Job::ListRooms {
                user,
                after,
                limit,
                policy,
                ticket,
            } => {
                let page = self.list(&user, after.as_deref(), limit, &policy).await;
                self.tell(Outcome::Listed { ticket, page });
            }
            Job::NewEpoch { room, epoch } => {
                let keys = Keys::of(room.as_str());
                let started: redis::RedisResult<Value> = self
                    .scripts
                    .new_epoch
                    .key(&keys.meta)
                    .arg(epoch)
                    .arg(new_epoch())
                    .arg(&keys.channel)
                    .invoke_async(&mut self.conn())
                    .await;
                if let Err(e) = started {
                    tracing::warn!(%room, error = %e, "cannot start a new epoch");
                }
            }
            Job::Unsubscribe(room) => {
                let channel = Keys::of(room.as_str()).channel;
                self.channels.lock().expect("not poisoned").remove(&channel);
                let mut pubsub = self.pubsub.lock().expect("not poisoned").clone();
                let _ = pubsub.unsubscribe(&channel).await;
            }
            Job::Leave(done) => {
                self.reap(&self.options.node_id).await;
                let _ = done.send(());
            }
            Job::Depart(user) => match self.depart(&user).await {
                Ok((rooms, markers)) => {
                    tracing::info!(%user, rooms, markers, "a departed guest's leftovers went");
                }
                Err(e) => {
                    tracing::warn!(%user, error = %e, "cannot reclaim a departed guest's leftovers")
                }
            },
            Job::CountRooms => {
                let counted: redis::RedisResult<usize> = redis::cmd("ZCARD")
                    .arg(ROOMS)
                    .query_async(&mut self.conn())
                    .await;
                if let Ok(rooms) = counted {
                    self.tell(Outcome::Rooms(rooms));
                }
            }
            Job::ReserveIds => {
                let reserved: redis::RedisResult<u64> = redis::cmd("INCRBY")
                    .arg("rc:ids")
                    .arg(self.options.id_block)
                    .query_async(&mut self.conn())
                    .await;
                match reserved {
                    Ok(end) => {
                        let start = end - self.options.id_block + 1;
                        self.tell(Outcome::Ids(MessageId(start)));
                    }
                    Err(e) => tracing::error!(error = %e, "cannot reserve message ids"),
                }
            }
        }
    }
}
