//! `!AWSCluster` against a real moto server on loopback (the AWS SDK's
//! standard `AWS_ENDPOINT_URL` override), checked with boto3 (a client other
//! than flambe's). The end-to-end test gives moto's subnet the test bed's
//! range and puts a namespace host at each private address moto hands out,
//! so that flambe reaches its "instances" over real SSH.

use assert_cmd::Command;
use flambe_testbed::{Testbed, available, missing_prerequisite, tools_dir};
use serde_json::Value;
use std::path::Path;
use std::process::{Child, Stdio};

/// A moto server of the test's own, on a free loopback port.
struct Moto {
    child: Child,
    endpoint: String,
}

impl Moto {
    fn start(test: &str) -> Option<Moto> {
        let server = tools_dir().join("moto/bin/moto_server");
        if !server.exists() {
            missing_prerequisite(
                test,
                &format!(
                    "needs moto in {} (scripts/test.sh installs it)",
                    server.display()
                ),
            );
            return None;
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = std::process::Command::new(server)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let endpoint = format!("http://127.0.0.1:{port}");
        // Ready when it answers on its port.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(std::time::Instant::now() < deadline, "moto did not start");
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        Some(Moto { child, endpoint })
    }

    /// Ask moto through boto3 (tests/aws/moto.py).
    fn ask(&self, args: &[&str]) -> Value {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/aws/moto.py");
        let out = std::process::Command::new(tools_dir().join("moto/bin/python"))
            .arg(script)
            .arg(&self.endpoint)
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "moto.py {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }

    fn instances(&self) -> Vec<Value> {
        self.ask(&["instances"]).as_array().unwrap().clone()
    }

    fn alarms(&self) -> Vec<Value> {
        self.ask(&["alarms"]).as_array().unwrap().clone()
    }

    /// `flambe ARGS` with this moto as AWS and its own FLAMBE_HOME.
    fn flambe(
        &self,
        home: &Path,
        args: &[&std::ffi::OsStr],
        extra_env: &[(&str, &str)],
    ) -> (i32, String) {
        let out = Command::cargo_bin("flambe")
            .unwrap()
            .env("FLAMBE_HOME", home)
            .env("AWS_ENDPOINT_URL", &self.endpoint)
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_REGION", "us-east-1")
            .env_remove("AWS_PROFILE")
            .envs(extra_env.iter().copied())
            .args(args)
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn cluster_yaml(
    name: &str,
    factories: u32,
    net: &Value,
    key: &Path,
    user: &str,
    extra: &str,
) -> String {
    format!(
        "!AWSCluster\nname: {name}\nfactories_num: {factories}\nfactories_type: t3.small\norchestrator_type: t3.medium\norchestrator_timeout: -1\nfactories_timeout: 2\ncreator: tester\nkey_name: flambe-test\nkey: {key}\ntags:\n  team: ml\nsubnet_id: {subnet}\nsecurity_group: {sg}\nvolume_size: 50\norchestrator_ami: ami-0123456789abcdef0\nfactory_ami: ami-0fedcba987654321f\nregion_name: us-east-1\nusername: {user}\nuse_public: false\n{extra}",
        key = key.display(),
        subnet = net["subnet"].as_str().unwrap(),
        sg = net["security_group"].as_str().unwrap(),
    )
}

fn live<'a>(instances: &'a [Value], cluster: &str) -> Vec<&'a Value> {
    instances
        .iter()
        .filter(|i| i["tags"]["Cluster-Name"] == cluster && i["state"] != "terminated")
        .collect()
}

#[test]
fn an_aws_cluster_is_created_reused_resized_and_taken_down() {
    let test = "an_aws_cluster_is_created_reused_resized_and_taken_down";
    if !available(test) {
        return;
    }
    let Some(moto) = Moto::start(test) else {
        return;
    };
    let id = 130;
    let net = moto.ask(&["network", &format!("10.213.{id}.0/24")]);
    // moto gives addresses in order from .4: a host waits at each.
    let mut bed = Testbed::up(id, 0);
    for n in 1..=3 {
        bed.add(n, &format!("10.213.{id}.{}", 3 + n));
    }
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let config = dir.path().join("aws.yaml");
    let (key, user) = (bed.key.clone(), bed.user.clone());
    let write = |factories: u32| {
        std::fs::write(
            &config,
            cluster_yaml(
                "awsc",
                factories,
                &net,
                &key,
                &user,
                "setup_cmds:\n  - hostname -I > ~/setup-ran\n",
            ),
        )
        .unwrap()
    };
    let run = || moto.flambe(&home, &[config.as_os_str()], &[]);

    write(2);
    let (code, text) = run();
    assert_eq!(code, 0, "{text}");
    let instances = moto.instances();
    let ours = live(&instances, "awsc");
    assert_eq!(ours.len(), 3, "{instances:?}");
    for i in &ours {
        let role = i["tags"]["Role"].as_str().unwrap();
        let (ty, ami) = match role {
            "orchestrator" => ("t3.medium", "ami-0123456789abcdef0"),
            _ => ("t3.small", "ami-0fedcba987654321f"),
        };
        assert_eq!(i["type"], ty, "{i}");
        assert_eq!(i["ami"], ami, "{i}");
        assert_eq!(i["subnet"], net["subnet"], "{i}");
        assert_eq!(i["groups"][0], net["security_group"], "{i}");
        assert_eq!(i["key"], "flambe-test", "{i}");
        assert_eq!(i["volumes"][0]["size"], 50, "{i}");
        for (k, v) in [
            ("creator", "tester"),
            ("Purpose", "flambe"),
            ("Cluster-Name", "awsc"),
            ("team", "ml"),
        ] {
            assert_eq!(i["tags"][k], v, "{i}");
        }
        assert_eq!(i["state"], "running");
    }
    let names: std::collections::BTreeSet<&str> = ours
        .iter()
        .map(|i| i["tags"]["Name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["awsc_factory_0", "awsc_factory_1", "awsc_orchestrator"].into()
    );
    // The "instances" were set up over SSH like any cluster: binary, setup_cmds.
    for n in 1..=3 {
        assert!(
            bed.home(n).join(".flambe/bin/flambe").exists(),
            "binary on host {n}"
        );
        let ran = std::fs::read_to_string(bed.home(n).join("setup-ran")).unwrap();
        assert!(ran.contains(bed.addr(n)), "{ran}");
    }
    // One alarm per factory (orchestrator_timeout -1: none), as documented.
    let alarms = moto.alarms();
    assert_eq!(alarms.len(), 2, "{alarms:?}");
    let factory_ids: std::collections::BTreeSet<String> = ours
        .iter()
        .filter(|i| i["tags"]["Role"] == "factory")
        .map(|i| i["id"].as_str().unwrap().to_string())
        .collect();
    for a in &alarms {
        let name = a["name"].as_str().unwrap();
        let instance = name.strip_prefix("flambe-awsc-").unwrap();
        assert!(factory_ids.contains(instance), "{name}");
        assert_eq!(a["actions"][0], "arn:aws:automate:us-east-1:ec2:terminate");
        assert_eq!(a["threshold"], 5.0);
        assert_eq!(a["operator"], "LessThanThreshold");
        // 2 hours of 5-minute periods (basic monitoring), every one idle.
        assert_eq!(a["evaluation_periods"], 24);
        assert_eq!(a["datapoints_to_alarm"], 24);
        assert_eq!(a["missing"], "notBreaching");
        let cpu = a["metrics"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["id"] == "cpu")
            .unwrap();
        assert_eq!(cpu["metric"], "CPUUtilization");
        assert_eq!(cpu["period"], 300);
        assert_eq!(cpu["stat"], "Maximum");
        assert_eq!(cpu["dimensions"][0]["Value"], instance);
    }

    // Every instance's idle clock was reset by the run (flambe's activity metric).
    let mut ids: Vec<&str> = ours.iter().map(|i| i["id"].as_str().unwrap()).collect();
    ids.sort();
    assert_eq!(moto.ask(&["activity"]), serde_json::json!(ids));

    // Again, with a factory stopped meanwhile: it is started, nothing is created.
    let factory_0 = ours
        .iter()
        .find(|i| i["tags"]["Name"] == "awsc_factory_0")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    moto.ask(&["stop", &factory_0]);
    let (code, text) = run();
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("Instances: created none"), "{text}");
    assert!(text.contains(&format!("started {factory_0}")), "{text}");
    let again = moto.instances();
    assert_eq!(again.len(), 3, "no new RunInstances: {again:?}");
    assert!(again.iter().all(|i| i["state"] == "running"), "{again:?}");

    // Three factories: one more (at the next address), three alarms.
    bed.add(4, &format!("10.213.{id}.7"));
    write(3);
    let (code, text) = run();
    assert_eq!(code, 0, "{text}");
    assert_eq!(live(&moto.instances(), "awsc").len(), 4);
    assert_eq!(moto.alarms().len(), 3);
    // One factory: the two others terminated with their alarms.
    write(1);
    let (code, text) = run();
    assert_eq!(code, 0, "{text}");
    let now = moto.instances();
    let names: std::collections::BTreeSet<&str> = live(&now, "awsc")
        .iter()
        .map(|i| i["tags"]["Name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["awsc_factory_0", "awsc_orchestrator"].into(),
        "{text}"
    );
    assert_eq!(moto.alarms().len(), 1);

    // Down: no instance running, no alarm, no local state.
    let (code, text) = moto.flambe(
        &home,
        &["cluster".as_ref(), "down".as_ref(), "awsc".as_ref()],
        &[],
    );
    assert_eq!(code, 0, "{text}");
    assert!(live(&moto.instances(), "awsc").is_empty());
    assert!(moto.alarms().is_empty());
    assert!(!home.join("clusters/awsc").exists());
}

#[test]
fn a_failed_bring_up_rolls_back_only_what_it_created() {
    let test = "a_failed_bring_up_rolls_back_only_what_it_created";
    if !available(test) {
        return;
    }
    let Some(moto) = Moto::start(test) else {
        return;
    };
    // The subnet's range is a test bed with no hosts: nothing answers there,
    // and nothing leaves this machine.
    let _bed = Testbed::up(131, 0);
    let net = moto.ask(&["network", "10.213.131.0/24"]);
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let key = dir.path().join("key");
    // Never used (nothing answers on SSH), but the loader checks that it is
    // a private key file, as it would for a user.
    std::fs::write(
        &key,
        "-----BEGIN OPENSSH PRIVATE KEY-----\nnot used\n-----END OPENSSH PRIVATE KEY-----\n",
    )
    .unwrap();
    let config = dir.path().join("aws.yaml");
    std::fs::write(&config, cluster_yaml("rb", 2, &net, &key, "ubuntu", "")).unwrap();
    // Another cluster's instance and another user's: never touched.
    let other = moto.ask(&["run", net["subnet"].as_str().unwrap(), "other", "tester"]);

    // A dry run changes nothing.
    let (code, text) = moto.flambe(&home, &[config.as_os_str(), "--dry-run".as_ref()], &[]);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("would create 3 instances"), "{text}");
    assert_eq!(moto.instances().len(), 1);

    // Nothing answers on SSH at the addresses moto gives: the run fails after
    // the orchestrator started, and terminates exactly what it created. On
    // the way, EC2 does not know the new instances yet (eventual
    // consistency): that is waited through, not rolled back.
    let mut proxy = std::process::Command::new(tools_dir().join("moto/bin/python"))
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/aws/not_yet_visible.py"))
        .arg(&moto.endpoint)
        .arg("3")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut said = std::io::BufReader::new(proxy.stdout.take().unwrap());
    let mut proxy_url = String::new();
    std::io::BufRead::read_line(&mut said, &mut proxy_url).unwrap();
    let (code, text) = moto.flambe(
        &home,
        &[config.as_os_str()],
        &[
            ("FLAMBE_AWS_SSH_TIMEOUT", "2"),
            ("AWS_ENDPOINT_URL", proxy_url.trim()),
        ],
    );
    let _ = proxy.kill();
    let _ = proxy.wait();
    let mut refused = String::new();
    std::io::Read::read_to_string(&mut said, &mut refused).unwrap();
    assert_eq!(
        refused.lines().count(),
        3,
        "the proxy refused: {refused}\n{text}"
    );
    assert!(!text.contains("InvalidInstanceID.NotFound"), "{text}");
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("did not answer on port 22"), "{text}");
    assert!(text.contains("rolled back: terminated"), "{text}");
    let instances = moto.instances();
    let created: Vec<&Value> = instances
        .iter()
        .filter(|i| i["tags"]["Cluster-Name"] == "rb")
        .collect();
    assert_eq!(created.len(), 3, "{instances:?}");
    for i in &created {
        assert_eq!(i["state"], "terminated", "{i}");
        assert!(text.contains(i["id"].as_str().unwrap()), "{text}");
    }
    let untouched = instances.iter().find(|i| i["id"] == other["id"]).unwrap();
    assert_eq!(untouched["state"], "running");
    assert!(moto.alarms().is_empty());

    // Someone else's instances under this cluster name: refused, untouched.
    // (-vv: with the AWS SDK's own events.)
    let theirs = moto.ask(&["run", net["subnet"].as_str().unwrap(), "rb", "someone-else"]);
    let secret = "sEcReT-of-this-test";
    let (code, text) = moto.flambe(
        &home,
        &["-vv".as_ref(), config.as_os_str()],
        &[("AWS_SECRET_ACCESS_KEY", secret)],
    );
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("created by `someone-else`"), "{text}");
    assert!(
        text.lines()
            .any(|l| l.contains(" DEBUG ") && l.contains("aws_smithy_runtime")),
        "the SDK's events at -vv: {text}"
    );
    assert!(!text.contains(secret), "no secret in the log: {text}");
    let still = moto.instances();
    let theirs = still.iter().find(|i| i["id"] == theirs["id"]).unwrap();
    assert_eq!(theirs["state"], "running");
    assert_eq!(still.len(), 5, "nothing new: {still:?}");

