//! Messages: posting (idempotent retries, the rate limit, sequencing by the room) and reading
//! history.

use super::Core;
use crate::action::Action;
use crate::command::{Cursor, History, HistoryPage, MarkRead, Reply, Submit, Submitted, Upload};
use crate::error::{AttachmentError, Error, Paced};
use crate::event::CloseReason;
use crate::event::Event;
use crate::ids::{IdempotencyKey, MessageId, RoomId, Seq, UserId};
use crate::limits::check_text;
use crate::log::{Draft, Sequencer};
use crate::message::{Kind, Message, Moderation};
use crate::read::Unread;
use crate::room::Room;
use crate::time::Timestamp;
use std::sync::Arc;

impl Core {
    /// A submit's answer: [`Reply::Submit`] once numbered, or [`Reply::Append`] when a shared
    /// log numbers it.
    pub(super) fn submit(&mut self, now: Timestamp, c: Submit) -> Result<Reply, Error> {
        let result = self.try_submit(now, c);
        match &result {
            Ok(Reply::Submit(Submitted {
                duplicate: true, ..
            })) => self.stats.duplicates += 1,
            Ok(_) => self.stats.messages_accepted += 1,
            Err(_) => {}
        }
        result
    }

    fn try_submit(&mut self, now: Timestamp, c: Submit) -> Result<Reply, Error> {
        if c.create_if_missing {
            self.create_if_missing(now, &c.user, &c.room)?;
        }
        let user = self.user(&c.user)?;
        let id = self.room_id(&c.room)?;
        let key = c
            .idempotency_key
            .as_deref()
            .map(IdempotencyKey::parse)
            .transpose()
            .map_err(Error::InvalidIdempotencyKey)?;
        let text = match &c.kind {
            // A file may go without words.
            Kind::Post { attachments, .. } if !attachments.is_empty() => {
                self.config.limits.check_attachments(attachments)?;
                if c.text.trim().is_empty() {
                    String::new()
                } else {
                    check_text(c.text, self.config.limits.message_max_bytes)?
                }
            }
            Kind::Post { .. } | Kind::Edit { .. } => {
                check_text(c.text, self.config.limits.message_max_bytes)?
            }
            Kind::Delete { .. } | Kind::React { .. } | Kind::Moderate { .. } => String::new(),
        };
        let r = self.find_authorized(&user, &id, action_of(&c.kind))?;
        if c.kind.speaks()
            && let Some(until) = r.access().muted_until(&user, now)
        {
            return Err(Error::Muted {
                remaining: until.saturating_since(now),
            });
        }
        if let Some(key) = &key
            && let Some(original) = r.history().find_key(&user, key)
        {
            if original.text != text || original.kind != c.kind {
                return Err(Error::IdempotencyConflict {
                    key: key.clone(),
                    seq: original.seq,
                });
            }
            return Ok(Reply::Submit(Submitted {
                message: original.clone(),
                duplicate: true,
            }));
        }
        let recalled = match self.target(now, &user, r, &c.kind, c.recalled)? {
            Target::Unchanged(message) => {
                return Ok(Reply::Submit(Submitted {
                    message,
                    duplicate: true,
                }));
            }
            Target::Recalled(message) => Some(message),
            Target::Held | Target::None => None,
        };
        self.rate
            .take(&user, now)
            .map_err(|retry_after| Error::RateLimited { retry_after })?;
        if let Some(recalled) = recalled {
            self.room_mut(&id).recall(recalled);
        }
        let message_id = MessageId(self.next_message);
        self.next_message += 1;
        match self.config.sequencer {
            Sequencer::Shared => {
                return Ok(Reply::Append(Draft {
                    id: message_id,
                    room: id,
                    user,
                    text,
                    sent_at: now,
                    idempotency_key: key,
                    kind: c.kind,
                }));
            }
            Sequencer::Core => {}
        }
        let entry = self
            .room_mut(&id)
            .sequence(message_id, user, text, key, c.kind, now);
        let message = self.apply(now, entry);
        Ok(Reply::Submit(Submitted {
            message,
            duplicate: false,
        }))
    }

