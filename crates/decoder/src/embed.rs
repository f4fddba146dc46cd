//! Token embeddings: `embed_tokens(input_ids)`.
//!
//! The exported `embed_tokens` graph is one `Gather` over the embedding table — for the families
//! vidlm runs, the same numbers as the tied `lm_head` inside the decoder graph. Holding the table in
//! an ONNX Runtime session would keep a second copy of it in memory (545 MB for Qwen2-0.5B in
//! fp32) only to copy out a handful of rows per call. [`EmbeddingTable`] instead reads exactly the
//! rows a call needs from the file with positioned reads (`pread`): the table is never mapped or
//! held by the process, the rows come from the operating system's page cache, and the values are
//! bit-for-bit what the `Gather` would return.
//!
//! [`Embedder::load`] recognises the graph (a single `Gather`, axis 0, over a float initializer
//! `[vocab, hidden]` whose bytes are inline or in external data) and otherwise — a quantized or
//! otherwise transformed embedding, e.g. a published transformers.js export — runs the graph in
//! ONNX Runtime as before.

use std::borrow::Cow;
use std::fs::File;
use std::path::{Path, PathBuf};

use half::{bf16, f16};
use vidlm_ort::onnx_file::{DataType, OnnxFile, TensorData};
use vidlm_ort::ort::session::SessionInputValue;
use vidlm_ort::ort::value::TensorRef;
use vidlm_ort::{load_session, LoadedSession, SessionOptions, TensorElementType};

use crate::model::{check_float, ort_err, static_dim, to_f32};
use crate::DecoderError;

/// Element type of a table stored in a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Elem {
    F32,
    F16,
    BF16,
}

impl Elem {
    fn size(self) -> usize {
        match self {
            Elem::F32 => 4,
            Elem::F16 | Elem::BF16 => 2,
        }
    }
}

/// An embedding table `[vocab, hidden]` read row by row from a file (see the module docs).
#[derive(Debug)]
pub struct EmbeddingTable {
    file: File,
    path: PathBuf,
    offset: u64,
    vocab: usize,
    hidden: usize,
    elem: Elem,
}

impl EmbeddingTable {
    /// Recognises a plain-`Gather` `embed_tokens` graph and opens its table; `Ok(None)` when the
    /// graph is anything else (it then has to run in ONNX Runtime).
    pub fn from_graph(graph: &Path) -> Result<Option<Self>, DecoderError> {
        let unexpected =
            |message: String| DecoderError::UnexpectedGraph { path: graph.to_path_buf(), message };
        let f = OnnxFile::read(graph).map_err(|e| unexpected(e.to_string()))?;
        let ([node], [input], [output]) =
            (f.nodes.as_slice(), f.inputs.as_slice(), f.outputs.as_slice())
        else {
            return Ok(None);
        };
        let plain = node.op_type == "Gather"
            && node.domain.is_empty()
            && matches!(node.int_attribute("axis"), None | Some(Some(0)))
            && node.inputs.len() == 2
            && node.inputs[1] == *input
            && node.outputs.as_slice() == std::slice::from_ref(output);
        if !plain {
            return Ok(None);
        }
        let Some(table) = f.initializer(&node.inputs[0]) else { return Ok(None) };
        let elem = match table.data_type {
            DataType::Float32 => Elem::F32,
            DataType::Float16 => Elem::F16,
            DataType::BFloat16 => Elem::BF16,
            _ => return Ok(None),
        };
        let (vocab, hidden) = match table.dims.as_slice() {
            [v, h] if *v > 0 && *h > 0 => (*v as usize, *h as usize),
            _ => return Ok(None),
        };
        let bytes =
            table.byte_len().ok_or_else(|| unexpected("embedding table size overflows".into()))?;
        let (path, offset, length) = match &table.data {
            TensorData::Inline { offset, length } => (graph.to_path_buf(), *offset, Some(*length)),
            TensorData::External { path, offset, length } => (path.clone(), *offset, *length),
            TensorData::Other => return Ok(None),
        };
        if length.is_some_and(|l| l != bytes) {
            return Err(unexpected(format!(
                "embedding table `{}` holds {length:?} bytes, its shape needs {bytes}",
                table.name
            )));
        }
        let file =
            File::open(&path).map_err(|e| DecoderError::Io { path: path.clone(), source: e })?;
        let file_len =
            file.metadata().map_err(|e| DecoderError::Io { path: path.clone(), source: e })?.len();
        if offset.checked_add(bytes).is_none_or(|end| end > file_len) {
            return Err(unexpected(format!(
                "embedding table `{}` ({bytes} bytes at offset {offset}) runs past the end of {} ({file_len} bytes)",
                table.name,
                path.display()
            )));
        }
        Ok(Some(EmbeddingTable { file, path, offset, vocab, hidden, elem }))
    }

    /// Vocabulary size (rows).
    pub fn vocab(&self) -> usize {
        self.vocab
    }

    /// Hidden size (columns).
    pub fn hidden(&self) -> usize {
        self.hidden
    }

