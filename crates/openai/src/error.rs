//! OpenAI-style errors: `{"error": {"message", "type", "param", "code"}}` with a status code.

use serde::{Deserialize, Serialize};
use vidlm_media_source::{ErrorCategory, MediaError};

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
    /// The status code and OpenAI error object.
    pub fn to_api_error(&self) -> ApiError {
        let msg = self.to_string();
        match self {
            RequestError::InvalidBody { param, .. } => ApiError::new(
                400,
                "invalid_request_error",
                msg,
                param.clone(),
                Some("invalid_request"),
            ),
            RequestError::InvalidParameter { param, .. } => ApiError::new(
                400,
                "invalid_request_error",
                msg,
                Some(param.clone()),
                Some("invalid_parameter"),
            ),
            RequestError::Unsupported { param, .. } => ApiError::new(
                400,
                "invalid_request_error",
                msg,
                Some(param.clone()),
                Some("unsupported_parameter"),
            ),
            RequestError::ModelNotFound(_) => ApiError::new(
                404,
                "invalid_request_error",
                msg,
                Some("model".into()),
                Some("model_not_found"),
            ),
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

    /// 400 for a malformed request.
    pub fn invalid_request(message: impl Into<String>, param: Option<String>) -> Self {
        ApiError::new(400, "invalid_request_error", message, param, Some("invalid_request"))
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
        ApiError::new(
            413,
            "invalid_request_error",
            format!("Request body is larger than the limit of {limit} bytes."),
            None,
            Some("request_too_large"),
        )
    }

    /// 503: the queue is full (send with `Retry-After`).
    pub fn overloaded(waiting: usize) -> Self {
        ApiError::new(
            503,
            "server_error",
            format!("The server is busy ({waiting} requests waiting); retry later."),
            None,
            Some("server_overloaded"),
        )
    }

    /// 503: the model is still loading.
    pub fn loading() -> Self {
        ApiError::new(
            503,
            "server_error",
            "The model is still loading.",
            None,
            Some("model_loading"),
        )
    }

    /// 500: a failure that is the server's fault.
    pub fn internal(message: impl Into<String>) -> Self {
        ApiError::new(500, "server_error", message, None, Some("internal_error"))
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
        ApiError::new(
            404,
            "invalid_request_error",
            format!("No route {path}."),
            None,
            Some("not_found"),
        )
    }

    /// The status and code for a media failure.
    pub fn from_media(e: &MediaError, param: Option<String>) -> Self {
        let (status, code) = match e.category() {
            // A source the policy forbids is the request's fault: 400, as OpenAI, vLLM and
            // llama.cpp answer (the code says which rule).
            ErrorCategory::Forbidden => (400, "media_not_allowed"),
            ErrorCategory::TooLarge => (413, "media_too_large"),
            ErrorCategory::LimitExceeded => (400, "media_limit_exceeded"),
            ErrorCategory::Upstream => (400, "media_fetch_failed"),
            _ => (400, "invalid_media"),
        };
        let message = match &param {
            Some(p) => format!("{p}: {e}"),
            None => e.to_string(),
        };
        ApiError::new(status, "invalid_request_error", message, param, Some(code))
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

impl From<&RequestError> for ApiError {
    fn from(e: &RequestError) -> Self {
        e.to_api_error()
    }
}
