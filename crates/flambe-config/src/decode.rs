//! Small typed readers over the node tree. Each one fails with the node's
//! position, what it found and what the field expects.

use crate::error::{ConfigError, Source};
use crate::yaml::{Node, NodeKind, Scalar, key_text};

/// Reads fields of one mapping, remembering which were used so that
/// `finish` can name any field nobody asked for.
pub struct Fields<'a> {
    src: &'a Source,
    node: &'a Node,
    /// What this mapping is, for messages: "stage `train`", "`!SSHCluster`".
    what: String,
    entries: Vec<(&'a str, &'a Node, &'a Node)>,
}

impl<'a> Fields<'a> {
    /// Takes the mapping's fields, failing at once on any name that is not
    /// in `known`: a misspelled field is reported where it was written
    /// (with the name it was probably meant to be) before anything can be
    /// reported missing because of it.
    pub fn new(
        src: &'a Source,
        node: &'a Node,
        what: impl Into<String>,
        known: &[&str],
    ) -> Result<Self, ConfigError> {
        let what = what.into();
        let NodeKind::Map(entries) = &node.kind else {
            return Err(type_error(src, node, &what, "a mapping of fields"));
        };
        let mut out = Vec::with_capacity(entries.len());
        for (k, v) in entries {
            match &k.kind {
                NodeKind::Scalar { value, .. } => out.push((value.as_str(), k, v)),
                _ => {
                    return Err(src
                        .error_at(
                            k.pos,
                            k.width,
                            format!("a field name of {what} is not a plain word"),
                        )
                        .expected("`name: value` pairs"));
                }
            }
        }
        if let Some((name, key, _)) = out.iter().find(|(name, _, _)| !known.contains(name)) {
            let mut err = src
                .error_at(
                    key.pos,
                    key.width,
                    format!("unknown field `{name}` in {what}"),
                )
                .expected(format!("one of: {}", known.join(", ")));
            if let Some(close) = closest(name, known) {
                err = err.hint(format!("did you mean `{close}`?"));
            }
            return Err(err);
        }
        Ok(Fields {
            src,
            node,
            what,
            entries: out,
        })
    }

    /// [`Fields::new`] for a mapping that may carry fields of its own
    /// (a custom cluster's, for its program): names that are not `known`
    /// are let through, unless they look like a typo of a known one.
    pub fn new_open(
        src: &'a Source,
        node: &'a Node,
        what: impl Into<String>,
        known: &[&str],
    ) -> Result<Self, ConfigError> {
        let what = what.into();
        let all: Vec<&str> = match &node.kind {
            NodeKind::Map(entries) => entries
                .iter()
                .filter_map(|(k, _)| match &k.kind {
                    NodeKind::Scalar { value, .. } => Some(value.as_str()),
                    _ => None,
                })
                .collect(),
            _ => Vec::new(),
        };
        let extra: Vec<&str> = all
            .iter()
            .copied()
            .filter(|name| !known.contains(name) && closest(name, known).is_none())
            .collect();
        let mut allowed: Vec<&str> = known.to_vec();
        allowed.extend(extra.iter().copied());
        Fields::new(src, node, what, &allowed)
    }

    pub fn optional(&mut self, key: &str) -> Option<&'a Node> {
        self.entries.iter().find(|e| e.0 == key).map(|e| e.2)
    }

    pub fn required(&mut self, key: &str, expected: &str) -> Result<&'a Node, ConfigError> {
        match self.optional(key) {
            Some(node) => Ok(node),
            None => Err(self
                .src
                .error_at(
                    self.node.pos,
                    self.node.width,
                    format!("{} is missing the field `{key}`", self.what),
                )
                .expected(format!("`{key}:` with {expected}"))),
        }
    }
}

/// The known name closest to `name`, when it is close enough to be a typo.
pub fn closest<'k>(name: &str, known: &[&'k str]) -> Option<&'k str> {
    // `region` for `region_name`: a known name that extends the typed one.
    if name.len() >= 4
        && let Some(k) = known.iter().find(|k| k.starts_with(name))
    {
        return Some(k);
    }
    known
        .iter()
        .map(|k| {
            (
                strsim::damerau_levenshtein(&name.to_lowercase(), &k.to_lowercase()),
                *k,
            )
        })
        .filter(|(d, k)| *d <= 2.max(k.len() / 4) && *d < k.len())
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

pub fn type_error(src: &Source, node: &Node, what: &str, expected: &str) -> ConfigError {
    src.error_at(
        node.pos,
        node.width,
        format!("{what} has the wrong type: found {}", node.describe()),
    )
    .expected(expected.to_string())
}

/// Fails when a node carries a tag where none belongs.
pub fn no_tag(src: &Source, node: &Node, what: &str) -> Result<(), ConfigError> {
    match &node.tag {
        Some(tag) if tag != "!!str" => Err(src
            .error_at(
                node.pos,
                tag.chars().count(),
                format!("unexpected tag `{tag}` on {what}"),
            )
            .expected("a plain value here (tags such as `!g` belong under `params:`)")),
        _ => Ok(()),
    }
}

