//! `cargo xtask tidy`: invariants of the source tree that a machine checks (run by
//! `cargo xtask test`, i.e. CI). Like rust-analyzer's `tidy`, it reads files as text:
//!
//! * **unsafe** — the word `unsafe` (outside comments and strings) appears only in the FFI and
//!   SIMD modules ([`UNSAFE_ALLOWED`]); every other crate inherits the workspace lints
//!   (`unsafe_code = "forbid"`), and a crate holding one of those modules denies `unsafe_code`
//!   itself (allowed on that module alone).
//! * **family knowledge** — family `match`es (a `Family::Variant` or a family spec constant)
//!   appear only in `crates/model` (`vidlm-model`), and only it defines `Family` / `FamilySpec`.
//! * **docs** — every `lib.rs` opens with a doc overview (`//!`) holding a runnable example and
//!   sets `#![warn(missing_docs)]` (which clippy's `-D warnings` turns into an error), and every
//!   crate has a README and a section in ARCHITECTURE.md.
//! * **lints** — a crate that cannot inherit `[workspace.lints]` (it denies `unsafe_code`
//!   instead of forbidding it) repeats `[workspace.lints.clippy]` as its `[lints.clippy]`.
//!
//! Then two commands: [`fmt_check`] (`cargo fmt --all --check` on the workspace and `fuzz/`,
//! with the committed `rustfmt.toml`) and [`clippy`] (`cargo clippy --all-targets -- -D warnings`
//! on the workspace, and again on the code behind the `cuda` feature). `cargo xtask test` runs
//! the text checks and fmt first, and clippy once the set-up has installed what the
//! dependencies' build scripts need (FFmpeg, clang).

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::run;

/// Files (relative to the workspace, `/`-separated) allowed to contain `unsafe`: FFI modules by
/// path, SIMD modules by name (`simd.rs` or `simd/`).
pub const UNSAFE_ALLOWED: &[&str] =
    &["crates/video-io/src/ffi.rs", "crates/video-io/src/ffi/turbojpeg.rs", "xtask/src/ffi.rs"];

/// Crates whose macro-generated code carries `#[allow(unsafe_code)]` (PyO3), so they set
/// `unsafe_code = "deny"` instead of inheriting `forbid`; their own source has no `unsafe`.
pub const MACRO_UNSAFE_CRATES: &[&str] = &["crates/python"];

/// Variants of `vidlm_model::Family` and the names of its spec constants.
const FAMILY_NAMES: &[&str] =
    &["Interleave", "Onevision", "VideoLlava", "LlavaNextVideo", "Qwen25Vl", "Qwen3Vl"];
const SPEC_CONSTS: &[&str] =
    &["INTERLEAVE", "ONEVISION", "VIDEO_LLAVA", "LLAVA_NEXT_VIDEO", "QWEN2_5_VL", "QWEN3_VL"];
/// The crate that owns family knowledge.
const MODEL_CRATE: &str = "crates/model/";
/// The only crate whose code the `cuda` feature changes (the other crates' `cuda` features only
/// pass it down): `cargo xtask test` lints and builds the `cuda` feature on this crate alone.
const CUDA_CRATE: &str = "crates/ort/";

/// One violation: where and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// `path:line`.
    pub at: String,
    /// What is wrong.
    pub message: String,
}

/// `cargo xtask tidy`: the text checks, `cargo fmt --check` and clippy.
pub fn tidy(root: &Path, with_clippy: bool) -> Result<()> {
    text_checks(root)?;
    fmt_check(root)?;
    if with_clippy {
        clippy(root)?;
    }
    Ok(())
}

/// The text checks on the workspace at `root`; fails listing every violation.
pub fn text_checks(root: &Path) -> Result<()> {
    let findings = check(root)?;
    if findings.is_empty() {
        eprintln!("[tidy] ok: unsafe only in FFI/SIMD modules, family matches only in vidlm-model, lib.rs overviews and missing_docs, READMEs, lints");
        return Ok(());
    }
    for f in &findings {
        eprintln!("[tidy] {}: {}", f.at, f.message);
    }
    bail!("tidy: {} violation(s)", findings.len())
}

