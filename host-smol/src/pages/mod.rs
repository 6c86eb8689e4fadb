//! The web chat: server-rendered pages that work without JavaScript, and the two static files.
//! Templates live in `templates/` and are plain askama: they know nothing of tide.
//!
//! Signing in (an account, or a guest nickname) puts the token in an HttpOnly, SameSite=Lax
//! cookie. Every form carries a CSRF token that must match the `roomcast_csrf` cookie (HttpOnly,
//! set by the pages): another site can make a browser post a form, but cannot read that cookie,
//! so it cannot fill in the field. The token is one the server signed
//! (`Identity::csrf_token`), so a cookie planted by someone else (a sibling subdomain) with a
//! field to match passes nothing.

use askama::Template;
use roomcast_core::{
    ChangeMember, CreateRoom, Cursor, History, Kind, ListRooms, MemberChange, OpenDirect, Seq,
    Submit, ViewRoom,
};
use roomcast_hub::identity::{Caller, Issued, Need};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use tide::http::mime;
use tide::{Redirect, Request, Response, StatusCode};

use crate::problem::Problem;
use crate::request::{
    SESSION_COOKIE, State, client_ip, cookie, form_body, room_param, secure_cookie, token,
};
use roomcast_hub::telemetry::Access;

mod view;
use view::{MemberRow, MessageRow, SideRoom};

const CSRF_COOKIE: &str = "roomcast_csrf";
/// Messages shown when a room page loads; older ones are a click (and a request) away.
const PAGE_MESSAGES: usize = 100;

/// What a page may load and do: its own script, stylesheet and API, nothing inline, no frames.
const PAGE_POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
     connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// Who is looking, and the CSRF token their forms carry.
struct Visit {
    me: Option<Caller>,
    csrf: String,
    /// The CSRF cookie must be set on this answer.
    new_csrf: bool,
    /// `; Secure` when the page came over HTTPS.
    secure: &'static str,
}

impl Visit {
    fn of(req: &Request<State>) -> Visit {
        let me = token(req).and_then(|t| req.state().hub.identity().verify(&t).ok());
        if let (Some(me), Some(access)) = (&me, req.ext::<Access>()) {
            access.set_user(&me.user);
        }
        let secure = secure_cookie(req);
        let identity = req.state().hub.identity();
        match cookie(req, CSRF_COOKIE).filter(|c| identity.csrf_issued(c)) {
            Some(csrf) => Visit {
                me,
                csrf,
                new_csrf: false,
                secure,
            },
            None => Visit {
                me,
                csrf: identity.csrf_token(),
                new_csrf: true,
                secure,
            },
        }
    }

    /// The visitor's name, as the page shows it.
    fn me(&self) -> Option<String> {
        self.me.as_ref().map(|c| c.name().to_owned())
    }
}

/// Refuses a form whose CSRF field does not match the visitor's CSRF cookie, or is not a token
/// this server issued.
fn check_csrf(req: &Request<State>, field: &str) -> Result<(), Problem> {
    let issued = |token: &str| req.state().hub.identity().csrf_issued(token);
    match cookie(req, CSRF_COOKIE) {
        Some(expected) if constant_time_eq(&expected, field) && issued(field) => Ok(()),
        _ => Err(Problem::new(
            StatusCode::Forbidden,
            "csrf",
            "the form's CSRF token is missing or stale: reload the page and try again",
        )),
    }
}

fn constant_time_eq(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |d, (x, y)| d | (x ^ y)) == 0
}

/// A form of the page: every one carries the visitor's CSRF token.
trait Form: DeserializeOwned {
    fn csrf(&self) -> &str;
}

macro_rules! forms {
    ($($form:ty),*) => {$(
        impl Form for $form {
            fn csrf(&self) -> &str {
                &self.csrf
            }
        }
    )*};
}
forms!(
    RoomForm,
    UserForm,
    MessageForm,
    CredentialsForm,
    GuestForm,
    CsrfForm
);

