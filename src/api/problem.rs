//! Errors as RFC 9457 problem details (`application/problem+json`): the [`Problem`]
//! body, [`ApiError`] (what handlers and middleware fail with), the mapping of
//! poem/poem-openapi's own errors (bad JSON, bad parameters, missing token, unknown
//! route) to problems that name the field, and [`Failure`], which documents in the spec
//! which problem statuses each operation can answer.
//!
//! A problem's `detail` says what was wrong and what to do; it never carries SQL, stack
//! traces or secrets. The internal cause is kept aside for the log line only.

use crate::db::DbError;
use crate::telemetry::error_chain;
use poem::error::ResponseError;
use poem::http::{HeaderName, HeaderValue, StatusCode, header};
use poem::{IntoResponse, Response};
use poem_openapi::registry::{
    MetaHeader, MetaMediaType, MetaResponse, MetaResponses, MetaSchemaRef, Registry,
};
use poem_openapi::types::{ToJSON, Type};
use poem_openapi::{ApiResponse, Object};
use std::marker::PhantomData;

/// Media type of every error response.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// Base of the `type` URIs of Storeplane's problems (documented in `docs/api.md`).
pub const PROBLEM_BASE: &str = "https://storeplane.dev/problems/";

/// One field of the request that was refused, and why.
#[derive(Object, Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// The field, as a path from the request's root: `name`, `engine`,
    /// `params/storage/database` (a parameter, by JSON pointer), or a query or path
    /// parameter's name. Empty for the body as a whole.
    pub field: String,
    /// What is wrong with it, in words a person can act on.
    pub message: String,
}

/// An error, as RFC 9457 problem details. Every response with a 4xx or 5xx status has
/// this body, with media type `application/problem+json`.
#[derive(Object, Debug, Clone)]
#[oai(example)]
pub struct Problem {
    /// A URI naming the kind of problem (stable; see `docs/api.md` for the list), e.g.
    /// `https://storeplane.dev/problems/validation-failed`.
    #[oai(rename = "type")]
    pub kind: String,
    /// A short summary of the kind of problem (the same for every occurrence).
    pub title: String,
    /// The HTTP status code of this response.
    pub status: u16,
    /// What went wrong this time and what to do about it.
    pub detail: String,
    /// The request path the problem occurred on.
    #[oai(skip_serializing_if_is_none)]
    pub instance: Option<String>,
    /// The request id (also in the `X-Request-Id` header): quote it when reporting a
    /// problem; the server's log lines of this request carry it.
    #[oai(skip_serializing_if_is_none)]
    pub request_id: Option<String>,
    /// Every refused field and why (validation problems); empty otherwise.
    pub errors: Vec<FieldError>,
}

impl poem_openapi::types::Example for Problem {
    fn example() -> Self {
        Problem {
            kind: format!("{PROBLEM_BASE}validation-failed"),
            title: "The request is invalid".into(),
            status: 422,
            detail: "1 field was refused; see `errors`".into(),
            instance: Some("/api/stores".into()),
            request_id: Some("0b5d3c4e-93f1-4d6a-9c57-0f6f5d2a1e01".into()),
            errors: vec![FieldError {
                field: "name".into(),
                message: "contains 'S'; use only lowercase letters a-z, digits 0-9 and '-'".into(),
            }],
        }
    }
}

/// What a request failed with: a status, a problem kind and a detail for the caller,
/// extra headers (`WWW-Authenticate`, `Retry-After`, rate-limit headers), and the
/// internal cause for the log (never sent).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{status}: {detail}")]
pub struct ApiError {
    pub status: StatusCode,
    /// Last segment of the problem type URI, e.g. `not-found`.
    pub slug: &'static str,
    pub title: &'static str,
    pub detail: String,
    pub errors: Vec<FieldError>,
    pub headers: Box<[(HeaderName, HeaderValue)]>,
    /// The cause, for the log line of this request only.
    pub internal: Option<Box<str>>,
}

impl ApiError {
    pub fn new(
        status: StatusCode,
        slug: &'static str,
        title: &'static str,
        detail: impl Into<String>,
    ) -> Self {
        ApiError {
            status,
            slug,
            title,
            detail: detail.into(),
            errors: Vec::new(),
            headers: Box::default(),
            internal: None,
        }
    }

