//! What SSE and WebSocket share: who is listening, where they resume, and opening the listener.

use roomcast_core::{OpenListener, Resume, Seq};
use roomcast_hub::{Subscription, Wire};
use serde::Deserialize;
use tide::{Request, StatusCode};

use crate::problem::Problem;
use crate::request::query;
use crate::request::{State, actor, room_param};

#[derive(Debug, Deserialize)]
struct StreamQuery {
    since: Option<String>,
}

/// Opens a listener for a stream request as the verified caller, resuming after
/// `Last-Event-ID` (a browser's automatic reconnect) or `?since=`, else live. With `create`, a
/// missing room is created first (the seed's routes do that).
pub async fn subscribe(
    req: &Request<State>,
    wire: Wire,
    create: bool,
) -> Result<Subscription, Problem> {
    let open = OpenListener {
        user: actor(req)?,
        room: room_param(req),
        resume: resume_point(req)?,
        create_if_missing: create,
        replacing: None,
    };
    Ok(Subscription::open(&req.state().hub, open, wire).await?)
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