/// The one way a form post is read: the body as `T`, refused unless its CSRF field matches.
async fn form_post<T: Form>(req: &mut Request<State>) -> Result<T, Problem> {
    let form: T = form_body(req).await?;
    check_csrf(req, form.csrf())?;
    Ok(form)
}

/// A form post from a signed-in visitor, with the poster; without a session, the redirect to
/// sign in that comes back to `next`.
async fn signed_in_post<T: Form>(
    req: &mut Request<State>,
    next: &str,
) -> Result<Result<(T, Caller), Box<Response>>, Problem> {
    let form = form_post(req).await?;
    Ok(signed_in(&Visit::of(req), next).map(|me| (form, me)))
}

/// The signed-in caller, or a redirect to the sign-in page that comes back to `next`.
fn signed_in(visit: &Visit, next: &str) -> Result<Caller, Box<Response>> {
    visit.me.clone().ok_or_else(|| {
        Box::new(Redirect::see_other(format!("/sign-in?next={}", urlencode(next))).into())
    })
}

fn urlencode(s: &str) -> String {
    serde_urlencoded::to_string([("", s)])
        .map(|e| e.trim_start_matches('=').to_owned())
        .unwrap_or_default()
}

/// Where to go after signing in: a path on this site, else `/`. Never another site (`//host`,
/// `/\\host`, a scheme), and never a control character or space, which browsers strip or
/// which would end the `Location` header early.
fn safe_next(next: &str) -> String {
    let local = next.starts_with('/')
        && !next.starts_with("//")
        && next
            .chars()
            .all(|c| !c.is_control() && !c.is_whitespace() && c != '\\');
    if local {
        next.to_owned()
    } else {
        "/".to_owned()
    }
}

fn html(status: StatusCode, page: &impl Template, visit: &Visit) -> Result<Response, Problem> {
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
    // The pages load only their own files: an injected script or a framing page gets nothing.
    res.insert_header("Content-Security-Policy", PAGE_POLICY);
    res.insert_header("X-Content-Type-Options", "nosniff");
    res.insert_header("Referrer-Policy", "same-origin");
    if visit.new_csrf {
        res.append_header(
            "Set-Cookie",
            format!(
                "{CSRF_COOKIE}={}; Path=/; HttpOnly; SameSite=Strict{}",
                visit.csrf, visit.secure
            ),
        );
    }
    Ok(res)
}

/// Signs the browser in: the token goes in an HttpOnly cookie, never in a URL or to scripts.
fn signed_in_redirect(req: &Request<State>, issued: &Issued, next: &str) -> Response {
    let mut res: Response = Redirect::see_other(safe_next(next)).into();
    let max_age = issued.expires_at.saturating_sub(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
    );
    res.append_header(
        "Set-Cookie",
        format!(
            "{SESSION_COOKIE}={}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age}{}",
            issued.token,
            secure_cookie(req)
        ),
    );
    res
}

struct RoomRow {
    id: String,
    /// `#id`, or the other person in a direct-message room.
    label: String,
    latest: u64,
    users: usize,
    private: bool,
    direct: bool,
}

#[derive(Template)]
#[template(path = "index.html")]
struct IndexPage {
    me: Option<String>,
    csrf: String,
    rooms: Vec<RoomRow>,
    error: Option<String>,
}

#[derive(Template)]
#[template(path = "room.html")]
struct RoomPage {
    me: Option<String>,
    csrf: String,
    room: String,
    /// `#room`, or the other person's name in a direct-message room.
    title: String,
    private: bool,
    direct: bool,
    messages: Vec<MessageRow>,
    /// Who is here: each one's id and name.
    present: Vec<(String, String)>,
    /// The visitor's id (the script tells their own messages by it).
    me_id: String,
    /// The oldest message still held.
    first_held: u64,
    /// The first message shown (`latest + 1` when none are).
    first_shown: u64,
    latest: u64,
    /// Showing a page of older messages (`?before=`), not the newest: the page is not live.
    older: bool,
    rooms: Vec<SideRoom>,
    directs: Vec<SideRoom>,
    /// The visitor may invite and remove members (the owner of a private room, or an admin).
    may_manage_members: bool,
    /// The visitor moderates the room (its owner, a moderator or an admin).
    moderates: bool,
    members: Vec<MemberRow>,
    error: Option<String>,
}

