//! Input manifests, streamed record by record (never loaded whole).
//!
//! * **OpenAI Batch JSONL** — one request per line:
//!   `{"custom_id": "a", "method": "POST", "url": "/v1/chat/completions", "body": {...}}`.
//! * **Plain manifests of videos** — JSONL (one object per line), CSV/TSV (a header row) or
//!   Parquet, with a video column, an optional id column (default: the video itself) and the
//!   prompt from a column or one `--prompt` for every row.
//!
//! A record whose id cannot be read (a line that is not JSON, a missing `custom_id`, a missing
//! column) stops the run before any work: without an id it could not get its output line. A
//! record with an id but an unusable request (wrong `url`, no video, a bad body) is read as
//! [`RequestSource::Invalid`] and gets an error line in the output; the run goes on.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use arrow_array::cast::AsArray;
use arrow_array::types::{
    Int16Type, Int32Type, Int64Type, Int8Type, UInt16Type, UInt32Type, UInt64Type, UInt8Type,
};
use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_schema::DataType;
use parquet::arrow::arrow_reader::{ParquetRecordBatchReader, ParquetRecordBatchReaderBuilder};
use parquet::arrow::ProjectionMask;
use serde_json::Value;

use crate::error::{BatchError, Result};

/// The only endpoint a batch line may target.
pub const CHAT_COMPLETIONS_URL: &str = "/v1/chat/completions";

/// Longest JSONL line read by default (a request with an inline `data:` video can be large).
pub const DEFAULT_MAX_LINE_BYTES: usize = 64 << 20;

/// The kind of manifest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// OpenAI Batch input JSONL.
    OpenAiBatch,
    /// One JSON object per line with a video column.
    Jsonl,
    /// CSV (or TSV) with a header row.
    Csv,
    /// Apache Parquet.
    Parquet,
}

impl std::str::FromStr for Format {
    type Err = BatchError;

    fn from_str(s: &str) -> Result<Format> {
        match s.to_ascii_lowercase().as_str() {
            "openai" | "openai-batch" | "batch" => Ok(Format::OpenAiBatch),
            "jsonl" | "ndjson" | "json" => Ok(Format::Jsonl),
            "csv" | "tsv" => Ok(Format::Csv),
            "parquet" | "pq" => Ok(Format::Parquet),
            other => Err(BatchError::Options(format!(
                "unknown manifest format {other:?} (openai, jsonl, csv, parquet)"
            ))),
        }
    }
}

/// How to read a manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestOptions {
    /// The format; `None` picks it from the extension (`.csv`/`.tsv`, `.parquet`/`.pq`) and, for
    /// JSON lines, from whether a video column is given (plain) or not (OpenAI Batch).
    pub format: Option<Format>,
    /// Plain manifests: the column holding the video (a path, `file://`, `data:` or `http(s)` URL).
    pub video_column: Option<String>,
    /// Plain manifests: the column holding the id (default: the video itself).
    pub id_column: Option<String>,
    /// Plain manifests: the prompt of every row (the prompt column wins where it has a value).
    pub prompt: Option<String>,
    /// Plain manifests: the column holding each row's prompt.
    pub prompt_column: Option<String>,
    /// JSONL: the longest line read; a longer one stops the run.
    pub max_line_bytes: usize,
}

impl Default for ManifestOptions {
    fn default() -> Self {
        ManifestOptions {
            format: None,
            video_column: None,
            id_column: None,
            prompt: None,
            prompt_column: None,
            max_line_bytes: DEFAULT_MAX_LINE_BYTES,
        }
    }
}

/// What a record asks for.
#[derive(Debug, Clone, PartialEq)]
pub enum RequestSource {
    /// An OpenAI chat completions request body (OpenAI Batch input).
    Body(Value),
    /// A video and a question about it (plain manifests).
    Video {
        /// The video (path or URL), as written in the manifest.
        video: String,
        /// The question.
        prompt: String,
    },
    /// A record with an id but no usable request: it gets an error line with this message.
    Invalid(String),
}

/// One input record.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// 0-based position among the manifest's records (blank JSONL lines are not records); the
    /// shard split is by this number.
    pub index: usize,
    /// Where the record is (`line 3`, `row 17`), for messages.
    pub location: String,
    /// The id that its output line carries.
    pub custom_id: String,
    /// The request.
    pub request: RequestSource,
}

