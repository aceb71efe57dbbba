//! A YAML node tree that keeps what serde would throw away: every node's
//! position and tag, and mappings as ordered lists so duplicate keys can be
//! refused instead of silently overwritten.
//!
//! Built from `saphyr-parser` events with an explicit stack (no recursion on
//! input depth), with limits on nesting depth and on the number of nodes that
//! aliases may expand to, so hostile input cannot exhaust the stack or memory.

pub use crate::error::Pos;
use crate::error::{ConfigError, Source};
use saphyr_parser::{Event, Parser, ScalarStyle, Span};
use std::collections::HashMap;

/// Deepest nesting accepted; real configs stay under 10.
pub const MAX_DEPTH: usize = 64;
/// Most nodes a file may hold once aliases are expanded (alias bombs).
pub const MAX_NODES: usize = 200_000;

#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub kind: NodeKind,
    /// The tag as written, e.g. `!g` or `!Experiment`; `None` when untagged.
    pub tag: Option<String>,
    pub pos: Pos,
    /// Width of the node on its first line, for the caret under an error.
    pub width: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub enum NodeKind {
    Scalar { value: String, plain: bool },
    Seq(Vec<Node>),
    Map(Vec<(Node, Node)>),
}

impl Node {
    /// What kind of YAML value this is, in words, for "expected X, found Y".
    pub fn describe(&self) -> String {
        match &self.kind {
            NodeKind::Scalar { value, plain } => match Scalar::resolve(value, *plain) {
                Scalar::Null => "an empty value".to_string(),
                Scalar::Bool(b) => format!("the boolean `{b}`"),
                Scalar::Int(i) => format!("the integer `{i}`"),
                Scalar::Float(f) => format!("the number `{f}`"),
                Scalar::Str(s) => format!("the string `{}`", truncate(s, 40)),
            },
            NodeKind::Seq(_) => "a list".to_string(),
            NodeKind::Map(_) => "a mapping".to_string(),
        }
    }
}

fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let head: String = s.chars().take(max).collect();
        format!("{head}…")
    }
}

/// A plain or quoted scalar resolved by the YAML 1.2 core schema.
#[derive(Debug, Clone, PartialEq)]
pub enum Scalar<'a> {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(&'a str),
}

impl<'a> Scalar<'a> {
    /// Quoted scalars are always strings; plain ones follow the core schema.
    pub fn resolve(value: &'a str, plain: bool) -> Scalar<'a> {
        if !plain {
            return Scalar::Str(value);
        }
        match value {
            "" | "~" | "null" | "Null" | "NULL" => return Scalar::Null,
            "true" | "True" | "TRUE" => return Scalar::Bool(true),
            "false" | "False" | "FALSE" => return Scalar::Bool(false),
            ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" => {
                return Scalar::Float(f64::INFINITY);
            }
            "-.inf" | "-.Inf" | "-.INF" => return Scalar::Float(f64::NEG_INFINITY),
            ".nan" | ".NaN" | ".NAN" => return Scalar::Float(f64::NAN),
            _ => {}
        }
        if let Some(i) = parse_core_int(value) {
            return Scalar::Int(i);
        }
        if is_core_float(value)
            && let Ok(f) = value.parse::<f64>()
        {
            return Scalar::Float(f);
        }
        Scalar::Str(value)
    }
}

fn parse_core_int(v: &str) -> Option<i64> {
    if let Some(hex) = v.strip_prefix("0x") {
        return i64::from_str_radix(hex, 16).ok();
    }
    if let Some(oct) = v.strip_prefix("0o") {
        return i64::from_str_radix(oct, 8).ok();
    }
    let digits = v.strip_prefix(['-', '+']).unwrap_or(v);
    if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
        return v.parse().ok();
    }
    None
}

/// `[-+]? ( \. [0-9]+ | [0-9]+ ( \. [0-9]* )? ) ( [eE] [-+]? [0-9]+ )?`
fn is_core_float(v: &str) -> bool {
    let b = v.strip_prefix(['-', '+']).unwrap_or(v).as_bytes();
    let mut i = 0;
    let int_digits = count_digits(&b[i..]);
    i += int_digits;
    let mut frac_digits = 0;
    if b.get(i) == Some(&b'.') {
        i += 1;
        frac_digits = count_digits(&b[i..]);
        i += frac_digits;
    }
    if int_digits == 0 && frac_digits == 0 {
        return false;
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(b.get(i), Some(b'-' | b'+')) {
            i += 1;
        }
        let exp = count_digits(&b[i..]);
        if exp == 0 {
            return false;
        }
        i += exp;
    }
    i == b.len()
}

fn count_digits(b: &[u8]) -> usize {
    b.iter().take_while(|c| c.is_ascii_digit()).count()
}

