//! `run:` commands with `{placeholders}`.
//!
//! A placeholder is `{name}` or `{a.b.c}` where every segment is a word
//! (`[A-Za-z_][A-Za-z0-9_-]*`). Anything else in braces is left alone, so
//! shell syntax keeps working: `${HOME}` and `$HOME` are the shell's,
//! `{1..3}` and `{a,b}` are brace expansions, and `{{` / `}}` write a literal
//! brace.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A command with `{placeholders}`, parsed once at load time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Template {
    /// The command as written.
    pub source: String,
    /// Its literal text and placeholders, in order.
    pub parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Part {
    Text(String),
    /// A placeholder: its dotted path and its byte offset in `source`.
    Ref {
        path: Vec<String>,
        offset: usize,
    },
}

/// What a placeholder refers to, once checked against the experiment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ref<'a> {
    /// `{lr}`: a parameter of this stage.
    Param(&'a str),
    /// `{out}`: this trial's output folder.
    Out,
    /// `{trial}`: this trial's id.
    Trial,
    /// `{resources.NAME}`.
    Resource(&'a str),
    /// `{STAGE.out}`: the output folder of the ancestor trial in STAGE.
    UpstreamOut(&'a str),
    /// `{STAGE.params.NAME}`: a parameter of the ancestor trial in STAGE.
    UpstreamParam(&'a str, &'a str),
    /// Anything else: `Err` explains why it cannot be resolved.
    Invalid,
}

/// Placeholder names that are not parameters.
pub const BUILTINS: &[&str] = &["out", "trial", "resources"];

impl Template {
    /// Split `source` into literal text and `{placeholders}` (`{{`/`}}` escape braces).
    pub fn parse(source: &str) -> Template {
        let mut parts = Vec::new();
        let mut text = String::new();
        let bytes = source.as_bytes();
        let mut i = 0;
        while i < source.len() {
            let rest = &source[i..];
            if rest.starts_with("{{") || rest.starts_with("}}") {
                text.push(bytes[i] as char);
                i += 2;
                continue;
            }
            if rest.starts_with("${") {
                // The shell's own parameter expansion: copy through the `}`.
                let end = rest.find('}').map_or(rest.len(), |e| e + 1);
                text.push_str(&rest[..end]);
                i += end;
                continue;
            }
            if bytes[i] == b'{'
                && let Some(close) = rest.find('}')
                && is_reference(&rest[1..close])
            {
                if !text.is_empty() {
                    parts.push(Part::Text(std::mem::take(&mut text)));
                }
                parts.push(Part::Ref {
                    path: rest[1..close].split('.').map(str::to_string).collect(),
                    offset: i,
                });
                i += close + 1;
                continue;
            }
            let ch = rest.chars().next().unwrap_or(' ');
            text.push(ch);
            i += ch.len_utf8();
        }
        if !text.is_empty() {
            parts.push(Part::Text(text));
        }
        Template {
            source: source.to_string(),
            parts,
        }
    }

    /// Every placeholder with its offset in the source.
    pub fn references(&self) -> impl Iterator<Item = (&[String], usize)> {
        self.parts.iter().filter_map(|p| match p {
            Part::Ref { path, offset } => Some((path.as_slice(), *offset)),
            Part::Text(_) => None,
        })
    }

    /// Fill every placeholder; `lookup` gets the dotted path.
    pub fn render<E>(
        &self,
        mut lookup: impl FnMut(&[String]) -> Result<String, E>,
    ) -> Result<String, E> {
        let mut out = String::with_capacity(self.source.len());
        for part in &self.parts {
            match part {
                Part::Text(t) => out.push_str(t),
                Part::Ref { path, .. } => out.push_str(&lookup(path)?),
            }
        }
        Ok(out)
    }
}

impl fmt::Display for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

/// Classify a placeholder path. Stage and parameter names are not checked
/// here; the loader checks them against the experiment.
pub fn classify(path: &[String]) -> Ref<'_> {
    match path {
        [one] if one == "out" => Ref::Out,
        [one] if one == "trial" => Ref::Trial,
        [one] => Ref::Param(one),
        [first, name] if first == "resources" => Ref::Resource(name),
        [stage, field] if field == "out" => Ref::UpstreamOut(stage),
        [stage, params, name] if params == "params" => Ref::UpstreamParam(stage, name),
        _ => Ref::Invalid,
    }
}

fn is_reference(inner: &str) -> bool {
    !inner.is_empty() && inner.split('.').all(is_word)
}

/// `[A-Za-z_][A-Za-z0-9_-]*`: the names of params, stages and resources.
pub fn is_word(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refs(s: &str) -> Vec<String> {
        Template::parse(s)
            .references()
            .map(|(p, _)| p.join("."))
            .collect()
    }

    #[test]
    fn finds_placeholders_and_leaves_shell_syntax_alone() {
        assert_eq!(
            refs("python t.py --lr {lr} --m {train.out}/m.pt ${HOME} {1..3} {a,b} {{x}}"),
            vec!["lr", "train.out"]
        );
        let t = Template::parse("echo {{x}} ${HOME} {lr}");
        let out: Result<String, ()> = t.render(|_| Ok("0.1".into()));
        assert_eq!(out.unwrap(), "echo {x} ${HOME} 0.1");
    }

    #[test]
    fn offsets_point_at_the_brace() {
        let t = Template::parse("ab {x} é {y}");
        let offs: Vec<usize> = t.references().map(|(_, o)| o).collect();
        assert_eq!(offs, vec![3, 10]);
    }

    #[test]
    fn classifies_paths() {
        let p = |s: &str| s.split('.').map(str::to_string).collect::<Vec<_>>();
        assert_eq!(classify(&p("out")), Ref::Out);
        assert_eq!(classify(&p("lr")), Ref::Param("lr"));
        assert_eq!(classify(&p("resources.data")), Ref::Resource("data"));
        assert_eq!(classify(&p("train.out")), Ref::UpstreamOut("train"));
        assert_eq!(
            classify(&p("train.params.lr")),
            Ref::UpstreamParam("train", "lr")
        );
        assert_eq!(classify(&p("a.b.c.d")), Ref::Invalid);
    }
}
