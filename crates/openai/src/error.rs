//! OpenAI-style errors: `{"error": {"message", "type", "param", "code"}}` with a status code.

use serde::{Deserialize, Serialize};
use vidlm_media_source::MediaError;
pub use vidlm_model::ErrorKind;

/// Why a request body was refused before any model work. [`RequestError::to_api_error`] gives
/// the wire object and the status.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RequestError {
    /// The body is not JSON, or not a chat completions request (wrong types, missing fields).
    #[error("{message}")]
    InvalidBody {
        /// The JSON path of the offending field (`messages[0].content`), if known.
        param: Option<String>,
        /// serde's message.
        message: String,
    },
    /// A parameter has a value out of range or inconsistent with another.
    #[error("{param}: {message}")]
    InvalidParameter {
        /// The parameter.
        param: String,
        /// What is wrong.
        message: String,
    },
    /// A parameter vidlm does not support (with this value).
    #[error("{param}: {message}")]
    Unsupported {
        /// The parameter.
        param: String,
        /// What is not supported.
        message: String,
    },
    /// `model` is not a served model.
    #[error("The model `{0}` does not exist.")]
    ModelNotFound(String),
    /// A media item is refused or unusable.
    #[error("{param}: {source}")]
    Media {
        /// Where it is (`messages[0].content[1].video_url.url`).
        param: String,
        /// Why.
        #[source]
        source: MediaError,
    },
}

impl RequestError {
    /// The category (see [`ErrorKind`]): an unknown model is [`ErrorKind::NotFound`], a media
    /// item its [`MediaError::kind`], everything else [`ErrorKind::BadRequest`] (a parameter
    /// vidlm does not support is an invalid request for OpenAI clients, not a 422).
    pub fn kind(&self) -> ErrorKind {
        match self {
            RequestError::ModelNotFound(_) => ErrorKind::NotFound,
            RequestError::Media { source, .. } => source.kind(),
            _ => ErrorKind::BadRequest,
        }
    }

    /// The status code and OpenAI error object ([`ApiError::from_kind`] of [`Self::kind`]).
    pub fn to_api_error(&self) -> ApiError {
        let msg = self.to_string();
        match self {
            RequestError::InvalidBody { param, .. } => {
                ApiError::from_kind(self.kind(), msg, param.clone(), Some("invalid_request"))
            }
            RequestError::InvalidParameter { param, .. } => ApiError::from_kind(
                self.kind(),
                msg,
                Some(param.clone()),
                Some("invalid_parameter"),
            ),
            RequestError::Unsupported { param, .. } => ApiError::from_kind(
                self.kind(),
                msg,
                Some(param.clone()),
                Some("unsupported_parameter"),
            ),
            RequestError::ModelNotFound(_) => {
                ApiError::from_kind(self.kind(), msg, Some("model".into()), Some("model_not_found"))
            }
            RequestError::Media { param, source } => {
                ApiError::from_media(source, Some(param.clone()))
            }
        }
    }
}

/// The error object of the API, with its HTTP status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiError {
    /// HTTP status (not serialized).
    #[serde(skip)]
    pub status: u16,
    /// Human-readable message.
    pub message: String,
    /// `invalid_request_error`, `authentication_error`, `server_error`, ...
    #[serde(rename = "type")]
    pub kind: String,
    /// The parameter at fault.
    pub param: Option<String>,
    /// A machine-readable code (`model_not_found`, `media_not_allowed`, ...).
    pub code: Option<String>,
}

/// `{"error": ApiError}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorResponse {
    /// The error.
    pub error: ApiError,
}

impl ApiError {
    /// An error with every field given.
    pub fn new(
        status: u16,
        kind: &str,
        message: impl Into<String>,
        param: Option<String>,
        code: Option<&str>,
    ) -> Self {
        ApiError {
            status,
            message: message.into(),
            kind: kind.into(),
            param,
            code: code.map(str::to_string),
        }
    }

    /// **The one mapping from an error's category to the wire**: the status is
    /// [`ErrorKind::http_status`], the `type` follows from it ([`error_type`]) and `code` is
    /// the given one or the kind's ([`default_code`]). Every vidlm error reaches a client
    /// through here: request errors ([`RequestError::to_api_error`]), media errors
    /// ([`ApiError::from_media`]), the engine's errors (`vidlm_engine::EngineError::to_api_error`,
    /// used by `vidlm serve` and `vidlm batch`), and the server's own refusals below.
    pub fn from_kind(
        kind: ErrorKind,
        message: impl Into<String>,
        param: Option<String>,
        code: Option<&str>,
    ) -> Self {
        let status = kind.http_status();
        ApiError::new(
            status,
            error_type(status),
            message,
            param,
            Some(code.unwrap_or_else(|| default_code(kind))),
        )
    }

