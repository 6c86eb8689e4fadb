//! The web chat: server-rendered pages that work without JavaScript, and the two static files.
//! Templates live in `templates/` and are plain askama: they know nothing of tide.

use askama::Template;
use roomcast_core::{Cursor, Submit};
use serde::Deserialize;
use tide::http::mime;
use tide::{Redirect, Request, Response, StatusCode};

use crate::app::{State, room_param};
use crate::problem::{Problem, form_body};
use crate::wire::rfc3339;

const COOKIE: &str = "roomcast_user";
/// Messages shown when a room page loads; older ones are a scroll (and a request) away.
const PAGE_MESSAGES: usize = 100;

struct RoomRow {
    id: String,
    latest: u64,
    users: usize,
}

#[derive(Template)]
#[template(path = "index.html")]
struct IndexPage {
    rooms: Vec<RoomRow>,
    error: Option<String>,
}

struct MessageRow {
    seq: u64,
    user: String,
    text: String,
    sent_at: String,
    /// Shown until the script replaces it with local time.
    time: String,
}

struct PresentRow {
    user: String,
}

#[derive(Template)]
#[template(path = "room.html")]
struct RoomPage {
    room: String,
    messages: Vec<MessageRow>,
    present: Vec<PresentRow>,
    first_held: u64,
    latest: u64,
    name: String,
    error: Option<String>,
}

fn html(status: StatusCode, page: &impl Template) -> Result<Response, Problem> {
    let body = page.render().map_err(|e| {
        Problem::new(
            StatusCode::InternalServerError,
            "render-failed",
            format!("the page could not be rendered: {e}"),
        )
    })?;
    let mut res = Response::new(status);
    res.set_body(body);
    res.set_content_type(mime::HTML);
    Ok(res)
}

/// The name remembered in the `roomcast_user` cookie, if any.
fn remembered_name(req: &Request<State>) -> Option<String> {
    let header = req.header("Cookie")?;
    header
        .iter()
        .flat_map(|v| v.as_str().split(';'))
        .find_map(|pair| {
            let pairs: Vec<(String, String)> = serde_urlencoded::from_str(pair.trim()).ok()?;
            pairs.into_iter().find(|(k, _)| k == COOKIE).map(|(_, v)| v)
        })
}

fn remember_name(res: &mut Response, name: &str) {
    let cookie = serde_urlencoded::to_string([(COOKIE, name)]).unwrap_or_default();
    res.insert_header(
        "Set-Cookie",
        format!("{cookie}; Path=/; Max-Age=31536000; SameSite=Lax"),
    );
}

/// Pages act as `anonymous` until accounts exist: the remembered name only fills the form, so
/// a stale or invalid cookie can never make a page fail.
const VISITOR: &str = "anonymous";

/// `GET /`: the rooms, and a form to open one.
pub async fn index(req: Request<State>) -> Result<Response, Problem> {
    render_index(&req, StatusCode::Ok, None).await
}

async fn render_index(
    req: &Request<State>,
    status: StatusCode,
    error: Option<String>,
) -> Result<Response, Problem> {
    let rooms = req
        .state()
        .hub
        .with_core(move |core, _| core.rooms(VISITOR, None, 500))
        .await?;
    let rooms = rooms
        .rooms
        .iter()
        .map(|r| RoomRow {
            id: r.id.to_string(),
            latest: r.latest.0,
            users: r.users,
        })
        .collect();
    html(status, &IndexPage { rooms, error })
}

#[derive(Debug, Deserialize)]
struct RoomForm {
    room: String,
}

