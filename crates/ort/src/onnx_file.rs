//! A small, bounded reader of the structure of an `.onnx` file, without ONNX Runtime and without
//! reading the weights: graph inputs/outputs, nodes (op type, inputs, outputs, integer
//! attributes) and, for every initializer, its shape, element type and **where its bytes are**
//! (a byte range of the `.onnx` file itself for inline `raw_data`, or a file + offset + length for
//! external data).
//!
//! vidlm uses it to serve the token-embedding table from the file (`vidlm-decoder` reads only
//! the rows a prompt needs, see its `EmbeddingTable`) instead of holding the whole table in an
//! ONNX Runtime session, and to check how an export laid out its external data.
//!
//! The reader walks the protobuf wire format field by field; length-delimited payloads it does not
//! need (weights, doc strings, sub-graphs) are skipped with a seek, so a multi-gigabyte graph is
//! read in a few kilobytes. Every length is checked against its enclosing message, so a corrupt or
//! hostile file is an [`OnnxFileError`], never a panic or an unbounded allocation.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

/// Errors of [`OnnxFile::read`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OnnxFileError {
    /// The file could not be opened or read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The bytes are not a well-formed ONNX model.
    #[error("{path}: not a well-formed ONNX model ({message})")]
    Malformed {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

impl OnnxFileError {
    /// The category: a graph file that cannot be read or parsed is
    /// [`vidlm_model::ErrorKind::InvalidModel`].
    pub fn kind(&self) -> vidlm_model::ErrorKind {
        vidlm_model::ErrorKind::InvalidModel
    }
}

/// ONNX `TensorProto.DataType` values vidlm cares about (others keep their number).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataType {
    /// `FLOAT` (1).
    Float32,
    /// `FLOAT16` (10).
    Float16,
    /// `BFLOAT16` (16).
    BFloat16,
    /// `INT64` (7).
    Int64,
    /// Any other type, by its ONNX number.
    Other(i32),
}

impl DataType {
    fn from_onnx(v: i32) -> Self {
        match v {
            1 => DataType::Float32,
            10 => DataType::Float16,
            16 => DataType::BFloat16,
            7 => DataType::Int64,
            other => DataType::Other(other),
        }
    }

    /// Bytes per element, where fixed.
    pub fn size(self) -> Option<usize> {
        match self {
            DataType::Float32 => Some(4),
            DataType::Float16 | DataType::BFloat16 => Some(2),
            DataType::Int64 => Some(8),
            DataType::Other(_) => None,
        }
    }
}

/// Where an initializer's bytes are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TensorData {
    /// `raw_data` inside the `.onnx` file: a byte range of that file.
    Inline {
        /// Absolute byte offset in the `.onnx` file.
        offset: u64,
        /// Length in bytes.
        length: u64,
    },
    /// External data (`data_location = EXTERNAL`).
    External {
        /// The data file (resolved against the `.onnx` file's directory).
        path: PathBuf,
        /// Byte offset in that file.
        offset: u64,
        /// Length in bytes (`None` when the entry omits it: the rest of the file).
        length: Option<u64>,
    },
    /// Typed fields (`float_data`, …) or no data: not readable as raw bytes.
    Other,
}

/// One initializer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Initializer {
    /// Name.
    pub name: String,
    /// Shape.
    pub dims: Vec<i64>,
    /// Element type.
    pub data_type: DataType,
    /// Where its bytes are.
    pub data: TensorData,
}

impl Initializer {
    /// Number of elements (`None` on a negative dimension or overflow).
    pub fn numel(&self) -> Option<u64> {
        self.dims
            .iter()
            .try_fold(1u64, |acc, &d| u64::try_from(d).ok().and_then(|d| acc.checked_mul(d)))
    }

    /// Size in bytes (`None` for types without a fixed element size).
    pub fn byte_len(&self) -> Option<u64> {
        self.numel()?.checked_mul(self.data_type.size()? as u64)
    }
}