fn cargo(root: &Path) -> Command {
    let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    c.current_dir(root);
    c
}

/// `cargo fmt --all --check` on the workspace and on `fuzz/` (a workspace of its own).
pub fn fmt_check(root: &Path) -> Result<()> {
    for manifest in ["Cargo.toml", "fuzz/Cargo.toml"] {
        eprintln!("[tidy] cargo fmt --all --check --manifest-path {manifest}");
        run(cargo(root).args(["fmt", "--all", "--check", "--manifest-path", manifest]))
            .context("formatting differs: run `cargo fmt --all` (and in fuzz/)")?;
    }
    Ok(())
}

/// The clippy runs: the workspace, then the code behind the `cuda` feature.
pub const CLIPPY_RUNS: &[&[&str]] = &[
    &["--workspace", "--all-targets"],
    // The whole workspace again so that the dependencies keep the first run's features and only
    // the crates above vidlm-ort are checked again.
    &["--workspace", "--all-targets", "--features", "vidlm-ort/cuda,vidlm/cuda"],
];

/// `cargo clippy ... -- -D warnings` for each of [`CLIPPY_RUNS`] (the allow-list is
/// `[workspace.lints.clippy]` in Cargo.toml).
pub fn clippy(root: &Path) -> Result<()> {
    for args in CLIPPY_RUNS {
        eprintln!("[tidy] cargo clippy {} -- -D warnings", args.join(" "));
        run(cargo(root).arg("clippy").args(*args).args(["--", "-D", "warnings"]))?;
    }
    Ok(())
}

/// `cargo xtask test` lints while it builds: clippy's driver becomes the compiler of the
/// workspace's own crates (`RUSTC_WORKSPACE_WRAPPER`, the mechanism `cargo clippy` itself uses
/// over `cargo check`) with `-D warnings`, so the test build reports every clippy lint of every
/// target (`--all-targets`) and fails on the first, while the dependencies are compiled once, for
/// the build, instead of checked a second time for a separate `cargo clippy`. Clippy's driver
/// compiles fully (as it does for build scripts under `cargo clippy`); it turns MIR optimisations
/// off, which only makes the workspace's test code slightly slower.
pub fn lint_while_building(cmd: &mut Command) -> Result<()> {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let out = Command::new(&rustc).args(["--print", "sysroot"]).output();
    let sysroot = out
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()))
        .context("`rustc --print sysroot` failed")?;
    let driver = sysroot.join("bin").join(format!("clippy-driver{}", std::env::consts::EXE_SUFFIX));
    if !driver.is_file() {
        bail!("{} is missing: `rustup component add clippy`", driver.display());
    }
    // `cargo clippy -- -D warnings` passes its arguments the same way.
    cmd.env("RUSTC_WORKSPACE_WRAPPER", driver)
        .env("CLIPPY_ARGS", "-D__CLIPPY_HACKERY__warnings__CLIPPY_HACKERY__");
    Ok(())
}

/// All violations in the workspace at `root`.
pub fn check(root: &Path) -> Result<Vec<Finding>> {
    let mut findings = Vec::new();
    let mut files = Vec::new();
    for dir in ["crates", "xtask"] {
        rust_files(&root.join(dir), &mut files)?;
    }
    files.sort();
    for path in &files {
        let rel = relative(root, path);
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let code = strip_comments_and_strings(&text);
        findings.extend(unsafe_outside_allowed(&rel, &code));
        if is_library_source(&rel) && !rel.starts_with(MODEL_CRATE) {
            findings.extend(family_knowledge(&rel, &code));
        }
        if rel.ends_with("src/lib.rs") {
            findings.extend(lib_overview(&rel, &text));
            findings.extend(missing_docs_lint(&rel, &text));
        }
        if !rel.starts_with(CUDA_CRATE) {
            findings.extend(cuda_cfg(&rel, &text));
        }
    }
    findings.extend(crate_manifests(root)?);
    findings.extend(test_binaries(root)?);
    Ok(findings)
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    if !dir.is_dir() {
        return Ok(());
    }
    for entry in std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
        let path = entry?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if path.is_dir() {
            if name != "target" && !name.starts_with('.') {
                rust_files(&path, out)?;
            }
        } else if name.ends_with(".rs") {
            out.push(path);
        }
    }
    Ok(())
}

