//! Chat-template rendering with minijinja, configured like transformers'
//! `render_jinja_template`: `trim_blocks` and `lstrip_blocks` on, Python string/dict/list methods
//! (minijinja-contrib `pycompat`), `raise_exception(msg)`, loop controls, HF's
//! `{% generation %}…{% endgeneration %}` tag accepted (rendered as a plain block), and a fuel +
//! recursion limit so that a hostile template cannot hang or exhaust the stack.

use crate::error::{ProcessorError, Result};
use minijinja::{Environment, Error as JinjaError, ErrorKind, Value};
use serde::Serialize;

/// Instructions a single render may execute.
pub const TEMPLATE_FUEL: u64 = 5_000_000;
/// Maximum template recursion depth.
pub const TEMPLATE_RECURSION: usize = 200;

/// A compiled chat template.
pub struct ChatTemplate {
    env: Environment<'static>,
}

impl std::fmt::Debug for ChatTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatTemplate").finish_non_exhaustive()
    }
}

/// Replaces `{% generation %}` / `{% endgeneration %}` (any whitespace-control variant) by an
/// equivalent no-op block, so trim/lstrip behave exactly as around the original tag.
fn rewrite_generation_tags(src: &str) -> String {
    let mut out = String::with_capacity(src.len());
    let mut rest = src;
    while let Some(pos) = rest.find("{%") {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 2..];
        let Some(end) = after.find("%}") else {
            out.push_str(&rest[pos..]);
            return out;
        };
        let inner = &after[..end];
        let lead_minus = inner.starts_with('-') || inner.starts_with('+');
        let trail_minus = inner.ends_with('-') || inner.ends_with('+');
        let word = inner.trim_matches(|c: char| c == '-' || c == '+' || c.is_whitespace());
        let replacement = match word {
            "generation" => Some("if true"),
            "endgeneration" => Some("endif"),
            _ => None,
        };
        match replacement {
            Some(r) => {
                out.push_str("{%");
                if lead_minus {
                    out.push_str(&inner[..1]);
                }
                out.push(' ');
                out.push_str(r);
                out.push(' ');
                if trail_minus {
                    out.push_str(&inner[inner.len() - 1..]);
                }
                out.push_str("%}");
            }
            None => {
                out.push_str("{%");
                out.push_str(inner);
                out.push_str("%}");
            }
        }
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    out
}

fn raise_exception(msg: String) -> std::result::Result<Value, JinjaError> {
    Err(JinjaError::new(ErrorKind::InvalidOperation, msg))
}

/// Formats a minijinja error with its cause chain, keeping a template's own
/// `raise_exception` message first.
fn describe(e: &JinjaError) -> String {
    let mut msg = match e.detail() {
        Some(d) if e.kind() == ErrorKind::InvalidOperation => d.to_string(),
        _ => e.to_string(),
    };
    if let Some(line) = e.line() {
        msg.push_str(&format!(" (template line {line})"));
    }
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        msg.push_str(&format!(": {s}"));
        src = s.source();
    }
    msg
}

impl ChatTemplate {
    /// Compiles `source`. A syntax error is a [`ProcessorError::Template`].
    pub fn new(source: &str) -> Result<ChatTemplate> {
        let mut env = Environment::new();
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        env.set_fuel(Some(TEMPLATE_FUEL));
        env.set_recursion_limit(TEMPLATE_RECURSION);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        minijinja_contrib::add_to_environment(&mut env);
        env.add_function("raise_exception", raise_exception);
        // transformers' `tojson` keeps non-ASCII characters; minijinja's does too.
        env.add_template_owned("chat", rewrite_generation_tags(source))
            .map_err(|e| ProcessorError::Template { message: describe(&e) })?;
        Ok(ChatTemplate { env })
    }

    /// Renders one conversation. `messages` is the list of message dicts; `extra` holds the
    /// special tokens (`bos_token`, …) and any other template variables.
    pub fn render<M: Serialize, E: Serialize>(
        &self,
        messages: &M,
        add_generation_prompt: bool,
        extra: &E,
    ) -> Result<String> {
        let tmpl = self
            .env
            .get_template("chat")
            .map_err(|e| ProcessorError::Template { message: describe(&e) })?;
        let ctx = minijinja::context! {
            messages => Value::from_serialize(messages),
            add_generation_prompt => add_generation_prompt,
            tools => Value::from(()),
            documents => Value::from(()),
            ..Value::from_serialize(extra)
        };
        tmpl.render(ctx).map_err(|e| ProcessorError::Template { message: describe(&e) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn generation_tag_is_a_plain_block() {
        let t = ChatTemplate::new("{% for m in messages %}{% generation %}{{ m.content }}{% endgeneration %}\n{% endfor %}")
            .unwrap_or_else(|e| panic!("{e}"));
        let out = t
            .render(&json!([{"content": "a"}, {"content": "b"}]), false, &json!({}))
            .unwrap_or_default();
        assert_eq!(out, "ab");
    }

    #[test]
    fn raise_exception_message_is_kept() {
        let t = ChatTemplate::new(
            "{{ raise_exception('Only user and assistant roles are supported!') }}",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let err = t
            .render(&json!([]), false, &json!({}))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("Only user and assistant roles are supported!"), "{err}");
    }

    #[test]
    fn infinite_loop_runs_out_of_fuel() {
        let t = ChatTemplate::new(
            "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert!(matches!(
            t.render(&json!([]), false, &json!({})),
            Err(ProcessorError::Template { .. })
        ));
    }

    #[test]
    fn recursion_is_limited() {
        let t = ChatTemplate::new("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}")
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(matches!(
            t.render(&json!([]), false, &json!({})),
            Err(ProcessorError::Template { .. })
        ));
    }

    #[test]
    fn pycompat_and_trim() {
        let t = ChatTemplate::new("{% for m in messages %}\n  {{ m.role.upper() }}: {{ m.content.strip() }}\n{% endfor %}")
            .unwrap_or_else(|e| panic!("{e}"));
        let out = t
            .render(&json!([{"role": "user", "content": " hi "}]), false, &json!({}))
            .unwrap_or_default();
        assert_eq!(out, "  USER: hi\n");
    }
}