    pub fn with_header(mut self, name: HeaderName, value: impl AsRef<str>) -> Self {
        if let Ok(v) = HeaderValue::from_str(value.as_ref()) {
            let mut headers = std::mem::take(&mut self.headers).into_vec();
            headers.push((name, v));
            self.headers = headers.into_boxed_slice();
        }
        self
    }

    pub fn bad_request(detail: impl Into<String>, errors: Vec<FieldError>) -> Self {
        ApiError {
            errors,
            ..ApiError::new(
                StatusCode::BAD_REQUEST,
                "bad-request",
                "The request is malformed",
                detail,
            )
        }
    }

    /// 422 with every refused field.
    pub fn validation(errors: Vec<FieldError>) -> Self {
        let detail = match errors.as_slice() {
            [one] if one.field.is_empty() => one.message.clone(),
            [one] => format!("{}: {}", one.field, one.message),
            many => format!("{} fields were refused; see `errors`", many.len()),
        };
        ApiError {
            errors,
            ..ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "validation-failed",
                "The request is invalid",
                detail,
            )
        }
    }

    pub fn field(field: impl Into<String>, message: impl Into<String>) -> Self {
        ApiError::validation(vec![FieldError {
            field: field.into(),
            message: message.into(),
        }])
    }

    pub fn unauthorized(detail: impl Into<String>) -> Self {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "Authentication is required",
            detail,
        )
        .with_header(header::WWW_AUTHENTICATE, "Bearer realm=\"storeplane\"")
    }

    pub fn forbidden(slug: &'static str, detail: impl Into<String>) -> Self {
        ApiError::new(StatusCode::FORBIDDEN, slug, "Not allowed", detail)
    }

    pub fn not_found(detail: impl Into<String>) -> Self {
        ApiError::new(StatusCode::NOT_FOUND, "not-found", "Not found", detail)
    }

    pub fn conflict(slug: &'static str, detail: impl Into<String>) -> Self {
        ApiError::new(
            StatusCode::CONFLICT,
            slug,
            "Conflicts with the current state",
            detail,
        )
    }

    pub fn payload_too_large(limit: usize) -> Self {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload-too-large",
            "The request body is too large",
            format!("the request body is larger than {limit} bytes; send a smaller one"),
        )
    }

    pub fn body_timeout(after: std::time::Duration) -> Self {
        ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "request-timeout",
            "The request body took too long",
            format!(
                "the request body did not arrive within {}; send it at once and retry",
                humantime::format_duration(after)
            ),
        )
    }

    pub fn unavailable(detail: impl Into<String>, retry_after_secs: u64) -> Self {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "Temporarily unavailable",
            detail,
        )
        .with_header(header::RETRY_AFTER, retry_after_secs.to_string())
    }

    pub fn internal(cause: impl Into<String>) -> Self {
        ApiError {
            internal: Some(cause.into().into_boxed_str()),
            ..ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "Internal error",
                "the server failed to handle the request; it has been logged with the \
                 request id, retry later or report the request id",
            )
        }
    }

    /// The problem body for this error.
    pub fn problem(&self, instance: Option<&str>, request_id: Option<&str>) -> Problem {
        Problem {
            kind: format!("{PROBLEM_BASE}{}", self.slug),
            title: self.title.to_owned(),
            status: self.status.as_u16(),
            detail: self.detail.clone(),
            instance: instance.map(str::to_owned),
            request_id: request_id.map(str::to_owned),
            errors: self.errors.clone(),
        }
    }

    /// The complete response: status, problem+json body and headers.
    pub fn render(&self, instance: Option<&str>, request_id: Option<&str>) -> Response {
        let body = self
            .problem(instance, request_id)
            .to_json_string()
            .into_bytes();
        let mut resp = Response::builder()
            .status(self.status)
            .content_type(PROBLEM_JSON)
            .body(body);
        for (name, value) in &self.headers {
            resp.headers_mut().append(name.clone(), value.clone());
        }
        resp
    }
}

impl ResponseError for ApiError {
    fn status(&self) -> StatusCode {
        self.status
    }

    fn as_response(&self) -> Response {
        self.render(None, None)
    }
}

impl From<DbError> for ApiError {
    fn from(e: DbError) -> Self {
        if e.is_unavailable() {
            ApiError {
                internal: Some(error_chain(&e).into_boxed_str()),
                ..ApiError::unavailable("the database is unavailable; retry shortly", 5)
            }
        } else if matches!(e, DbError::NotFound) {
            ApiError::not_found("not found")
        } else {
            ApiError::internal(error_chain(&e))
        }
    }
}