fn relative(root: &Path, path: &Path) -> String {
    let rel = path.strip_prefix(root).unwrap_or(path);
    rel.components().map(|c| c.as_os_str().to_string_lossy()).collect::<Vec<_>>().join("/")
}

/// Library and binary sources (`crates/*/src/`, `benches/`, `examples/`), not tests.
fn is_library_source(rel: &str) -> bool {
    rel.starts_with("crates/")
        && ["/src/", "/benches/", "/examples/"].iter().any(|d| rel.contains(d))
}

fn is_unsafe_allowed(rel: &str) -> bool {
    UNSAFE_ALLOWED.contains(&rel) || rel.ends_with("/simd.rs") || rel.contains("/simd/")
}

/// Blanks out comments, string, byte-string, raw-string and char literals (keeping newlines, so
/// line numbers stay), leaving only code.
pub fn strip_comments_and_strings(src: &str) -> String {
    let c: Vec<char> = src.chars().collect();
    let mut out = String::with_capacity(src.len());
    let blank = |ch: char| if ch == '\n' { '\n' } else { ' ' };
    let mut i = 0;
    while i < c.len() {
        let next = c.get(i + 1).copied();
        if c[i] == '/' && next == Some('/') {
            while i < c.len() && c[i] != '\n' {
                out.push(' ');
                i += 1;
            }
        } else if c[i] == '/' && next == Some('*') {
            let mut depth = 0;
            while i < c.len() {
                if c[i] == '/' && c.get(i + 1) == Some(&'*') {
                    depth += 1;
                    out.push_str("  ");
                    i += 2;
                } else if c[i] == '*' && c.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    out.push_str("  ");
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    out.push(blank(c[i]));
                    i += 1;
                }
            }
        } else if let Some(hashes) = raw_string_start(&c, i) {
            // r"…", r#"…"#, br#"…"#: no escapes; ends at a quote followed by the same hashes.
            let open = c[i..].iter().position(|&ch| ch == '"').unwrap_or(0) + 1;
            for _ in 0..open {
                out.push(' ');
            }
            i += open;
            while i < c.len() {
                if c[i] == '"' && (1..=hashes).all(|k| c.get(i + k) == Some(&'#')) {
                    for _ in 0..=hashes {
                        out.push(' ');
                    }
                    i += hashes + 1;
                    break;
                }
                out.push(blank(c[i]));
                i += 1;
            }
        } else if c[i] == '"' || (c[i] == 'b' && next == Some('"') && !ident_char(prev(&c, i))) {
            if c[i] == 'b' {
                out.push(' ');
                i += 1;
            }
            out.push(' ');
            i += 1;
            while i < c.len() && c[i] != '"' {
                if c[i] == '\\' {
                    out.push(' ');
                    i += 1;
                }
                if i < c.len() {
                    out.push(blank(c[i]));
                    i += 1;
                }
            }
            out.push(' ');
            i += 1;
        } else if c[i] == '\'' {
            // A char literal ('a', '\n', '\u{1F600}') or a lifetime ('a).
            let end = if next == Some('\\') {
                // Skip the escaped character: '\'' and '\\' end at the quote after it.
                c.get(i + 3..)
                    .and_then(|rest| rest.iter().position(|&ch| ch == '\''))
                    .map(|p| i + 3 + p)
            } else if c.get(i + 2) == Some(&'\'') {
                Some(i + 2)
            } else {
                None
            };
            match end {
                Some(e) => {
                    for _ in i..=e {
                        out.push(' ');
                    }
                    i = e + 1;
                }
                None => {
                    out.push('\'');
                    i += 1;
                }
            }
        } else {
            out.push(c[i]);
            i += 1;
        }
    }
    out
}

