//! What SSE and WebSocket share: who is listening, where they resume, and opening the listener.

use roomcast_core::{OpenListener, Resume, Seq};
use roomcast_hub::{Subscription, Wire};
use serde::Deserialize;
use tide::{Request, StatusCode};

use crate::problem::Problem;
use crate::request::query;
use crate::request::{State, caller, room_param};

#[derive(Debug, Deserialize)]
struct StreamQuery {
    since: Option<String>,
}

/// Opens a listener for a stream request as the verified caller, resuming after
/// `Last-Event-ID` (a browser's automatic reconnect) or `?since=`, else live, until the caller's
/// session ends. With `create`, a missing room is created first (the seed's routes do that).
pub async fn subscribe(
    req: &Request<State>,
    wire: Wire,
    create: bool,
) -> Result<Subscription, Problem> {
    let caller = caller(req)?;
    let open = OpenListener {
        user: caller.user.clone(),
        room: room_param(req),
        resume: resume_point(req)?,
        create_if_missing: create,
        replacing: None,
    };
    let hub = &req.state().hub;
    let subscription = Subscription::open(hub, open, wire).await?;
    Ok(subscription.until_signed_out(hub.identity().session_end(&caller)))
}

/// Where a stream resumes: after `Last-Event-ID`, else `?since=`, else live.
pub fn resume_point(req: &Request<State>) -> Result<Resume, Problem> {
    let q: StreamQuery = query(req)?;
    let last_event_id = req.header("Last-Event-ID").map(|v| v.as_str().to_owned());
    let resume = match last_event_id
        .as_deref()
        .or(q.since.as_deref())
        .map(str::trim)
    {
        None | Some("") => Resume::Live,
        Some(n) => Resume::After(Seq(n.parse().map_err(|_| {
            Problem::new(
                StatusCode::BadRequest,
                "invalid-resume-point",
                format!("the resume point {n:?} is not a sequence number"),
            )
        })?)),
    };
    Ok(resume)
}
