//! The bad-input corpus through the loader itself: every file is refused
//! with its expected message at its expected `file:line:col`, and never
//! panics. Each file starts with `# expect: TEXT` (a fragment of the error
//! or its hint) and `# at: LINE:COL` where the error has a position. The
//! CLI's `bad_inputs` test runs a few of them through the binary.

use flambe_config::Hint;
use std::path::{Path, PathBuf};

fn corpus() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/bad");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    files
}

#[test]
fn every_corpus_file_is_refused_where_it_says() {
    let files = corpus();
    assert!(files.len() >= 30, "the corpus has {} files", files.len());
    let mut wrong = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        let field = |name: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(&format!("# {name}: ")))
                .map(str::to_string)
        };
        let fragment = field("expect").unwrap_or_else(|| "the config file is empty".to_string());
        let location = match field("at") {
            Some(at) => format!("--> {}:{at}", file.display()),
            None => format!("--> {}", file.display()),
        };
        let shown = match std::panic::catch_unwind(|| flambe_config::load_file(file)) {
            Err(_) => "PANIC".to_string(),
            Ok(Ok(_)) => "loaded without an error".to_string(),
            Ok(Err(e)) => match Hint::hint(&e) {
                Some(hint) => format!("{e}\nhint: {hint}"),
                None => e.to_string(),
            },
        };
        if !shown.contains(&fragment) || !shown.contains(&location) {
            wrong.push(format!(
                "{}: wanted `{fragment}` at `{location}`, got:\n{shown}",
                file.display()
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n\n"));
}
