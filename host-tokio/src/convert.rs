//! Between the hub's types and the protobuf messages, and from refusals to gRPC statuses.

use std::collections::HashMap;
use std::time::Duration;

use roomcast_core::{
    Attachment, Error, ErrorClass, Gap, HistoryPage, Kind, Message, PresenceEntry, RoomSummary,
    TYPING_SHOWN_FOR,
};
use roomcast_hub::identity::{AuthError, Issued};
use roomcast_hub::{Delivery, HubError, Wire};
use roomcast_proto::EncodedEvent;
use roomcast_proto::v1 as pb;
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

/// A time as protobuf's well-known `Timestamp`.
fn timestamp(t: roomcast_core::Timestamp) -> prost_types::Timestamp {
    from_millis(t.as_unix_millis())
}

fn from_millis(ms: u64) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: i64::try_from(ms / 1000).unwrap_or(i64::MAX),
        nanos: i32::try_from(ms % 1000).unwrap_or(0) * 1_000_000,
    }
}

fn count(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

pub fn room(r: &RoomSummary) -> pb::Room {
    pb::Room {
        id: r.id.to_string(),
        latest: r.latest.0,
        first_held: r.first_held.0,
        listeners: count(r.listeners),
        users: count(r.users),
        created_at: Some(timestamp(r.created_at)),
        last_active: Some(timestamp(r.last_active)),
        private: r.private,
        owner: r
            .owner
            .as_ref()
            .map(|o| o.name().to_owned())
            .unwrap_or_default(),
        owner_id: r
            .owner
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_default(),
        members: r.members.iter().map(|m| m.name().to_owned()).collect(),
        member_ids: r.members.iter().map(ToString::to_string).collect(),
        unread: r.unread,
    }
}

pub fn token(i: Issued) -> pb::Token {
    pb::Token {
        user: i.name().to_owned(),
        token: i.token,
        user_id: i.user,
        guest: i.guest,
        expires_at: Some(from_millis(i.expires_at.saturating_mul(1000))),
    }
}

/// An identity refusal as a gRPC status.
pub fn auth_status(e: AuthError) -> Status {
    // Said for gRPC: metadata, not headers or cookies.
    let message = if matches!(e, AuthError::Missing) {
        "sign in first: send the metadata `authorization: Bearer <token>` with a token from \
         Register, SignIn or Guest"
            .to_owned()
    } else {
        e.to_string()
    };
    detailed(code(e.class()), &message, e.code(), e.retry_after())
}

pub fn message(m: &Message) -> pb::ChatMessage {
    let (reply_to, emoji, added) = match &m.kind {
        Kind::Post { reply_to, .. } => (reply_to.map_or(0, |s| s.0), String::new(), false),
        Kind::React { emoji, added, .. } => (0, emoji.to_string(), *added),
        Kind::Edit { .. } | Kind::Delete { .. } | Kind::Moderate { .. } => {
            (0, String::new(), false)
        }
    };
    let (target, action, until) = match &m.kind {
        Kind::Moderate { user, action } => (
            Some(user),
            action.name().to_owned(),
            action.until(m.sent_at).map(timestamp),
        ),
        Kind::Post { .. } | Kind::Edit { .. } | Kind::Delete { .. } | Kind::React { .. } => {
            (None, String::new(), None)
        }
    };
    pb::ChatMessage {
        id: m.id.to_string(),
        room: m.room.to_string(),
        seq: m.seq.0,
        user: m.user.name().to_owned(),
        user_id: m.user.to_string(),
        text: m.text.clone(),
        sent_at: Some(timestamp(m.sent_at)),
        kind: match m.kind {
            Kind::Post { .. } => String::new(),
            Kind::Edit { .. }
            | Kind::Delete { .. }
            | Kind::React { .. }
            | Kind::Moderate { .. } => m.kind.name().to_owned(),
        },
        target: target.map(|t| t.name().to_owned()).unwrap_or_default(),
        target_id: target.map(ToString::to_string).unwrap_or_default(),
        action,
        until,
        reply_to,
        of: m.changes().map_or(0, |s| s.0),
        emoji,
        added,
        edited_at: m.state.edited_at.map(timestamp),
        deleted: m.state.deleted,
        reactions: m
            .state
            .reactions
            .iter()
            .map(|r| pb::Reaction {
                emoji: r.emoji.to_string(),
                count: count(r.users.len()),
                users: r.users.iter().map(|u| u.name().to_owned()).collect(),
                user_ids: r.users.iter().map(ToString::to_string).collect(),
            })
            .collect(),
        attachments: match &m.kind {
            Kind::Post { attachments, .. } => attachments.iter().map(attachment).collect(),
            Kind::Edit { .. }
            | Kind::Delete { .. }
            | Kind::React { .. }
            | Kind::Moderate { .. } => Vec::new(),
        },
    }
}

pub fn attachment(a: &Attachment) -> pb::Attachment {
    pb::Attachment {
        id: a.id.clone(),
        name: a.name.clone(),
        content_type: a.content_type.clone(),
        size: a.size,
    }
}

/// A log entry as the stream event of its kind.
fn entry(m: &Message) -> pb::stream_event::Event {
    use pb::stream_event::Event;
    let body = message(m);
    match m.kind {
        Kind::Post { .. } => Event::Message(body),
        Kind::Edit { .. } => Event::Edited(body),
        Kind::Delete { .. } => Event::Deleted(body),
        Kind::React { .. } => Event::Reaction(body),
        Kind::Moderate { .. } => Event::Moderation(body),
    }
}

pub fn gap(g: Gap) -> pb::Gap {
    pb::Gap {
        after: g.after.0,
        first_held: g.first_held.0,
    }
}

pub fn presence(entries: &[PresenceEntry]) -> Vec<pb::PresenceEntry> {
    entries
        .iter()
        .map(|p| pb::PresenceEntry {
            user: p.user.name().to_owned(),
            user_id: p.user.to_string(),
            listeners: count(p.listeners),
        })
        .collect()
}

pub fn history(page: &HistoryPage) -> pb::HistoryResponse {
    pb::HistoryResponse {
        messages: page.messages.iter().map(|m| message(m)).collect(),
        gap: page.gap.map(gap),
        first_held: page.first_held.0,
        latest: page.latest.0,
    }
}

/// A delivery, encoded; a message's encoding is made once and shared by all its streams.
pub fn encoded_event(delivery: Delivery) -> EncodedEvent {
    match delivery {
        Delivery::Message(shared) => EncodedEvent(shared.encoded(Wire::Grpc, |m| {
            EncodedEvent::new(&pb::StreamEvent {
                event: Some(entry(m)),
            })
            .0
        })),
        other @ (Delivery::Presence(_)
        | Delivery::Gap(_)
        | Delivery::Joined(_)
        | Delivery::Left(_)
        | Delivery::Typing(_)
        | Delivery::Closed(_)) => EncodedEvent::new(&event(other)),
    }
}

pub fn event(delivery: Delivery) -> pb::StreamEvent {
    use pb::stream_event::Event;
    let event = match delivery {
        Delivery::Message(m) => entry(&m),
        Delivery::Presence(entries) => Event::Presence(pb::PresenceSnapshot {
            users: presence(&entries),
        }),
        Delivery::Joined(user) => Event::Joined(pb::PresenceEntry {
            user: user.name().to_owned(),
            user_id: user.to_string(),
            listeners: 1,
        }),
        Delivery::Left(user) => Event::Left(pb::PresenceEntry {
            user: user.name().to_owned(),
            user_id: user.to_string(),
            listeners: 0,
        }),
        Delivery::Typing(user) => Event::Typing(pb::TypingEvent {
            user: user.name().to_owned(),
            user_id: user.to_string(),
            expires_in_ms: u64::try_from(TYPING_SHOWN_FOR.as_millis()).unwrap_or(u64::MAX),
        }),
        Delivery::Gap(g) => Event::Gap(gap(g)),
        Delivery::Closed(reason) => Event::Closed(pb::Closed {
            reason: reason.code().into(),
            by: reason
                .by()
                .map(|by| by.name().to_owned())
                .unwrap_or_default(),
            by_id: reason.by().map(ToString::to_string).unwrap_or_default(),
        }),
    };
    pb::StreamEvent { event: Some(event) }
}

/// A refusal as a gRPC status, with the core's reason as the message.
pub fn status(e: HubError) -> Status {
    match e {
        HubError::Refused(e) => refusal(&e),
        other @ (HubError::Stopped | HubError::Unavailable(_) | HubError::Storage(_)) => {
            Status::unavailable(other.to_string())
        }
        other @ HubError::Body(_) => Status::cancelled(other.to_string()),
        other @ HubError::TimedOut(_) => Status::deadline_exceeded(other.to_string()),
    }
}

fn refusal(e: &Error) -> Status {
    detailed(code(e.class()), &e.to_string(), e.code(), e.retry_after())
}

/// A status that says its cause to programs as well as people, as REST's problem documents
/// do: `google.rpc.ErrorInfo` with the stable code as its reason (domain `roomcast`), and for
/// a refusal that says when to try again, `google.rpc.RetryInfo`.
fn detailed(code: Code, message: &str, reason: &str, retry_after: Option<Duration>) -> Status {
    let mut details = ErrorDetails::new();
    details.set_error_info(reason, ERROR_DOMAIN, HashMap::new());
    if let Some(delay) = retry_after {
        details.set_retry_info(Some(delay));
    }
    Status::with_error_details(code, format!("{message} ({reason})"), details)
}

/// The `ErrorInfo` domain of roomcast's refusals.
pub const ERROR_DOMAIN: &str = "roomcast";

/// The code each class of refusal gets: one table for core's and identity's refusals.
fn code(class: ErrorClass) -> Code {
    match class {
        ErrorClass::Invalid => Code::InvalidArgument,
        ErrorClass::Unauthenticated => Code::Unauthenticated,
        ErrorClass::Denied => Code::PermissionDenied,
        ErrorClass::NotFound => Code::NotFound,
        ErrorClass::Conflict => Code::AlreadyExists,
        ErrorClass::Precondition => Code::FailedPrecondition,
        ErrorClass::OutOfRange => Code::OutOfRange,
        ErrorClass::TooLarge
        | ErrorClass::Capacity
        | ErrorClass::RateLimited
        | ErrorClass::Storage => Code::ResourceExhausted,
        ErrorClass::Unavailable => Code::Unavailable,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use roomcast_core::{MembershipError, MessageError, Seq};
    use std::time::Duration;

    #[test]
    fn refusals_map_to_the_documented_codes() {
        let code = |e: Error| status(HubError::Refused(e)).code();
        assert_eq!(
            code(Error::Message(MessageError::TooLarge { len: 9, max: 8 })),
            Code::ResourceExhausted
        );
        assert_eq!(
            code(Error::RateLimited {
                retry_after: Duration::from_secs(1)
            }),
            Code::ResourceExhausted
        );
        assert_eq!(
            code(Error::ResumeAhead {
                after: Seq(9),
                latest: Seq(1)
            }),
            Code::OutOfRange
        );
        assert_eq!(
            code(Error::Message(MessageError::Empty)),
            Code::InvalidArgument
        );
        assert_eq!(
            code(Error::Membership(MembershipError::OwnerStays)),
            Code::FailedPrecondition
        );
        assert_eq!(status(HubError::Stopped).code(), Code::Unavailable);
        let s = status(HubError::Refused(Error::Message(MessageError::Empty)));
        assert_eq!(s.message(), "message is empty (empty-message)");
    }
}