fn prev(c: &[char], i: usize) -> char {
    if i == 0 {
        ' '
    } else {
        c[i - 1]
    }
}

fn ident_char(ch: char) -> bool {
    ch.is_alphanumeric() || ch == '_'
}

/// At `i`, `r"`, `r#…#"`, `br"` or `br#…#"` (not inside an identifier): the number of hashes.
fn raw_string_start(c: &[char], i: usize) -> Option<usize> {
    if ident_char(prev(c, i)) {
        return None;
    }
    let mut j = i;
    if c.get(j) == Some(&'b') {
        j += 1;
    }
    if c.get(j) != Some(&'r') {
        return None;
    }
    j += 1;
    let mut hashes = 0;
    while c.get(j) == Some(&'#') {
        hashes += 1;
        j += 1;
    }
    (c.get(j) == Some(&'"')).then_some(hashes)
}

/// Positions (line numbers, 1-based) of the whole word `word` in `code`.
fn word_lines(code: &str, word: &str) -> Vec<usize> {
    let mut lines = Vec::new();
    for (n, line) in code.lines().enumerate() {
        let mut start = 0;
        while let Some(p) = line[start..].find(word) {
            let at = start + p;
            let before = line[..at].chars().next_back().unwrap_or(' ');
            let after = line[at + word.len()..].chars().next().unwrap_or(' ');
            if !ident_char(before) && !ident_char(after) {
                lines.push(n + 1);
                break;
            }
            start = at + word.len();
        }
    }
    lines
}

fn unsafe_outside_allowed(rel: &str, code: &str) -> Vec<Finding> {
    if is_unsafe_allowed(rel) {
        return Vec::new();
    }
    word_lines(code, "unsafe")
        .into_iter()
        .map(|n| Finding {
            at: format!("{rel}:{n}"),
            message: "`unsafe` outside the FFI and SIMD modules (move it behind a safe accessor in `ffi.rs` or a `simd` module)"
                .into(),
        })
        .collect()
}

fn family_knowledge(rel: &str, code: &str) -> Vec<Finding> {
    let mut out = Vec::new();
    for v in FAMILY_NAMES {
        for n in word_lines(code, &format!("Family::{v}")) {
            out.push(Finding {
                at: format!("{rel}:{n}"),
                message: format!(
                    "`Family::{v}`: family matches belong in vidlm-model (use the FamilySpec)"
                ),
            });
        }
    }
    for k in SPEC_CONSTS {
        for n in word_lines(code, k) {
            out.push(Finding {
                at: format!("{rel}:{n}"),
                message: format!(
                    "`{k}`: a family's spec is read through `Family::spec`, in vidlm-model"
                ),
            });
        }
    }
    for def in ["enum Family", "struct FamilySpec"] {
        for n in word_lines(code, def) {
            out.push(Finding {
                at: format!("{rel}:{n}"),
                message: format!("`{def}` is defined once, in vidlm-model"),
            });
        }
    }
    out
}

/// `lib.rs` opens with `//!` lines (a heading and an overview) that include a runnable code
/// example (a fence that is not `ignore`, `no_run`, `text` or `compile_fail`).
fn lib_overview(rel: &str, text: &str) -> Vec<Finding> {
    let doc: Vec<&str> = text.lines().take_while(|l| l.starts_with("//!")).collect();
    let at = format!("{rel}:1");
    if doc.len() < 5 {
        return vec![Finding { at, message: "lib.rs must open with a `//!` doc overview".into() }];
    }
    // Opening fences only (fences alternate open / close).
    let mut in_code = false;
    let mut runnable = false;
    for l in &doc {
        let fence = l.trim_start_matches("//!").trim();
        if !fence.starts_with("```") {
            continue;
        }
        if !in_code {
            let info = fence.trim_start_matches('`');
            runnable |= !["ignore", "no_run", "text", "compile_fail", "sh", "json", "toml"]
                .iter()
                .any(|w| info.contains(w));
        }
        in_code = !in_code;
    }
    if runnable {
        Vec::new()
    } else {
        vec![Finding { at, message: "the `//!` overview of lib.rs needs a runnable example (a doctest that is not no_run/ignore)".into() }]
    }
}

