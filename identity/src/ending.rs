//! [`SessionEnd`]: an open stream learns that the session it was opened with has ended.
//!
//! A token is checked when a stream opens; without this, a tab signed out elsewhere (or a
//! session revoked on another node, or a token past its expiry) would go on receiving a
//! private room until it reconnected.

use std::collections::HashMap;
use std::future::poll_fn;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::Poll;
use std::time::SystemTime;

use atomic_waker::AtomicWaker;

use crate::lock;

/// The sessions some stream is watching, by id. Entries live as long as a [`SessionEnd`] does.
#[derive(Debug, Default)]
pub(crate) struct Endings {
    watched: Mutex<HashMap<Arc<str>, Arc<Watched>>>,
}

/// One watched session: whether it ended, and the streams to wake when it does.
#[derive(Debug, Default)]
struct Watched {
    ended: AtomicBool,
    streams: Mutex<Vec<Weak<AtomicWaker>>>,
}

impl Endings {
    /// A watch on `sid` (`None`: a token minted elsewhere, which only its expiry ends) and on
    /// its token's expiry.
    pub(crate) fn watch(self: &Arc<Self>, sid: Option<&str>, expires: SystemTime) -> SessionEnd {
        let watch = sid.map(|sid| {
            let mut map = self.lock();
            let (sid, watched) = match map.get_key_value(sid) {
                Some((sid, watched)) => (Arc::clone(sid), Arc::clone(watched)),
                None => {
                    let sid: Arc<str> = Arc::from(sid);
                    let watched = Arc::new(Watched::default());
                    map.insert(Arc::clone(&sid), Arc::clone(&watched));
                    (sid, watched)
                }
            };
            drop(map);
            let waker = Arc::new(AtomicWaker::new());
            let mut streams = lock(&watched.streams);
            // Streams that closed since are dropped here, so the list stays as long as the
            // session's open streams.
            streams.retain(|s| s.strong_count() > 0);
            streams.push(Arc::downgrade(&waker));
            drop(streams);
            Watch {
                endings: Arc::clone(self),
                sid,
                watched,
                waker,
            }
        });
        SessionEnd {
            watch,
            expires: Some(expires),
        }
    }

    /// `sid` ended: every stream watching it is told.
    pub(crate) fn end(&self, sid: &str) {
        let Some(watched) = self.lock().remove(sid) else {
            return;
        };
        watched.ended.store(true, Ordering::Release);
        for stream in lock(&watched.streams).iter().filter_map(Weak::upgrade) {
            stream.wake();
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Arc<str>, Arc<Watched>>> {
        lock(&self.watched)
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
///
/// A sign-out wakes the stream at once. Expiry is read off the clock whenever the stream hands
/// something out (a delivery, or after a heartbeat), so nothing is delivered past it and no
/// stream holds a timer of its own for it.
#[derive(Debug)]
pub struct SessionEnd {
    watch: Option<Watch>,
    expires: Option<SystemTime>,
}

#[derive(Debug)]
struct Watch {
    endings: Arc<Endings>,
    sid: Arc<str>,
    watched: Arc<Watched>,
    /// This stream's waker, which the session's end wakes.
    waker: Arc<AtomicWaker>,
}

impl SessionEnd {
    /// A watch that never fires (a caller without a session or an expiry).
    pub fn never() -> SessionEnd {
        SessionEnd {
            watch: None,
            expires: None,
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
        self.expires
            .is_some_and(|at| SystemTime::now() >= at)
            .then_some(Ending::Expired)
    }

    /// Waits until the session is signed out (forever, for one that cannot be). Cancel-safe.
    pub async fn wait(&mut self) {
        let Some(watch) = &self.watch else {
            return std::future::pending().await;
        };
        poll_fn(|cx| {
            // Registered before the check: an end between the two still wakes this.
            watch.waker.register(cx.waker());
            if watch.watched.ended.load(Ordering::Acquire) {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
        .await;
    }
}

impl Drop for SessionEnd {
    /// The last watch of a live session removes its entry, so the map holds only watched ones.
    fn drop(&mut self) {
        let Some(Watch {
            endings,
            sid,
            watched,
            waker,
        }) = self.watch.take()
        else {
            return;
        };
        drop(waker);
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
        futures_lite::future::block_on(a.wait());
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
        let minted_elsewhere = endings.watch(None, soon);
        assert_eq!(minted_elsewhere.ended(), None);
        std::thread::sleep(std::time::Duration::from_millis(60));
        assert_eq!(minted_elsewhere.ended(), Some(Ending::Expired));
    }
}