/// One node (only what vidlm inspects).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Node {
    /// `op_type`.
    pub op_type: String,
    /// `domain` (empty for the default ONNX domain).
    pub domain: String,
    /// Input names.
    pub inputs: Vec<String>,
    /// Output names.
    pub outputs: Vec<String>,
    /// Integer attributes (`name`, `i`); other attribute kinds are listed with `None`.
    pub attributes: Vec<(String, Option<i64>)>,
}

impl Node {
    /// The integer attribute `name`, if present.
    pub fn int_attribute(&self, name: &str) -> Option<Option<i64>> {
        self.attributes.iter().find(|(n, _)| n == name).map(|(_, v)| *v)
    }
}

/// The structure of an `.onnx` file's main graph.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct OnnxFile {
    /// Graph input names (initializers listed as inputs by old exporters excluded).
    pub inputs: Vec<String>,
    /// Graph output names.
    pub outputs: Vec<String>,
    /// Nodes in file order.
    pub nodes: Vec<Node>,
    /// Initializers in file order.
    pub initializers: Vec<Initializer>,
}

impl OnnxFile {
    /// Reads the structure of the `.onnx` file at `path` (weights are skipped, not read).
    pub fn read(path: impl AsRef<Path>) -> Result<Self, OnnxFileError> {
        let path = path.as_ref();
        let io = |source| OnnxFileError::Io { path: path.to_path_buf(), source };
        let file = File::open(path).map_err(io)?;
        let len = file.metadata().map_err(io)?.len();
        let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        let mut r =
            Wire { r: BufReader::with_capacity(64 * 1024, file), pos: 0, path: path.to_path_buf() };
        let mut out = OnnxFile::default();
        let mut seen_graph = false;
        while r.pos < len {
            let (field, wt) = r.key(len)?;
            if field == 7 && wt == 2 {
                let end = r.len_end(len)?;
                if seen_graph {
                    return Err(r.bad("two graphs in one model"));
                }
                seen_graph = true;
                read_graph(&mut r, end, &dir, &mut out)?;
            } else {
                r.skip(wt, len)?;
            }
        }
        if !seen_graph {
            return Err(r.bad("no graph"));
        }
        let init: std::collections::HashSet<&str> =
            out.initializers.iter().map(|i| i.name.as_str()).collect();
        let inputs = out.inputs.iter().filter(|n| !init.contains(n.as_str())).cloned().collect();
        out.inputs = inputs;
        Ok(out)
    }

    /// The initializer called `name`.
    pub fn initializer(&self, name: &str) -> Option<&Initializer> {
        self.initializers.iter().find(|i| i.name == name)
    }
}

/// Longest string (names, keys) the reader accepts; ONNX names are short.
const MAX_STRING: u64 = 1 << 16;

struct Wire {
    r: BufReader<File>,
    pos: u64,
    path: PathBuf,
}

impl Wire {
    fn bad(&self, message: &str) -> OnnxFileError {
        OnnxFileError::Malformed {
            path: self.path.clone(),
            message: format!("{message} at byte {}", self.pos),
        }
    }

    fn byte(&mut self, end: u64) -> Result<u8, OnnxFileError> {
        if self.pos >= end {
            return Err(self.bad("truncated field"));
        }
        let mut b = [0u8; 1];
        self.r
            .read_exact(&mut b)
            .map_err(|source| OnnxFileError::Io { path: self.path.clone(), source })?;
        self.pos += 1;
        Ok(b[0])
    }

