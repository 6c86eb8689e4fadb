//! Errors as clients see them: `application/problem+json` (RFC 9457) naming the cause. Every
//! refusal passes through here: core's, identity's and the hub's map to a status and a code.

use std::time::Duration;

use roomcast_core::{Error, ErrorClass};
use roomcast_hub::HubError;
use roomcast_hub::identity::AuthError;
use serde::{Deserialize, Serialize};
use tide::{Response, StatusCode};
use utoipa::ToSchema;

/// A refusal on its way to the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The HTTP status.
    pub status: StatusCode,
    /// A stable machine name (`message-too-large`, `malformed-json`, ...).
    pub code: &'static str,
    /// What was wrong, for a person.
    pub detail: String,
    /// For rate limits: when to try again.
    pub retry_after: Option<Duration>,
}

/// The problem document (RFC 9457), with roomcast's `code` extension.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ProblemBody {
    /// A URI naming the problem type: `urn:roomcast:problem:{code}`.
    #[serde(rename = "type")]
    pub problem_type: String,
    /// The HTTP status phrase.
    pub title: String,
    /// The HTTP status code.
    pub status: u16,
    /// What was wrong.
    pub detail: String,
    /// The stable machine name of the problem.
    pub code: String,
    /// For `rate-limited`: milliseconds until a retry will be accepted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_after_ms: Option<u64>,
}

impl Problem {
    /// A problem with this status, code and detail.
    pub fn new(status: StatusCode, code: &'static str, detail: impl Into<String>) -> Self {
        Problem {
            status,
            code,
            detail: detail.into(),
            retry_after: None,
        }
    }

    /// The document this problem is sent as.
    pub fn body(&self) -> ProblemBody {
        ProblemBody {
            problem_type: format!("urn:roomcast:problem:{}", self.code),
            title: self.status.canonical_reason().to_owned(),
            status: self.status as u16,
            detail: self.detail.clone(),
            code: self.code.to_owned(),
            retry_after_ms: self
                .retry_after
                .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
        }
    }
}

/// The code of the problem a response carries, in its extensions, for the access log.
#[derive(Debug, Clone, Copy)]
pub struct Refused(pub &'static str);

impl From<Problem> for Response {
    fn from(p: Problem) -> Response {
        let mut res = Response::new(p.status);
        res.insert_ext(Refused(p.code));
        if p.status == StatusCode::Unauthorized {
            res.insert_header("WWW-Authenticate", "Bearer");
        }
        if let Some(after) = p.retry_after {
            res.insert_header(
                "Retry-After",
                after.as_secs_f64().ceil().max(1.0).to_string(),
            );
        }
        res.set_body(serde_json::to_vec(&p.body()).unwrap_or_default());
        res.set_content_type("application/problem+json");
        res
    }
}

/// The status each class of refusal gets: one table for core's and identity's refusals.
fn status(class: ErrorClass) -> StatusCode {
    match class {
        ErrorClass::Invalid => StatusCode::BadRequest,
        ErrorClass::Unauthenticated => StatusCode::Unauthorized,
        ErrorClass::Denied => StatusCode::Forbidden,
        ErrorClass::NotFound => StatusCode::NotFound,
        ErrorClass::Conflict | ErrorClass::OutOfRange | ErrorClass::Precondition => {
            StatusCode::Conflict
        }
        ErrorClass::TooLarge => StatusCode::PayloadTooLarge,
        ErrorClass::RateLimited => StatusCode::TooManyRequests,
        ErrorClass::Capacity | ErrorClass::Unavailable => StatusCode::ServiceUnavailable,
        ErrorClass::Storage => StatusCode::InsufficientStorage,
    }
}

impl From<Error> for Problem {
    fn from(e: Error) -> Self {
        let retry_after = e.retry_after();
        Problem {
            status: status(e.class()),
            code: e.code(),
            detail: e.to_string(),
            retry_after,
        }
    }
}

impl From<AuthError> for Problem {
    fn from(e: AuthError) -> Self {
        Problem {
            status: status(e.class()),
            code: e.code(),
            detail: e.to_string(),
            retry_after: e.retry_after(),
        }
    }
}

impl Problem {
    /// A request that names a user other than the signed-in one.
    pub fn impersonation(named: &str, caller: &str) -> Problem {
        Problem::new(
            StatusCode::Forbidden,
            "impersonation",
            format!("signed in as {caller}, but the request names {named}"),
        )
    }
}

impl From<HubError> for Problem {
    fn from(e: HubError) -> Self {
        match e {
            HubError::Refused(e) => e.into(),
            HubError::Stopped => Problem::new(
                StatusCode::ServiceUnavailable,
                "shutting-down",
                e.to_string(),
            ),
            HubError::Unavailable(_) => {
                Problem::new(StatusCode::ServiceUnavailable, "unavailable", e.to_string())
            }
            HubError::Body(_) => {
                Problem::new(StatusCode::BadRequest, "upload-incomplete", e.to_string())
            }
            HubError::TimedOut(_) => {
                Problem::new(StatusCode::RequestTimeout, "request-timeout", e.to_string())
            }
            HubError::Storage(_) => Problem::new(
                StatusCode::ServiceUnavailable,
                "storage-unavailable",
                e.to_string(),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use roomcast_core::MessageError;

    #[test]
    fn core_refusals_map_to_statuses() {
        let p = Problem::from(Error::Message(MessageError::TooLarge {
            len: 5000,
            max: 4096,
        }));
        assert_eq!(
            (p.status, p.code),
            (StatusCode::PayloadTooLarge, "message-too-large")
        );
        let p = Problem::from(Error::RateLimited {
            retry_after: Duration::from_millis(1500),
        });
        assert_eq!(p.status, StatusCode::TooManyRequests);
        let res = Response::from(p);
        assert_eq!(res.header("Retry-After").map(|h| h.as_str()), Some("2"));
        let body = Problem::from(HubError::Stopped).body();
        assert_eq!((body.status, body.code.as_str()), (503, "shutting-down"));
    }
}
