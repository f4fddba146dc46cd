//! `vidlm serve --model DIR|ID [--host 127.0.0.1] [--port 8000] [--allowed-local-media-path DIR]
//! [--allowed-media-domains a.com,b.org] [--api-key KEY] [--max-frames N] [--max-queue N]
//! [--allowed-origins '*'] [--allowed-methods '*'] [--allowed-headers '*'] ...`
//!
//! An OpenAI-compatible chat completions server (see `vidlm-server`). The model loads in the
//! background: `/health` answers 503 until it is ready. The bound address is printed on stderr
//! (`--port 0` picks a free port).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use vidlm_engine::EngineConfig;
use vidlm_media_source::{MediaLimits, MediaPolicy};
use vidlm_server::{CorsConfig, Server, ServerConfig};

use crate::backend::BackendArgs;

#[derive(clap::Args)]
pub struct Args {
    /// Model directory (vidlm ONNX layout) or Hugging Face hub id.
    #[arg(long)]
    pub model: String,
    /// The model id `/v1/models` lists (default: the directory's name, or the hub id).
    #[arg(long)]
    pub served_model_name: Option<String>,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// Port (0: any free port; the bound address is printed).
    #[arg(long, default_value_t = 8000)]
    pub port: u16,
    /// Folder that local media (file:// URLs and paths) must be in. Without it, local files are refused.
    #[arg(long)]
    pub allowed_local_media_path: Option<PathBuf>,
    /// Hosts remote media (http/https) may come from, comma-separated. Without it, remote media are refused.
    #[arg(long, value_delimiter = ',')]
    pub allowed_media_domains: Vec<String>,
    /// Let allowed media domains resolve to private/loopback addresses (an intranet media server).
    #[arg(long)]
    pub allow_private_media_addresses: bool,
    /// Require `Authorization: Bearer KEY` on /v1/* (also from VIDLM_API_KEY).
    #[arg(long, env = "VIDLM_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// Frames per video at most (a hard cap; requests may ask for fewer).
    #[arg(long, default_value_t = 32)]
    pub max_frames: usize,
    /// Requests waiting at most; more get 503 with Retry-After.
    #[arg(long, default_value_t = 64)]
    pub max_queue: usize,
    /// Requests decoded together at most.
    #[arg(long, default_value_t = 16)]
    pub max_batch: usize,
    /// Largest request body in bytes (413 above).
    #[arg(long, default_value_t = 64 << 20)]
    pub max_body_bytes: usize,
    /// Media items (images + videos) per request at most.
    #[arg(long, default_value_t = 16)]
    pub max_media_items: usize,
    /// Bytes of one media item at most (data URL, download, file).
    #[arg(long, default_value_t = 256 << 20)]
    pub max_media_bytes: u64,
    /// Seconds of one video at most.
    #[arg(long, default_value_t = 3600.0)]
    pub max_video_seconds: f64,
    /// Pixels (width x height) of one frame or image at most.
    #[arg(long, default_value_t = 4096 * 4096)]
    pub max_pixels: u64,
    /// Seconds a remote media download may take.
    #[arg(long, default_value_t = 30.0)]
    pub media_fetch_timeout: f64,
    /// Vision cache budget in MiB (0 disables it).
    #[arg(long, default_value_t = 512)]
    pub vision_cache_mb: usize,
    /// Prefill chunk in tokens while others decode (default: sized to stall decoding ~100 ms, at least 256 tokens).
    #[arg(long)]
    pub prefill_chunk: Option<usize>,
    /// CORS: origins browsers may call from, comma-separated (`*`: any; auth is a bearer token, not a cookie).
    #[arg(long, value_delimiter = ',', default_value = "*")]
    pub allowed_origins: Vec<String>,
    /// CORS: methods allowed (`*`: whatever the preflight asks for).
    #[arg(long, value_delimiter = ',', default_value = "*")]
    pub allowed_methods: Vec<String>,
    /// CORS: request headers allowed (`*`: whatever the preflight asks for, Authorization included).
    #[arg(long, value_delimiter = ',', default_value = "*")]
    pub allowed_headers: Vec<String>,
    #[command(flatten)]
    pub backend: BackendArgs,
}

pub fn run(a: Args) -> Result<()> {
    let limits = MediaLimits {
        max_bytes: a.max_media_bytes,
        max_items: a.max_media_items,
        max_frames: a.max_frames.max(1),
        max_duration_s: a.max_video_seconds,
        max_pixels: a.max_pixels,
        fetch_timeout: Duration::from_secs_f64(a.media_fetch_timeout.max(0.1)),
        ..MediaLimits::default()
    };
    let mut media = MediaPolicy::default().with_limits(limits);
    if let Some(dir) = &a.allowed_local_media_path {
        media = media
            .with_local_path(dir)
            .with_context(|| format!("--allowed-local-media-path {}", dir.display()))?;
    }
    media = media.with_domains(&a.allowed_media_domains).context("--allowed-media-domains")?;
    media.allow_private_addresses = a.allow_private_media_addresses;
    let pipeline = a.backend.pipeline_options(&a.model)?;
    let dtype = crate::backend::precision_summary(&a.model, &pipeline);
    let engine = EngineConfig {
        max_batch: a.max_batch.max(1),
        max_queue: a.max_queue,
        prefill_chunk: a.prefill_chunk,
        vision_cache_bytes: a.vision_cache_mb << 20,
        media,
        ..EngineConfig::default()
    };
    let cors = CorsConfig {
        allowed_origins: a.allowed_origins.clone(),
        allowed_methods: a.allowed_methods.clone(),
        allowed_headers: a.allowed_headers.clone(),
    };
    // A setting that does not parse stops the command here, before the model loads.
    let _checked = cors.layer()?;
    let config = ServerConfig {
        cors,
        model: a.model.clone(),
        served_model_name: a.served_model_name,
        api_key: a.api_key,
        max_body_bytes: a.max_body_bytes,
        pipeline,
        engine,
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .worker_threads(2)
        .build()
        .context("starting the async runtime")?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind((a.host.as_str(), a.port))
            .await
            .with_context(|| format!("binding {}:{}", a.host, a.port))?;
        let addr = listener.local_addr()?;
        eprintln!("[vidlm] listening on http://{addr} (model {} loading)", config.model);
        let started = std::time::Instant::now();
        let model = config.model.clone();
        let server = Server::start(config, move |r| match r {
            Ok(()) => eprintln!(
                "[vidlm] model {model} ({dtype}) loaded in {:.1} s; ready",
                started.elapsed().as_secs_f64()
            ),
            Err(e) => {
                // A server without its model can do nothing useful: one line, exit 1.
                eprintln!(
                    "error: cannot load model {model}: {}",
                    format!("{e:#}").replace('\n', " ")
                );
                std::process::exit(1);
            }
        });
        server.serve(listener).await.context("serving")
    })
}