/// A library crate's `lib.rs` sets `#![warn(missing_docs)]`.
fn missing_docs_lint(rel: &str, text: &str) -> Vec<Finding> {
    let attr = |l: &str| l.chars().filter(|c| !c.is_whitespace()).collect::<String>();
    if text.lines().any(|l| attr(l) == "#![warn(missing_docs)]") {
        return Vec::new();
    }
    vec![Finding {
        at: format!("{rel}:1"),
        message: "a library crate sets `#![warn(missing_docs)]` (clippy -D warnings enforces it)"
            .into(),
    }]
}

/// Code compiled only with (or only without) the `cuda` feature, outside vidlm-ort: a `cfg`
/// attribute naming it. (`cfg!(feature = "cuda")` compiles both branches, so it is fine.)
fn cuda_cfg(rel: &str, text: &str) -> Vec<Finding> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let l: String = line.chars().filter(|c| !c.is_whitespace()).collect();
        if (l.starts_with("#[cfg") || l.starts_with("#![cfg")) && l.contains("feature=\"cuda\"") {
            out.push(Finding {
                at: format!("{rel}:{}", n + 1),
                message: "code behind the `cuda` feature belongs in vidlm-ort (`cargo xtask test` lints and builds the feature there only; widen it in xtask/src/main.rs and tidy.rs if that must change)".into(),
            });
        }
    }
    out
}

/// A crate that sets `autotests = false` (its integration tests are one binary, whose root file
/// `mod`s the others) must still build every `tests/*.rs`: each is a `[[test]]` root or a `mod`
/// of one. A file added without its `mod` line would otherwise silently never run.
fn test_binaries(root: &Path) -> Result<Vec<Finding>> {
    let mut out = Vec::new();
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(root.join("crates"))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("Cargo.toml").is_file())
        .collect();
    dirs.sort();
    for dir in dirs {
        let manifest = std::fs::read_to_string(dir.join("Cargo.toml"))?;
        if !toml_section(&manifest, "package").iter().any(|l| squash(l) == "autotests=false") {
            continue;
        }
        // The `[[test]]` roots: `path`, or `tests/<name>.rs`.
        let mut roots = Vec::new();
        let mut lines = manifest.lines().peekable();
        while let Some(l) = lines.next() {
            if l.trim() != "[[test]]" {
                continue;
            }
            let (mut name, mut path) = (None, None);
            while let Some(k) = lines.peek().filter(|k| !k.trim_start().starts_with('[')) {
                let kv = squash(k);
                if let Some(v) = kv.strip_prefix("name=") {
                    name = Some(v.trim_matches('"').to_string());
                } else if let Some(v) = kv.strip_prefix("path=") {
                    path = Some(v.trim_matches('"').to_string());
                }
                lines.next();
            }
            if let Some(p) = path.or(name.map(|n| format!("tests/{n}.rs"))) {
                roots.push(p);
            }
        }
        let mut covered: Vec<String> = roots.clone();
        for r in &roots {
            let text = std::fs::read_to_string(dir.join(r)).unwrap_or_default();
            let code = strip_comments_and_strings(&text);
            for l in code.lines() {
                let l = l.trim();
                let decl = l.strip_prefix("pub ").unwrap_or(l);
                if let Some(m) = decl.strip_prefix("mod ").and_then(|m| m.strip_suffix(';')) {
                    covered.push(format!("tests/{}.rs", m.trim()));
                }
            }
        }
        let mut files = Vec::new();
        if let Ok(rd) = std::fs::read_dir(dir.join("tests")) {
            for e in rd.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if name.ends_with(".rs") && e.path().is_file() {
                    files.push(format!("tests/{name}"));
                }
            }
        }
        files.sort();
        let rel = relative(root, &dir);
        for f in files {
            if !covered.contains(&f) {
                let module = f.trim_start_matches("tests/").trim_end_matches(".rs");
                out.push(Finding {
                    at: format!("{rel}/{f}"),
                    message: format!(
                        "in no test binary (the crate sets autotests = false): add `mod {module};` to {}",
                        roots.first().map(String::as_str).unwrap_or("a [[test]] root")
                    ),
                });
            }
        }
    }
    Ok(out)
}