/// Parse every document of a YAML stream into node trees.
pub fn parse_documents(src: &Source) -> Result<Vec<Node>, ConfigError> {
    let mut builder = Builder::default();
    for item in Parser::new_from_str(&src.text) {
        let (event, span) = item.map_err(|e| {
            let m = e.marker();
            let mut pos = Pos {
                line: m.line(),
                col: m.col() + 1,
            };
            // The scanner reports a tab at the token it was reading; point at
            // the tab itself, which is what the user must change.
            let tab = e
                .info()
                .contains("tab")
                .then(|| first_tab_from(&src.text, pos))
                .flatten();
            if let Some(tab) = tab {
                pos = tab;
            }
            let err = src
                .error_at(pos, 1, format!("invalid YAML: {}", e.info()))
                .expected("well-formed YAML (check indentation, quotes and brackets)");
            if tab.is_some() {
                err.hint("YAML indents with spaces only, never tabs")
            } else {
                err
            }
        })?;
        builder.event(src, event, span)?;
    }
    Ok(builder.documents)
}

fn first_tab_from(text: &str, from: Pos) -> Option<Pos> {
    text.lines()
        .enumerate()
        .skip(from.line.saturating_sub(1))
        .find_map(|(i, line)| {
            let col = line.chars().position(|c| c == '\t')?;
            Some(Pos {
                line: i + 1,
                col: col + 1,
            })
        })
}

enum Open {
    Seq(Node),
    /// A mapping under construction; `pending_key` holds a key awaiting its value.
    Map(Node, Option<Node>),
}

#[derive(Default)]
struct Builder {
    stack: Vec<Open>,
    documents: Vec<Node>,
    anchors: HashMap<usize, Node>,
    /// Anchors of the open collections, by stack depth.
    open_anchors: Vec<usize>,
    nodes: usize,
}

impl Builder {
    fn event(&mut self, src: &Source, event: Event<'_>, span: Span) -> Result<(), ConfigError> {
        let is_seq = matches!(event, Event::SequenceStart(..));
        let pos = Pos {
            line: span.start.line(),
            col: span.start.col() + 1,
        };
        match event {
            Event::Scalar(value, style, anchor, tag) => {
                let width = value.chars().take_while(|c| *c != '\n').count().max(1)
                    + if style == ScalarStyle::Plain { 0 } else { 2 };
                let node = Node {
                    kind: NodeKind::Scalar {
                        value: value.into_owned(),
                        plain: style == ScalarStyle::Plain,
                    },
                    tag: tag.map(|t| format!("{}{}", t.handle, t.suffix)),
                    pos,
                    width,
                };
                self.count(src, pos, 1)?;
                if anchor > 0 {
                    self.anchors.insert(anchor, node.clone());
                }
                self.push_value(src, node)?;
            }
            Event::SequenceStart(anchor, tag) | Event::MappingStart(anchor, tag) => {
                if self.stack.len() >= MAX_DEPTH {
                    return Err(src
                        .error_at(pos, 1, format!("nesting deeper than {MAX_DEPTH} levels"))
                        .expected("a flatter config; flambe configs need only a few levels"));
                }
                self.count(src, pos, 1)?;
                let node = Node {
                    kind: if is_seq {
                        NodeKind::Seq(Vec::new())
                    } else {
                        NodeKind::Map(Vec::new())
                    },
                    tag: tag.map(|t| format!("{}{}", t.handle, t.suffix)),
                    pos,
                    width: 1,
                };
                self.open_anchors.push(anchor);
                self.stack.push(if is_seq {
                    Open::Seq(node)
                } else {
                    Open::Map(node, None)
                });
            }
            Event::SequenceEnd | Event::MappingEnd => {
                let node = match self.stack.pop() {
                    Some(Open::Seq(n)) | Some(Open::Map(n, None)) => n,
                    Some(Open::Map(n, Some(_))) => n,
                    None => return Ok(()),
                };
                let anchor = self.open_anchors.pop().unwrap_or(0);
                if anchor > 0 {
                    self.anchors.insert(anchor, node.clone());
                }
                self.push_value(src, node)?;
            }
            Event::Alias(id) => {
                let Some(target) = self.anchors.get(&id).cloned() else {
                    return Err(src.error_at(pos, 1, "alias to an unknown anchor".to_string()));
                };
                self.count(src, pos, count_nodes(&target))?;
                let mut node = target;
                node.pos = pos;
                self.push_value(src, node)?;
            }
            Event::StreamStart
            | Event::StreamEnd
            | Event::DocumentStart(_)
            | Event::DocumentEnd
            | Event::Nothing => {}
        }
        Ok(())
    }

    fn count(&mut self, src: &Source, pos: Pos, n: usize) -> Result<(), ConfigError> {
        self.nodes = self.nodes.saturating_add(n);
        if self.nodes > MAX_NODES {
            return Err(src
                .error_at(
                    pos,
                    1,
                    format!("more than {MAX_NODES} YAML values (after aliases)"),
                )
                .expected(
                    "a config of reasonable size; keep data in `resources`, not in the YAML",
                ));
        }
        Ok(())
    }