    /// Checks the message an entry answers or changes, as the room holds it now (or as the
    /// host `recalled` it from storage): it exists, is a message and not deleted, `user` may
    /// change it, and a reaction would change something.
    fn target(
        &self,
        now: Timestamp,
        user: &UserId,
        room: &Room,
        kind: &Kind,
        recalled: Option<Arc<Message>>,
    ) -> Result<Target, Error> {
        let latest = room.history().latest();
        let missing = |seq: Seq| Error::MessageNotFound {
            room: room.id().clone(),
            seq,
        };
        let of = match kind {
            Kind::Post { reply_to: None, .. } => return Ok(Target::None),
            Kind::Moderate {
                user: target,
                action,
            } => {
                self.user(target.as_str())?;
                self.config
                    .policy
                    .authorize_moderation(user, *action, target, room.access())?;
                return Ok(Target::None);
            }
            Kind::Post {
                reply_to: Some(seq),
                ..
            } => {
                return if *seq == Seq::ZERO || *seq > latest {
                    Err(missing(*seq))
                } else {
                    Ok(Target::None)
                };
            }
            Kind::Edit { of } | Kind::Delete { of } | Kind::React { of, .. } => *of,
        };
        if of == Seq::ZERO || of > latest {
            return Err(missing(of));
        }
        let (message, target) = match room.held(of) {
            Some(held) => (held.clone(), Target::Held),
            None => match recalled {
                Some(m) if m.seq == of && &m.room == room.id() => (m.clone(), Target::Recalled(m)),
                Some(_) | None => {
                    return Err(Error::NotHeld {
                        room: room.id().clone(),
                        seq: of,
                    });
                }
            },
        };
        let what = match message.kind {
            Kind::Post { .. } => None,
            Kind::Moderate { .. } => Some("a moderation"),
            Kind::Edit { .. } => Some("an edit"),
            Kind::Delete { .. } => Some("a deletion"),
            Kind::React { .. } => Some("a reaction"),
        };
        if let Some(what) = what {
            return Err(Error::NotAMessage { seq: of, what });
        }
        if message.state.deleted {
            return Err(Error::MessageDeleted { seq: of });
        }
        match kind {
            Kind::Post { .. } | Kind::Moderate { .. } => {}
            Kind::Edit { .. } | Kind::Delete { .. } => self.config.policy.authorize_change(
                user,
                action_of(kind),
                &message,
                now,
                room.access(),
            )?,
            Kind::React { emoji, added, .. } => {
                let state = &message.state;
                if state.has(emoji, user) == *added {
                    return Ok(Target::Unchanged(message));
                }
                let max = self.config.limits.max_reactions_per_message;
                let new = !state.reactions.iter().any(|r| &r.emoji == emoji);
                if *added && new && state.reactions.len() >= max {
                    return Err(Error::TooManyReactions { seq: of, max });
                }
            }
        }
        Ok(target)
    }

    /// Applies a room's next entry, numbered by core or by the shared log: into its history
    /// (a change made to the message it names), and out to its listeners. Returns the entry as
    /// published.
    pub(super) fn apply(&mut self, now: Timestamp, entry: Arc<Message>) -> Arc<Message> {
        let room = self.room_mut(&entry.room);
        let (entry, before, dropped) = room.apply(entry, now);
        let after = room.history().len();
        let idle = room.listener_count() == 0;
        // The ring grows by the entry, and may let go of several older ones for it.
        self.messages_held = self.messages_held + after - before;
        if idle {
            let id = entry.room.clone();
            self.schedule_expiry(&id, now);
        }
        self.emit(Event::Published(entry.clone()));
        if !dropped.is_empty() {
            self.emit(Event::AttachmentsDropped {
                room: entry.room.clone(),
                attachments: dropped,
            });
        }
        if let Kind::Moderate { user, action } = &entry.kind {
            let reason = match action {
                Moderation::Kick => Some(CloseReason::Kicked {
                    by: entry.user.clone(),
                }),
                Moderation::Ban => Some(CloseReason::Banned {
                    by: entry.user.clone(),
                }),
                Moderation::Appoint
                | Moderation::Dismiss
                | Moderation::Mute { .. }
                | Moderation::Unmute
                | Moderation::Unban => None,
            };
            if let Some(reason) = reason {
                self.close_listeners_of(&entry.room, user, reason, now);
            }
        }
        entry
    }

    /// Someone is typing: announced to the room (at most every
    /// [`TYPING_EVERY`](crate::TYPING_EVERY) per user, and only in rooms small enough that joins
    /// are announced); with a shared log, the host announces it through the log, and core when
    /// the log tells it ([`Committed::typing`](crate::log::Committed::typing)).
    pub(super) fn typing(
        &mut self,
        now: Timestamp,
        c: &crate::command::Typing,
    ) -> Result<bool, Error> {
        let (user, id) = self.may_speak(now, &c.user, &c.room)?;
        let announce_up_to = self.config.limits.announce_presence_up_to;
        let room = self.room_mut(&id);
        if room.presence().users() > announce_up_to || !room.typing(&user, now) {
            return Ok(false);
        }
        match self.config.sequencer {
            Sequencer::Core => self.emit(Event::Typing { room: id, user }),
            Sequencer::Shared => {}
        }
        Ok(true)
    }

