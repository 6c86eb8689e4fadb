//! The route table: which handler answers which method on which path, and what the router
//! itself answers (404 and 405, as problems, with `Allow`). Handlers translate HTTP to hub
//! commands and back; chat rules live in the core.

use std::future::Future;

use tide::{Request, Response, StatusCode};

use crate::problem::Problem;
use crate::request::{RouteName, State};
use crate::{api, attachments, auth, openapi, origins, pages, sse, ws};

/// Adapts a handler that fails with a [`Problem`] into a tide endpoint that answers with it,
/// naming its route for the access log.
fn h<F, Fut>(route: &'static str, f: F) -> impl tide::Endpoint<State>
where
    F: Fn(Request<State>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<Response, Problem>> + Send + 'static,
{
    move |req: Request<State>| {
        let f = f.clone();
        async move {
            let mut res = f(req).await.unwrap_or_else(Response::from);
            res.insert_ext(RouteName(route));
            Ok::<Response, tide::Error>(res)
        }
    }
}

/// A route under construction: its pattern goes to every handler it gets, and its methods to
/// the table that answers `Allow`.
struct Route<'a> {
    route: tide::Route<'a, State>,
    pattern: &'static str,
    methods: &'a mut Vec<&'static str>,
}

impl Route<'_> {
    fn get<F, Fut>(self, f: F) -> Self
    where
        F: Fn(Request<State>) -> Fut + Clone + Send + Sync + 'static,
        Fut: Future<Output = Result<Response, Problem>> + Send + 'static,
    {
        self.on(tide::http::Method::Get, f)
    }

    fn post<F, Fut>(self, f: F) -> Self
    where
        F: Fn(Request<State>) -> Fut + Clone + Send + Sync + 'static,
        Fut: Future<Output = Result<Response, Problem>> + Send + 'static,
    {
        self.on(tide::http::Method::Post, f)
    }

    fn delete<F, Fut>(self, f: F) -> Self
    where
        F: Fn(Request<State>) -> Fut + Clone + Send + Sync + 'static,
        Fut: Future<Output = Result<Response, Problem>> + Send + 'static,
    {
        self.on(tide::http::Method::Delete, f)
    }

    fn patch<F, Fut>(self, f: F) -> Self
    where
        F: Fn(Request<State>) -> Fut + Clone + Send + Sync + 'static,
        Fut: Future<Output = Result<Response, Problem>> + Send + 'static,
    {
        self.on(tide::http::Method::Patch, f)
    }

    fn put<F, Fut>(self, f: F) -> Self
    where
        F: Fn(Request<State>) -> Fut + Clone + Send + Sync + 'static,
        Fut: Future<Output = Result<Response, Problem>> + Send + 'static,
    {
        self.on(tide::http::Method::Put, f)
    }

    #[allow(
        clippy::wildcard_enum_match_arm,
        reason = "routes take GET, POST, PATCH, PUT or DELETE"
    )]
    fn on<F, Fut>(mut self, method: tide::http::Method, f: F) -> Self
    where
        F: Fn(Request<State>) -> Fut + Clone + Send + Sync + 'static,
        Fut: Future<Output = Result<Response, Problem>> + Send + 'static,
    {
        self.route.method(method, h(self.pattern, f));
        self.methods.push(match method {
            tide::http::Method::Get => "GET, HEAD",
            tide::http::Method::Post => "POST",
            tide::http::Method::Patch => "PATCH",
            tide::http::Method::Put => "PUT",
            _ => "DELETE",
        });
        self
    }
}

/// Every route's pattern and the methods it takes.
#[derive(Default)]
struct Routes(Vec<(&'static str, Vec<&'static str>)>);

