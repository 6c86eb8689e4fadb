//! The OpenAPI 3 document at `/api/openapi.json`, generated from the handlers' annotations and
//! the wire types, so it describes what the server really does.

use tide::{Request, Response, StatusCode};
use utoipa::OpenApi;

use crate::problem::{Problem, ProblemBody};
use crate::request::State;
use crate::wire;

#[derive(OpenApi)]
#[openapi(
    info(title = "roomcast", description = "Real-time rooms: ordered messages, history, presence, resume."),
    paths(
        crate::api::list_rooms,
        crate::api::create_room,
        crate::api::room,
        crate::api::delete_room,
        crate::api::history,
        crate::api::post_message,
        crate::api::edit_message,
        crate::api::delete_message,
        crate::api::add_reaction,
        crate::api::remove_reaction,
        crate::api::moderate,
        crate::api::typing,
        crate::api::mark_read,
        crate::attachments::upload,
        crate::attachments::download,
        crate::api::presence,
        crate::api::invite,
        crate::api::remove_member,
        crate::api::direct,
        crate::auth::register,
        crate::auth::sign_in,
        crate::auth::guest,
        crate::auth::sign_out,
        crate::auth::me,
    ),
    components(schemas(ProblemBody, wire::StreamEvent, wire::ClientFrame, wire::SeedSubmit)),
    tags((name = "rooms"), (name = "messages"), (name = "auth")),
    modifiers(&BearerAuth, &EdgeAnswers)
)]
struct ApiDoc;

/// Operations that take no token (they hand one out).
const OPEN_OPERATIONS: [&str; 3] = [
    "/api/v1/auth/register",
    "/api/v1/auth/sign-in",
    "/api/v1/auth/guest",
];

/// Adds to every operation the answers it can get before (or beside) its handler: from the HTTP
/// edge (a malformed request, a head too large, a request too slow, a server at capacity), the
/// missing or refused token, and the JSON body checks. So every status a client can see is
/// documented where it can see it.
struct EdgeAnswers;

impl utoipa::Modify for EdgeAnswers {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        for (path, item) in doc.paths.paths.iter_mut() {
            let open = OPEN_OPERATIONS.contains(&path.as_str());
            for operation in [
                &mut item.get,
                &mut item.post,
                &mut item.patch,
                &mut item.put,
                &mut item.delete,
            ]
            .into_iter()
            .flatten()
            {
                let mut answers = vec![
                    (
                        400,
                        "The request is malformed: its head, framing, query or body",
                    ),
                    (408, "The request did not arrive within --request-timeout"),
                    (431, "The request head is over --max-head-bytes"),
                    (
                        429,
                        "Too many connections from this address, or the caller is over a pace or a per-user cap (Retry-After says when to retry)",
                    ),
                    (
                        503,
                        "The server is shutting down or at a capacity limit (Retry-After says when to retry)",
                    ),
                ];
                if open {
                    // No token needed: these hand one out.
                    operation.security = Some(Vec::new());
                } else {
                    answers.extend([
                        (401, "No valid token: sign in"),
                        (403, "The request names a user other than the caller (`user`), or the caller may not do this"),
                    ]);
                }
                if operation.request_body.is_some() {
                    answers.extend([
                        (413, "The body is over --max-body-bytes"),
                        (415, "The body is not application/json"),
                        (422, "The JSON does not fit the schema"),
                    ]);
                }
                for (status, description) in answers {
                    operation
                        .responses
                        .responses
                        .entry(status.to_string())
                        .or_insert_with(|| problem(description).into());
                }
            }
        }
    }
}

/// A problem answer with this description.
fn problem(description: &str) -> utoipa::openapi::Response {
    use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
    ResponseBuilder::new()
        .description(description)
        .content(
            "application/problem+json",
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("ProblemBody")))
                .build(),
        )
        .build()
}

/// Declares the bearer token every room and message route takes.
struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{
            HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme,
        };
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
        doc.security = Some(vec![SecurityRequirement::new(
            "bearer",
            Vec::<String>::new(),
        )]);
    }
}

/// The document as JSON text.
pub fn json() -> String {
    ApiDoc::openapi().to_pretty_json().unwrap_or_default()
}

/// `GET /api/openapi.json`.
pub async fn document(_: Request<State>) -> Result<Response, Problem> {
    let mut res = Response::new(StatusCode::Ok);
    res.set_body(json());
    res.set_content_type(tide::http::mime::JSON);
    Ok(res)
}