/// `POST /rooms` (a form): opens the room and goes there.
pub async fn create_room(mut req: Request<State>) -> Result<Response, Problem> {
    let form: RoomForm = form_body(&mut req).await?;
    let room = form.room.trim().to_owned();
    let id = room.clone();
    match req
        .state()
        .hub
        .with_core(move |core, now| core.create_room(now, VISITOR, &room))
        .await
    {
        Ok(created) => Ok(Redirect::see_other(format!("/room/{}", created.room.id)).into()),
        Err(e) => {
            let problem = Problem::from(e);
            render_index(
                &req,
                problem.status,
                Some(format!("Could not open “{id}”: {}", problem.detail)),
            )
            .await
        }
    }
}

/// `GET /room/{room}`: the chat page, creating the room on first visit (as the seed did).
pub async fn room(req: Request<State>) -> Result<Response, Problem> {
    render_room(&req, StatusCode::Ok, None, None).await
}

async fn render_room(
    req: &Request<State>,
    status: StatusCode,
    error: Option<String>,
    name: Option<String>,
) -> Result<Response, Problem> {
    let (room, hub) = (room_param(req), &req.state().hub);
    let present = hub
        .with_core(move |core, now| {
            core.create_room(now, VISITOR, &room)?;
            core.presence(VISITOR, &room)
        })
        .await?;
    let page = hub
        .history(
            VISITOR.into(),
            room_param(req),
            Cursor::Newest,
            PAGE_MESSAGES,
        )
        .await?;
    let messages = page
        .messages
        .iter()
        .map(|m| {
            let sent_at = rfc3339(m.sent_at);
            MessageRow {
                seq: m.seq.0,
                user: m.user.to_string(),
                text: m.text.clone(),
                time: sent_at[11..16].to_owned(),
                sent_at,
            }
        })
        .collect();
    let present = present
        .iter()
        .map(|p| PresentRow {
            user: p.user.to_string(),
        })
        .collect();
    let name = name.or_else(|| remembered_name(req)).unwrap_or_default();
    let page = RoomPage {
        room: room_param(req),
        messages,
        present,
        first_held: page.first_held.0,
        latest: page.latest.0,
        name,
        error,
    };
    html(status, &page)
}

#[derive(Debug, Deserialize)]
struct MessageForm {
    user: String,
    /// The seed called this field `message`.
    #[serde(alias = "message")]
    text: String,
}

/// `POST /room/{room}` (a form, works without JavaScript): posts, then goes back to the room.
/// A refusal re-renders the page with the reason and the refusal's status.
pub async fn post_message(mut req: Request<State>) -> Result<Response, Problem> {
    let form: MessageForm = form_body(&mut req).await?;
    let room = room_param(&req);
    let name = form.user.trim().to_owned();
    let submit = Submit {
        user: name.clone(),
        room: room.clone(),
        text: form.text,
        idempotency_key: None,
    };
    let result = req
        .state()
        .hub
        .with_core(move |core, now| {
            core.create_room(now, &submit.user, &submit.room)?;
            core.submit(now, submit)
        })
        .await;
    match result {
        Ok(_) => {
            let mut res: Response = Redirect::see_other(format!("/room/{room}")).into();
            remember_name(&mut res, &name);
            Ok(res)
        }
        Err(e) => {
            let problem = Problem::from(e);
            render_room(&req, problem.status, Some(problem.detail), Some(name)).await
        }
    }
}

/// `GET /assets/{file}`: the stylesheet and the script, built into the binary.
pub async fn asset(req: Request<State>) -> Result<Response, Problem> {
    let (body, mime) = match req.param("file").unwrap_or_default() {
        "app.css" => (include_str!("../../templates/assets/app.css"), mime::CSS),
        "app.js" => (
            include_str!("../../templates/assets/app.js"),
            mime::JAVASCRIPT,
        ),
        other => {
            return Err(Problem::new(
                StatusCode::NotFound,
                "no-such-asset",
                format!("no asset named {other:?}"),
            ));
        }
    };
    let mut res = Response::new(StatusCode::Ok);
    res.set_body(body);
    res.set_content_type(mime);
    res.insert_header("Cache-Control", "public, max-age=300");
    Ok(res)
}