pub fn scalar<'n>(src: &Source, node: &'n Node, what: &str) -> Result<Scalar<'n>, ConfigError> {
    no_tag(src, node, what)?;
    match &node.kind {
        NodeKind::Scalar { value, plain } => {
            Ok(Scalar::resolve(value, *plain && node.tag.is_none()))
        }
        _ => Err(type_error(src, node, what, "a single value")),
    }
}

pub fn string(src: &Source, node: &Node, what: &str) -> Result<String, ConfigError> {
    match scalar(src, node, what)? {
        Scalar::Str(s) => Ok(s.to_string()),
        // Numbers and booleans written where text is expected (a version, an
        // address) are taken as written, as YAML users expect.
        Scalar::Int(_) | Scalar::Float(_) | Scalar::Bool(_) => match &node.kind {
            NodeKind::Scalar { value, .. } => Ok(value.clone()),
            _ => unreachable!("scalar() only returns for scalars"),
        },
        Scalar::Null => Err(type_error(src, node, what, "a string")),
    }
}

/// A string that must not be blank.
pub fn nonempty_string(src: &Source, node: &Node, what: &str) -> Result<String, ConfigError> {
    let s = string(src, node, what)?;
    if s.trim().is_empty() {
        return Err(type_error(src, node, what, "a non-empty string"));
    }
    Ok(s)
}

pub fn int(src: &Source, node: &Node, what: &str, min: i64, max: i64) -> Result<i64, ConfigError> {
    // The value as written: `1e20`, not its twenty-one digits.
    let written = match &node.kind {
        NodeKind::Scalar { value, .. } => value.chars().take(40).collect::<String>(),
        _ => String::new(),
    };
    let out_of_range = || {
        src.error_at(
            node.pos,
            node.width,
            format!("{what} is out of range: {written}"),
        )
        .expected(range_text(min, max))
    };
    match scalar(src, node, what)? {
        Scalar::Int(i) if (min..=max).contains(&i) => Ok(i),
        Scalar::Int(_) => Err(out_of_range()),
        // `volume_size: 100.` (as Flambé's own AWS example writes it) is the
        // integer 100; a fraction, NaN or infinity is not an integer at all.
        Scalar::Float(f) if f.is_finite() && f.fract() == 0.0 => {
            if f >= min as f64 && f <= max as f64 {
                Ok(f as i64)
            } else {
                Err(out_of_range())
            }
        }
        _ => Err(type_error(src, node, what, &range_text(min, max))),
    }
}

fn range_text(min: i64, max: i64) -> String {
    match (min, max) {
        (min, i64::MAX) => format!("an integer >= {min}"),
        (min, max) => format!("an integer from {min} to {max}"),
    }
}

pub fn number(src: &Source, node: &Node, what: &str) -> Result<f64, ConfigError> {
    match scalar(src, node, what)? {
        Scalar::Int(i) => Ok(i as f64),
        Scalar::Float(f) if f.is_finite() => Ok(f),
        _ => Err(type_error(src, node, what, "a finite number")),
    }
}

pub fn boolean(src: &Source, node: &Node, what: &str) -> Result<bool, ConfigError> {
    match scalar(src, node, what)? {
        Scalar::Bool(b) => Ok(b),
        _ => Err(type_error(src, node, what, "`true` or `false`")),
    }
}

pub fn seq<'n>(src: &Source, node: &'n Node, what: &str) -> Result<&'n [Node], ConfigError> {
    match &node.kind {
        NodeKind::Seq(items) => Ok(items),
        _ => Err(type_error(src, node, what, "a list")),
    }
}

pub fn string_list(src: &Source, node: &Node, what: &str) -> Result<Vec<String>, ConfigError> {
    no_tag(src, node, what)?;
    // `setup_cmds:` with nothing after it reads as null: an empty list.
    if let NodeKind::Scalar { value, plain: true } = &node.kind
        && matches!(value.as_str(), "" | "~" | "null")
    {
        return Ok(Vec::new());
    }
    seq(src, node, what)?
        .iter()
        .map(|item| nonempty_string(src, item, &format!("an item of {what}")))
        .collect()
}

/// A mapping's entries as (name, key node, value node), for free-form maps
/// such as `params`, `resources` or `tags`.
pub fn entries<'n>(
    src: &Source,
    node: &'n Node,
    what: &str,
) -> Result<Vec<(String, &'n Node, &'n Node)>, ConfigError> {
    no_tag(src, node, what)?;
    match &node.kind {
        NodeKind::Map(entries) => entries
            .iter()
            .map(|(k, v)| match &k.kind {
                NodeKind::Scalar { value, .. } if !value.is_empty() => Ok((value.clone(), k, v)),
                _ => Err(src
                    .error_at(
                        k.pos,
                        k.width,
                        format!("`{}` is not a valid name in {what}", key_text(k)),
                    )
                    .expected("a plain word as the key")),
            })
            .collect(),
        // `params:` with nothing after it reads as null: an empty map.
        NodeKind::Scalar { value, plain: true }
            if value.is_empty() || value == "~" || value == "null" =>
        {
            Ok(Vec::new())
        }
        _ => Err(type_error(src, node, what, "a mapping")),
    }
}
