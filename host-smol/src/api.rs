//! The JSON API under `/api/v1/`, the seed's JSON routes, and the operations endpoints.

use roomcast_core::{
    Attachment, ChangeMember, Created, Cursor, DeleteRoom, History, Kind, ListRooms, MarkRead,
    MemberChange, OpenDirect, Seq, Submit, Submitted, Typing, ViewRoom,
};
use serde::Deserialize;
use tide::{Request, Response, StatusCode};

use crate::problem::{Problem, ProblemBody};
use crate::request::{State, actor, caller, moderation, room_param};
use crate::request::{json_body, query};
use crate::wire::{
    Change, CreateRoom, EditMessage, HistoryBody, MarkReadBody, MessageBody, ModerateBody,
    PostMessage, PresenceBody, PresenceList, RoomBody, RoomList, SeedSubmit, UnreadBody, UserRef,
    change,
};
use roomcast_hub::identity::Need;

pub fn json(status: StatusCode, body: &impl serde::Serialize) -> Response {
    let mut res = Response::new(status);
    res.set_body(serde_json::to_vec(body).unwrap_or_default());
    res.set_content_type(tide::http::mime::JSON);
    res
}

#[derive(Debug, Deserialize)]
struct ListQuery {
    after: Option<String>,
    limit: Option<usize>,
}

/// List rooms by id, a page at a time.
#[utoipa::path(get, path = "/api/v1/rooms", tag = "rooms",
    params(
        ("after" = Option<String>, Query, description = "List rooms whose ids sort after this one"),
        ("limit" = Option<usize>, Query, description = "Page size (default 100, at most 500)", minimum = 0, maximum = 9_007_199_254_740_991_u64),
        ("user" = Option<String>, Query, description = "Who asks"),
    ),
    responses((status = 200, body = RoomList), (status = 400, body = ProblemBody, content_type = "application/problem+json")))]
pub async fn list_rooms(req: Request<State>) -> Result<Response, Problem> {
    let (q, user): (ListQuery, _) = (query(&req)?, actor(&req)?);
    let list = ListRooms {
        user,
        after: q.after,
        limit: q.limit,
    };
    let page = req.state().hub.ask(list).await?;
    Ok(json(
        StatusCode::Ok,
        &RoomList {
            rooms: page.rooms.iter().map(RoomBody::from).collect(),
            next_after: page.next_after.map(|id| id.to_string()),
        },
    ))
}

/// Create a room; creating one that exists returns it (200) rather than failing.
#[utoipa::path(post, path = "/api/v1/rooms", tag = "rooms", request_body = CreateRoom,
    params(("user" = Option<String>, Query, description = "Who creates it")),
    responses(
        (status = 201, description = "Created", body = RoomBody),
        (status = 200, description = "It already existed", body = RoomBody),
        (status = 400, body = ProblemBody, content_type = "application/problem+json"),
        (status = 403, body = ProblemBody, content_type = "application/problem+json"),
        (status = 415, body = ProblemBody, content_type = "application/problem+json"),
        (status = 429, description = "Over the caller's pace of new rooms (`rate-limited`) or the rooms they may own (`too-many-owned-rooms`)", body = ProblemBody, content_type = "application/problem+json"),
        (status = 503, description = "Too many rooms", body = ProblemBody, content_type = "application/problem+json"),
    ))]
pub async fn create_room(mut req: Request<State>) -> Result<Response, Problem> {
    let user = actor(&req)?;
    let body: CreateRoom = json_body(&mut req).await?;
    let create = roomcast_core::CreateRoom {
        user,
        room: body.room,
        private: body.private,
    };
    let created = req.state().hub.ask(create).await?;
    Ok(created_response(&created))
}

fn created_response(created: &Created) -> Response {
    let status = if created.created {
        StatusCode::Created
    } else {
        StatusCode::Ok
    };
    let mut res = json(status, &RoomBody::from(&created.room));
    res.insert_header("Location", format!("/api/v1/rooms/{}", created.room.id));
    res
}

/// Invite a member to a private room (its owner, or an admin).
#[utoipa::path(post, path = "/api/v1/rooms/{room}/members", tag = "rooms", request_body = UserRef,
    params(("room" = String, Path, description = "The private room")),
    responses(
        (status = 204, description = "They are a member"),
        (status = 401, body = ProblemBody, content_type = "application/problem+json"),
        (status = 403, body = ProblemBody, content_type = "application/problem+json"),
        (status = 404, description = "No such room, or nobody holds that name (`user-not-found`)", body = ProblemBody, content_type = "application/problem+json"),
        (status = 409, description = "Not a private room with an owner", body = ProblemBody, content_type = "application/problem+json"),
    ))]
