//! [`SessionEnd`]: an open stream learns that the session it was opened with has ended.
//!
//! A token is checked when a stream opens; without this, a tab signed out elsewhere (or a
//! session revoked on another node, or a token past its expiry) would go on receiving a
//! private room until it reconnected.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Instant, SystemTime};

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
    /// A watch on `sid` (`None`: a token minted elsewhere, which only its expiry ends) and on
    /// its token's expiry.
    pub(crate) fn watch(self: &Arc<Self>, sid: Option<&str>, expires: SystemTime) -> SessionEnd {
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
        // The deadline as the monotonic clock counts it, for the timer.
        let left = expires
            .duration_since(SystemTime::now())
            .unwrap_or_default();
        let expiry = Expiry {
            at: expires,
            timer: async_io::Timer::at(Instant::now() + left),
        };
        SessionEnd {
            watch,
            expiry: Some(expiry),
        }
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

/// How a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// Signed out, here or on another node.
    SignedOut,
    /// Its token's expiry passed.
    Expired,
}

/// Resolves when a session ends: signed out, here or on another node, or its token expired.
#[derive(Debug)]
pub struct SessionEnd {
    watch: Option<Watch>,
    expiry: Option<Expiry>,
}

#[derive(Debug)]
struct Watch {
    endings: Arc<Endings>,
    sid: String,
    watched: Arc<Watched>,
    listener: EventListener,
}

#[derive(Debug)]
struct Expiry {
    at: SystemTime,
    timer: async_io::Timer,
}

impl SessionEnd {
    /// A watch that never fires (a caller without a session or an expiry).
    pub fn never() -> SessionEnd {
        SessionEnd {
            watch: None,
            expiry: None,
        }
    }

    /// Whether, and how, the session has ended.
    pub fn ended(&self) -> Option<Ending> {
        if self
            .watch
            .as_ref()
            .is_some_and(|w| w.watched.ended.load(Ordering::Acquire))
        {
            return Some(Ending::SignedOut);
        }
        self.expiry
            .as_ref()
            .is_some_and(|e| SystemTime::now() >= e.at)
            .then_some(Ending::Expired)
    }

    /// Waits until the session ends (forever, for one that cannot). Cancel-safe.
    pub async fn wait(&mut self) -> Ending {
        let SessionEnd { watch, expiry } = self;
        let signed_out = async {
            match watch {
                // Notified only when the session ends (the flag is set first).
                Some(w) if !w.watched.ended.load(Ordering::Acquire) => (&mut w.listener).await,
                Some(_) => {}
                None => std::future::pending().await,
            }
            Ending::SignedOut
        };
        let expired = async {
            match expiry {
                Some(e) => {
                    (&mut e.timer).await;
                }
                None => std::future::pending().await,
            }
            Ending::Expired
        };
        futures_lite::future::or(signed_out, expired).await
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
        let later = SystemTime::now() + std::time::Duration::from_secs(3600);
        let (mut a, b) = (
            endings.watch(Some("s1"), later),
            endings.watch(Some("s1"), later),
        );
        let other = endings.watch(Some("s2"), later);
        endings.end("s1");
        assert_eq!(
            (a.ended(), b.ended()),
            (Some(Ending::SignedOut), Some(Ending::SignedOut))
        );
        assert_eq!(other.ended(), None);
        assert_eq!(futures_lite::future::block_on(a.wait()), Ending::SignedOut);
        drop((a, b));
        assert_eq!(endings.lock().len(), 1, "only s2 is still watched");
        drop(other);
        assert!(
            endings.lock().is_empty(),
            "the last watch removes its entry"
        );
        assert_eq!(SessionEnd::never().ended(), None);
    }

    #[test]
    fn a_token_past_its_expiry_ends_the_session() {
        let endings = Arc::new(Endings::default());
        let soon = SystemTime::now() + std::time::Duration::from_millis(50);
        let mut minted_elsewhere = endings.watch(None, soon);
        assert_eq!(minted_elsewhere.ended(), None);
        let ending = futures_lite::future::block_on(minted_elsewhere.wait());
        assert_eq!(ending, Ending::Expired);
        assert_eq!(minted_elsewhere.ended(), Some(Ending::Expired));
    }
}
