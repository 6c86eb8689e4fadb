//! Signing in over the JSON API: register, sign in, guest, sign out, who am I. The web pages'
//! forms (in `pages.rs`) make the same hub calls and keep the token in an HttpOnly cookie.

use tide::{Request, Response, StatusCode};

use crate::api::json;
use crate::problem::{Problem, ProblemBody};
use crate::request::json_body;
use crate::request::{State, caller, client_ip};
use crate::wire::{Credentials, GuestRequest, MeBody, TokenBody};

/// Create an account; the answer carries a token for it.
#[utoipa::path(post, path = "/api/v1/auth/register", tag = "auth", request_body = Credentials,
    responses(
        (status = 201, body = TokenBody),
        (status = 400, description = "Invalid name or password", body = ProblemBody, content_type = "application/problem+json"),
        (status = 409, description = "The name is taken (by an account, or a guest holding it)", body = ProblemBody, content_type = "application/problem+json"),
        (status = 429, description = "Too many sign-ups from this address (Retry-After says when)", body = ProblemBody, content_type = "application/problem+json"),
        (status = 503, description = "Password hashing is at capacity (Retry-After says when)", body = ProblemBody, content_type = "application/problem+json"),
    ))]
pub async fn register(mut req: Request<State>) -> Result<Response, Problem> {
    let body: Credentials = json_body(&mut req).await?;
    let from = client_ip(&req);
    let issued = req
        .state()
        .hub
        .identity()
        .register(body.name, body.password, from)
        .await?;
    Ok(json(StatusCode::Created, &TokenBody::from(issued)))
}

/// Sign in; attempts are limited per account and per address.
#[utoipa::path(post, path = "/api/v1/auth/sign-in", tag = "auth", request_body = Credentials,
    responses(
        (status = 200, body = TokenBody),
        (status = 401, description = "Wrong name or password", body = ProblemBody, content_type = "application/problem+json"),
        (status = 429, description = "Too many attempts for this account from this address, or from this address (Retry-After says when)", body = ProblemBody, content_type = "application/problem+json"),
        (status = 503, description = "Password hashing is at capacity (Retry-After says when)", body = ProblemBody, content_type = "application/problem+json"),
    ))]
pub async fn sign_in(mut req: Request<State>) -> Result<Response, Problem> {
    let body: Credentials = json_body(&mut req).await?;
    let from = client_ip(&req);
    let issued = req
        .state()
        .hub
        .identity()
        .sign_in(body.name, body.password, from)
        .await?;
    Ok(json(StatusCode::Ok, &TokenBody::from(issued)))
}

/// A guest token for a nickname (if the server allows guests).
#[utoipa::path(post, path = "/api/v1/auth/guest", tag = "auth", request_body = GuestRequest,
    responses(
        (status = 201, body = TokenBody),
        (status = 403, description = "Guests are off", body = ProblemBody, content_type = "application/problem+json"),
        (status = 409, description = "The name is taken (by an account, or a guest holding it)", body = ProblemBody, content_type = "application/problem+json"),
        (status = 429, description = "Too many sign-ups from this address (Retry-After says when)", body = ProblemBody, content_type = "application/problem+json"),
    ))]
pub async fn guest(mut req: Request<State>) -> Result<Response, Problem> {
    let body: GuestRequest = json_body(&mut req).await?;
    let from = client_ip(&req);
    let issued = req
        .state()
        .hub
        .identity()
        .guest(body.nickname, from)
        .await?;
    Ok(json(StatusCode::Created, &TokenBody::from(issued)))
}

/// Sign out: the token (and every copy of it) stops working.
#[utoipa::path(post, path = "/api/v1/auth/sign-out", tag = "auth",
    responses((status = 204, description = "Signed out"), (status = 401, body = ProblemBody, content_type = "application/problem+json")))]
pub async fn sign_out(req: Request<State>) -> Result<Response, Problem> {
    let caller = caller(&req)?;
    req.state().hub.identity().sign_out(caller).await?;
    Ok(Response::new(StatusCode::NoContent))
}

/// Who the token names.
#[utoipa::path(get, path = "/api/v1/auth/me", tag = "auth",
    responses((status = 200, body = MeBody), (status = 401, body = ProblemBody, content_type = "application/problem+json")))]
pub async fn me(req: Request<State>) -> Result<Response, Problem> {
    let caller = caller(&req)?;
    Ok(json(
        StatusCode::Ok,
        &MeBody {
            user: caller.name().to_owned(),
            user_id: caller.user.clone(),
            guest: caller.guest,
        },
    ))
}
