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
    ),
    components(schemas(ProblemBody, wire::StreamEvent, wire::ClientFrame, wire::SeedSubmit)),
    tags((name = "rooms"), (name = "messages"))
)]
struct ApiDoc;

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