/// An input manifest: [`Manifest::records`] streams it, as often as needed.
#[derive(Debug, Clone)]
pub struct Manifest {
    path: PathBuf,
    format: Format,
    opts: ManifestOptions,
}

impl Manifest {
    /// Checks the options against the format and that the file can be opened.
    pub fn open(path: impl AsRef<Path>, opts: &ManifestOptions) -> Result<Manifest> {
        let path = path.as_ref().to_path_buf();
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase)
            .unwrap_or_default();
        let format = match opts.format {
            Some(f) => f,
            None => match ext.as_str() {
                "csv" | "tsv" => Format::Csv,
                "parquet" | "pq" => Format::Parquet,
                _ if opts.video_column.is_some() => Format::Jsonl,
                _ => Format::OpenAiBatch,
            },
        };
        let plain_flags = [
            ("--video-column", opts.video_column.is_some()),
            ("--id-column", opts.id_column.is_some()),
            ("--prompt", opts.prompt.is_some()),
            ("--prompt-column", opts.prompt_column.is_some()),
        ];
        if format == Format::OpenAiBatch {
            if let Some((flag, _)) = plain_flags.iter().find(|(_, set)| *set) {
                return Err(BatchError::Options(format!(
                    "{flag} is for plain manifests of videos; {} is read as OpenAI Batch JSONL (give --video-column for a plain JSONL manifest)",
                    path.display()
                )));
            }
        } else {
            if opts.video_column.is_none() {
                return Err(BatchError::Options(format!(
                    "{}: a plain manifest needs --video-column",
                    path.display()
                )));
            }
            if opts.prompt.is_none() && opts.prompt_column.is_none() {
                return Err(BatchError::Options(format!(
                    "{}: give --prompt TEXT or --prompt-column NAME",
                    path.display()
                )));
            }
        }
        File::open(&path).map_err(|e| BatchError::io(&path, e))?;
        Ok(Manifest { path, format, opts: opts.clone() })
    }

    /// The manifest file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The folder holding the manifest (relative media paths resolve against it), absolute when
    /// the path can be made absolute.
    pub fn dir(&self) -> PathBuf {
        let abs = std::path::absolute(&self.path).unwrap_or_else(|_| self.path.clone());
        match abs.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        }
    }

    /// The format being read.
    pub fn format(&self) -> Format {
        self.format
    }

    /// Streams the records from the start of the file. After an error the iterator ends.
    pub fn records(&self) -> Result<Records> {
        let file = File::open(&self.path).map_err(|e| BatchError::io(&self.path, e))?;
        let source = match self.format {
            Format::OpenAiBatch | Format::Jsonl => {
                Source::Lines(LineReader::new(file, self.opts.max_line_bytes))
            }
            Format::Csv => {
                let tsv = self
                    .path
                    .extension()
                    .and_then(|e| e.to_str())
                    .is_some_and(|e| e.eq_ignore_ascii_case("tsv"));
                let mut rdr = csv::ReaderBuilder::new()
                    .delimiter(if tsv { b'\t' } else { b',' })
                    .from_reader(BufReader::new(file));
                let headers =
                    rdr.headers().map_err(|e| self.err("header row", e.to_string()))?.clone();
                let cols = self.plain_columns(|name| headers.iter().position(|h| h == name))?;
                Source::Csv { rdr, cols, record: csv::StringRecord::new() }
            }
            Format::Parquet => {
                let builder = ParquetRecordBatchReaderBuilder::try_new(file)
                    .map_err(|e| self.err("file", e.to_string()))?;
                let schema = builder.schema().clone();
                let cols = self
                    .plain_columns(|name| schema.fields().iter().position(|f| f.name() == name))?;
                let mut roots: Vec<usize> = cols.all().collect();
                roots.sort_unstable();
                roots.dedup();
                let mask = ProjectionMask::roots(builder.parquet_schema(), roots);
                let reader = builder
                    .with_projection(mask)
                    .with_batch_size(1024)
                    .build()
                    .map_err(|e| self.err("file", e.to_string()))?;
                let names = PlainColumns {
                    video: self.opts.video_column.clone().unwrap_or_default(),
                    id: self.opts.id_column.clone(),
                    prompt: self.opts.prompt_column.clone(),
                };
                Source::Parquet { reader, names, batch: None, row_in_batch: 0, row: 0 }
            }
        };
        Ok(Records { manifest: self.clone(), source, index: 0, done: false })
    }

    fn err(&self, location: impl Into<String>, message: impl Into<String>) -> BatchError {
        BatchError::Manifest {
            path: self.path.clone(),
            location: location.into(),
            message: message.into(),
        }
    }

    /// Positions of the video/id/prompt columns, or an error naming a missing one.
    fn plain_columns(&self, find: impl Fn(&str) -> Option<usize>) -> Result<PlainColumns<usize>> {
        let col = |name: &str| {
            find(name).ok_or_else(|| self.err(format!("column {name:?}"), "no such column"))
        };
        Ok(PlainColumns {
            video: col(self.opts.video_column.as_deref().unwrap_or_default())?,
            id: self.opts.id_column.as_deref().map(col).transpose()?,
            prompt: self.opts.prompt_column.as_deref().map(col).transpose()?,
        })
    }

    /// Builds a plain record from its cells.
    fn plain_record(
        &self,
        index: usize,
        location: String,
        video: Option<String>,
        id: Option<String>,
        prompt: Option<String>,
    ) -> Result<Record> {
        let video = video.filter(|v| !v.trim().is_empty());
        let custom_id = match (&self.opts.id_column, &video) {
            (Some(c), _) => match id {
                Some(id) if !id.is_empty() => id,
                _ => return Err(self.err(location, format!("no id in column {c:?}"))),
            },
            (None, Some(v)) => v.clone(),
            (None, None) => {
                return Err(self.err(
                    location,
                    format!(
                        "no video in column {:?} (the video is the record's id; give --id-column to keep such rows)",
                        self.opts.video_column.as_deref().unwrap_or_default()
                    ),
                ))
            }
        };
        let prompt = prompt.filter(|p| !p.is_empty()).or_else(|| self.opts.prompt.clone());
        let request = match (video, prompt) {
            (Some(video), Some(prompt)) => RequestSource::Video { video, prompt },
            (None, _) => RequestSource::Invalid(format!(
                "{location}: no video in column {:?}",
                self.opts.video_column.as_deref().unwrap_or_default()
            )),
            (Some(_), None) => RequestSource::Invalid(format!(
                "{location}: no prompt in column {:?} and no --prompt",
                self.opts.prompt_column.as_deref().unwrap_or_default()
            )),
        };
        Ok(Record { index, location, custom_id, request })
    }

    fn openai_record(&self, index: usize, location: String, v: Value) -> Result<Record> {
        let Value::Object(mut obj) = v else {
            return Err(self.err(
                location,
                "expected a JSON object {\"custom_id\", \"method\", \"url\", \"body\"}",
            ));
        };
        let custom_id = match obj.get("custom_id") {
            Some(Value::String(s)) if !s.is_empty() => s.clone(),
            Some(Value::String(_)) => return Err(self.err(location, "empty custom_id")),
            Some(_) => return Err(self.err(location, "custom_id must be a string")),
            None => {
                return Err(self.err(
                    location,
                    "no custom_id (OpenAI Batch lines are {\"custom_id\", \"method\", \"url\", \"body\"}; for a plain manifest of videos give --video-column)",
                ))
            }
        };
        let method = obj.get("method").and_then(Value::as_str).unwrap_or("");
        let url = obj.get("url").and_then(Value::as_str).unwrap_or("");
        let request = if !method.eq_ignore_ascii_case("POST") {
            RequestSource::Invalid(format!(
                "method must be \"POST\", got {:?}",
                obj.get("method").cloned().unwrap_or(Value::Null)
            ))
        } else if url != CHAT_COMPLETIONS_URL {
            RequestSource::Invalid(format!(
                "url must be \"{CHAT_COMPLETIONS_URL}\", got {:?}",
                obj.get("url").cloned().unwrap_or(Value::Null)
            ))
        } else {
            match obj.remove("body") {
                Some(b @ Value::Object(_)) => RequestSource::Body(b),
                Some(_) => RequestSource::Invalid("body must be a JSON object".into()),
                None => RequestSource::Invalid("no body".into()),
            }
        };
        Ok(Record { index, location, custom_id, request })
    }
}

