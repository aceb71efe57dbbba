//! Structurally valid configs (every runnable, every field) with extreme
//! values in any field: the loader returns Ok or a located error, never
//! panics, and the error renders. Where `load_config` finds what a byte
//! mutation breaks, this one reaches the value checks behind a valid shape.
//! Run: `cargo +nightly fuzz run structured_config -- -max_total_time=600`
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use std::fmt::Write;
use std::path::Path;

/// Values written as YAML text, chosen to sit at the edges.
const EDGES: &[&str] = &[
    "0", "-0", "-0.0", "1", "-1", "100.", ".5", "1e30", "-1e30", "1e400", "-1e400", ".nan",
    ".NaN", ".inf", "-.inf", "+.inf", "9223372036854775807", "-9223372036854775808",
    "9223372036854775808", "18446744073709551616", "4096", "4097", "65536", "65537",
    "1_000", "0x10", "0o17", "1.5", "2.5e-324", "~", "null", "true", "false", "''", "\"\"",
    "[]", "{}", "[1]", "[1, 2]", "{a: 1}", "!env HOME", "!env NOT_SET_ANYWHERE",
    "!cluster /data", "!cluster ''", "!u [0, 1]", "!u [1, 0]", "!u [.nan, 1]",
    "!u [0, .inf]", "!u [-1e308, 1e308]", "!lu [0, 1]", "!lu [-1, 1]", "!lu [1e-300, 1]",
    "!lu [1, 1e308]", "!c []", "!c [1, a, 2.5]", "!g []", "!g [1, .inf, -0]", "!s [1, 2]",
    "30s", "1m", "-5m", "1d", "365d", "366d", "1e30s", "999999999999h", "0s", "1.5h",
    "a; rm -rf ~", "$(reboot)", "`id`", "x\ny", "-oProxyCommand=x", "root@host", "%h%p",
    "\"quoted\"", "ünïcode", "{trial}", "{out}", "{nope}", "{train.params.lr}",
];

#[derive(Arbitrary, Debug)]
enum Value {
    Edge(u8),
    Int(i64),
    Float(f64),
    Text(String),
    List(Vec<Scalar>),
}

#[derive(Arbitrary, Debug)]
enum Scalar {
    Edge(u8),
    Int(i64),
    Float(f64),
    Text(String),
}

fn float(f: f64) -> String {
    if f.is_nan() {
        ".nan".into()
    } else if f.is_infinite() {
        if f > 0.0 { ".inf".into() } else { "-.inf".into() }
    } else {
        format!("{f:e}")
    }
}

