//! Messages: posting (idempotent retries, the rate limit, sequencing by the room) and reading
//! history.

use super::Core;
use crate::action::Action;
use crate::command::{Cursor, History, HistoryPage, Reply, Submit, Submitted};
use crate::error::Error;
use crate::event::Event;
use crate::ids::{IdempotencyKey, MessageId};
use crate::limits::check_text;
use crate::log::{Draft, Sequencer};
use crate::time::Timestamp;

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
        let text = check_text(c.text, self.config.limits.message_max_bytes)?;
        let r = self.find_authorized(&user, &id, Action::Post)?;
        if let Some(key) = &key
            && let Some(original) = r.history().find_key(&user, key)
        {
            if original.text != text {
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
        self.rate
            .take(&user, now)
            .map_err(|retry_after| Error::RateLimited { retry_after })?;
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
                }));
            }
            Sequencer::Core => {}
        }
        let message = self
            .room_mut(&id)
            .sequence(message_id, user, text, key, now);
        self.apply(now, message.clone());
        Ok(Reply::Submit(Submitted {
            message,
            duplicate: false,
        }))
    }

    /// Applies a room's next message, numbered by core or by the shared log: into its history,
    /// and out to its listeners.
    pub(super) fn apply(&mut self, now: Timestamp, message: std::sync::Arc<crate::Message>) {
        let room = self.room_mut(&message.room);
        let grew = room.apply(message.clone(), now);
        let idle = room.listener_count() == 0;
        self.messages_held += usize::from(grew);
        if idle {
            let id = message.room.clone();
            self.schedule_expiry(&id, now);
        }
        self.emit(Event::Published(message));
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
            first_held: history.first_held(),
            latest,
            limit,
        })
    }
}