/// Column positions (CSV) or names (Parquet) of a plain manifest.
#[derive(Debug)]
struct PlainColumns<T> {
    video: T,
    id: Option<T>,
    prompt: Option<T>,
}

impl PlainColumns<usize> {
    fn all(&self) -> impl Iterator<Item = usize> + '_ {
        std::iter::once(self.video).chain(self.id).chain(self.prompt)
    }
}

enum Source {
    Lines(LineReader),
    Csv {
        rdr: csv::Reader<BufReader<File>>,
        cols: PlainColumns<usize>,
        record: csv::StringRecord,
    },
    Parquet {
        reader: ParquetRecordBatchReader,
        names: PlainColumns<String>,
        batch: Option<ParquetBatch>,
        row_in_batch: usize,
        row: usize,
    },
}

/// One Parquet record batch with its three columns as strings.
struct ParquetBatch {
    len: usize,
    video: Vec<Option<String>>,
    id: Option<Vec<Option<String>>>,
    prompt: Option<Vec<Option<String>>>,
}

/// The records of a manifest ([`Manifest::records`]).
pub struct Records {
    manifest: Manifest,
    source: Source,
    index: usize,
    done: bool,
}

impl std::fmt::Debug for Records {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Records")
            .field("path", &self.manifest.path)
            .field("index", &self.index)
            .finish()
    }
}

