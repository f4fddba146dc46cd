//! # vidlm-server — `vidlm serve`: OpenAI-compatible video chat over HTTP
//!
//! A thin [axum](https://docs.rs/axum) layer over [`vidlm_engine`]: it parses and validates
//! requests with [`vidlm_openai`], submits them to the engine, and writes the answers as
//! `chat.completion` objects or server-sent `chat.completion.chunk` events. Everything about
//! scheduling, batching, media and caching lives in the engine; everything about the wire
//! format in `vidlm-openai`.
//!
//! | route | |
//! |---|---|
//! | `POST /v1/chat/completions` | non-streaming and streaming (SSE, `data: [DONE]`) |
//! | `GET /v1/models` | the served model |
//! | `GET /v1/models/{id}` | the served model's card; 404 `model_not_found` for any other id |
//! | `GET /health` | 503 while the model loads, 200 when ready |
//! | `GET /metrics` | Prometheus text (`vidlm_*`, vLLM's names) |
//!
//! With an API key, `/v1/*` answers 401 without `Authorization: Bearer KEY`. Bodies over the
//! limit get 413, bodies that are not `application/json` 415; a full queue 503 with
//! `Retry-After`; every error is an OpenAI error object. A streamed request answers 200 and
//! starts its events only once its first token exists, so everything that can fail before
//! (validation, media, template, tokens, context length) is a plain HTTP error. CORS
//! ([`CorsConfig`], tower-http's `CorsLayer`) answers preflights before auth.
//! Every response carries `x-request-id` (the client's, if it sent a sane one). A client that
//! disconnects cancels its request.
//!
//! ```
//! use std::io::{Read, Write};
//! use vidlm_server::{Server, ServerConfig};
//!
//! // A server whose model is not loaded yet answers `/health` with 503 (`Server::start` loads
//! // the model in the background; `/health` turns 200 when it is ready).
//! let server = Server::new(&ServerConfig { model: "assets/demo-model".into(), ..Default::default() });
//! let rt = tokio::runtime::Runtime::new()?;
//! let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))?;
//! let addr = listener.local_addr()?;
//! let router = server.router();
//! rt.spawn(async move { axum::serve(listener, router).await });
//! let mut s = std::net::TcpStream::connect(addr)?;
//! s.write_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")?;
//! let mut reply = String::new();
//! s.read_to_string(&mut reply)?;
//! assert!(reply.starts_with("HTTP/1.1 503"), "{reply}");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! `vidlm serve` (in `crates/cli`) binds the listener and calls
//! `Server::start(config, on_loaded).serve(listener)`.
#![warn(missing_docs)]

mod handlers;
mod stream;

use std::sync::{Arc, OnceLock};

use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderName, HeaderValue, Method};
use axum::routing::{get, post};
use axum::Router;
use tower_http::cors::{AllowHeaders, AllowMethods, AllowOrigin, CorsLayer};
use vidlm_engine::{Engine, EngineConfig, EngineError};
use vidlm_openai::RequestContext;
use vidlm_pipeline::PipelineOptions;

/// Cross-origin requests (browsers): what the `CorsLayer` allows. `*` (the default, as vLLM)
/// allows any origin; for methods and headers it allows whatever the preflight asks for
/// (`Authorization` included: the API key is a bearer token, not a cookie, so credentials
/// mode is never on).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CorsConfig {
    /// `--allowed-origins`: `*` or origins like `https://app.example.com`.
    pub allowed_origins: Vec<String>,
    /// `--allowed-methods`: `*` or methods like `GET`, `POST`.
    pub allowed_methods: Vec<String>,
    /// `--allowed-headers`: `*` or header names like `authorization`, `content-type`.
    pub allowed_headers: Vec<String>,
}

impl Default for CorsConfig {
    fn default() -> Self {
        let any = vec!["*".to_string()];
        CorsConfig {
            allowed_origins: any.clone(),
            allowed_methods: any.clone(),
            allowed_headers: any,
        }
    }
}

