//! Pub/sub: pushes turned into entries and notices, and the probe that finds a wedged
//! subscriber and replaces it.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use redis::{PushKind, Value};
use roomcast_core::log::{Committed, Draft};
use roomcast_core::{RoomId, Seq, UserId};

use super::keys::Keys;
use super::reply::text;
use super::{IdentityEvent, Outcome, PROBE_DEADLINE, PROBE_EVERY};

use super::node::Node;

impl Node {
    /// Turns pub/sub pushes into entries, and probes that pub/sub still delivers.
    pub(super) async fn watch_pubsub(self: Arc<Self>) {
        let probe = self.clone();
        let probing = async move {
            loop {
                smol::Timer::after(PROBE_EVERY).await;
                let _: redis::RedisResult<Value> = redis::cmd("PUBLISH")
                    .arg(probe.probe_channel())
                    .arg("probe")
                    .query_async(&mut probe.conn())
                    .await;
                let silent = probe.probed.lock().expect("not poisoned").elapsed();
                if silent > PROBE_DEADLINE {
                    probe.health.pubsub_ok.store(false, Ordering::SeqCst);
                    probe.health.wedged.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(?silent, "pub/sub delivered no probe; reconnecting it");
                    probe.reconnect_pubsub().await;
                }
            }
        };
        let this = self.clone();
        let receiving = async move {
            while let Ok(push) = this.pushes.recv().await {
                this.on_push(push);
            }
        };
        futures_lite::future::or(probing, receiving).await;
    }

    pub(super) async fn reconnect_pubsub(&self) {
        match self.target.connect(Some(&self.push_tx)).await {
            Ok(mut fresh) => {
                let channels: Vec<String> = self
                    .channels
                    .lock()
                    .expect("not poisoned")
                    .iter()
                    .cloned()
                    .collect();
                for channel in &channels {
                    let _ = fresh.subscribe(channel).await;
                }
                *self.pubsub.lock().expect("not poisoned") = fresh;
                *self.probed.lock().expect("not poisoned") = Instant::now();
                self.tell(Outcome::Resubscribed);
            }
            Err(e) => tracing::warn!(error = %e, "cannot reconnect pub/sub"),
        }
    }

    #[allow(
        clippy::wildcard_enum_match_arm,
        reason = "a foreign, non-exhaustive enum"
    )]
    pub(super) fn on_push(&self, push: redis::PushInfo) {
        match push.kind {
            PushKind::Message => {
                let (Some(channel), Some(payload)) = (
                    push.data.first().and_then(text),
                    push.data.get(1).and_then(text),
                ) else {
                    return;
                };
                if channel == super::keys::IDENTITY_EVENTS {
                    match IdentityEvent::parse(&payload) {
                        Ok(event) => self.tell(Outcome::Identity(event)),
                        Err(e) => {
                            tracing::warn!(%payload, error = %e, "an identity event not read")
                        }
                    }
                    return;
                }
                if channel == self.probe_channel() {
                    *self.probed.lock().expect("not poisoned") = Instant::now();
                    self.health.pubsub_ok.store(true, Ordering::SeqCst);
                    return;
                }
                let Some(room) =
                    Keys::room_of(&channel).and_then(|r| RoomId::parse(r, usize::MAX).ok())
                else {
                    return;
                };
                if payload == "closed" {
                    self.tell(Outcome::Missing {
                        room,
                        deleted: true,
                    });
                    return;
                }
                if payload == "access" {
                    self.tell(Outcome::AccessChanged(room));
                    return;
                }
                if payload == "epoch" {
                    self.tell(Outcome::EpochChanged(room));
                    return;
                }
                if let Some(("typing", user)) = payload.split_once(' ') {
                    if let Ok(user) = UserId::parse(user, usize::MAX) {
                        self.tell(Outcome::Committed(Committed {
                            typing: vec![user],
                            ..Committed::of(room, 0)
                        }));
                    }
                    return;
                }
                let announced = match payload.split_once(' ') {
                    Some(("joined", user)) => Some((user, true)),
                    Some(("left", user)) => Some((user, false)),
                    Some(_) | None => None,
                };
                if let Some((user, present)) = announced {
                    if let Ok(user) = UserId::parse(user, usize::MAX) {
                        self.tell(Outcome::Committed(Committed {
                            presence: vec![(user, present)],
                            ..Committed::of(room, 0)
                        }));
                    }
                    return;
                }
                let mut parts = payload.splitn(3, ' ');
                let (Some(epoch), Some(seq), Some(body)) =
                    (parts.next(), parts.next(), parts.next())
                else {
                    return;
                };
                let (Ok(epoch), Ok(seq), Ok(draft)) = (
                    epoch.parse(),
                    seq.parse(),
                    serde_json::from_str::<Draft>(body),
                ) else {
                    return;
                };
                self.tell(Outcome::Committed(Committed {
                    messages: vec![Arc::new(draft.at(Seq(seq)))],
                    ..Committed::of(room, epoch)
                }));
            }
            PushKind::Disconnection => {
                // The manager reconnects and resubscribes; what was published meanwhile is read.
                self.tell(Outcome::Resubscribed);
            }
            #[allow(
                clippy::wildcard_enum_match_arm,
                reason = "a foreign, non-exhaustive enum"
            )]
            _ => {}
        }
    }
}