pub async fn invite(mut req: Request<State>) -> Result<Response, Problem> {
    let (user, room) = (actor(&req)?, room_param(&req));
    let body: UserRef = json_body(&mut req).await?;
    let identity = req.state().hub.identity();
    let member = identity.resolve(&body.user, Need::Present).await?;
    let change = ChangeMember {
        user,
        room,
        member: member.to_string(),
        change: MemberChange::Add,
    };
    req.state().hub.ask(change).await?;
    Ok(Response::new(StatusCode::NoContent))
}

/// Remove a member from a private room; their open streams end at once (`removed`).
#[utoipa::path(delete, path = "/api/v1/rooms/{room}/members/{user}", tag = "rooms",
    params(("room" = String, Path, description = "The private room"), ("user" = String, Path, description = "The member")),
    responses(
        (status = 204, description = "They are not a member"),
        (status = 401, body = ProblemBody, content_type = "application/problem+json"),
        (status = 403, body = ProblemBody, content_type = "application/problem+json"),
        (status = 404, description = "No such room, or no such user (`user-not-found`)", body = ProblemBody, content_type = "application/problem+json"),
        (status = 409, description = "The owner, or not a private room", body = ProblemBody, content_type = "application/problem+json"),
    ))]
pub async fn remove_member(req: Request<State>) -> Result<Response, Problem> {
    let (user, room) = (actor(&req)?, room_param(&req));
    // A name may hold spaces and any script, so clients percent-encode it.
    let raw = req.param("user").unwrap_or_default();
    let typed = percent_encoding::percent_decode_str(raw)
        .decode_utf8()
        .map_err(|_| {
            Problem::new(
                StatusCode::BadRequest,
                "invalid-user-name",
                "the user in the path is not UTF-8",
            )
        })?;
    let member = req
        .state()
        .hub
        .identity()
        .resolve(&typed, Need::Known)
        .await?;
    let change = ChangeMember {
        user,
        room,
        member: member.to_string(),
        change: MemberChange::Remove,
    };
    req.state().hub.ask(change).await?;
    Ok(Response::new(StatusCode::NoContent))
}

/// The direct-message room with another user: private, the two of you, found or created.
#[utoipa::path(post, path = "/api/v1/direct", tag = "rooms", request_body = UserRef,
    responses(
        (status = 201, description = "Created", body = RoomBody),
        (status = 200, description = "It already existed", body = RoomBody),
        (status = 403, description = "Room creation is for admins only (--admin-only-create)", body = ProblemBody, content_type = "application/problem+json"),
        (status = 503, description = "The server holds its maximum of rooms", body = ProblemBody, content_type = "application/problem+json"),
        (status = 401
, body = ProblemBody, content_type = "application/problem+json"),
        (status = 409, description = "With yourself", body = ProblemBody, content_type = "application/problem+json"),
        (status = 404, description = "Nobody holds that name (`user-not-found`)", body = ProblemBody, content_type = "application/problem+json"),
        (status = 429, description = "Over the caller's pace of new rooms (`rate-limited`) or the rooms they may own (`too-many-owned-rooms`)", body = ProblemBody, content_type = "application/problem+json"),
    ))]
pub async fn direct(mut req: Request<State>) -> Result<Response, Problem> {
    let user = actor(&req)?;
    let body: UserRef = json_body(&mut req).await?;
    let other = req
        .state()
        .hub
        .identity()
        .resolve(&body.user, Need::Present)
        .await?;
    let direct = OpenDirect {
        user,
        other: other.to_string(),
    };
    let created = req.state().hub.ask(direct).await?;
    Ok(created_response(&created))
}

/// One room.
#[utoipa::path(get, path = "/api/v1/rooms/{room}", tag = "rooms",
    params(("room" = String, Path, description = "The room id"), ("user" = Option<String>, Query, description = "Who asks")),
    responses(
        (status = 200, body = RoomBody),
        (status = 403, description = "A private room the caller is not a member of", body = ProblemBody, content_type = "application/problem+json"),
        (status = 404, description = "No such room", body = ProblemBody, content_type = "application/problem+json"),
    ))]