    // A timeout CloudWatch cannot watch is refused before any call.
    std::fs::write(
        &config,
        cluster_yaml("rb2", 1, &net, &key, "ubuntu", "")
            .replace("factories_timeout: 2", "factories_timeout: 200"),
    )
    .unwrap();
    let (code, text) = moto.flambe(&home, &[config.as_os_str()], &[]);
    assert_ne!(code, 0, "{text}");
    assert!(text.contains("168"), "{text}");
    assert_eq!(moto.instances().len(), 5);
}

#[test]
fn an_experiment_runs_on_an_aws_cluster() {
    let test = "an_experiment_runs_on_an_aws_cluster";
    if !available(test) {
        return;
    }
    let ray = tools_dir().join("ray");
    if !ray.join("bin/ray").exists() {
        missing_prerequisite(
            test,
            &format!(
                "needs Ray in {} (scripts/test.sh installs it)",
                ray.display()
            ),
        );
        return;
    }
    let Some(moto) = Moto::start(test) else {
        return;
    };
    let id = 132;
    let net = moto.ask(&["network", &format!("10.213.{id}.0/24")]);
    let mut bed = Testbed::up(id, 0);
    for n in 1..=2 {
        bed.add(n, &format!("10.213.{id}.{}", 3 + n));
    }
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let cluster = dir.path().join("aws.yaml");
    // The hosts have no network: Ray and TensorBoard are linked in from the
    // test tools (tests/bare_hosts.rs is where flambe installs them).
    std::fs::write(
        &cluster,
        cluster_yaml(
            "awsexp",
            1,
            &net,
            &bed.key,
            &bed.user,
            &format!(
                "setup_cmds:\n  - mkdir -p ~/.flambe/bin && ln -sfn {} ~/.flambe/ray && ln -sfn {} ~/.flambe/bin/tensorboard\n",
                ray.display(),
                flambe_testbed::tools_dir()
                    .join("venv/bin/tensorboard")
                    .display()
            ),
        ),
    )
    .unwrap();
    let exp = dir.path().join("exp.yaml");
    std::fs::write(
        &exp,
        "!Experiment\nname: onaws\npipeline:\n  s: !Stage\n    run: |-\n      hostname -I | cut -d' ' -f1 > {out}/host; echo '{\"step\": 1, \"a\": {i}}' >> $FLAMBE_METRICS\n    params:\n      i: !g [1, 2]\n    metric: a\n    mode: max\n",
    )
    .unwrap();
    let (code, text) = moto.flambe(
        &home,
        &[exp.as_os_str(), "--cluster".as_ref(), cluster.as_os_str()],
        &[],
    );
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("Instances: created"), "{text}");
    assert!(text.contains("Experiment `onaws` finished"), "{text}");
    let pulled = dir.path().join("pulled");
    let (code, text) = moto.flambe(
        &home,
        &[
            "pull".as_ref(),
            "onaws".as_ref(),
            "--cluster".as_ref(),
            cluster.as_os_str(),
            "--to".as_ref(),
            pulled.as_os_str(),
        ],
        &[],
    );
    assert_eq!(code, 0, "{text}");
    for trial in ["s-000", "s-001"] {
        let host =
            std::fs::read_to_string(pulled.join(format!("trials/{trial}/out/host"))).unwrap();
        assert_eq!(host.trim(), bed.addr(2), "ran on the factory instance");
    }
    let (code, text) = moto.flambe(
        &home,
        &["cluster".as_ref(), "down".as_ref(), "awsexp".as_ref()],
        &[],
    );
    assert_eq!(code, 0, "{text}");
    assert!(live(&moto.instances(), "awsexp").is_empty());
}
