//! Extensions on a cluster: installed on every host, used by the trials.

use super::*;

/// A pure-Python wheel `helper_pkg 1.0`, made by hand (a wheel is a zip).
fn write_helper_wheel(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    let script = r#"
import sys, zipfile
d = "helper_pkg-1.0.dist-info"
with zipfile.ZipFile(sys.argv[1] + "/helper_pkg-1.0-py3-none-any.whl", "w") as z:
    z.writestr("helper_pkg.py", "GREETING = 'hi-from-helper'\n")
    z.writestr(d + "/METADATA", "Metadata-Version: 2.1\nName: helper_pkg\nVersion: 1.0\n")
    z.writestr(d + "/WHEEL", "Wheel-Version: 1.0\nGenerator: flambe-test\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
    z.writestr(d + "/RECORD", "helper_pkg.py,,\n" + d + "/METADATA,,\n" + d + "/WHEEL,,\n" + d + "/RECORD,,\n")
"#;
    let ok = std::process::Command::new("python3")
        .args(["-c", script])
        .arg(dir)
        .status()
        .unwrap();
    assert!(ok.success());
}

#[test]
fn extensions_are_installed_on_every_host_and_trials_use_them() {
    let test = "extensions_are_installed_on_every_host_and_trials_use_them";
    let Some(rc) = RayCluster::new(test, 126, "ext", 2, false) else {
        return;
    };
    let (bed, dir, cluster) = (&rc.bed, &rc.dir, &rc.cluster);
    let tools = flambe_testbed::tools_dir().display().to_string();
    if !Path::new(&format!("{tools}/wheels")).exists() {
        missing_prerequisite(
            test,
            &format!("needs {tools}/wheels (scripts/test.sh fills it)"),
        );
        return;
    }
    // The hosts have no network: pip there uses no index, and finds wheels in
    // the shared tools folder and in the host's own ~/wheels.
    for n in 1..=3 {
        let home = bed.home(n);
        write_helper_wheel(&home.join("wheels"));
        std::fs::create_dir_all(home.join(".config/pip")).unwrap();
        std::fs::write(
            home.join(".config/pip/pip.conf"),
            format!("[global]\nno-index = true\nfind-links =\n    {tools}/wheels\n    /home/{}/wheels\n", bed.user),
        )
        .unwrap();
        for path in [home.join("wheels"), home.join(".config")] {
            let ok = std::process::Command::new("chown")
                .args(["-R", &bed.user])
                .arg(path)
                .status()
                .unwrap();
            assert!(ok.success());
        }
    }
    common::write_package(dir.path(), "my_models", "v1");
    let config = dir.path().join("exta.yaml");
    std::fs::write(
        &config,
        "my_models: ./my_models\nhelper: helper_pkg==1.0\n---\n!Experiment\nname: exta\npipeline:\n  s: !Stage\n    run: |-\n      python -c \"import my_models, helper_pkg, sys; print(my_models.MARK, helper_pkg.GREETING, sys.prefix)\" > {out}/seen && hostname -I | cut -d' ' -f1 > {out}/host\n    params:\n      i: !g [1, 2, 3, 4]\n",
    )
    .unwrap();
    let args = [
        config.as_os_str(),
        "--cluster".as_ref(),
        cluster.as_os_str(),
    ];
    let pulled = dir.path().join("pulled");
    let pull = || {
        let _ = std::fs::remove_dir_all(&pulled);
        let (code, text) = rc.flambe(&[
            "pull".as_ref(),
            "exta".as_ref(),
            "--cluster".as_ref(),
            cluster.as_os_str(),
            "--to".as_ref(),
            pulled.as_os_str(),
        ]);
        assert_eq!(code, Some(0), "{text}");
        (1..=4)
            .map(|i| {
                let out = pulled.join(format!("trials/s-00{}/out", i - 1));
                (
                    std::fs::read_to_string(out.join("seen")).unwrap(),
                    std::fs::read_to_string(out.join("host"))
                        .unwrap()
                        .trim()
                        .to_string(),
                )
            })
            .collect::<Vec<_>>()
    };

    let (code, text) = rc.flambe(&args);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("installed on ext_orchestrator"), "{text}");
    let seen = pull();
    let hosts: std::collections::BTreeSet<&str> = seen.iter().map(|(_, h)| h.as_str()).collect();
    assert_eq!(
        hosts,
        [bed.addr(2), bed.addr(3)].into(),
        "trials ran on both factories"
    );
    for (line, _) in &seen {
        assert!(
            line.starts_with(&format!(
                "v1 hi-from-helper /home/{}/.flambe/envs/",
                bed.user
            )),
            "the trial's python is the extensions' venv, with the local package: {line}"
        );
    }
    let record: Value =
        serde_json::from_str(&std::fs::read_to_string(pulled.join("extensions.json")).unwrap())
            .unwrap();
    let installed = record["installed"].as_array().unwrap();
    // pip lists names normalized or not, depending on the build backend.
    let normal = |v: &Value| v.as_str().unwrap_or("").to_lowercase().replace('_', "-");
    for (name, version) in [("my-models", "0.3"), ("helper-pkg", "1.0")] {
        assert!(
            installed
                .iter()
                .any(|p| normal(&p["name"]) == name && p["version"] == version),
            "{record}"
        );
    }

    // Unchanged: nothing installed anywhere.
    let (code, text) = rc.flambe(&args);
    assert_eq!(code, Some(0), "{text}");
    assert!(
        text.contains("up to date on every host, nothing installed"),
        "{text}"
    );

    // One file changed locally: installed again, and the trials see it.
    common::write_package(dir.path(), "my_models", "v2");
    let forced = [args[0], args[1], args[2], "--force".as_ref()];
    let (code, text) = rc.flambe(&forced);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("installed on"), "{text}");
    for (line, _) in pull() {
        assert!(line.starts_with("v2 "), "{line}");
    }
    // Two extension sets, two environments, each whole.
    let factory_envs = bed.home(2).join(".flambe/envs");
    let ready: Vec<PathBuf> = std::fs::read_dir(&factory_envs)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join(".ready").exists())
        .collect();
    assert_eq!(ready.len(), 2, "{ready:?}");
    let marks: std::collections::BTreeSet<String> = ready
        .iter()
        .map(|p| std::fs::read_to_string(p.join("src/my_models/my_models.py")).unwrap())
        .collect();
    assert_eq!(
        marks,
        ["MARK = \"v1\"\n".to_string(), "MARK = \"v2\"\n".to_string()].into()
    );

    // A broken extension fails before any trial, naming host, extension and error.
    std::fs::create_dir(dir.path().join("broken")).unwrap();
    std::fs::write(
        dir.path().join("broken/setup.py"),
        "raise SystemExit('broken on purpose')\n",
    )
    .unwrap();
    let bad = dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        "broken: ./broken\n---\n!Experiment\nname: extbad\npipeline:\n  s: !Stage\n    run: echo never\n",
    )
    .unwrap();
    let (code, text) = rc.flambe(&[bad.as_os_str(), "--cluster".as_ref(), cluster.as_os_str()]);
    assert_eq!(code, Some(1), "{text}");
    assert!(
        text.contains("extensions failed to install on 3 host(s)"),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "on ext_factory_0 ({}), extension `broken`",
            bed.addr(2)
        )),
        "{text}"
    );
    assert!(text.contains("broken on purpose"), "{text}");
    assert!(
        !bed.home(1).join(".flambe/experiments/extbad/runs").exists(),
        "no trial started"
    );
}