/// The `key = value` lines of a TOML section, comments and blanks dropped, squashed and sorted.
fn toml_entries(toml: &str, section: &str) -> Vec<String> {
    let mut v: Vec<String> =
        toml_section(toml, section).iter().map(|l| squash(l)).filter(|l| !l.is_empty()).collect();
    v.sort();
    v
}

/// Every crate: a README, a mention in ARCHITECTURE.md, and the workspace lints (or, for a crate
/// holding an FFI/SIMD module or one of [`MACRO_UNSAFE_CRATES`], `unsafe_code = "deny"` and a copy of the workspace's clippy lints).
fn crate_manifests(root: &Path) -> Result<Vec<Finding>> {
    let mut out = Vec::new();
    let workspace =
        std::fs::read_to_string(root.join("Cargo.toml")).context("reading Cargo.toml")?;
    let clippy_lints = toml_entries(&workspace, "workspace.lints.clippy");
    if !toml_section(&workspace, "workspace.lints.rust")
        .iter()
        .any(|l| squash(l) == "unsafe_code=\"forbid\"")
    {
        out.push(Finding {
            at: "Cargo.toml".into(),
            message: "[workspace.lints.rust] must set unsafe_code = \"forbid\"".into(),
        });
    }
    let architecture = std::fs::read_to_string(root.join("ARCHITECTURE.md")).unwrap_or_default();
    let mut crates: Vec<PathBuf> = std::fs::read_dir(root.join("crates"))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("Cargo.toml").is_file())
        .collect();
    crates.push(root.join("xtask"));
    crates.sort();
    for dir in crates {
        let rel = relative(root, &dir);
        let manifest = std::fs::read_to_string(dir.join("Cargo.toml"))?;
        let name = manifest
            .lines()
            .find_map(|l| squash(l).strip_prefix("name=").map(|n| n.trim_matches('"').to_string()))
            .unwrap_or_default();
        let inherits =
            toml_section(&manifest, "lints").iter().any(|l| squash(l) == "workspace=true");
        let denies = toml_section(&manifest, "lints.rust")
            .iter()
            .any(|l| squash(l) == "unsafe_code=\"deny\"");
        let mut has_unsafe_module = Vec::new();
        rust_files(&dir.join("src"), &mut has_unsafe_module)?;
        let has_unsafe_module =
            has_unsafe_module.iter().any(|p| is_unsafe_allowed(&relative(root, p)));
        let macro_unsafe = MACRO_UNSAFE_CRATES.contains(&rel.as_str());
        if !inherits && toml_entries(&manifest, "lints.clippy") != clippy_lints {
            out.push(Finding {
                at: format!("{rel}/Cargo.toml"),
                message: "`[lints.clippy]` must repeat `[workspace.lints.clippy]` exactly".into(),
            });
        }
        match (has_unsafe_module, inherits, denies) {
            (false, true, _) | (true, false, true) => {}
            (false, false, true) if macro_unsafe => {}
            (false, _, _) => out.push(Finding { at: format!("{rel}/Cargo.toml"), message: "needs `[lints] workspace = true` (unsafe_code = forbid)".into() }),
            (true, _, _) => out.push(Finding {
                at: format!("{rel}/Cargo.toml"),
                message: "holds an FFI/SIMD module: needs `[lints.rust] unsafe_code = \"deny\"` (allowed on that module only)".into(),
            }),
        }
        if rel.starts_with("crates/") {
            if !dir.join("README.md").is_file() {
                out.push(Finding { at: rel.clone(), message: "a crate needs a README.md".into() });
            }
            if !architecture.contains(&format!("`{rel}`"))
                || !architecture.contains(&format!("`{name}`"))
            {
                out.push(Finding {
                    at: "ARCHITECTURE.md".into(),
                    message: format!("no code-map entry for `{rel}` (`{name}`)"),
                });
            }
        }
    }
    Ok(out)
}