pub async fn room(req: Request<State>) -> Result<Response, Problem> {
    let (user, room) = (actor(&req)?, room_param(&req));
    let view = ViewRoom { user, room };
    let view = req.state().hub.ask(view).await?;
    Ok(json(StatusCode::Ok, &RoomBody::from(&view.room)))
}

/// Delete a room with its history; its streams end with a `closed` event.
#[utoipa::path(delete, path = "/api/v1/rooms/{room}", tag = "rooms",
    params(("room" = String, Path, description = "The room id"), ("user" = Option<String>, Query, description = "Who deletes it")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 403, body = ProblemBody, content_type = "application/problem+json"),
        (status = 404, body = ProblemBody, content_type = "application/problem+json"),
    ))]
pub async fn delete_room(req: Request<State>) -> Result<Response, Problem> {
    let (user, room) = (actor(&req)?, room_param(&req));
    req.state().hub.ask(DeleteRoom { user, room }).await?;
    Ok(Response::new(StatusCode::NoContent))
}

#[derive(Debug, Deserialize)]
struct HistoryQuery {
    after: Option<u64>,
    before: Option<u64>,
    limit: Option<usize>,
}

/// A page of history, oldest first: the newest by default, `after` to page forward, `before` to
/// page back.
#[utoipa::path(get, path = "/api/v1/rooms/{room}/messages", tag = "messages",
    params(
        ("room" = String, Path, description = "The room id"),
        ("after" = Option<u64>, Query, description = "Messages after this sequence number (not with `before`: 400)", minimum = 0, maximum = 9_007_199_254_740_991_u64),
        ("before" = Option<u64>, Query, description = "Messages before this sequence number (not with `after`: 400)", minimum = 0, maximum = 9_007_199_254_740_991_u64),
        ("limit" = Option<usize>, Query, description = "Page size (default 50, at most 500)", minimum = 0, maximum = 9_007_199_254_740_991_u64),
        ("user" = Option<String>, Query, description = "Who asks"),
    ),
    responses(
        (status = 200, body = HistoryBody),
        (status = 403, description = "A private room the caller is not a member of", body = ProblemBody, content_type = "application/problem+json"),
        (status = 400, body = ProblemBody, content_type = "application/problem+json"),
        (status = 404, body = ProblemBody, content_type = "application/problem+json"),
        (status = 409, description = "`after` is beyond the newest message", body = ProblemBody, content_type = "application/problem+json"),
    ))]
pub async fn history(req: Request<State>) -> Result<Response, Problem> {
    let q: HistoryQuery = query(&req)?;
    let cursor = match (q.after, q.before) {
        (Some(_), Some(_)) => {
            return Err(Problem::new(
                StatusCode::BadRequest,
                "invalid-query",
                "give `after` or `before`, not both",
            ));
        }
        (Some(after), None) => Cursor::After(Seq(after)),
        (None, Some(before)) => Cursor::Before(Seq(before)),
        (None, None) => Cursor::Newest,
    };
    let history = History {
        user: actor(&req)?,
        room: room_param(&req),
        cursor,
        limit: q.limit,
    };
    let page = req.state().hub.history(history).await?;
    Ok(json(StatusCode::Ok, &HistoryBody::from(&page)))
}

/// Post a message. The answer carries its sequence number.
#[utoipa::path(post, path = "/api/v1/rooms/{room}/messages", tag = "messages", request_body = PostMessage,
    params(
        ("room" = String, Path, description = "The room id"),
        ("Idempotency-Key" = Option<String>, Header, description = "Makes a retry safe (or `idempotency_key` in the body)"),
    ),
    responses(
        (status = 201, description = "Posted", body = MessageBody),
        (status = 200, description = "A retry: the original message, nothing new posted", body = MessageBody),
        (status = 403, description = "A private room the caller is not a member of", body = ProblemBody, content_type = "application/problem+json"),
        (status = 400, body = ProblemBody, content_type = "application/problem+json"),
        (status = 404, body = ProblemBody, content_type = "application/problem+json"),
        (status = 409, description = "Idempotency key reused for another text", body = ProblemBody, content_type = "application/problem+json"),
        (status = 413, body = ProblemBody, content_type = "application/problem+json"),
        (status = 415, body = ProblemBody, content_type = "application/problem+json"),
        (status = 422, body = ProblemBody, content_type = "application/problem+json"),
        (status = 429, body = ProblemBody, content_type = "application/problem+json"),
    ))]