/// A room that does not exist (or a name that cannot be one), with a button to create it.
#[derive(Template)]
#[template(path = "missing_room.html")]
struct MissingRoomPage {
    me: Option<String>,
    csrf: String,
    room: String,
    /// Why it cannot be made, for a name that is not a room name.
    invalid: Option<String>,
}

#[derive(Template)]
#[template(path = "sign_in.html")]
struct SignInPage {
    me: Option<String>,
    csrf: String,
    guests: bool,
    next: String,
    error: Option<String>,
}

#[derive(Template)]
#[template(path = "register.html")]
struct RegisterPage {
    me: Option<String>,
    csrf: String,
    next: String,
    error: Option<String>,
}

/// `GET /`: the rooms the visitor may see, and forms to open one or message someone.
pub async fn index(req: Request<State>) -> Result<Response, Problem> {
    render_index(&req, StatusCode::Ok, None).await
}

async fn render_index(
    req: &Request<State>,
    status: StatusCode,
    error: Option<String>,
) -> Result<Response, Problem> {
    let visit = Visit::of(req);
    let me = match signed_in(&visit, "/") {
        Ok(me) => me,
        Err(redirect) => return Ok(*redirect),
    };
    // As many as a page may hold.
    let list = ListRooms {
        user: me.user.clone(),
        after: None,
        limit: Some(usize::MAX),
    };
    let rooms = req.state().hub.ask(list).await?;
    let rooms = rooms
        .rooms
        .iter()
        .map(|r| RoomRow {
            id: r.id.to_string(),
            label: view::title(r, &me.user),
            latest: r.latest.0,
            users: r.users,
            private: r.private,
            direct: r.direct_with(&me.user).is_some(),
        })
        .collect();
    let page = IndexPage {
        me: visit.me(),
        csrf: visit.csrf.clone(),
        rooms,
        error,
    };
    html(status, &page, &visit)
}

#[derive(Debug, Deserialize)]
struct RoomForm {
    room: String,
    #[serde(default)]
    private: bool,
    #[serde(default)]
    csrf: String,
}

/// `POST /rooms` (a form): opens the room (public or private) and goes there.
pub async fn create_room(mut req: Request<State>) -> Result<Response, Problem> {
    let (form, me) = match signed_in_post::<RoomForm>(&mut req, "/").await? {
        Ok(posted) => posted,
        Err(redirect) => return Ok(*redirect),
    };
    let id = form.room.trim().to_owned();
    let create = CreateRoom {
        user: me.user,
        room: id.clone(),
        private: form.private,
    };
    let created = req.state().hub.ask(create).await;
    match created {
        Ok(created) => Ok(Redirect::see_other(format!("/room/{}", created.room.id)).into()),
        Err(e) => {
            let problem = Problem::from(e);
            let error = format!("Could not open “{id}”: {}", problem.detail);
            render_index(&req, problem.status, Some(error)).await
        }
    }
}

#[derive(Debug, Deserialize)]
struct UserForm {
    user: String,
    #[serde(default)]
    csrf: String,
}

/// `POST /direct` (a form): the direct-message room with another user.
pub async fn direct(mut req: Request<State>) -> Result<Response, Problem> {
    let (form, me) = match signed_in_post::<UserForm>(&mut req, "/").await? {
        Ok(posted) => posted,
        Err(redirect) => return Ok(*redirect),
    };
    let identity = req.state().hub.identity();
    let direct = match identity.resolve(form.user.trim(), Need::Present).await {
        Ok(other) => OpenDirect {
            user: me.user,
            other: other.to_string(),
        },
        Err(e) => {
            let problem = Problem::from(e);
            return render_index(&req, problem.status, Some(problem.detail)).await;
        }
    };
    match req.state().hub.ask(direct).await {
        Ok(created) => Ok(Redirect::see_other(format!("/room/{}", created.room.id)).into()),
        Err(e) => {
            let problem = Problem::from(e);
            render_index(&req, problem.status, Some(problem.detail)).await
        }
    }
}