/// A CORS setting that is not a valid origin, method or header name.
#[derive(Debug, thiserror::Error)]
#[error("{flag}: {value:?} is not a valid {what}")]
pub struct CorsError {
    /// The flag (`--allowed-origins`, ...).
    pub flag: &'static str,
    /// The value.
    pub value: String,
    /// What it should be.
    pub what: &'static str,
}

impl CorsConfig {
    /// The tower-http layer.
    pub fn layer(&self) -> Result<CorsLayer, CorsError> {
        let any = |v: &[String]| v.is_empty() || v.iter().any(|x| x.trim() == "*");
        let origins = if any(&self.allowed_origins) {
            AllowOrigin::any()
        } else {
            let list = self
                .allowed_origins
                .iter()
                .map(|o| {
                    HeaderValue::from_str(o.trim()).map_err(|_| CorsError {
                        flag: "--allowed-origins",
                        value: o.clone(),
                        what: "origin",
                    })
                })
                .collect::<Result<Vec<_>, _>>()?;
            AllowOrigin::list(list)
        };
        let methods = if any(&self.allowed_methods) {
            AllowMethods::mirror_request()
        } else {
            let list = self
                .allowed_methods
                .iter()
                .map(|m| {
                    Method::from_bytes(m.trim().to_ascii_uppercase().as_bytes()).map_err(|_| {
                        CorsError { flag: "--allowed-methods", value: m.clone(), what: "method" }
                    })
                })
                .collect::<Result<Vec<_>, _>>()?;
            AllowMethods::list(list)
        };
        let headers = if any(&self.allowed_headers) {
            AllowHeaders::mirror_request()
        } else {
            let list = self
                .allowed_headers
                .iter()
                .map(|h| {
                    HeaderName::from_bytes(h.trim().to_ascii_lowercase().as_bytes()).map_err(|_| {
                        CorsError {
                            flag: "--allowed-headers",
                            value: h.clone(),
                            what: "header name",
                        }
                    })
                })
                .collect::<Result<Vec<_>, _>>()?;
            AllowHeaders::list(list)
        };
        Ok(CorsLayer::new()
            .allow_origin(origins)
            .allow_methods(methods)
            .allow_headers(headers)
            .expose_headers([HeaderName::from_static("x-request-id")]))
    }
}

/// How to run the server.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// `--model`: a model directory or hub id, exactly as given.
    pub model: String,
    /// The id `/v1/models` lists (default: the directory's name, or the hub id).
    pub served_model_name: Option<String>,
    /// Require `Authorization: Bearer KEY` on `/v1/*`.
    pub api_key: Option<String>,
    /// Largest request body in bytes (413 above). Default 64 MiB.
    pub max_body_bytes: usize,
    /// How to load the model.
    pub pipeline: PipelineOptions,
    /// How the engine schedules, and the media policy and limits.
    pub engine: EngineConfig,
    /// Cross-origin requests.
    pub cors: CorsConfig,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            model: String::new(),
            served_model_name: None,
            api_key: None,
            max_body_bytes: 64 << 20,
            pipeline: PipelineOptions::default(),
            engine: EngineConfig::default(),
            cors: CorsConfig::default(),
        }
    }
}

impl ServerConfig {
    /// The id listed by `/v1/models` and carried by responses (the first of
    /// [`ServerConfig::model_names`]).
    pub fn model_id(&self) -> String {
        self.model_names().swap_remove(0)
    }

    /// The names a request's `model` may use, the listed id first:
    /// `vidlm_openai::served_model_names`, the rule `vidlm batch` uses too.
    pub fn model_names(&self) -> Vec<String> {
        vidlm_openai::served_model_names(&self.model, self.served_model_name.as_deref())
    }
}

/// What the handlers share.
pub(crate) struct AppState {
    pub(crate) engine: OnceLock<Engine>,
    pub(crate) load_error: OnceLock<String>,
    pub(crate) ctx: RequestContext,
    pub(crate) api_key: Option<String>,
    pub(crate) created: u64,
    pub(crate) max_body_bytes: usize,
    pub(crate) cors: CorsLayer,
}

