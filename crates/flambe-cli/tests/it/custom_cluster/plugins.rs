//! Cluster plugins: an unknown `!FooCluster` is `flambe-cluster-foo` on
//! PATH, asked to `validate` its fields before anything runs.

use super::*;

/// PATH with the test's folder first.
fn path_with(dir: &Path) -> String {
    format!(
        "{}:{}",
        dir.display(),
        std::env::var("PATH").unwrap_or_default()
    )
}

fn plugin_cluster(d: &Dir, tag: &str, extra: &str) -> PathBuf {
    d.file(
        "cluster.yaml",
        &format!(
            "!{tag}\nname: plug\nusername: nobody\nkey: {}\npartition: gpu\nnodes: 2\n{extra}",
            d.key().display()
        ),
    )
}

#[test]
fn a_cluster_tag_without_its_plugin_names_the_executable_it_looked_for() {
    let d = Dir::new();
    let config = plugin_cluster(&d, "FooCluster", "");
    let (code, _, err) = d.run(&[config.as_os_str(), "--dry-run".as_ref()], &[]);
    assert_ne!(code, 0);
    assert!(err.contains("unknown runnable tag `!FooCluster`"), "{err}");
    assert!(err.contains("cluster.yaml:1:1"), "{err}");
    assert!(
        err.contains("flambe looked for an executable `flambe-cluster-foo` on PATH"),
        "{err}"
    );
}

/// A plugin's `validate` errors land at the file, line and column of the
/// field they name, as flambe's own do; its request carried the fields.
#[test]
fn a_plugin_s_validate_errors_point_at_the_field_they_name() {
    let d = Dir::new();
    d.script(
        "flambe-cluster-foo",
        r#"cat > "request-$1.json"
case "$1" in
  validate) echo '{"protocol": 1, "errors": [{"path": "nodes", "message": "`nodes` must be at most 1 on partition gpu"}, {"path": "partition", "message": "no such partition"}]}' ;;
  *) exit 9 ;;
esac
"#,
    );
    let config = plugin_cluster(&d, "FooCluster", "");
    let path = path_with(d.path());
    let (code, _, err) = d.run(
        &[config.as_os_str(), "--dry-run".as_ref()],
        &[("PATH", &path)],
    );
    assert_ne!(code, 0);
    assert!(err.contains("cluster.yaml:6:8"), "at `nodes: 2`: {err}");
    assert!(
        err.contains("`nodes` must be at most 1 on partition gpu"),
        "{err}"
    );
    assert!(err.contains("flambe-cluster-foo validate"), "{err}");
    assert!(
        err.contains("also, at `partition`: no such partition"),
        "{err}"
    );
    let request: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(d.path().join("request-validate.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(request["protocol"], 1);
    assert_eq!(request["action"], "validate");
    assert_eq!(request["cluster"], "plug");
    assert_eq!(request["fields"]["nodes"], 2);
    assert_eq!(request["fields"]["partition"], "gpu");
}

/// A plugin that fails, or answers `up` with something else than hosts,
/// says so with its exit code, its stderr or what was wrong and where.
#[test]
fn a_plugin_that_fails_or_answers_wrong_says_how() {
    let d = Dir::new();
    let path = path_with(d.path());
    let config = plugin_cluster(&d, "FooCluster", "");
    let cases = [
        (
            "validate) echo '{\"errors\": []}' ;; up) echo no allocation >&2; exit 4 ;;",
            vec![
                "`flambe-cluster-foo up` failed (exit code 4)",
                "no allocation",
            ],
        ),
        (
            "validate) echo '{\"errors\": []}' ;; up) echo '{\"orchestrator\": {\"public\": \"127.0.0.2\"}, \"factories\": {}}' ;;",
            vec!["at `factories`: expected a list of hosts, found an object"],
        ),
        (
            "validate) echo not json ;;",
            vec!["`flambe-cluster-foo validate` printed something that is not JSON"],
        ),
        (
            "validate) echo '{\"errors\": [{\"path\": 3}]}' ;;",
            vec!["at `errors[0].path`: expected a string, found a number"],
        ),
    ];
    for (arms, expected) in cases {
        d.script(
            "flambe-cluster-foo",
            &format!("case \"$1\" in {arms} *) exit 9 ;; esac\n"),
        );
        let (code, _, err) = d.run(&[config.as_os_str()], &[("PATH", &path)]);
        assert_ne!(code, 0, "{arms}");
        for part in expected {
            assert!(err.contains(part), "{arms}: missing {part:?} in:\n{err}");
        }
    }
}