    fn varint(&mut self, end: u64) -> Result<u64, OnnxFileError> {
        let mut v = 0u64;
        for i in 0..10 {
            let b = self.byte(end)?;
            v |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(self.bad("varint longer than 10 bytes"))
    }

    fn key(&mut self, end: u64) -> Result<(u64, u8), OnnxFileError> {
        let k = self.varint(end)?;
        Ok((k >> 3, (k & 7) as u8))
    }

    /// Reads a length prefix and returns the absolute end of the payload (checked against `end`).
    fn len_end(&mut self, end: u64) -> Result<u64, OnnxFileError> {
        let n = self.varint(end)?;
        match self.pos.checked_add(n) {
            Some(e) if e <= end => Ok(e),
            _ => Err(self.bad("length runs past its message")),
        }
    }

    fn seek_to(&mut self, to: u64) -> Result<(), OnnxFileError> {
        if to != self.pos {
            let delta = i64::try_from(to - self.pos).map_err(|_| self.bad("offset overflow"))?;
            self.r
                .seek_relative(delta)
                .map_err(|source| OnnxFileError::Io { path: self.path.clone(), source })?;
            self.pos = to;
        }
        Ok(())
    }

    fn skip(&mut self, wt: u8, end: u64) -> Result<(), OnnxFileError> {
        match wt {
            0 => self.varint(end).map(|_| ()),
            1 | 5 => {
                let n = if wt == 1 { 8 } else { 4 };
                if self.pos + n > end {
                    return Err(self.bad("truncated fixed-width field"));
                }
                self.seek_to(self.pos + n)
            }
            2 => {
                let e = self.len_end(end)?;
                self.seek_to(e)
            }
            _ => Err(self.bad(&format!("unsupported wire type {wt}"))),
        }
    }

    fn string(&mut self, end: u64) -> Result<String, OnnxFileError> {
        let e = self.len_end(end)?;
        let n = e - self.pos;
        if n > MAX_STRING {
            return Err(self.bad("string longer than 64 KiB"));
        }
        let mut buf = vec![0u8; n as usize];
        self.r
            .read_exact(&mut buf)
            .map_err(|source| OnnxFileError::Io { path: self.path.clone(), source })?;
        self.pos = e;
        String::from_utf8(buf).map_err(|_| self.bad("string is not UTF-8"))
    }

    /// A `ValueInfoProto`'s name (field 1).
    fn value_info_name(&mut self, end: u64) -> Result<String, OnnxFileError> {
        let e = self.len_end(end)?;
        let mut name = String::new();
        while self.pos < e {
            let (f, wt) = self.key(e)?;
            if f == 1 && wt == 2 {
                name = self.string(e)?;
            } else {
                self.skip(wt, e)?;
            }
        }
        Ok(name)
    }
}

fn read_graph(r: &mut Wire, end: u64, dir: &Path, out: &mut OnnxFile) -> Result<(), OnnxFileError> {
    while r.pos < end {
        let (f, wt) = r.key(end)?;
        match (f, wt) {
            (1, 2) => {
                let e = r.len_end(end)?;
                out.nodes.push(read_node(r, e)?);
            }
            (5, 2) => {
                let e = r.len_end(end)?;
                out.initializers.push(read_tensor(r, e, dir)?);
            }
            (11, 2) => {
                let n = r.value_info_name(end)?;
                out.inputs.push(n);
            }
            (12, 2) => {
                let n = r.value_info_name(end)?;
                out.outputs.push(n);
            }
            _ => r.skip(wt, end)?,
        }
    }
    Ok(())
}

fn read_node(r: &mut Wire, end: u64) -> Result<Node, OnnxFileError> {
    let mut n = Node::default();
    while r.pos < end {
        let (f, wt) = r.key(end)?;
        match (f, wt) {
            (1, 2) => n.inputs.push(r.string(end)?),
            (2, 2) => n.outputs.push(r.string(end)?),
            (4, 2) => n.op_type = r.string(end)?,
            (7, 2) => n.domain = r.string(end)?,
            (5, 2) => {
                let e = r.len_end(end)?;
                let mut name = String::new();
                let mut i = None;
                while r.pos < e {
                    let (af, awt) = r.key(e)?;
                    match (af, awt) {
                        (1, 2) => name = r.string(e)?,
                        (3, 0) => i = Some(r.varint(e)? as i64),
                        _ => r.skip(awt, e)?,
                    }
                }
                n.attributes.push((name, i));
            }
            _ => r.skip(wt, end)?,
        }
    }
    Ok(n)
}

fn read_tensor(r: &mut Wire, end: u64, dir: &Path) -> Result<Initializer, OnnxFileError> {
    let mut name = String::new();
    let mut dims = Vec::new();
    let mut data_type = 0i32;
    let mut raw = None;
    let mut external = false;
    let mut location = None;
    let mut ext_offset = 0u64;
    let mut ext_length = None;
    while r.pos < end {
        let (f, wt) = r.key(end)?;
        match (f, wt) {
            (1, 0) => dims.push(r.varint(end)? as i64),
            (1, 2) => {
                let e = r.len_end(end)?;
                while r.pos < e {
                    dims.push(r.varint(e)? as i64);
                }
            }
            (2, 0) => data_type = r.varint(end)? as i32,
            (8, 2) => name = r.string(end)?,
            (9, 2) => {
                let e = r.len_end(end)?;
                raw = Some((r.pos, e - r.pos));
                r.seek_to(e)?;
            }
            (13, 2) => {
                let e = r.len_end(end)?;
                let (mut k, mut v) = (String::new(), String::new());
                while r.pos < e {
                    let (kf, kwt) = r.key(e)?;
                    match (kf, kwt) {
                        (1, 2) => k = r.string(e)?,
                        (2, 2) => v = r.string(e)?,
                        _ => r.skip(kwt, e)?,
                    }
                }
                let num = |v: &str, r: &Wire| {
                    v.trim()
                        .parse::<u64>()
                        .map_err(|_| r.bad(&format!("external data {k} = {v:?}")))
                };
                match k.as_str() {
                    "location" => location = Some(v),
                    "offset" => ext_offset = num(&v, r)?,
                    "length" => ext_length = Some(num(&v, r)?),
                    _ => {}
                }
            }
            (14, 0) => external = r.varint(end)? == 1,
            _ => r.skip(wt, end)?,
        }
    }
    let data = if external {
        let loc = location.ok_or_else(|| {
            r.bad(&format!("initializer {name:?} is external but has no location"))
        })?;
        let rel = Path::new(&loc);
        // External data lives next to the graph; absolute paths and `..` are refused (as ORT does).
        if rel.is_absolute()
            || rel.components().any(|c| matches!(c, std::path::Component::ParentDir))
        {
            return Err(r.bad(&format!(
                "initializer {name:?}: external data location {loc:?} leaves the model directory"
            )));
        }
        TensorData::External { path: dir.join(rel), offset: ext_offset, length: ext_length }
    } else if let Some((offset, length)) = raw {
        TensorData::Inline { offset, length }
    } else {
        TensorData::Other
    };
    Ok(Initializer { name, dims, data_type: DataType::from_onnx(data_type), data })
}

/// Protobuf wire-format encoders, enough to write a small ONNX graph by hand (the tests here
/// and in `vidlm-decoder` do, to stay free of Python).
pub mod encode {
    /// Appends `v` as a base-128 varint.
    pub fn varint(mut v: u64, out: &mut Vec<u8>) {
        loop {
            let b = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                out.push(b);
                return;
            }
            out.push(b | 0x80);
        }
    }