/// The lines of a `[section]` of a TOML file.
fn toml_section<'a>(toml: &'a str, section: &str) -> Vec<&'a str> {
    let header = format!("[{section}]");
    let mut lines = toml.lines().skip_while(|l| l.trim() != header);
    lines.next();
    lines.take_while(|l| !l.trim_start().starts_with('[')).collect()
}

fn squash(line: &str) -> String {
    line.split('#').next().unwrap_or("").chars().filter(|c| !c.is_whitespace()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comments_and_strings_are_blanked_lines_kept() {
        let src = "let a = \"unsafe\"; // unsafe\n/* unsafe /* nested */ */ unsafe fn f<'a>(x: &'a str) -> char { '\\'' }\nlet r = r#\"unsafe \"# ; b\"unsafe\"";
        let code = strip_comments_and_strings(src);
        assert_eq!(code.lines().count(), 3);
        assert_eq!(word_lines(&code, "unsafe"), vec![2]);
        assert!(code.contains("fn f<'a>(x: &'a str)"));
        assert!(!code.contains("nested"));
    }

    #[test]
    fn findings_name_file_and_line() {
        let code = strip_comments_and_strings("fn f() {\n    unsafe { g() }\n}\n");
        assert_eq!(
            unsafe_outside_allowed("crates/x/src/lib.rs", &code)[0].at,
            "crates/x/src/lib.rs:2"
        );
        assert!(unsafe_outside_allowed("crates/processor/src/resize/simd.rs", &code).is_empty());
        assert!(unsafe_outside_allowed("crates/video-io/src/ffi.rs", &code).is_empty());
        let fam = strip_comments_and_strings("// Family::Onevision\nmatch f { Family::Onevision => 1, _ => 2 }\nlet s = ONEVISION;\nenum Family {}");
        let found: Vec<String> =
            family_knowledge("crates/x/src/a.rs", &fam).into_iter().map(|f| f.at).collect();
        assert_eq!(
            found,
            vec!["crates/x/src/a.rs:2", "crates/x/src/a.rs:3", "crates/x/src/a.rs:4"]
        );
        assert!(word_lines("FamilySpec::x; Family::OnevisionX", "Family::Onevision").is_empty());
    }

    #[test]
    fn lib_overview_needs_a_runnable_example() {
        let ok = "//! # x\n//!\n//! Does x.\n//!\n//! ```\n//! assert!(true);\n//! ```\n";
        assert!(lib_overview("a/src/lib.rs", ok).is_empty());
        let no_run = ok.replace("//! ```\n//! assert", "//! ```no_run\n//! assert");
        assert_eq!(lib_overview("a/src/lib.rs", &no_run).len(), 1);
        assert_eq!(lib_overview("a/src/lib.rs", "pub fn f() {}").len(), 1);
    }

    #[test]
    fn cuda_cfg_only_in_vidlm_ort() {
        let src = "#[cfg(feature = \"cuda\")]\nfn a() {}\nlet b = cfg!(feature = \"cuda\");\n#![cfg(all(test, feature = \"cuda\"))]\n";
        let at: Vec<String> =
            cuda_cfg("crates/x/src/a.rs", src).into_iter().map(|f| f.at).collect();
        assert_eq!(at, vec!["crates/x/src/a.rs:1", "crates/x/src/a.rs:4"]);
    }
}