impl Iterator for Records {
    type Item = Result<Record>;

    fn next(&mut self) -> Option<Result<Record>> {
        if self.done {
            return None;
        }
        let r = self.next_record();
        match &r {
            Some(Ok(_)) => self.index += 1,
            Some(Err(_)) | None => self.done = true,
        }
        r
    }
}

impl Records {
    fn next_record(&mut self) -> Option<Result<Record>> {
        let m = &self.manifest;
        let index = self.index;
        match &mut self.source {
            Source::Lines(lines) => {
                let (line_no, bytes) = match lines.next_line() {
                    Ok(Some(l)) => l,
                    Ok(None) => return None,
                    Err(LineError::Io(e)) => return Some(Err(BatchError::io(&m.path, e))),
                    Err(LineError::TooLong { line, max }) => {
                        return Some(Err(
                            m.err(format!("line {line}"), format!("longer than {max} bytes"))
                        ))
                    }
                };
                let location = format!("line {line_no}");
                let v: Value = match serde_json::from_slice(&bytes) {
                    Ok(v) => v,
                    Err(e) => return Some(Err(m.err(location, format!("not JSON: {e}")))),
                };
                if m.format == Format::OpenAiBatch {
                    return Some(m.openai_record(index, location, v));
                }
                let Value::Object(obj) = v else {
                    return Some(Err(m.err(location, "expected a JSON object")));
                };
                let cell = |name: &Option<String>| -> Option<String> {
                    match obj.get(name.as_deref()?)? {
                        Value::String(s) => Some(s.clone()),
                        Value::Null => None,
                        Value::Number(n) => Some(n.to_string()),
                        Value::Bool(b) => Some(b.to_string()),
                        other => Some(other.to_string()),
                    }
                };
                let (video, id, prompt) = (
                    cell(&m.opts.video_column),
                    cell(&m.opts.id_column),
                    cell(&m.opts.prompt_column),
                );
                Some(m.plain_record(index, location, video, id, prompt))
            }
            Source::Csv { rdr, cols, record } => {
                match rdr.read_record(record) {
                    Ok(false) => return None,
                    Ok(true) => {}
                    Err(e) => {
                        let at = e
                            .position()
                            .map(|p| format!("line {}", p.line()))
                            .unwrap_or_else(|| "a record".into());
                        return Some(Err(m.err(at, e.to_string())));
                    }
                }
                let location = format!(
                    "line {}",
                    record.position().map(|p| p.line()).unwrap_or(index as u64 + 2)
                );
                let get = |c: Option<usize>| c.and_then(|c| record.get(c)).map(str::to_string);
                let (video, id, prompt) = (get(Some(cols.video)), get(cols.id), get(cols.prompt));
                Some(m.plain_record(index, location, video, id, prompt))
            }
            Source::Parquet { reader, names, batch, row_in_batch, row } => loop {
                if let Some(b) = batch.as_ref() {
                    if *row_in_batch < b.len {
                        let i = *row_in_batch;
                        *row_in_batch += 1;
                        *row += 1;
                        let location = format!("row {row}");
                        let take = |c: &Option<Vec<Option<String>>>| {
                            c.as_ref().and_then(|c| c.get(i).cloned().flatten())
                        };
                        let video = b.video.get(i).cloned().flatten();
                        return Some(m.plain_record(
                            index,
                            location,
                            video,
                            take(&b.id),
                            take(&b.prompt),
                        ));
                    }
                }
                let rb = match reader.next()? {
                    Ok(rb) => rb,
                    Err(e) => return Some(Err(m.err(format!("after row {row}"), e.to_string()))),
                };
                match parquet_batch(&rb, names) {
                    Ok(b) => {
                        *batch = Some(b);
                        *row_in_batch = 0;
                    }
                    Err(e) => return Some(Err(m.err(e.0, e.1))),
                }
            },
        }
    }
}