impl Routes {
    fn at<'a>(&'a mut self, app: &'a mut tide::Server<State>, pattern: &'static str) -> Route<'a> {
        self.0.push((pattern, Vec::new()));
        let methods = &mut self.0.last_mut().expect("just pushed").1;
        Route {
            route: app.at(pattern),
            pattern,
            methods,
        }
    }

    /// The methods the route matching `path` takes, for `Allow`.
    fn allowed(&self, path: &str) -> Option<String> {
        let matches = |pattern: &str| {
            let (mut p, mut s) = (pattern.split('/'), path.split('/'));
            loop {
                match (p.next(), s.next()) {
                    (None, None) => return true,
                    (Some(want), Some(got)) if want.starts_with(':') && !got.is_empty() => {}
                    (Some(want), Some(got)) if want == got => {}
                    _ => return false,
                }
            }
        };
        self.0
            .iter()
            .find(|(pattern, _)| matches(pattern))
            .map(|(_, methods)| methods.join(", "))
    }
}

/// Builds the web application.
pub fn build(state: State) -> tide::Server<State> {
    let mut app = tide::with_state(state);
    let mut routes = Routes::default();
    // The web page and the seed's routes.
    routes.at(&mut app, "/").get(pages::index);
    routes.at(&mut app, "/rooms").post(pages::create_room);
    routes.at(&mut app, "/direct").post(pages::direct);
    routes
        .at(&mut app, "/sign-in")
        .get(pages::sign_in_page)
        .post(pages::sign_in);
    routes
        .at(&mut app, "/register")
        .get(pages::register_page)
        .post(pages::register);
    routes.at(&mut app, "/guest").post(pages::guest);
    routes.at(&mut app, "/sign-out").post(pages::sign_out);
    routes
        .at(&mut app, "/room/:room")
        .get(pages::room)
        .post(pages::post_message)
        .delete(api::delete_room);
    routes
        .at(&mut app, "/room/:room/members")
        .post(pages::members);
    routes
        .at(&mut app, "/room/:room/members/remove")
        .post(pages::members);
    routes.at(&mut app, "/stream/:room").get(sse::seed_stream);
    routes.at(&mut app, "/submit").post(api::seed_submit);
    routes.at(&mut app, "/assets/:file").get(pages::asset);
    // The JSON API.
    routes
        .at(&mut app, "/api/openapi.json")
        .get(openapi::document);
    routes
        .at(&mut app, "/api/v1/rooms")
        .get(api::list_rooms)
        .post(api::create_room);
    routes
        .at(&mut app, "/api/v1/rooms/:room")
        .get(api::room)
        .delete(api::delete_room);
    routes
        .at(&mut app, "/api/v1/rooms/:room/messages")
        .get(api::history)
        .post(api::post_message);
    routes
        .at(&mut app, "/api/v1/rooms/:room/messages/:seq")
        .patch(api::edit_message)
        .delete(api::delete_message);
    routes
        .at(
            &mut app,
            "/api/v1/rooms/:room/messages/:seq/reactions/:emoji",
        )
        .put(api::add_reaction)
        .delete(api::remove_reaction);
    routes
        .at(&mut app, "/api/v1/rooms/:room/moderation")
        .post(api::moderate);
    routes
        .at(&mut app, "/api/v1/rooms/:room/typing")
        .post(api::typing);
    routes
        .at(&mut app, "/api/v1/rooms/:room/read")
        .put(api::mark_read);
    routes
        .at(&mut app, "/api/v1/rooms/:room/attachments")
        .post(attachments::upload);
    routes
        .at(&mut app, "/api/v1/rooms/:room/attachments/:id")
        .get(attachments::download);
    routes
        .at(&mut app, "/api/v1/rooms/:room/presence")
        .get(api::presence);
    routes
        .at(&mut app, "/api/v1/rooms/:room/members")
        .post(api::invite);
    routes
        .at(&mut app, "/api/v1/rooms/:room/members/:user")
        .delete(api::remove_member);
    routes.at(&mut app, "/api/v1/direct").post(api::direct);
    routes
        .at(&mut app, "/api/v1/auth/register")
        .post(auth::register);
    routes
        .at(&mut app, "/api/v1/auth/sign-in")
        .post(auth::sign_in);
    routes.at(&mut app, "/api/v1/auth/guest").post(auth::guest);
    routes
        .at(&mut app, "/api/v1/auth/sign-out")
        .post(auth::sign_out);
    routes.at(&mut app, "/api/v1/auth/me").get(auth::me);
    routes
        .at(&mut app, "/api/v1/rooms/:room/events")
        .get(sse::stream);
    routes
        .at(&mut app, "/api/v1/rooms/:room/ws")
        .get(ws::upgrade);
    // Operations.
    routes.at(&mut app, "/healthz").get(api::health);
    routes.at(&mut app, "/readyz").get(api::ready);
    routes.at(&mut app, "/metrics").get(api::metrics);
    // One table per process (the binary builds one app); the wire answers methods tide cannot
    // represent from it too.
    let _ = ROUTES.set(routes);
    app.with(RouterRefusals);
    app.with(CheckOrigin);
    app
}