/// Turns any error a request ended with into an [`ApiError`]: ours as they are,
/// poem-openapi's parse errors as 400 naming the parameter, a missing or malformed
/// `Authorization` header as 401, unknown routes as 404, anything else by its status
/// (5xx with the cause kept for the log).
pub fn to_api_error(err: &poem::Error) -> ApiError {
    use poem_openapi::error::{
        AuthorizationError, ContentTypeError, ParseParamError, ParsePathError,
        ParseRequestPayloadError,
    };
    if let Some(e) = err.downcast_ref::<ApiError>() {
        return e.clone();
    }
    if let Some(e) = err.downcast_ref::<ParseParamError>() {
        return ApiError::bad_request(
            format!("query or header parameter `{}` is invalid", e.name),
            vec![FieldError {
                field: e.name.to_owned(),
                message: clean_reason(&e.reason),
            }],
        );
    }
    if let Some(e) = err.downcast_ref::<ParsePathError>() {
        return ApiError::bad_request(
            format!("path parameter `{}` is invalid", e.name),
            vec![FieldError {
                field: e.name.to_owned(),
                message: clean_reason(&e.reason),
            }],
        );
    }
    if let Some(e) = err.downcast_ref::<ParseRequestPayloadError>() {
        return ApiError::bad_request(
            "the request body is invalid",
            vec![FieldError {
                field: String::new(),
                message: clean_reason(&e.reason),
            }],
        );
    }
    if let Some(e) = err.downcast_ref::<ContentTypeError>() {
        return ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported-media-type",
            "Unsupported media type",
            format!("{e}; send the body as `Content-Type: application/json`"),
        );
    }
    if err.is::<AuthorizationError>() {
        return ApiError::unauthorized(
            "this endpoint needs a bearer token: send `Authorization: Bearer <token>` with a \
             token from POST /api/auth/login",
        );
    }
    if err.is::<poem::error::NotFoundError>() {
        return ApiError::not_found("no such endpoint; see /api/openapi.json for the API");
    }
    if err.is::<poem::error::MethodNotAllowedError>() {
        return ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method-not-allowed",
            "Method not allowed",
            "this endpoint does not accept this HTTP method; see /api/openapi.json",
        );
    }
    if let Some(e) = err.downcast_ref::<poem::error::CorsError>() {
        return ApiError::forbidden(
            "cors-refused",
            format!("{e}: this origin is not in the server's CORS allow-list"),
        );
    }
    let status = err.status();
    if status.is_server_error() {
        return ApiError::internal(err.to_string());
    }
    if status == StatusCode::PAYLOAD_TOO_LARGE {
        return ApiError::new(
            status,
            "payload-too-large",
            "The request body is too large",
            "the request body is too large",
        );
    }
    ApiError::new(
        status,
        "bad-request",
        "The request is malformed",
        status
            .canonical_reason()
            .unwrap_or("the request could not be handled")
            .to_ascii_lowercase(),
    )
}

/// poem-openapi's reasons without their internal type names.
fn clean_reason(reason: &str) -> String {
    let reason = reason
        .split(" (occurred while parsing")
        .next()
        .unwrap_or(reason);
    if let Some(rest) = reason.strip_prefix("failed to parse \"")
        && let Some((_, msg)) = rest.split_once("\": ")
    {
        return msg.to_owned();
    }
    reason.to_owned()
}

/// A set of problem statuses an operation documents (see [`error_set!`]).
pub trait ErrorSet: Send + Sync + 'static {
    const STATUSES: &'static [u16];
}

