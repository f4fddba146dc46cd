//! `embed_tokens` served from the graph's file ([`EmbeddingTable`], no ONNX Runtime session) gives
//! bit-for-bit what the graph's `Gather` gives in ONNX Runtime, for every exported embedding of
//! the committed demo model and the fixtures (fp32, fp16 and 8-bit, inline data; 4-bit ones stay in
//! a session); and for a table in
//! page-aligned external data (the layout of real-size exports).

use crate::common;

use std::path::{Path, PathBuf};

use common::*;
use vidlm_decoder::*;
use vidlm_ort::onnx_file::encode::{field, varint};

fn session() -> SessionOptions {
    SessionOptions { intra_threads: Some(1), ..Default::default() }
}

/// Every `embed_tokens*.onnx` of the demo model and of the fixtures that exist here.
fn graphs() -> Vec<PathBuf> {
    let mut dirs = vec![demo_model()];
    for fam in golden_families() {
        dirs.push(fixture_model(&fam));
    }
    let mut out = Vec::new();
    for d in dirs {
        let Ok(rd) = std::fs::read_dir(d.join("onnx")) else { continue };
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            if name.starts_with("embed_tokens") && name.ends_with(".onnx") {
                out.push(e.path());
            }
        }
    }
    out.sort();
    out
}

fn ids(vocab: usize) -> Vec<i64> {
    // First, last, and a spread in between, with repeats.
    let mut v: Vec<i64> = vec![0, vocab as i64 - 1, 1, 0];
    v.extend((0..60).map(|i| ((i * 7919 + 13) % vocab) as i64));
    v
}

fn check(graph: &Path) {
    let mut table = Embedder::load(graph, &session(), true)
        .unwrap_or_else(|e| panic!("{}: {e}", graph.display()));
    let mut ort = Embedder::load(graph, &session(), false).unwrap();
    let name = graph.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
    if name.contains("_q4") {
        // 4-bit tables (GatherBlockQuantized) are not plain Gathers: they stay in a session. (The
        // 8-bit export keeps the embedding a plain Gather, so `_quantized` is served from the file.)
        assert!(
            !table.is_table(),
            "{}: a 4-bit embedding must fall back to its session",
            graph.display()
        );
        return;
    }
    assert!(
        table.is_table(),
        "{}: a plain Gather graph should be served from the file",
        graph.display()
    );
    assert!(!ort.is_table());
    let hidden = table.hidden().unwrap();
    let vocab = match &table {
        Embedder::Table { table, .. } => table.vocab(),
        _ => unreachable!(),
    };
    let ids = ids(vocab);
    let (batch, seq) = (2, ids.len() / 2);
    let a = table.embed(&ids, batch, seq, hidden).unwrap();
    let b = ort.embed(&ids, batch, seq, hidden).unwrap();
    assert_eq!(a.len(), ids.len() * hidden);
    assert!(
        a.iter().zip(&b).all(|(x, y)| x.to_bits() == y.to_bits()),
        "{}: table rows differ from ONNX Runtime's Gather",
        graph.display()
    );
    // Out of range ids are typed errors, never a panic or a read past the table.
    for bad in [-1i64, vocab as i64, i64::MAX] {
        let e = table.embed(&[1, bad], 1, 2, hidden).unwrap_err();
        assert!(
            matches!(e, DecoderError::TokenOutOfRange { id, vocab: v } if id == bad && v == vocab),
            "{e}"
        );
    }
    assert!(matches!(table.embed(&[1, 2, 3], 2, 2, hidden).unwrap_err(), DecoderError::Shape(_)));
}

#[test]
fn table_rows_equal_the_graphs_gather() {
    let gs = graphs();
    assert!(!gs.is_empty(), "no embed_tokens graphs found (demo model missing?)");
    for g in &gs {
        check(g);
    }
    eprintln!("checked {} graphs: {gs:?}", gs.len());
}

