//! [`SessionEnd`]: an open stream learns that the session it was opened with has ended.
//!
//! A token is checked when a stream opens; without this, a tab signed out elsewhere (or a
//! session revoked on another node) would go on receiving a private room until it reconnected.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use event_listener::{Event, EventListener};

/// The sessions some stream is watching, by id. Entries live as long as a [`SessionEnd`] does.
#[derive(Debug, Default)]
pub(crate) struct Endings {
    watched: Mutex<HashMap<String, Arc<Watched>>>,
}

#[derive(Debug, Default)]
struct Watched {
    ended: AtomicBool,
    event: Event,
}

impl Endings {
    /// A watch on `sid` (`None`: a token minted elsewhere, which only its expiry ends).
    pub(crate) fn watch(self: &Arc<Self>, sid: Option<&str>) -> SessionEnd {
        let watch = sid.map(|sid| {
            let mut watched = self.lock();
            let entry = Arc::clone(watched.entry(sid.to_owned()).or_default());
            // Listening from the start, once: waiting costs nothing per wake-up after.
            let listener = entry.event.listen();
            Watch {
                endings: Arc::clone(self),
                sid: sid.to_owned(),
                watched: entry,
                listener,
            }
        });
        SessionEnd { watch }
    }

    /// `sid` ended: every stream watching it is told.
    pub(crate) fn end(&self, sid: &str) {
        if let Some(watched) = self.lock().remove(sid) {
            watched.ended.store(true, Ordering::Release);
            watched.event.notify(usize::MAX);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Watched>>> {
        self.watched.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Resolves when a session ends: signed out, here or on another node.
#[derive(Debug)]
pub struct SessionEnd {
    watch: Option<Watch>,
}

#[derive(Debug)]
struct Watch {
    endings: Arc<Endings>,
    sid: String,
    watched: Arc<Watched>,
    listener: EventListener,
}

impl SessionEnd {
    /// A watch that never fires (a caller without a session).
    pub fn never() -> SessionEnd {
        SessionEnd { watch: None }
    }

    /// Whether the session has ended.
    pub fn ended(&self) -> bool {
        self.watch
            .as_ref()
            .is_some_and(|w| w.watched.ended.load(Ordering::Acquire))
    }

    /// Waits until the session ends (forever, for one that cannot). Cancel-safe.
    pub async fn wait(&mut self) {
        let Some(watch) = &mut self.watch else {
            return std::future::pending().await;
        };
        if !watch.watched.ended.load(Ordering::Acquire) {
            // Notified only when the session ends (the flag is set first).
            (&mut watch.listener).await;
        }
    }
}

impl Drop for SessionEnd {
    /// The last watch of a live session removes its entry, so the map holds only watched ones.
    fn drop(&mut self) {
        let Some(Watch {
            endings,
            sid,
            watched,
            listener,
        }) = self.watch.take()
        else {
            return;
        };
        drop(listener);
        let mut map = endings.lock();
        // The map's reference and this one: no other stream watches it.
        if map
            .get(&sid)
            .is_some_and(|entry| Arc::ptr_eq(entry, &watched) && Arc::strong_count(entry) == 2)
        {
            map.remove(&sid);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ended_session_wakes_its_watchers_and_leaves_nothing_behind() {
        let endings = Arc::new(Endings::default());
        let (mut a, b) = (endings.watch(Some("s1")), endings.watch(Some("s1")));
        let other = endings.watch(Some("s2"));
        endings.end("s1");
        assert!(a.ended() && b.ended() && !other.ended());
        futures_lite::future::block_on(a.wait());
        drop((a, b));
        assert_eq!(endings.lock().len(), 1, "only s2 is still watched");
        drop(other);
        assert!(
            endings.lock().is_empty(),
            "the last watch removes its entry"
        );
        assert!(!SessionEnd::never().ended());
    }
}