/// A server: the routes, and the engine once the model has loaded.
#[derive(Clone)]
pub struct Server {
    state: Arc<AppState>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("model", &self.state.ctx.model_names)
            .field("ready", &self.is_ready())
            .finish()
    }
}

impl Server {
    /// A server whose model is not loaded yet (`/health` answers 503 until
    /// [`Server::set_engine`]). A CORS setting that does not parse is refused by
    /// [`CorsConfig::layer`]; here it falls back to the default (check it first, as
    /// `vidlm serve` does).
    pub fn new(config: &ServerConfig) -> Server {
        let cors = config.cors.layer().unwrap_or_else(|e| {
            tracing::error!(error = %e, "invalid CORS setting; using the default");
            CorsConfig::default().layer().unwrap_or_else(|_| CorsLayer::new())
        });
        let ctx = RequestContext {
            model_names: config.model_names(),
            media: config.engine.media.clone(),
        };
        Server {
            state: Arc::new(AppState {
                engine: OnceLock::new(),
                load_error: OnceLock::new(),
                ctx,
                api_key: config.api_key.clone().filter(|k| !k.is_empty()),
                created: vidlm_openai::response::unix_now(),
                max_body_bytes: config.max_body_bytes,
                cors,
            }),
        }
    }

    /// A server that loads the model on a background thread (so `/health` can answer 503
    /// meanwhile). `on_loaded` is called with the outcome (the CLI exits on a failure; until
    /// then `/health` answers 500 with the error).
    pub fn start(
        config: ServerConfig,
        on_loaded: impl FnOnce(Result<(), &EngineError>) + Send + 'static,
    ) -> Server {
        let server = Server::new(&config);
        let s = server.clone();
        std::thread::spawn(move || {
            let t = std::time::Instant::now();
            match Engine::load(&config.model, &config.pipeline, config.engine.clone()) {
                Ok(engine) => {
                    tracing::info!(model = %config.model, seconds = t.elapsed().as_secs_f64(), "model loaded");
                    s.set_engine(engine);
                    on_loaded(Ok(()));
                }
                Err(e) => {
                    let _ = s.state.load_error.set(e.to_string());
                    on_loaded(Err(&e));
                }
            }
        });
        server
    }

    /// Installs the loaded engine (the server becomes ready).
    pub fn set_engine(&self, engine: Engine) {
        let _ = self.state.engine.set(engine);
    }

    /// Whether the model has loaded.
    pub fn is_ready(&self) -> bool {
        self.state.engine.get().is_some()
    }

    /// The engine, once loaded.
    pub fn engine(&self) -> Option<&Engine> {
        self.state.engine.get()
    }

    /// The routes.
    pub fn router(&self) -> Router {
        let v1 = Router::new()
            .route("/v1/chat/completions", post(handlers::chat_completions))
            .route("/v1/models", get(handlers::models))
            .route("/v1/models/{*id}", get(handlers::model))
            .layer(axum::middleware::from_fn_with_state(self.state.clone(), handlers::auth));
        Router::new()
            .merge(v1)
            .route("/health", get(handlers::health))
            .route("/metrics", get(handlers::metrics))
            .fallback(handlers::not_found)
            .layer(DefaultBodyLimit::max(self.state.max_body_bytes))
            .layer(axum::middleware::from_fn_with_state(
                self.state.clone(),
                handlers::declared_length,
            ))
            // Outside auth: a preflight is answered here, before any key is asked for.
            .layer(self.state.cors.clone())
            .layer(axum::middleware::from_fn(handlers::request_id))
            .with_state(self.state.clone())
    }

    /// Serves on `listener` until Ctrl-C / SIGTERM.
    pub async fn serve(self, listener: tokio::net::TcpListener) -> std::io::Result<()> {
        axum::serve(listener, self.router()).with_graceful_shutdown(shutdown_signal()).await
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
