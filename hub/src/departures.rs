//! Guests who left: when a guest's hold on their name ends (their session, and the grace after),
//! identity reports them departed, and what they left that nobody else needs is reclaimed:
//! their empty rooms and their read markers (core's `Depart`). Checked every few seconds on a
//! thread of its own, so a guest's leftovers live at most that long past the grace. The same
//! thread keeps the users of minted tokens seen since (identity's `keep_minted`), off the
//! requests' path.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use futures_lite::future::block_on;
use roomcast_core::{Depart, Departed};

use crate::identity::Identity;

/// How often departures are looked for.
pub(crate) const EVERY: Duration = Duration::from_secs(2);

/// How a round has the hub thread reclaim one guest's leftovers: `None` once the hub is gone.
pub(crate) type AskHub = Box<dyn Fn(Depart) -> Option<Result<Departed, String>> + Send>;

/// What the departures thread holds of its hub: weak handles (the hub's own [`AskHub`] holds
/// its channel weakly too), so a hub its callers dropped stops (and releases its store) without
/// waiting for the thread to notice.
pub(crate) struct Departures {
    pub(crate) ask: AskHub,
    pub(crate) identity: Weak<Identity>,
    pub(crate) stopping: Arc<AtomicBool>,
    /// Held for each round; the hub's shutdown takes it, so no round is under way (holding the
    /// store) once shutdown returns.
    pub(crate) round: Arc<async_lock::Mutex<()>>,
}

/// Starts the thread that reclaims what departed guests left, for as long as the hub runs.
pub(crate) fn reclaim_departed(departures: Departures) {
    let spawned = std::thread::Builder::new()
        .name("roomcast-departures".into())
        .spawn(move || {
            loop {
                std::thread::sleep(EVERY);
                let _round = block_on(departures.round.lock());
                // Done once the hub stops, or nothing else holds it.
                if departures.stopping.load(Ordering::SeqCst) {
                    return;
                }
                let Some(identity) = departures.identity.upgrade() else {
                    return;
                };
                if reclaim(&identity, &departures.ask).is_none() {
                    return;
                }
            }
        });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "what departed guests leave will not be reclaimed");
    }
}

/// One round: the minted tokens' users seen kept, and every guest departed since the last,
/// reclaimed and then forgotten. `None` if the hub is gone.
fn reclaim(identity: &Arc<Identity>, ask: &AskHub) -> Option<()> {
    if let Err(e) = block_on(identity.keep_minted()) {
        tracing::warn!(error = %e, "cannot keep the users of minted tokens seen");
    }
    let gone = match block_on(identity.depart()) {
        Ok(gone) => gone,
        Err(e) => {
            tracing::warn!(error = %e, "cannot look for departed guests");
            return Some(());
        }
    };
    if gone.is_empty() {
        return Some(());
    }
    let (mut rooms, mut markers) = (0, 0);
    for user in &gone {
        let depart = Depart {
            user: user.as_str().to_owned(),
        };
        match ask(depart)? {
            Ok(departed) => {
                rooms += departed.rooms.len();
                markers += departed.markers;
            }
            Err(e) => tracing::warn!(%user, error = %e, "cannot reclaim a departed guest's rooms"),
        }
    }
    metrics::counter!("roomcast_guests_departed_total").increment(gone.len() as u64);
    tracing::info!(
        guests = gone.len(),
        rooms,
        markers,
        "departed guests reclaimed"
    );
    if let Err(e) = block_on(identity.reclaimed(gone)) {
        tracing::warn!(error = %e, "cannot forget departed guests (they are reclaimed again)");
    }
    Some(())
}