static ROUTES: std::sync::OnceLock<Routes> = std::sync::OnceLock::new();

/// The methods the route matching `path` takes (for `Allow`), or `None` if no route does.
pub fn allowed_methods(path: &str) -> Option<String> {
    ROUTES.get()?.allowed(path)
}

/// Gives tide's own bare 404 and 405 answers a problem body, like every other refusal, and a
/// 405 the `Allow` header RFC 9110 requires.
struct RouterRefusals;

#[tide::utils::async_trait]
impl tide::Middleware<State> for RouterRefusals {
    #[allow(
        clippy::wildcard_enum_match_arm,
        reason = "every other client error gets the generic words"
    )]
    async fn handle(&self, req: Request<State>, next: tide::Next<'_, State>) -> tide::Result {
        let path = req.url().path().to_owned();
        let mut res = next.run(req).await;
        let status = res.status();
        if status.is_client_error() && res.content_type().is_none() {
            let (code, detail) = match status {
                StatusCode::NotFound => ("no-such-route", "no route matches this path"),
                StatusCode::MethodNotAllowed => {
                    ("method-not-allowed", "this path does not take this method")
                }
                _ => ("bad-request", "the request was refused"),
            };
            res = Problem::new(status, code, detail).into();
        }
        if status == StatusCode::MethodNotAllowed
            && res.header("Allow").is_none()
            && let Some(allowed) = allowed_methods(&path)
        {
            res.insert_header("Allow", allowed);
        }
        Ok(res)
    }
}

/// Answers preflights and refuses other origins on the guarded paths; adds the CORS headers
/// to what allowed origins get.
pub struct CheckOrigin;

#[tide::utils::async_trait]
impl tide::Middleware<State> for CheckOrigin {
    async fn handle(&self, req: Request<State>, next: tide::Next<'_, State>) -> tide::Result {
        let origin = req.header("Origin").map(|v| v.last().as_str().to_owned());
        let Some(origin) = origin.filter(|_| origins::guarded(req.url().path())) else {
            return Ok(next.run(req).await);
        };
        let host = req.header("Host").map(|v| v.last().as_str().to_owned());
        if origins::same_origin(&origin, host.as_deref()) {
            return Ok(next.run(req).await);
        }
        if !req.state().origins.allows(&origin) {
            return Ok(Problem::new(
                StatusCode::Forbidden,
                "origin-not-allowed",
                format!(
                    "pages from {origin} may not use this server: its operator can list the origin in --allowed-origins"
                ),
            )
            .into());
        }
        let preflight = req.method() == tide::http::Method::Options
            && req.header("Access-Control-Request-Method").is_some();
        let mut res = if preflight {
            let mut res = Response::new(StatusCode::NoContent);
            res.insert_header(
                "Access-Control-Allow-Methods",
                "GET, POST, PATCH, PUT, DELETE",
            );
            res.insert_header(
                "Access-Control-Allow-Headers",
                "authorization, content-type, last-event-id",
            );
            res.insert_header("Access-Control-Max-Age", "600");
            res
        } else {
            next.run(req).await
        };
        // Tokens, not cookies, cross origins: no Allow-Credentials.
        res.insert_header("Access-Control-Allow-Origin", origin);
        res.append_header("Vary", "Origin");
        res.insert_header("Access-Control-Expose-Headers", "Retry-After, Location");
        Ok(res)
    }
}