fn parquet_batch(
    rb: &RecordBatch,
    names: &PlainColumns<String>,
) -> std::result::Result<ParquetBatch, (String, String)> {
    let col = |name: &str| -> std::result::Result<Vec<Option<String>>, (String, String)> {
        let a = rb
            .column_by_name(name)
            .ok_or_else(|| (format!("column {name:?}"), "no such column".to_string()))?;
        strings(a).map_err(|m| (format!("column {name:?}"), m))
    };
    Ok(ParquetBatch {
        len: rb.num_rows(),
        video: col(&names.video)?,
        id: names.id.as_deref().map(col).transpose()?,
        prompt: names.prompt.as_deref().map(col).transpose()?,
    })
}

/// A string or integer Arrow column (plain or dictionary-encoded) as optional strings.
fn strings(a: &ArrayRef) -> std::result::Result<Vec<Option<String>>, String> {
    fn ints<T: arrow_array::ArrowPrimitiveType>(a: &ArrayRef) -> Vec<Option<String>>
    where
        T::Native: std::fmt::Display,
    {
        a.as_primitive::<T>().iter().map(|v| v.map(|v| v.to_string())).collect()
    }
    Ok(match a.data_type() {
        DataType::Utf8 => a.as_string::<i32>().iter().map(|v| v.map(str::to_string)).collect(),
        DataType::LargeUtf8 => a.as_string::<i64>().iter().map(|v| v.map(str::to_string)).collect(),
        DataType::Utf8View => a.as_string_view().iter().map(|v| v.map(str::to_string)).collect(),
        DataType::Int8 => ints::<Int8Type>(a),
        DataType::Int16 => ints::<Int16Type>(a),
        DataType::Int32 => ints::<Int32Type>(a),
        DataType::Int64 => ints::<Int64Type>(a),
        DataType::UInt8 => ints::<UInt8Type>(a),
        DataType::UInt16 => ints::<UInt16Type>(a),
        DataType::UInt32 => ints::<UInt32Type>(a),
        DataType::UInt64 => ints::<UInt64Type>(a),
        DataType::Dictionary(_, _) => {
            let d = a.as_any_dictionary();
            let values = strings(d.values())?;
            d.normalized_keys()
                .into_iter()
                .enumerate()
                .map(|(i, k)| if a.is_null(i) { None } else { values.get(k).cloned().flatten() })
                .collect()
        }
        other => return Err(format!("has type {other}; expected strings (or integers for an id)")),
    })
}

enum LineError {
    Io(std::io::Error),
    TooLong { line: usize, max: usize },
}

/// Reads non-blank lines with a length bound (a file without newlines cannot exhaust memory).
struct LineReader {
    reader: BufReader<File>,
    line: usize,
    max: usize,
    buf: Vec<u8>,
}

impl LineReader {
    fn new(file: File, max: usize) -> LineReader {
        LineReader {
            reader: BufReader::with_capacity(1 << 16, file),
            line: 0,
            max,
            buf: Vec::new(),
        }
    }