    /// Appends field number `f` as a length-delimited record holding `payload`.
    pub fn field(f: u64, payload: &[u8], out: &mut Vec<u8>) {
        varint((f << 3) | 2, out);
        varint(payload.len() as u64, out);
        out.extend_from_slice(payload);
    }
}

#[cfg(test)]
mod tests {
    use super::encode::{field, varint};
    use super::*;

    fn write_tmp(name: &str, bytes: &[u8]) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("vidlm-onnx-file-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("g.onnx");
        std::fs::write(&p, bytes).unwrap();
        p
    }

    /// A Gather graph with one inline and one external initializer, written by hand.
    fn model() -> (Vec<u8>, usize) {
        let mut t1 = Vec::new();
        varint(1 << 3, &mut t1); // dims 3 (varint form)
        varint(3, &mut t1);
        field(1, &[2], &mut t1); // dims 2 (packed form)
        varint(2 << 3, &mut t1);
        varint(1, &mut t1); // FLOAT
        field(8, b"W", &mut t1);
        let raw: Vec<u8> = (0..24).collect();
        field(9, &raw, &mut t1);
        let mut t2 = Vec::new();
        field(1, &[4], &mut t2);
        varint(2 << 3, &mut t2);
        varint(10, &mut t2);
        field(8, b"E", &mut t2);
        let mut kv = Vec::new();
        field(1, b"location", &mut kv);
        field(2, b"w.bin", &mut kv);
        field(13, &kv, &mut t2);
        let mut kv = Vec::new();
        field(1, b"offset", &mut kv);
        field(2, b"4096", &mut kv);
        field(13, &kv, &mut t2);
        varint(14 << 3, &mut t2);
        varint(1, &mut t2);
        let mut node = Vec::new();
        field(1, b"W", &mut node);
        field(1, b"ids", &mut node);
        field(2, b"out", &mut node);
        field(4, b"Gather", &mut node);
        let mut attr = Vec::new();
        field(1, b"axis", &mut attr);
        varint(3 << 3, &mut attr);
        varint(0, &mut attr);
        field(5, &attr, &mut node);
        let mut vi = Vec::new();
        field(1, b"ids", &mut vi);
        let mut vo = Vec::new();
        field(1, b"out", &mut vo);
        let mut g = Vec::new();
        field(1, &node, &mut g);
        field(5, &t1, &mut g);
        field(5, &t2, &mut g);
        field(11, &vi, &mut g);
        field(12, &vo, &mut g);
        let mut m = Vec::new();
        varint(1 << 3, &mut m); // ir_version
        varint(8, &mut m);
        field(7, &g, &mut m);
        // Offset of W's raw bytes: find the 0,1,2,..,23 run.
        let pos = m.windows(24).position(|w| w == raw.as_slice()).unwrap();
        (m, pos)
    }

