//! Who holds which name, on injected time, and how names compare.
//!
//! A name is what people see and type; a [`UserId`] is who someone is. An account holds its
//! name for good; a guest holds its nickname until a time (its session's end and a grace after),
//! and then it departs: its id is never handed out again, so whoever takes the name next starts
//! with nothing. Names compare the way people read them ([`key`]): `Alice`, `ALICE`, Cyrillic
//! `аlice`, fullwidth `ａｌｉｃｅ` and `a l i c e` are one name, so nobody takes a look-alike of a
//! name that is held. A name is still shown as its holder typed it.

use std::collections::HashMap;

use roomcast_core::{Timestamp, UserId};
use unicode_security::confusable_detection::skeleton;

/// What two names have in common when people would read them as the same: in lower case, UTS
/// #39's confusable skeleton (Cyrillic `а` is Latin `a`, fullwidth `ａ` is `a`, dotless `ı` is
/// `i`, `0` is `O`), in lower case and skeletoned again (so `0ps` is `ops`), without spaces
/// and the separators `-`, `_` and `.`. Case is folded first, so `ALICE` is `alice` (a capital
/// `I` reads as `i` here, not as the `l` it can also pass for). Never shown: only compared.
pub fn key(name: &str) -> String {
    let once = skeleton(&name.to_lowercase())
        .collect::<String>()
        .to_lowercase();
    skeleton(&once)
        .filter(|c| !matches!(c, ' ' | '-' | '_' | '.') && !c.is_whitespace())
        .collect()
}

/// A guest's hold on a name: who holds it, and until when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Hold {
    pub(crate) id: UserId,
    pub(crate) until: Timestamp,
}

/// The names held, by [`key`].
#[derive(Debug, Default)]
pub(crate) struct Names {
    /// Accounts: who holds each name, for good.
    accounts: HashMap<String, UserId>,
    /// Guests: who holds each nickname, until when. A hold that ended stays until
    /// [`Names::depart`] reports it, so the guest's leftovers can be reclaimed.
    guests: HashMap<String, Hold>,
    /// Users of tokens another application mints, once seen: their names are theirs for good.
    minted: HashMap<String, UserId>,
}

impl Names {
    /// The account holding the name with this key.
    pub(crate) fn account(&self, key: &str) -> Option<&UserId> {
        self.accounts.get(key)
    }

    /// Whoever holds the name with this key at `now`: its account, a guest whose hold lasts,
    /// or another application's user seen here.
    pub(crate) fn holder(&self, key: &str, now: Timestamp) -> Option<&UserId> {
        self.accounts
            .get(key)
            .or_else(|| {
                self.guests
                    .get(key)
                    .filter(|hold| hold.until > now)
                    .map(|hold| &hold.id)
            })
            .or_else(|| self.minted.get(key))
    }

    /// Another application's user `id` was seen; false if they were already.
    pub(crate) fn see_minted(&mut self, key: String, id: UserId) -> bool {
        self.minted.insert(key, id.clone()).as_ref() != Some(&id)
    }

    /// Whether the name with this key is held at `now`.
    pub(crate) fn is_taken(&self, key: &str, now: Timestamp) -> bool {
        self.holder(key, now).is_some()
    }

    /// The guest hold of the name with this key, live or ended.
    pub(crate) fn guest(&self, key: &str) -> Option<&Hold> {
        self.guests.get(key)
    }

    /// A guest holds the name with this key until `until`.
    pub(crate) fn hold(&mut self, key: String, id: UserId, until: Timestamp) {
        self.guests.insert(key, Hold { id, until });
    }

    /// An account now holds the name with this key.
    pub(crate) fn register(&mut self, key: String, id: UserId) {
        self.accounts.insert(key, id);
    }

    /// The guests whose holds ended by `now`, forgotten here: they departed, and nobody will
    /// ever act as them again.
    pub(crate) fn depart(&mut self, now: Timestamp) -> Vec<UserId> {
        let mut gone = Vec::new();
        self.guests.retain(|_, hold| {
            let lasts = hold.until > now;
            if !lasts {
                gone.push(hold.id.clone());
            }
            lasts
        });
        gone.sort();
        gone
    }

    /// How many guest holds are kept (ended ones not yet departed included).
    #[cfg(test)]
    pub(crate) fn guest_count(&self) -> usize {
        self.guests.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64) -> Timestamp {
        Timestamp::from_unix_millis(secs * 1000)
    }

    fn id(s: &str) -> UserId {
        UserId::parse(s, 32).unwrap()
    }

    #[test]
    fn look_alikes_share_a_key() {
        let alice = key("alice");
        for same in [
            "Alice",
            "ALICE",
            "\u{430}lice", // Cyrillic а
            "ａｌｉｃｅ",  // fullwidth
            "al\u{131}ce", // dotless ı
            "a l i c e",
            "a.lice",
            "al-ice",
            "ali_ce",
            "a1ice",
        ] {
            assert_eq!(key(same), alice, "{same}");
        }
        assert_eq!(key("Root"), key("root"));
        assert_eq!(key("0ps"), key("ops"));
        for other in ["bob", "alicia", "alice2", "Zoë", "aiice"] {
            assert_ne!(key(other), alice, "{other}");
        }
        assert_ne!(key("Zoë"), key("Zoe"), "a diaeresis is a letter of its own");
    }

    #[test]
    fn a_guest_holds_a_name_until_its_time_an_account_for_good() {
        let mut names = Names::default();
        names.hold(key("zoe"), id("zoe~a1"), at(100));
        assert_eq!(names.holder(&key("Zoe"), at(99)), Some(&id("zoe~a1")));
        assert!(
            !names.is_taken(&key("zoe"), at(100)),
            "released at its time"
        );
        names.register(key("ada"), id("ada~b2"));
        assert!(names.is_taken(&key("ADA"), at(1_000_000)));
        assert_eq!(names.holder(&key("ada"), at(0)), Some(&id("ada~b2")));
    }

    #[test]
    fn departed_guests_are_reported_once_and_forgotten() {
        let mut names = Names::default();
        for n in 0..10u64 {
            names.hold(key(&format!("g{n}")), id(&format!("g{n}~t")), at(n + 1));
        }
        let gone = names.depart(at(5));
        assert_eq!(gone.len(), 5);
        assert!(gone.contains(&id("g0~t")) && gone.contains(&id("g4~t")));
        assert_eq!(names.guest_count(), 5);
        assert!(names.depart(at(5)).is_empty(), "each departs once");
        assert_eq!(names.depart(at(100)).len(), 5);
    }
}