    /// The next non-blank line (1-based number, bytes without the line end).
    fn next_line(&mut self) -> std::result::Result<Option<(usize, Vec<u8>)>, LineError> {
        loop {
            self.buf.clear();
            let limit = self.max as u64 + 2;
            let n = (&mut self.reader)
                .take(limit)
                .read_until(b'\n', &mut self.buf)
                .map_err(LineError::Io)?;
            if n == 0 {
                return Ok(None);
            }
            self.line += 1;
            if self.buf.last() == Some(&b'\n') {
                self.buf.pop();
                if self.buf.last() == Some(&b'\r') {
                    self.buf.pop();
                }
            }
            if self.buf.len() > self.max {
                return Err(LineError::TooLong { line: self.line, max: self.max });
            }
            if self.line == 1 && self.buf.starts_with(b"\xEF\xBB\xBF") {
                self.buf.drain(..3);
            }
            if self.buf.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            return Ok(Some((self.line, std::mem::take(&mut self.buf))));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn tmp(name: &str, content: &[u8]) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("vidlm-batch-manifest-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let p = dir.join(name);
        let mut f = File::create(&p).unwrap();
        f.write_all(content).unwrap();
        p
    }

    fn all(m: &Manifest) -> Result<Vec<Record>> {
        m.records()?.collect()
    }

    #[test]
    fn openai_batch_lines() {
        let p = tmp(
            "a.jsonl",
            br#"{"custom_id": "r1", "method": "POST", "url": "/v1/chat/completions", "body": {"model": "m", "messages": []}}

{"custom_id": "r2", "method": "GET", "url": "/v1/chat/completions", "body": {}}
{"custom_id": "r3", "method": "POST", "url": "/v1/embeddings", "body": {}}
{"custom_id": "r4", "method": "POST", "url": "/v1/chat/completions", "body": 3}
"#,
        );
        let m = Manifest::open(&p, &ManifestOptions::default()).unwrap();
        assert_eq!(m.format(), Format::OpenAiBatch);
        let r = all(&m).unwrap();
        assert_eq!(r.len(), 4);
        assert_eq!(r[0].custom_id, "r1");
        assert!(matches!(&r[0].request, RequestSource::Body(b) if b["model"] == "m"));
        // Blank lines are not records, but line numbers count them.
        assert_eq!((r[1].index, r[1].location.as_str()), (1, "line 3"));
        assert!(matches!(&r[1].request, RequestSource::Invalid(m) if m.contains("POST")));
        assert!(
            matches!(&r[2].request, RequestSource::Invalid(m) if m.contains("/v1/chat/completions"))
        );
        assert!(matches!(&r[3].request, RequestSource::Invalid(m) if m.contains("object")));
    }

    #[test]
    fn fatal_lines_stop_the_iterator() {
        for (content, needle) in [
            (&b"{\"custom_id\": \"a\", \"method\": \"POST\"}\nnot json\n{\"custom_id\": \"b\"}\n"[..], "line 2: not JSON"),
            (b"{\"method\": \"POST\"}\n", "no custom_id"),
            (b"{\"custom_id\": 7}\n", "must be a string"),
            (b"[1]\n", "expected a JSON object"),
        ] {
            let p = tmp("bad.jsonl", content);
            let m = Manifest::open(&p, &ManifestOptions::default()).unwrap();
            let mut it = m.records().unwrap();
            let err = it.find_map(|r| r.err()).map(|e| e.to_string()).unwrap_or_default();
            assert!(err.contains(needle), "{err}");
            assert!(it.next().is_none());
        }
    }

    #[test]
    fn long_lines_are_bounded() {
        let mut big = b"{\"custom_id\": \"".to_vec();
        big.extend(std::iter::repeat_n(b'x', 5000));
        let p = tmp("long.jsonl", &big);
        let m = Manifest::open(&p, &ManifestOptions { max_line_bytes: 1000, ..Default::default() })
            .unwrap();
        let e = all(&m).unwrap_err().to_string();
        assert!(e.contains("line 1: longer than 1000 bytes"), "{e}");
    }

    fn plain(
        video: &str,
        id: Option<&str>,
        prompt: Option<&str>,
        prompt_column: Option<&str>,
    ) -> ManifestOptions {
        ManifestOptions {
            video_column: Some(video.into()),
            id_column: id.map(String::from),
            prompt: prompt.map(String::from),
            prompt_column: prompt_column.map(String::from),
            ..Default::default()
        }
    }

    #[test]
    fn plain_jsonl_and_csv_agree() {
        let j = tmp(
            "p.jsonl",
            b"{\"v\": \"a.mp4\", \"id\": 1, \"q\": \"what?\"}\n{\"v\": \"b.mp4\", \"id\": 2, \"q\": null}\n{\"v\": null, \"id\": 3}\n",
        );
        let c = tmp("p.csv", b"id,v,q\n1,a.mp4,what?\n2,b.mp4,\n3,,\n");
        let opts = plain("v", Some("id"), Some("default?"), Some("q"));
        let a = all(&Manifest::open(&j, &opts).unwrap()).unwrap();
        let b = all(&Manifest::open(&c, &opts).unwrap()).unwrap();
        assert_eq!(a.len(), 3);
        for (x, y) in a.iter().zip(&b) {
            assert_eq!((x.index, &x.custom_id), (y.index, &y.custom_id));
            match (&x.request, &y.request) {
                (RequestSource::Invalid(_), RequestSource::Invalid(_)) => {}
                (l, r) => assert_eq!(l, r),
            }
        }
        assert_eq!(
            a[0].request,
            RequestSource::Video { video: "a.mp4".into(), prompt: "what?".into() }
        );
        assert_eq!(
            a[1].request,
            RequestSource::Video { video: "b.mp4".into(), prompt: "default?".into() }
        );
        assert!(matches!(&a[2].request, RequestSource::Invalid(m) if m.contains("no video")));
        assert_eq!(b[0].location, "line 2");
        // Without an id column the video is the id; a row without a video then has no id.
        let e = all(&Manifest::open(&c, &plain("v", None, Some("x"), None)).unwrap())
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 4") && e.contains("no video"), "{e}");
        // A missing column is named.
        let e = all(&Manifest::open(&c, &plain("video", None, Some("x"), None)).unwrap())
            .unwrap_err()
            .to_string();
        assert!(e.contains("column \"video\": no such column"), "{e}");
    }

    #[test]
    fn option_checks() {
        let j = tmp("o.jsonl", b"{}\n");
        assert!(Manifest::open(
            &j,
            &ManifestOptions { prompt: Some("x".into()), ..Default::default() }
        )
        .is_err());
        assert!(Manifest::open(&j, &plain("v", None, None, None)).is_err());
        assert!(Manifest::open(tmp("o.csv", b"v\n"), &ManifestOptions::default()).is_err());
        assert!(Manifest::open("/nonexistent/x.jsonl", &ManifestOptions::default()).is_err());
        assert_eq!("Parquet".parse::<Format>().ok(), Some(Format::Parquet));
    }

    #[test]
    fn parquet_columns() {
        use arrow_array::{DictionaryArray, Int64Array, StringArray};
        use parquet::arrow::ArrowWriter;
        use std::sync::Arc;
        let ids: ArrayRef = Arc::new(Int64Array::from(vec![Some(10), Some(11), None]));
        let videos: ArrayRef =
            Arc::new(StringArray::from(vec![Some("a.mp4"), None, Some("c.mp4")]));
        let prompts: ArrayRef = Arc::new(
            vec![Some("p"), Some("q"), Some("p")]
                .into_iter()
                .collect::<DictionaryArray<Int32Type>>(),
        );
        let rb = RecordBatch::try_from_iter([("id", ids), ("video", videos), ("prompt", prompts)])
            .unwrap();
        let p = tmp("p.parquet", b"");
        let mut w = ArrowWriter::try_new(File::create(&p).unwrap(), rb.schema(), None).unwrap();
        w.write(&rb).unwrap();
        w.close().unwrap();
        let m = Manifest::open(&p, &plain("video", Some("id"), None, Some("prompt"))).unwrap();
        assert_eq!(m.format(), Format::Parquet);
        let mut it = m.records().unwrap();
        let r0 = it.next().unwrap().unwrap();
        assert_eq!((r0.custom_id.as_str(), r0.location.as_str()), ("10", "row 1"));
        assert_eq!(r0.request, RequestSource::Video { video: "a.mp4".into(), prompt: "p".into() });
        assert!(matches!(it.next().unwrap().unwrap().request, RequestSource::Invalid(_)));
        let e = it.next().unwrap().unwrap_err().to_string();
        assert!(e.contains("row 3: no id"), "{e}");
    }
}