    /// The rows of `ids`, as f32, appended to `out` (`ids.len() × hidden` values).
    pub fn lookup(&self, ids: &[i64], out: &mut Vec<f32>) -> Result<(), DecoderError> {
        let row_bytes = self.hidden * self.elem.size();
        let mut buf = vec![0u8; row_bytes];
        out.reserve(ids.len() * self.hidden);
        for &id in ids {
            let row = usize::try_from(id)
                .ok()
                .filter(|&r| r < self.vocab)
                .ok_or(DecoderError::TokenOutOfRange { id, vocab: self.vocab })?;
            let at = self.offset + (row * row_bytes) as u64;
            read_exact_at(&self.file, &mut buf, at)
                .map_err(|e| DecoderError::Io { path: self.path.clone(), source: e })?;
            match self.elem {
                Elem::F32 => out.extend(
                    buf.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])),
                ),
                Elem::F16 => out
                    .extend(buf.chunks_exact(2).map(|c| f16::from_le_bytes([c[0], c[1]]).to_f32())),
                Elem::BF16 => out.extend(
                    buf.chunks_exact(2).map(|c| bf16::from_le_bytes([c[0], c[1]]).to_f32()),
                ),
            }
        }
        Ok(())
    }
}

#[cfg(unix)]
fn read_exact_at(f: &File, buf: &mut [u8], at: u64) -> std::io::Result<()> {
    std::os::unix::fs::FileExt::read_exact_at(f, buf, at)
}

#[cfg(windows)]
fn read_exact_at(f: &File, mut buf: &mut [u8], mut at: u64) -> std::io::Result<()> {
    while !buf.is_empty() {
        match std::os::windows::fs::FileExt::seek_read(f, buf, at) {
            Ok(0) => return Err(std::io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => {
                buf = &mut buf[n..];
                at += n as u64;
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// How `embed_tokens` runs: rows read from the file, or the graph in ONNX Runtime.
#[derive(Debug)]
pub enum Embedder {
    /// Rows read from the table in the graph's file ([`EmbeddingTable`]).
    Table {
        /// The table.
        table: EmbeddingTable,
        /// The graph it came from.
        graph: PathBuf,
    },
    /// The graph in an ONNX Runtime session.
    Session {
        /// The session.
        session: Box<LoadedSession>,
        /// Its `input_ids` input.
        input: String,
        /// Its embeddings output.
        output: String,
    },
}

impl Embedder {
    /// Loads `embed_tokens` from `graph`: as an [`EmbeddingTable`] when the graph is a plain
    /// `Gather` and `prefer_table` is set, otherwise as an ONNX Runtime session.
    pub fn load(
        graph: &Path,
        opts: &SessionOptions,
        prefer_table: bool,
    ) -> Result<Self, DecoderError> {
        if !graph.is_file() {
            return Err(DecoderError::Ort(vidlm_ort::OrtError::GraphMissing(graph.to_path_buf())));
        }
        if prefer_table {
            if let Some(table) = EmbeddingTable::from_graph(graph)? {
                tracing::info!(graph = %graph.display(), vocab = table.vocab, hidden = table.hidden, "embed_tokens served from the file (no session)");
                return Ok(Embedder::Table { table, graph: graph.to_path_buf() });
            }
        }
        let session = load_session(graph, opts)?;
        let bad =
            |message: String| DecoderError::UnexpectedGraph { path: session.path.clone(), message };
        let [inp] = session.inputs.as_slice() else {
            return Err(bad(format!(
                "expected one input (input_ids), found {}",
                session.inputs.len()
            )));
        };
        if inp.elem_type != Some(TensorElementType::Int64) {
            return Err(bad(format!(
                "input `{}` is {:?}, expected int64",
                inp.name, inp.elem_type
            )));
        }
        let out = session.outputs.first().ok_or_else(|| bad("no output".into()))?;
        check_float(out, &session.path)?;
        let (input, output) = (inp.name.clone(), out.name.clone());
        Ok(Embedder::Session { session: Box::new(session), input, output })
    }

    /// The graph file.
    pub fn graph(&self) -> &Path {
        match self {
            Embedder::Table { graph, .. } => graph,
            Embedder::Session { session, .. } => &session.path,
        }
    }

    /// Whether rows are read from the file (no ONNX Runtime session).
    pub fn is_table(&self) -> bool {
        matches!(self, Embedder::Table { .. })
    }

    /// Hidden size, where the graph states it.
    pub fn hidden(&self) -> Option<usize> {
        match self {
            Embedder::Table { table, .. } => Some(table.hidden),
            Embedder::Session { session, output, .. } => {
                session.outputs.iter().find(|o| &o.name == output).and_then(|o| static_dim(o, 2))
            }
        }
    }

    /// `embed_tokens(ids)` for `batch × seq` ids: `batch × seq × hidden` f32 values.
    pub fn embed(
        &mut self,
        ids: &[i64],
        batch: usize,
        seq: usize,
        hidden: usize,
    ) -> Result<Vec<f32>, DecoderError> {
        if ids.len() != batch * seq {
            return Err(DecoderError::Shape(format!(
                "embed_tokens: {} ids for {batch}x{seq}",
                ids.len()
            )));
        }
        let data = match self {
            Embedder::Table { table, .. } => {
                let mut out = Vec::new();
                table.lookup(ids, &mut out)?;
                out
            }
            Embedder::Session { session, input, output } => {
                let (input, output) = (&*input, &*output);
                let path = session.path.clone();
                let value =
                    TensorRef::from_array_view(([batch, seq], ids)).map_err(ort_err(&path))?;
                let outputs = session
                    .session
                    .run(vec![(Cow::Owned(input.clone()), SessionInputValue::from(value))])
                    .map_err(ort_err(&path))?;
                let v = outputs.get(output.as_str()).ok_or_else(|| {
                    DecoderError::Shape(format!("embed_tokens produced no `{output}`"))
                })?;
                to_f32(v, &path)?
            }
        };
        if data.len() != batch * seq * hidden {
            return Err(DecoderError::Shape(format!(
                "embed_tokens returned {} values for {batch}x{seq} ids (hidden {hidden})",
                data.len()
            )));
        }
        Ok(data)
    }
}