#[derive(Debug, Deserialize)]
struct RoomQuery {
    /// Show the messages before this one instead of the newest (a page back, without script).
    before: Option<u64>,
}

/// `GET /room/{room}`: the chat page. Never creates the room: one that does not exist gets a
/// "no such room" page with a button to create it. A private room the visitor is not a member
/// of sends them back to the lobby with the reason.
pub async fn room(req: Request<State>) -> Result<Response, Problem> {
    let before = crate::request::query::<_, RoomQuery>(&req)?.before;
    let answer = render_room(&req, StatusCode::Ok, before, None).await;
    refused_room(&req, answer).await
}

/// A room page's refusal as a page: the lobby for a private room, "no such room" for a missing
/// one.
async fn refused_room(
    req: &Request<State>,
    answer: Result<Response, Problem>,
) -> Result<Response, Problem> {
    match answer {
        Err(problem) if problem.status == StatusCode::Forbidden => {
            let room = room_param(req);
            let error = format!("#{room} is private: ask its owner to invite you.");
            render_index(req, StatusCode::Forbidden, Some(error)).await
        }
        Err(problem) if matches!(problem.code, "room-not-found" | "invalid-room-id") => {
            let visit = Visit::of(req);
            let page = MissingRoomPage {
                me: visit.me(),
                csrf: visit.csrf.clone(),
                room: room_param(req),
                invalid: (problem.code == "invalid-room-id").then_some(problem.detail),
            };
            html(problem.status, &page, &visit)
        }
        other => other,
    }
}

async fn render_room(
    req: &Request<State>,
    status: StatusCode,
    before: Option<u64>,
    error: Option<String>,
) -> Result<Response, Problem> {
    let visit = Visit::of(req);
    let room = room_param(req);
    let me = match signed_in(&visit, &format!("/room/{room}")) {
        Ok(me) => me,
        Err(redirect) => return Ok(*redirect),
    };
    let hub = &req.state().hub;
    let view = ViewRoom {
        user: me.user.clone(),
        room: room.clone(),
    };
    let view = hub.ask(view).await?;
    let history = History {
        user: me.user.clone(),
        room: room.clone(),
        cursor: before.map_or(Cursor::Newest, |b| Cursor::Before(Seq(b))),
        limit: Some(PAGE_MESSAGES),
    };
    let page = hub.history(history).await?;
    // As many rooms as a listing page holds.
    let list = ListRooms {
        user: me.user.clone(),
        after: None,
        limit: Some(usize::MAX),
    };
    let listed = hub.ask(list).await?;
    let (rooms, directs) = view::sidebar(&listed.rooms, &me.user, &room);
    let first_shown = page.messages.first().map_or(page.latest.0 + 1, |m| m.seq.0);
    let direct = view.room.direct_with(&me.user).is_some();
    let page = RoomPage {
        me: visit.me(),
        csrf: visit.csrf.clone(),
        title: view::title(&view.room, &me.user),
        private: view.room.private,
        direct,
        messages: view::message_rows(&page.messages),
        me_id: me.user.clone(),
        present: view
            .presence
            .iter()
            .map(|p| (p.user.to_string(), p.user.name().to_owned()))
            .collect(),
        first_held: page.first_held.0,
        first_shown,
        latest: page.latest.0,
        older: before.is_some(),
        rooms,
        directs,
        may_manage_members: view.may_manage_members,
        moderates: view.moderates,
        members: if view.may_manage_members {
            view::members(&view.room, &view.presence)
        } else {
            Vec::new()
        },
        room,
        error,
    };
    html(status, &page, &visit)
}

#[derive(Debug, Deserialize)]
struct MessageForm {
    /// The seed's form named the poster; it must be the signed-in user if given.
    user: Option<String>,
    /// The seed called this field `message`.
    #[serde(alias = "message")]
    text: String,
    #[serde(default)]
    csrf: String,
}