    /// 400 for a malformed request.
    pub fn invalid_request(message: impl Into<String>, param: Option<String>) -> Self {
        ApiError::from_kind(ErrorKind::BadRequest, message, param, Some("invalid_request"))
    }

    /// 401: missing or wrong API key.
    pub fn unauthorized() -> Self {
        ApiError::new(
            401,
            "authentication_error",
            "Incorrect or missing API key: send `Authorization: Bearer <key>`.",
            None,
            Some("invalid_api_key"),
        )
    }

    /// 413: the body is over the limit.
    pub fn body_too_large(limit: usize) -> Self {
        ApiError::from_kind(
            ErrorKind::LimitExceeded,
            format!("Request body is larger than the limit of {limit} bytes."),
            None,
            Some("request_too_large"),
        )
    }

    /// 503: the queue is full (send with `Retry-After`).
    pub fn overloaded(waiting: usize) -> Self {
        ApiError::from_kind(
            ErrorKind::Unavailable,
            format!("The server is busy ({waiting} requests waiting); retry later."),
            None,
            Some("server_overloaded"),
        )
    }

    /// 503: the model is still loading.
    pub fn loading() -> Self {
        ApiError::from_kind(
            ErrorKind::Unavailable,
            "The model is still loading.",
            None,
            Some("model_loading"),
        )
    }

    /// 500: a failure that is the server's fault.
    pub fn internal(message: impl Into<String>) -> Self {
        ApiError::from_kind(ErrorKind::Internal, message, None, Some("internal_error"))
    }

    /// 404 for a model id that is not served (`GET /v1/models/{id}`).
    pub fn model_not_found(id: &str) -> Self {
        ApiError::new(
            404,
            "invalid_request_error",
            format!("The model `{id}` does not exist."),
            Some("model".into()),
            Some("model_not_found"),
        )
    }

    /// 415: the body is not `application/json`.
    pub fn unsupported_media_type(got: Option<&str>) -> Self {
        ApiError::new(
            415,
            "invalid_request_error",
            match got {
                Some(t) => format!("The body must be application/json, not {t}."),
                None => "The body must be application/json (no Content-Type was sent).".into(),
            },
            None,
            Some("unsupported_media_type"),
        )
    }

    /// 404 for an unknown route.
    pub fn not_found(path: &str) -> Self {
        ApiError::from_kind(
            ErrorKind::NotFound,
            format!("No route {path}."),
            None,
            Some("not_found"),
        )
    }

    /// A media failure: [`MediaError::kind`] gives the status, [`MediaError::code`] the code;
    /// the message starts with the item's place in the request.
    pub fn from_media(e: &MediaError, param: Option<String>) -> Self {
        let message = match &param {
            Some(p) => format!("{p}: {e}"),
            None => e.to_string(),
        };
        ApiError::from_kind(e.kind(), message, param, Some(e.code()))
    }

    /// The JSON body.
    pub fn body(&self) -> ErrorResponse {
        ErrorResponse { error: self.clone() }
    }

    /// The JSON body as a string.
    pub fn to_json(&self) -> String {
        serde_json::to_string(&self.body()).unwrap_or_else(|_| {
            r#"{"error":{"message":"error","type":"server_error","param":null,"code":null}}"#.into()
        })
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.message, self.status)
    }
}

/// The OpenAI error `type` of a status: `permission_error` (403), `authentication_error` (401),
/// `invalid_request_error` (other 4xx), `server_error` (5xx).
pub fn error_type(status: u16) -> &'static str {
    match status {
        401 => "authentication_error",
        403 => "permission_error",
        400..=499 => "invalid_request_error",
        _ => "server_error",
    }
}

/// The `code` of an error object when its source gives none: `invalid_request`, `not_found`,
/// `unsupported_media`, `limit_exceeded`, `unsupported`, `invalid_model`, `internal_error`,
/// `permission_denied`, `server_unavailable`.
pub fn default_code(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::BadRequest => "invalid_request",
        ErrorKind::NotFound => "not_found",
        ErrorKind::UnsupportedMedia => "unsupported_media",
        ErrorKind::LimitExceeded => "limit_exceeded",
        ErrorKind::Unsupported => "unsupported",
        ErrorKind::InvalidModel => "invalid_model",
        ErrorKind::Forbidden => "permission_denied",
        ErrorKind::Unavailable => "server_unavailable",
        _ => "internal_error",
    }
}

impl From<&RequestError> for ApiError {
    fn from(e: &RequestError) -> Self {
        e.to_api_error()
    }
}