pub async fn post_message(mut req: Request<State>) -> Result<Response, Problem> {
    let room = room_param(&req);
    let header_key = req.header("Idempotency-Key").map(|v| v.as_str().to_owned());
    let caller = caller(&req)?;
    let body: PostMessage = json_body(&mut req).await?;
    caller.check_named(body.user.as_deref())?;
    let kind = Kind::Post {
        reply_to: body.reply_to.map(Seq),
        attachments: body
            .attachments
            .into_iter()
            .map(Attachment::named)
            .collect(),
    };
    let submit = Submit {
        idempotency_key: body.idempotency_key.or(header_key),
        ..Submit::new(caller.user, room, body.text, kind)
    };
    let done = req.state().hub.submit(submit).await?;
    Ok(posted(&done))
}

/// Edit one's own message, within the edit window (15 minutes by default). The edit is an
/// entry of its own (`edited`, with the new text), which listeners get in sequence.
#[utoipa::path(patch, path = "/api/v1/rooms/{room}/messages/{seq}", tag = "messages", request_body = EditMessage,
    params(("room" = String, Path, description = "The room id"), ("seq" = u64, Path, description = "The message")),
    responses(
        (status = 201, description = "Edited: the `edited` entry", body = MessageBody),
        (status = 400, description = "Bad text, or the entry is not a message", body = ProblemBody, content_type = "application/problem+json"),
        (status = 403, description = "Someone else's message, or past the edit window", body = ProblemBody, content_type = "application/problem+json"),
        (status = 404, description = "No such room or message", body = ProblemBody, content_type = "application/problem+json"),
        (status = 409, description = "The message was deleted", body = ProblemBody, content_type = "application/problem+json"),
        (status = 429, body = ProblemBody, content_type = "application/problem+json"),
    ))]
pub async fn edit_message(mut req: Request<State>) -> Result<Response, Problem> {
    let body: EditMessage = json_body(&mut req).await?;
    change_message(&req, Change::Edit, body.text).await
}

/// Delete a message: one's own within the edit window; any, for the room's owner and admins.
/// Its text is removed from history and from disk; listeners get a `deleted` entry.
#[utoipa::path(delete, path = "/api/v1/rooms/{room}/messages/{seq}", tag = "messages",
    params(("room" = String, Path, description = "The room id"), ("seq" = u64, Path, description = "The message")),
    responses(
        (status = 201, description = "Deleted: the `deleted` entry", body = MessageBody),
        (status = 403, body = ProblemBody, content_type = "application/problem+json"),
        (status = 404, body = ProblemBody, content_type = "application/problem+json"),
        (status = 409, description = "Already deleted", body = ProblemBody, content_type = "application/problem+json"),
    ))]
pub async fn delete_message(req: Request<State>) -> Result<Response, Problem> {
    change_message(&req, Change::Delete, String::new()).await
}

/// Add a reaction (one emoji, percent-encoded in the path) to a message; each user adds each
/// emoji once.
#[utoipa::path(put, path = "/api/v1/rooms/{room}/messages/{seq}/reactions/{emoji}", tag = "messages",
    params(("room" = String, Path, description = "The room id"), ("seq" = u64, Path, description = "The message"), ("emoji" = String, Path, description = "One emoji, percent-encoded")),
    responses(
        (status = 201, description = "Added: the `reaction` entry", body = MessageBody),
        (status = 200, description = "Already there: the message as it is", body = MessageBody),
        (status = 400, description = "Not one emoji", body = ProblemBody, content_type = "application/problem+json"),
        (status = 404, body = ProblemBody, content_type = "application/problem+json"),
        (status = 409, description = "Deleted, or the message has the most different reactions allowed", body = ProblemBody, content_type = "application/problem+json"),
    ))]
pub async fn add_reaction(req: Request<State>) -> Result<Response, Problem> {
    react(req, true).await
}

/// Take one's reaction back.
#[utoipa::path(delete, path = "/api/v1/rooms/{room}/messages/{seq}/reactions/{emoji}", tag = "messages",
    params(("room" = String, Path, description = "The room id"), ("seq" = u64, Path, description = "The message"), ("emoji" = String, Path, description = "One emoji, percent-encoded")),
    responses(
        (status = 201, description = "Taken back: the `reaction` entry", body = MessageBody),
        (status = 200, description = "It was not there: the message as it is", body = MessageBody),
        (status = 400, body = ProblemBody, content_type = "application/problem+json"),
        (status = 404, body = ProblemBody, content_type = "application/problem+json"),
    ))]