/// `POST /room/{room}` (a form, works without JavaScript): posts, then goes back to the room
/// (which opens at the newest message). Never creates the room.
/// A refusal re-renders the page with the reason and the refusal's status.
pub async fn post_message(mut req: Request<State>) -> Result<Response, Problem> {
    let room = room_param(&req);
    let (form, me) = match signed_in_post::<MessageForm>(&mut req, &format!("/room/{room}")).await?
    {
        Ok(posted) => posted,
        Err(redirect) => return Ok(*redirect),
    };
    let named = form
        .user
        .as_deref()
        .map(str::trim)
        .filter(|n| !n.is_empty());
    me.check_named(named)?;
    let submit = Submit::new(me.user, room.clone(), form.text, Kind::default());
    let result = req.state().hub.submit(submit).await;
    match result {
        Ok(_) => Ok(Redirect::see_other(format!("/room/{room}")).into()),
        Err(e) => {
            let problem = Problem::from(e);
            let answer = render_room(&req, problem.status, None, Some(problem.detail)).await;
            refused_room(&req, answer).await
        }
    }
}

/// `POST /room/{room}/members` and `/members/remove` (forms): the owner invites or removes.
pub async fn members(mut req: Request<State>) -> Result<Response, Problem> {
    let room = room_param(&req);
    let (form, me) = match signed_in_post::<UserForm>(&mut req, &format!("/room/{room}")).await? {
        Ok(posted) => posted,
        Err(redirect) => return Ok(*redirect),
    };
    let (change, need) = if req.url().path().ends_with("/remove") {
        (MemberChange::Remove, Need::Known)
    } else {
        (MemberChange::Add, Need::Present)
    };
    let identity = req.state().hub.identity();
    let changed = match identity.resolve(form.user.trim(), need).await {
        Ok(member) => {
            let change = ChangeMember {
                user: me.user,
                room: room.clone(),
                member: member.to_string(),
                change,
            };
            req.state().hub.ask(change).await.map_err(Problem::from)
        }
        Err(e) => Err(Problem::from(e)),
    };
    match changed {
        Ok(_) => Ok(Redirect::see_other(format!("/room/{room}")).into()),
        Err(problem) => {
            let answer = render_room(&req, problem.status, None, Some(problem.detail)).await;
            refused_room(&req, answer).await
        }
    }
}

#[derive(Debug, Deserialize)]
struct NextQuery {
    next: Option<String>,
}

/// Which of the two sign-in pages.
#[derive(Clone, Copy)]
enum AuthPage {
    SignIn,
    Register,
}

/// `GET /sign-in`: the guest nickname form (if guests are on) and the sign-in form.
pub async fn sign_in_page(req: Request<State>) -> Result<Response, Problem> {
    let next: NextQuery = crate::request::query(&req)?;
    let next = next.next.unwrap_or_default();
    render_auth_page(&req, AuthPage::SignIn, StatusCode::Ok, &next, None)
}

/// `GET /register`.
pub async fn register_page(req: Request<State>) -> Result<Response, Problem> {
    let next: NextQuery = crate::request::query(&req)?;
    let next = next.next.unwrap_or_default();
    render_auth_page(&req, AuthPage::Register, StatusCode::Ok, &next, None)
}

fn render_auth_page(
    req: &Request<State>,
    which: AuthPage,
    status: StatusCode,
    next: &str,
    error: Option<String>,
) -> Result<Response, Problem> {
    let visit = Visit::of(req);
    let (me, csrf, next) = (visit.me(), visit.csrf.clone(), safe_next(next));
    match which {
        AuthPage::SignIn => {
            let guests = req.state().hub.identity().guests_allowed();
            let page = SignInPage {
                me,
                csrf,
                guests,
                next,
                error,
            };
            html(status, &page, &visit)
        }
        AuthPage::Register => html(
            status,
            &RegisterPage {
                me,
                csrf,
                next,
                error,
            },
            &visit,
        ),
    }
}

