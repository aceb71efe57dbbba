//! Bad input through the binary: a sample of the corpus (the loader's own
//! test runs all of it) and generated hostile files exit 2 with
//! file:line:column and the expected message, and never panic. Each corpus
//! file starts with `# expect: TEXT` (a fragment of the error) and
//! `# at: LINE:COL` where the error has a position.

use assert_cmd::Command;
use std::path::{Path, PathBuf};

fn flambe() -> Command {
    Command::cargo_bin("flambe").expect("the flambe binary is built")
}

struct Outcome {
    code: Option<i32>,
    stderr: String,
}

fn dry_run(path: &Path) -> Outcome {
    let out = flambe()
        .arg(path)
        .arg("--dry-run")
        .output()
        .expect("flambe runs");
    Outcome {
        code: out.status.code(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn assert_invalid(path: &Path, fragment: &str, at: Option<&str>) {
    let o = dry_run(path);
    assert!(
        !o.stderr.contains("panicked"),
        "{}: panic:\n{}",
        path.display(),
        o.stderr
    );
    assert_eq!(
        o.code,
        Some(2),
        "{}: exit code, stderr:\n{}",
        path.display(),
        o.stderr
    );
    assert!(
        o.stderr.starts_with("error: "),
        "{}:\n{}",
        path.display(),
        o.stderr
    );
    assert!(
        o.stderr.contains(fragment),
        "{}: missing `{fragment}` in:\n{}",
        path.display(),
        o.stderr
    );
    let location = match at {
        Some(at) => format!("--> {}:{at}", path.display()),
        None => format!("--> {}", path.display()),
    };
    assert!(
        o.stderr.contains(&location),
        "{}: missing `{location}` in:\n{}",
        path.display(),
        o.stderr
    );
}

/// The corpus (`flambe-config/tests/bad/`), which the loader's own test
/// runs whole.
fn corpus(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../flambe-config/tests/bad")
        .join(name)
}

/// A few of the corpus, one of each kind, through the binary: what the
/// loader refuses reaches the user as `error:`, with exit code 2.
#[test]
fn corpus_files_fail_with_located_errors() {
    for name in [
        "empty.yaml",
        "bad-indentation.yaml",
        "typo-pipline.yaml",
        "num-timeout-nan.yaml",
        "pbt-unknown-mutation.yaml",
        "aws-timeout-too-long.yaml",
        "unsafe-username-subshell.yaml",
        "key-is-public.yaml",
        "unset-env-path.yaml",
    ] {
        let file = corpus(name);
        let text = std::fs::read_to_string(&file).unwrap();
        let field = |name: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(&format!("# {name}: ")))
                .map(str::to_string)
        };
        let fragment = field("expect").unwrap_or_else(|| "the config file is empty".to_string());
        assert_invalid(&file, &fragment, field("at").as_deref());
    }
}

#[test]
fn quoted_line_and_caret_point_at_the_mistake() {
    let file = corpus("unknown-placeholder.yaml");
    let o = dry_run(&file);
    assert!(
        o.stderr.contains(" 7 |     run: python t.py {lrr}\n"),
        "{}",
        o.stderr
    );
    assert!(
        o.stderr.contains("   |                      ^^^^^\n"),
        "{}",
        o.stderr
    );
    assert!(
        o.stderr.contains("hint: did you mean `{lr}`?"),
        "{}",
        o.stderr
    );
}

#[test]
fn generated_hostile_files_fail_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, bytes: &[u8]| {
        let p = dir.path().join(name);
        std::fs::write(&p, bytes).unwrap();
        p
    };
    // Binary garbage: deterministic pseudo-random bytes.
    let mut x: u32 = 12345;
    let garbage: Vec<u8> = (0..4096)
        .map(|_| {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
            (x >> 16) as u8
        })
        .collect();
    assert_invalid(
        &write("garbage.yaml", &garbage),
        "not valid UTF-8",
        Some("1:1"),
    );
    assert_invalid(
        &write("nul.yaml", b"!Experiment\nname: \x00x\n"),
        "invalid YAML",
        None,
    );
    // 10 MB: refused before parsing.
    let big = "# padding\n".repeat(1_000_000);
    assert_invalid(
        &write("big.yaml", big.as_bytes()),
        "more than the 1024 KiB",
        None,
    );
    // Deep nesting, flow and block style.
    assert_invalid(
        &write("deep-flow.yaml", "[".repeat(50_000).as_bytes()),
        "invalid YAML",
        None,
    );
    let block: String = (0..200)
        .map(|i| format!("{}k{i}:\n", " ".repeat(i)))
        .collect();
    assert_invalid(
        &write("deep-block.yaml", block.as_bytes()),
        "nesting deeper than 64",
        Some("65:65"),
    );
    // An alias bomb.
    let mut bomb = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
    for i in 1..9 {
        let p = format!("*a{}", i - 1);
        bomb.push_str(&format!("a{i}: &a{i} [{}]\n", vec![p; 10].join(", ")));
    }
    assert_invalid(
        &write("bomb.yaml", bomb.as_bytes()),
        "more than 200000 YAML values",
        None,
    );
    // A directory and a missing file.
    assert_invalid(dir.path(), "is a directory", None);
    assert_invalid(
        &dir.path().join("missing.yaml"),
        "cannot read config file",
        None,
    );
}