    #[test]
    fn reads_structure_and_data_locations() {
        let (bytes, raw_at) = model();
        let p = write_tmp("ok", &bytes);
        let f = OnnxFile::read(&p).unwrap();
        assert_eq!(f.inputs, ["ids"]);
        assert_eq!(f.outputs, ["out"]);
        assert_eq!(f.nodes.len(), 1);
        assert_eq!(f.nodes[0].op_type, "Gather");
        assert_eq!(f.nodes[0].inputs, ["W", "ids"]);
        assert_eq!(f.nodes[0].int_attribute("axis"), Some(Some(0)));
        let w = f.initializer("W").unwrap();
        assert_eq!(w.dims, [3, 2]);
        assert_eq!(w.data_type, DataType::Float32);
        assert_eq!(w.byte_len(), Some(24));
        assert_eq!(w.data, TensorData::Inline { offset: raw_at as u64, length: 24 });
        let e = f.initializer("E").unwrap();
        assert_eq!(e.data_type, DataType::Float16);
        assert_eq!(
            e.data,
            TensorData::External {
                path: p.parent().unwrap().join("w.bin"),
                offset: 4096,
                length: None
            }
        );
    }

    #[test]
    fn truncated_and_garbage_files_are_errors() {
        let (bytes, _) = model();
        for cut in [1, 5, bytes.len() / 2, bytes.len() - 1] {
            let p = write_tmp(&format!("cut{cut}"), &bytes[..cut]);
            let e = OnnxFile::read(&p).unwrap_err();
            assert!(matches!(e, OnnxFileError::Malformed { .. } | OnnxFileError::Io { .. }), "{e}");
        }
        let p = write_tmp("garbage", &[0xff; 64]);
        assert!(OnnxFile::read(&p).is_err());
        let p = write_tmp("empty", &[]);
        assert!(matches!(OnnxFile::read(&p).unwrap_err(), OnnxFileError::Malformed { .. }));
        assert!(matches!(
            OnnxFile::read("/nonexistent/x.onnx").unwrap_err(),
            OnnxFileError::Io { .. }
        ));
    }

    #[test]
    fn external_data_outside_the_model_dir_is_refused() {
        let mut t = Vec::new();
        field(8, b"E", &mut t);
        let mut kv = Vec::new();
        field(1, b"location", &mut kv);
        field(2, b"../../etc/passwd", &mut kv);
        field(13, &kv, &mut t);
        varint(14 << 3, &mut t);
        varint(1, &mut t);
        let mut g = Vec::new();
        field(5, &t, &mut g);
        let mut m = Vec::new();
        field(7, &g, &mut m);
        let p = write_tmp("escape", &m);
        assert!(matches!(OnnxFile::read(&p).unwrap_err(), OnnxFileError::Malformed { .. }));
    }
}