#[derive(Debug, Deserialize)]
struct CredentialsForm {
    name: String,
    password: String,
    #[serde(default)]
    next: String,
    #[serde(default)]
    csrf: String,
}

/// `POST /sign-in` (a form).
pub async fn sign_in(req: Request<State>) -> Result<Response, Problem> {
    credentials(req, AuthPage::SignIn).await
}

/// `POST /register` (a form).
pub async fn register(req: Request<State>) -> Result<Response, Problem> {
    credentials(req, AuthPage::Register).await
}

/// A name and password posted to `which` page: signed in (cookie and redirect), or the page
/// again with the reason.
async fn credentials(mut req: Request<State>, which: AuthPage) -> Result<Response, Problem> {
    let form: CredentialsForm = form_post(&mut req).await?;
    let from = client_ip(&req);
    let identity = req.state().hub.identity();
    let name = form.name.trim().to_owned();
    let issued = match which {
        AuthPage::SignIn => identity.sign_in(name, form.password, from).await,
        AuthPage::Register => identity.register(name, form.password, from).await,
    };
    match issued {
        Ok(issued) => Ok(signed_in_redirect(&req, &issued, &form.next)),
        Err(e) => {
            let problem = Problem::from(e);
            render_auth_page(
                &req,
                which,
                problem.status,
                &form.next,
                Some(problem.detail),
            )
        }
    }
}

#[derive(Debug, Deserialize)]
struct GuestForm {
    nickname: String,
    #[serde(default)]
    next: String,
    #[serde(default)]
    csrf: String,
}

/// `POST /guest` (a form): a guest session for a nickname.
pub async fn guest(mut req: Request<State>) -> Result<Response, Problem> {
    let form: GuestForm = form_post(&mut req).await?;
    let from = client_ip(&req);
    match req
        .state()
        .hub
        .identity()
        .guest(form.nickname.trim().to_owned(), from)
        .await
    {
        Ok(issued) => Ok(signed_in_redirect(&req, &issued, &form.next)),
        Err(e) => {
            let problem = Problem::from(e);
            render_auth_page(
                &req,
                AuthPage::SignIn,
                problem.status,
                &form.next,
                Some(problem.detail),
            )
        }
    }
}

#[derive(Debug, Deserialize)]
struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

/// `POST /sign-out` (a form): ends the session for real and clears the cookie.
pub async fn sign_out(mut req: Request<State>) -> Result<Response, Problem> {
    form_post::<CsrfForm>(&mut req).await?;
    if let Some(me) = Visit::of(&req).me {
        req.state().hub.identity().sign_out(me).await?;
    }
    let mut res: Response = Redirect::see_other("/sign-in").into();
    res.append_header(
        "Set-Cookie",
        format!(
            "{SESSION_COOKIE}=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0{}",
            secure_cookie(&req)
        ),
    );
    Ok(res)
}

/// `GET /assets/{file}`: the stylesheet, the page's script and the client library, built into
/// the binary.
pub async fn asset(req: Request<State>) -> Result<Response, Problem> {
    let (body, mime) = match req.param("file").unwrap_or_default() {
        "app.css" => (include_str!("../../../templates/assets/app.css"), mime::CSS),
        "app.js" => (
            include_str!("../../../templates/assets/app.js"),
            mime::JAVASCRIPT,
        ),
        // The client library, for this page and any other.
        "roomcast.js" => (
            include_str!("../../../templates/assets/roomcast.js"),
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

#[cfg(test)]
mod tests {
    use super::safe_next;

    #[test]
    fn only_paths_on_this_site_are_followed() {
        for local in ["/", "/room/lobby", "/room/lobby?x=1#end", "/a%0Db"] {
            assert_eq!(safe_next(local), local);
        }
        for hostile in [
            "//evil.example",
            "/\\evil.example",
            "/\t/evil.example",
            "/\r\nSet-Cookie: x=y",
            "/ok\n",
            "/\0",
            "/a b",
            "https://evil.example",
            "javascript:alert(1)",
            "",
        ] {
            assert_eq!(safe_next(hostile), "/", "{hostile:?}");
        }
    }
}