macro_rules! error_set {
    ($($(#[$meta:meta])* $name:ident = [$($status:literal),*];)*) => {
        $(
            $(#[$meta])*
            pub struct $name;
            impl $crate::api::problem::ErrorSet for $name {
                const STATUSES: &'static [u16] = &[$($status),*];
            }
        )*
    };
}
pub(crate) use error_set;

/// An operation's failure: an [`ApiError`], documented in the spec as a
/// problem+json response for each status of `S`.
pub struct Failure<S: ErrorSet>(pub ApiError, PhantomData<S>);

impl<S: ErrorSet> std::fmt::Debug for Failure<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl<S: ErrorSet, E: Into<ApiError>> From<E> for Failure<S> {
    fn from(e: E) -> Self {
        Failure(e.into(), PhantomData)
    }
}

impl<S: ErrorSet> From<Failure<S>> for poem::Error {
    fn from(f: Failure<S>) -> Self {
        poem::Error::from(f.0)
    }
}

impl<S: ErrorSet> IntoResponse for Failure<S> {
    fn into_response(self) -> Response {
        self.0.as_response()
    }
}

/// What each status means, as the spec describes the response.
fn describe(status: u16) -> &'static str {
    match status {
        400 => {
            "The request is malformed: a parameter or the body could not be read (the problem names the field)."
        }
        401 => {
            "No valid bearer token: it is missing, malformed, unknown, revoked or expired. Sign in with POST /api/auth/login."
        }
        403 => {
            "The caller may not do this (the problem says why, e.g. the store limit with its value)."
        }
        404 => "No such resource, or it belongs to another account (indistinguishable on purpose).",
        409 => {
            "The request conflicts with the current state (duplicate name, or the store is not in a state that allows it)."
        }
        408 => "The request body did not arrive in time (30 s); send it at once.",
        413 => "The request body is larger than the server accepts.",
        415 => "The body is not sent as `application/json`.",
        422 => "The request is well-formed but invalid: every refused field is listed in `errors`.",
        429 => {
            "Too many requests from this client (or for this account): wait `Retry-After` seconds."
        }
        500 => "The server failed; the problem's `request_id` identifies the log lines.",
        503 => {
            "A dependency (the database, or the cluster for readiness) is unavailable; retry after `Retry-After` seconds."
        }
        _ => "An error.",
    }
}

fn string_header(name: &str, description: &str) -> MetaHeader {
    MetaHeader {
        name: name.to_owned(),
        description: Some(description.to_owned()),
        required: true,
        deprecated: false,
        schema: String::schema_ref(),
    }
}

impl<S: ErrorSet> ApiResponse for Failure<S> {
    fn meta() -> MetaResponses {
        MetaResponses {
            responses: S::STATUSES
                .iter()
                .map(|&status| {
                    let mut headers = Vec::new();
                    match status {
                        401 => headers.push(string_header(
                            "WWW-Authenticate",
                            "`Bearer realm=\"storeplane\"`: the scheme to authenticate with.",
                        )),
                        429 => {
                            headers.push(MetaHeader {
                                schema: u64::schema_ref(),
                                ..string_header(
                                    "Retry-After",
                                    "Seconds to wait before the next request is allowed.",
                                )
                            });
                        }
                        503 => headers.push(MetaHeader {
                            schema: u64::schema_ref(),
                            ..string_header("Retry-After", "Seconds to wait before retrying.")
                        }),
                        _ => {}
                    }
                    MetaResponse {
                        description: describe(status),
                        status: Some(status),
                        status_range: None,
                        content: vec![MetaMediaType {
                            content_type: PROBLEM_JSON,
                            schema: MetaSchemaRef::Reference(Problem::name().into_owned()),
                        }],
                        headers,
                    }
                })
                .collect(),
        }
    }

    fn register(registry: &mut Registry) {
        Problem::register(registry);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_lose_internal_type_names() {
        assert_eq!(
            clean_reason(
                "failed to parse \"uuid\": invalid character (occurred while parsing \"Uuid\")"
            ),
            "invalid character"
        );
        assert_eq!(clean_reason("plain"), "plain");
    }

    #[test]
    fn problems_carry_type_status_and_fields() {
        let e = ApiError::field("name", "must not be empty");
        let p = e.problem(Some("/api/stores"), Some("rid"));
        assert_eq!(p.status, 422);
        assert_eq!(p.kind, format!("{PROBLEM_BASE}validation-failed"));
        assert_eq!(p.detail, "name: must not be empty");
        assert_eq!(p.errors[0].field, "name");
        let r = e.render(None, None);
        assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(r.content_type(), Some(PROBLEM_JSON));
    }

    #[test]
    fn framework_errors_become_problems() {
        let e = to_api_error(&poem::Error::from(poem::error::NotFoundError));
        assert_eq!(e.status, StatusCode::NOT_FOUND);
        let e = to_api_error(&poem::Error::from(poem_openapi::error::AuthorizationError));
        assert_eq!(e.status, StatusCode::UNAUTHORIZED);
        assert!(e.headers.iter().any(|(n, _)| n == header::WWW_AUTHENTICATE));
        let e = to_api_error(&poem::Error::from(poem_openapi::error::ParsePathError {
            name: "id",
            reason: "failed to parse \"uuid\": bad".into(),
        }));
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        assert_eq!(e.errors[0].field, "id");
    }
}
