//! The OpenAPI 3 document at `/api/openapi.json`, generated from the handlers' annotations and
//! the wire types, so it describes what the server really does.

use tide::{Request, Response, StatusCode};
use utoipa::OpenApi;

use crate::app::State;
use crate::problem::{Problem, ProblemBody};
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
    modifiers(&BearerAuth)
)]
struct ApiDoc;

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