/// The demo model's table re-saved as page-aligned external data (how real-size exports store
/// it): the table reads the `.onnx_data` file at the recorded offset.
#[test]
fn table_in_external_data() {
    let src = demo_model().join("onnx/embed_tokens.onnx");
    let f = vidlm_ort::onnx_file::OnnxFile::read(&src).unwrap();
    let w = &f.initializers[0];
    let vidlm_ort::onnx_file::TensorData::Inline { offset, length } = w.data else {
        panic!("demo embed is inline")
    };
    let bytes = std::fs::read(&src).unwrap();
    let raw = &bytes[offset as usize..(offset + length) as usize];
    // Rewrite the graph: same protobuf with raw_data replaced by external data entries. Built
    // by hand with the protobuf wire format to stay free of Python here.
    let dir = std::env::temp_dir().join(format!("vidlm-embed-ext-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let data_name = "embed_tokens.onnx_data";
    let pad = 65536usize;
    let mut data = vec![0u8; pad];
    data.extend_from_slice(raw);
    std::fs::write(dir.join(data_name), &data).unwrap();
    let graph = dir.join("embed_tokens.onnx");
    std::fs::write(&graph, external_gather_model(&w.name, &w.dims, data_name, pad as u64, length))
        .unwrap();
    let mut table = Embedder::load(&graph, &session(), true).unwrap();
    assert!(table.is_table());
    let mut ort = Embedder::load(&src, &session(), false).unwrap();
    let hidden = table.hidden().unwrap();
    let ids = ids(32064);
    let a = table.embed(&ids, 1, ids.len(), hidden).unwrap();
    let b = ort.embed(&ids, 1, ids.len(), hidden).unwrap();
    assert!(a.iter().zip(&b).all(|(x, y)| x.to_bits() == y.to_bits()));
    // A data file shorter than the table is refused at load.
    std::fs::write(dir.join(data_name), &data[..data.len() - 4]).unwrap();
    let e = Embedder::load(&graph, &session(), true).unwrap_err();
    assert!(matches!(e, DecoderError::UnexpectedGraph { .. }), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// `input_ids -> Gather(W, input_ids) -> inputs_embeds` with W in external data.
fn external_gather_model(
    name: &str,
    dims: &[i64],
    location: &str,
    offset: u64,
    length: u64,
) -> Vec<u8> {
    let mut t = Vec::new();
    for &d in dims {
        varint(1 << 3, &mut t);
        varint(d as u64, &mut t);
    }
    varint(2 << 3, &mut t);
    varint(1, &mut t);
    field(8, name.as_bytes(), &mut t);
    for (k, v) in [
        ("location", location.to_string()),
        ("offset", offset.to_string()),
        ("length", length.to_string()),
    ] {
        let mut kv = Vec::new();
        field(1, k.as_bytes(), &mut kv);
        field(2, v.as_bytes(), &mut kv);
        field(13, &kv, &mut t);
    }
    varint(14 << 3, &mut t);
    varint(1, &mut t);
    let mut node = Vec::new();
    field(1, name.as_bytes(), &mut node);
    field(1, b"input_ids", &mut node);
    field(2, b"inputs_embeds", &mut node);
    field(4, b"Gather", &mut node);
    let type_proto = |elem: u64, ndim: usize| {
        // TypeProto { tensor_type (1): { elem_type (1), shape (2): { dim (1): {dim_param (2)} ... } } }
        let mut shape = Vec::new();
        for i in 0..ndim {
            let mut dim = Vec::new();
            field(2, format!("d{i}").as_bytes(), &mut dim);
            field(1, &dim, &mut shape);
        }
        let mut tt = Vec::new();
        varint(1 << 3, &mut tt);
        varint(elem, &mut tt);
        field(2, &shape, &mut tt);
        let mut tp = Vec::new();
        field(1, &tt, &mut tp);
        tp
    };
    let mut vi = Vec::new();
    field(1, b"input_ids", &mut vi);
    field(2, &type_proto(7, 2), &mut vi);
    let mut vo = Vec::new();
    field(1, b"inputs_embeds", &mut vo);
    field(2, &type_proto(1, 3), &mut vo);
    let mut g = Vec::new();
    field(1, &node, &mut g);
    field(2, b"embed", &mut g);
    field(5, &t, &mut g);
    field(11, &vi, &mut g);
    field(12, &vo, &mut g);
    let mut opset = Vec::new();
    varint(2 << 3, &mut opset);
    varint(17, &mut opset);
    let mut m = Vec::new();
    varint(1 << 3, &mut m);
    varint(8, &mut m);
    field(8, &opset, &mut m);
    field(7, &g, &mut m);
    m
}