/// A double-quoted YAML string: JSON's escapes are YAML's.
fn quoted(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars().take(200) {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

impl Scalar {
    fn render(&self) -> String {
        match self {
            Scalar::Edge(i) => EDGES[*i as usize % EDGES.len()].to_string(),
            Scalar::Int(i) => i.to_string(),
            Scalar::Float(f) => float(*f),
            Scalar::Text(s) => quoted(s),
        }
    }
}

impl Value {
    fn render(&self) -> String {
        match self {
            Value::Edge(i) => EDGES[*i as usize % EDGES.len()].to_string(),
            Value::Int(i) => i.to_string(),
            Value::Float(f) => float(*f),
            Value::Text(s) => quoted(s),
            Value::List(items) => {
                let items: Vec<String> = items.iter().take(8).map(Scalar::render).collect();
                format!("[{}]", items.join(", "))
            }
        }
    }
}

/// A field: a known name (or, sometimes, one a letter off) and its value.
#[derive(Arbitrary, Debug)]
struct Field {
    which: u8,
    misspelled: bool,
    value: Value,
}

#[derive(Arbitrary, Debug)]
struct Mapping {
    fields: Vec<Field>,
    env: Vec<(String, Value)>,
}

#[derive(Arbitrary, Debug)]
struct Stage {
    name: String,
    fields: Vec<Field>,
    params: Vec<(String, Value)>,
    asha: Option<Vec<Field>>,
}

#[derive(Arbitrary, Debug)]
enum Doc {
    Experiment {
        top: Mapping,
        devices: Option<Vec<Field>>,
        resources: Vec<(String, Value)>,
        stages: Vec<Stage>,
    },
    Script {
        top: Mapping,
        resources: Vec<(String, Value)>,
    },
    Ssh {
        top: Mapping,
        factories: Vec<Scalar>,
        setup: Vec<Scalar>,
    },
    Aws {
        top: Mapping,
        tags: Vec<(String, Value)>,
        setup: Vec<Scalar>,
    },
}

const EXPERIMENT: &[&str] = &["name", "save_path", "seed", "max_failures"];
const STAGE: &[&str] = &[
    "run", "samples", "cpus", "gpus", "metric", "mode", "reduce", "timeout", "scheduler",
];
const ASHA: &[&str] = &["max_t", "grace_period", "reduction_factor"];
const DEVICES: &[&str] = &["cpus", "gpus"];
const SCRIPT: &[&str] = &["name", "run", "save_path", "cpus", "gpus", "timeout"];
const SSH: &[&str] = &["name", "orchestrator_ip", "username", "key", "use_public", "port"];
const AWS: &[&str] = &[
    "name", "factories_num", "factories_type", "orchestrator_type", "orchestrator_timeout",
    "factories_timeout", "creator", "key_name", "key", "subnet_id", "security_group",
    "volume_size", "volume_type", "orchestrator_ami", "factory_ami", "region_name", "username",
    "dedicated", "use_public",
];

fn key(name: &str) -> String {
    if name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') && !name.is_empty() {
        name.to_string()
    } else {
        quoted(name)
    }
}

fn fields(out: &mut String, indent: &str, known: &[&str], fields: &[Field]) {
    for f in fields.iter().take(24) {
        let name = known[f.which as usize % known.len()];
        let name = if f.misspelled {
            format!("{name}x")
        } else {
            name.to_string()
        };
        let _ = writeln!(out, "{indent}{name}: {}", f.value.render());
    }
}

fn pairs(out: &mut String, indent: &str, title: &str, pairs: &[(String, Value)]) {
    if pairs.is_empty() {
        return;
    }
    let _ = writeln!(out, "{indent}{title}:");
    for (k, v) in pairs.iter().take(8) {
        let _ = writeln!(out, "{indent}  {}: {}", key(k), v.render());
    }
}

fn list(out: &mut String, title: &str, items: &[Scalar]) {
    if items.is_empty() {
        return;
    }
    let _ = writeln!(out, "{title}:");
    for i in items.iter().take(8) {
        let _ = writeln!(out, "  - {}", i.render());
    }
}

fn render(doc: &Doc) -> String {
    let mut out = String::new();
    match doc {
        Doc::Experiment {
            top,
            devices,
            resources,
            stages,
        } => {
            out.push_str("!Experiment\n");
            fields(&mut out, "", EXPERIMENT, &top.fields);
            pairs(&mut out, "", "env", &top.env);
            pairs(&mut out, "", "resources", resources);
            if let Some(d) = devices {
                out.push_str("devices:\n");
                fields(&mut out, "  ", DEVICES, d);
            }
            out.push_str("pipeline:\n");
            for s in stages.iter().take(4) {
                let _ = writeln!(out, "  {}: !Stage", key(&s.name));
                out.push_str("    run: echo {out}\n");
                fields(&mut out, "    ", STAGE, &s.fields);
                pairs(&mut out, "    ", "params", &s.params);
                if let Some(a) = &s.asha {
                    out.push_str("    scheduler: !ASHA\n");
                    fields(&mut out, "      ", ASHA, a);
                }
            }
        }
        Doc::Script { top, resources } => {
            out.push_str("!Script\n");
            fields(&mut out, "", SCRIPT, &top.fields);
            pairs(&mut out, "", "env", &top.env);
            pairs(&mut out, "", "resources", resources);
        }
        Doc::Ssh {
            top,
            factories,
            setup,
        } => {
            out.push_str("!SSHCluster\n");
            fields(&mut out, "", SSH, &top.fields);
            list(&mut out, "factories_ips", factories);
            list(&mut out, "setup_cmds", setup);
        }
        Doc::Aws { top, tags, setup } => {
            out.push_str("!AWSCluster\n");
            fields(&mut out, "", AWS, &top.fields);
            pairs(&mut out, "", "tags", tags);
            list(&mut out, "setup_cmds", setup);
        }
    }
    out
}

fuzz_target!(|doc: Doc| {
    let text = render(&doc);
    let env = |name: &str| (name == "HOME").then(|| "/home/fuzz".to_string());
    if let Err(err) = flambe_config::load_str(Path::new("fuzz.yaml"), &text, &env) {
        let _ = err.to_string();
    }
});