pub async fn remove_reaction(req: Request<State>) -> Result<Response, Problem> {
    react(req, false).await
}

/// Moderate someone: `mute` (for `seconds`, default 600), `unmute`, `kick` (their streams end
/// with `closed`, `kicked`; they may come back), `ban` (ended with `banned`, and kept out of the
/// room, public or private, until `unban`): the room's owner, its moderators and admins; and
/// `appoint` or `dismiss` a moderator: the owner and admins. Each is an entry of the room's
/// log that everyone listening gets as `moderation`.
#[utoipa::path(post, path = "/api/v1/rooms/{room}/moderation", tag = "rooms", request_body = ModerateBody,
    params(("room" = String, Path, description = "The room id")),
    responses(
        (status = 201, description = "Done: the `moderation` entry", body = MessageBody),
        (status = 400, description = "An unknown action, a bad name or a mute too long", body = ProblemBody, content_type = "application/problem+json"),
        (status = 403, description = "The caller does not moderate the room, or is banned from it", body = ProblemBody, content_type = "application/problem+json"),
        (status = 404, description = "No such room, or no such user (`user-not-found`)", body = ProblemBody, content_type = "application/problem+json"),
        (status = 409, description = "The room's owner, an admin or the caller", body = ProblemBody, content_type = "application/problem+json"),
    ))]
pub async fn moderate(mut req: Request<State>) -> Result<Response, Problem> {
    let room = room_param(&req);
    let user = actor(&req)?;
    let body: ModerateBody = json_body(&mut req).await?;
    let hub = &req.state().hub;
    let kind = moderation(hub, &body.target, &body.action, body.seconds).await?;
    let done = req
        .state()
        .hub
        .submit(Submit::new(user, room, String::new(), kind))
        .await?;
    Ok(posted(&done))
}

/// Say that the caller is typing: everyone listening gets `typing` (at most once every 2 s per
/// person, not in rooms over `--announce-presence-up-to` people). Send it every few seconds
/// while typing. Never stored.
#[utoipa::path(post, path = "/api/v1/rooms/{room}/typing", tag = "rooms",
    params(("room" = String, Path, description = "The room id")),
    responses(
        (status = 204, description = "Noted"),
        (status = 403, description = "Not allowed to post here, or muted", body = ProblemBody, content_type = "application/problem+json"),
        (status = 404, body = ProblemBody, content_type = "application/problem+json"),
    ))]
pub async fn typing(req: Request<State>) -> Result<Response, Problem> {
    let typing = Typing {
        user: actor(&req)?,
        room: room_param(&req),
    };
    req.state().hub.ask(typing).await?;
    Ok(Response::new(StatusCode::NoContent))
}

/// Mark the room read up to `seq` for the caller: listings then count only the messages after
/// it as `unread` (edits, reactions and moderations are not counted). A marker never goes back.
#[utoipa::path(put, path = "/api/v1/rooms/{room}/read", tag = "rooms", request_body = MarkReadBody,
    params(("room" = String, Path, description = "The room id")),
    responses(
        (status = 200, description = "Where the marker is now", body = UnreadBody),
        (status = 429, description = "Over the caller's pace of read markers (`rate-limited`)", body = ProblemBody, content_type = "application/problem+json"),
        (status = 403, body = ProblemBody, content_type = "application/problem+json"),
        (status = 404, body = ProblemBody, content_type = "application/problem+json"),
    ))]
pub async fn mark_read(mut req: Request<State>) -> Result<Response, Problem> {
    let user = actor(&req)?;
    let room = room_param(&req);
    let body: MarkReadBody = json_body(&mut req).await?;
    let mark = MarkRead {
        user,
        room,
        seq: Seq(body.seq),
    };
    let unread = req.state().hub.ask(mark).await?;
    let body = UnreadBody {
        up_to: unread.up_to.0,
        unread: unread.count,
    };
    Ok(json(StatusCode::Ok, &body))
}

async fn react(req: Request<State>, added: bool) -> Result<Response, Problem> {
    let raw = req.param("emoji").unwrap_or_default();
    let emoji = percent_encoding::percent_decode_str(raw)
        .decode_utf8()
        .map_err(|_| {
            Problem::new(
                StatusCode::BadRequest,
                "invalid-emoji",
                "the emoji is not UTF-8",
            )
        })?;
    change_message(
        &req,
        Change::React {
            emoji: &emoji,
            added,
        },
        String::new(),
    )
    .await
}