    fn push_value(&mut self, src: &Source, node: Node) -> Result<(), ConfigError> {
        match self.stack.last_mut() {
            None => self.documents.push(node),
            Some(Open::Seq(seq)) => {
                if let NodeKind::Seq(items) = &mut seq.kind {
                    items.push(node);
                }
            }
            Some(Open::Map(_, pending)) if pending.is_none() => *pending = Some(node),
            Some(Open::Map(map, pending)) => {
                let key = pending.take().unwrap_or_else(|| node.clone());
                if let NodeKind::Map(entries) = &mut map.kind {
                    if let Some((first, _)) = entries.iter().find(|(k, _)| same_key(k, &key)) {
                        return Err(src
                            .error_at(
                                key.pos,
                                key.width,
                                format!(
                                    "duplicate key `{}` (first defined on line {})",
                                    key_text(&key),
                                    first.pos.line
                                ),
                            )
                            .expected("each key once per mapping; remove or rename one of them"));
                    }
                    entries.push((key, node));
                }
            }
        }
        Ok(())
    }
}

fn same_key(a: &Node, b: &Node) -> bool {
    match (&a.kind, &b.kind) {
        (NodeKind::Scalar { value: x, .. }, NodeKind::Scalar { value: y, .. }) => x == y,
        _ => false,
    }
}

/// The text of a key, for messages.
pub fn key_text(node: &Node) -> String {
    match &node.kind {
        NodeKind::Scalar { value, .. } => value.clone(),
        NodeKind::Seq(_) => "<list>".to_string(),
        NodeKind::Map(_) => "<mapping>".to_string(),
    }
}

fn count_nodes(node: &Node) -> usize {
    // Iterative: an aliased subtree is at most MAX_DEPTH deep, but stay safe.
    let mut total = 0usize;
    let mut todo = vec![node];
    while let Some(n) = todo.pop() {
        total += 1;
        match &n.kind {
            NodeKind::Scalar { .. } => {}
            NodeKind::Seq(items) => todo.extend(items.iter()),
            NodeKind::Map(entries) => {
                for (k, v) in entries {
                    todo.push(k);
                    todo.push(v);
                }
            }
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Vec<Node>, ConfigError> {
        parse_documents(&Source::new("t.yaml", text))
    }

    #[test]
    fn core_schema_resolution() {
        assert_eq!(Scalar::resolve("12", true), Scalar::Int(12));
        assert_eq!(Scalar::resolve("-3", true), Scalar::Int(-3));
        assert_eq!(Scalar::resolve("1.0e-6", true), Scalar::Float(1.0e-6));
        assert_eq!(Scalar::resolve("1e3", true), Scalar::Float(1000.0));
        assert_eq!(Scalar::resolve(".5", true), Scalar::Float(0.5));
        assert_eq!(Scalar::resolve("12", false), Scalar::Str("12"));
        assert_eq!(Scalar::resolve("true", true), Scalar::Bool(true));
        assert_eq!(Scalar::resolve("~", true), Scalar::Null);
        assert_eq!(Scalar::resolve("1.2.3", true), Scalar::Str("1.2.3"));
        assert_eq!(Scalar::resolve("e5", true), Scalar::Str("e5"));
    }

    #[test]
    fn positions_and_tags_are_kept() {
        let docs = parse("a: 1\nb: !g [1, 2]\n").unwrap();
        let NodeKind::Map(entries) = &docs[0].kind else {
            panic!("not a map")
        };
        assert_eq!(entries[1].1.tag.as_deref(), Some("!g"));
        assert_eq!(entries[1].1.pos, Pos { line: 2, col: 4 });
    }

    #[test]
    fn duplicate_keys_are_refused() {
        let err = parse("a: 1\nb: 2\na: 3\n").unwrap_err();
        assert_eq!((err.line, err.col), (Some(3), Some(1)));
        assert!(
            err.message
                .contains("duplicate key `a` (first defined on line 1)")
        );
    }

    #[test]
    fn deep_nesting_is_refused_without_overflow() {
        // The scanner stops runaway flow nesting itself; our own limit
        // catches block nesting below the scanner's.
        let err = parse(&"[".repeat(100_000)).unwrap_err();
        assert!(err.message.contains("recursion limit"), "{}", err.message);
        let block: String = (0..100)
            .map(|i| format!("{}k{i}:\n", " ".repeat(i)))
            .collect();
        let err = parse(&block).unwrap_err();
        assert!(
            err.message.contains("nesting deeper than 64"),
            "{}",
            err.message
        );
    }

    #[test]
    fn alias_bombs_are_refused() {
        let mut text = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..8 {
            let p = i - 1;
            text.push_str(&format!(
                "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
            ));
        }
        let err = parse(&text).unwrap_err();
        assert!(err.message.contains("more than"), "{}", err.message);
    }
}