    /// `user` may speak in `room` now: the policy lets them post there, and they are not muted.
    fn may_speak(&self, now: Timestamp, user: &str, room: &str) -> Result<(UserId, RoomId), Error> {
        let user = self.user(user)?;
        let id = self.room_id(room)?;
        let r = self.find_authorized(&user, &id, Action::Post)?;
        if let Some(until) = r.access().muted_until(&user, now) {
            return Err(Error::Muted {
                remaining: until.saturating_since(now),
            });
        }
        Ok((user, id))
    }

    /// Whether the user may upload a file to the room: as for posting (not muted), within the
    /// size limit, and at the cost of one of their rate tokens.
    pub(super) fn upload(&mut self, now: Timestamp, c: &Upload) -> Result<(), Error> {
        let (user, _) = self.may_speak(now, &c.user, &c.room)?;
        let max = self.config.limits.max_attachment_bytes;
        match c.size {
            Some(0) => return Err(AttachmentError::Empty.into()),
            Some(size) if size > max => return Err(AttachmentError::TooLarge { max }.into()),
            Some(_) | None => {}
        }
        self.uploads
            .take(&user, now)
            .map_err(|retry_after| Error::Paced {
                what: Paced::Uploads,
                retry_after,
            })
    }

    /// Moves the user's read marker on (never back), and says what is unread after it. A
    /// marker that moves costs one of the user's read-marker pace (one that would not move
    /// costs nothing and is not kept).
    pub(super) fn mark_read(&mut self, now: Timestamp, c: &MarkRead) -> Result<Unread, Error> {
        let user = self.user(&c.user)?;
        let id = self.room_id(&c.room)?;
        let r = self.find_authorized(&user, &id, Action::ReadRoom)?;
        let at = r.unread(&user).up_to;
        if c.seq.min(r.history().latest()) > at {
            self.reads
                .take(&user, now)
                .map_err(|retry_after| Error::Paced {
                    what: Paced::ReadMarkers,
                    retry_after,
                })?;
        }
        let room = self.room_mut(&id);
        let moved = room.mark_read(&user, c.seq);
        let unread = room.unread(&user);
        if let Some(marker) = moved {
            self.holdings.mark(&user, &id);
            self.emit(Event::Read {
                room: id,
                user,
                marker,
            });
        }
        Ok(unread)
    }

    /// A page of a room's history, oldest first, at most `limit` long (the default page length
    /// if none is asked, never more than the maximum).
    pub fn history(&self, c: &History) -> Result<HistoryPage, Error> {
        let (_, r) = self.authorized(&c.user, &c.room, Action::ReadRoom)?;
        let history = r.history();
        let limits = &self.config.limits;
        let limit = c
            .limit
            .unwrap_or(limits.history_page_len)
            .min(limits.max_page_len);
        let latest = history.latest();
        let (messages, gap) = match c.cursor {
            Cursor::Newest => (history.before(latest.next(), limit), None),
            Cursor::Before(before) => (history.before(before, limit), None),
            Cursor::After(after) if after > latest => {
                return Err(Error::ResumeAhead { after, latest });
            }
            Cursor::After(after) => history.after(after, limit),
        };
        Ok(HistoryPage {
            room: r.id().clone(),
            messages,
            gap,
            first_held: history.oldest_held(),
            latest,
            limit,
        })
    }
}

/// What the policy is asked before an entry of this kind.
fn action_of(kind: &Kind) -> Action {
    match kind {
        Kind::Post { .. } => Action::Post,
        Kind::Edit { .. } => Action::EditMessage,
        Kind::Delete { .. } => Action::DeleteMessage,
        Kind::React { .. } => Action::React,
        Kind::Moderate {
            action: Moderation::Appoint | Moderation::Dismiss,
            ..
        } => Action::AppointModerators,
        Kind::Moderate { .. } => Action::Moderate,
    }
}

/// The message an entry answers or changes, once checked.
enum Target {
    /// The entry names none (a post that is not a reply), or only answers one.
    None,
    /// The room holds it.
    Held,
    /// The host read it from storage: the room keeps it once the entry is accepted.
    Recalled(Arc<Message>),
    /// A reaction that would change nothing: the message as it is.
    Unchanged(Arc<Message>),
}