/// Makes `what` to the message named in the path, as the caller.
async fn change_message(
    req: &Request<State>,
    what: Change<'_>,
    text: String,
) -> Result<Response, Problem> {
    let raw = req.param("seq").unwrap_or_default();
    let of = raw.parse::<u64>().map_err(|_| {
        Problem::new(
            StatusCode::BadRequest,
            "invalid-seq",
            "a message is named by its sequence number (1, 2, 3, ...)",
        )
    })?;
    let kind = change(of, what)?;
    let submit = Submit::new(actor(req)?, room_param(req), text, kind);
    let done = req.state().hub.submit(submit).await?;
    Ok(posted(&done))
}

fn posted(done: &Submitted) -> Response {
    let status = if done.duplicate {
        StatusCode::Ok
    } else {
        StatusCode::Created
    };
    json(status, &MessageBody::from(&*done.message))
}

/// The seed's `POST /submit`: `{room, user, text}`, creating the room if needed.
pub async fn seed_submit(mut req: Request<State>) -> Result<Response, Problem> {
    let caller = caller(&req)?;
    let body: SeedSubmit = json_body(&mut req).await?;
    caller.check_named(body.user.as_deref())?;
    let submit = Submit {
        create_if_missing: true,
        ..Submit::new(caller.user, body.room, body.text, Kind::default())
    };
    let done = req.state().hub.submit(submit).await?;
    Ok(posted(&done))
}

/// Who is in a room.
#[utoipa::path(get, path = "/api/v1/rooms/{room}/presence", tag = "rooms",
    params(("room" = String, Path, description = "The room id"), ("user" = Option<String>, Query, description = "Who asks")),
    responses(
        (status = 200, body = PresenceList),
        (status = 403, description = "A private room the caller is not a member of", body = ProblemBody, content_type = "application/problem+json"),
        (status = 404, description = "No such room", body = ProblemBody, content_type = "application/problem+json"),
    ))]
pub async fn presence(req: Request<State>) -> Result<Response, Problem> {
    let (user, room) = (actor(&req)?, room_param(&req));
    let view = ViewRoom { user, room };
    let view = req.state().hub.ask(view).await?;
    Ok(json(
        StatusCode::Ok,
        &PresenceList {
            room: view.room.id.to_string(),
            users: view.presence.iter().map(PresenceBody::from).collect(),
        },
    ))
}

/// Liveness: 200 while the hub answers.
pub async fn health(req: Request<State>) -> Result<Response, Problem> {
    let hub = &req.state().hub;
    hub.stats().await?;
    let Some(node) = hub.node_id() else {
        return Ok(json(StatusCode::Ok, &serde_json::json!({ "status": "ok" })));
    };
    // With a shared log, a pub/sub subscription that stopped delivering is being replaced:
    // say so, so a load balancer can route around this node meanwhile.
    let (status, code, pubsub) = match hub.log_healthy() {
        Some(false) => (StatusCode::ServiceUnavailable, "degraded", "reconnecting"),
        Some(true) | None => (StatusCode::Ok, "ok", "ok"),
    };
    Ok(json(
        status,
        &serde_json::json!({ "status": code, "node": node, "pubsub": pubsub }),
    ))
}

/// Readiness, for a load balancer or orchestrator: 200 while this node should get traffic; 503
/// with the reason while it shuts down or (with `--redis`) its pub/sub is being reconnected.
/// `/healthz` is liveness.
pub async fn ready(req: Request<State>) -> Result<Response, Problem> {
    Ok(match req.state().hub.readiness().await {
        Ok(()) => json(StatusCode::Ok, &serde_json::json!({ "status": "ready" })),
        Err(why) => json(
            StatusCode::ServiceUnavailable,
            &serde_json::json!({ "status": "not-ready", "reason": why }),
        ),
    })
}

/// Prometheus metrics.
pub async fn metrics(req: Request<State>) -> Result<Response, Problem> {
    let text = req.state().metrics.render(&req.state().hub).await?;
    let mut res = Response::new(StatusCode::Ok);
    res.set_body(text);
    res.set_content_type("text/plain; version=0.0.4; charset=utf-8");
    Ok(res)
}
