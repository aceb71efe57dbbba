//! Ray across test hosts: flambe starts a head on the orchestrator and
//! workers on the factories over SSH, and a job submitted to the Jobs REST
//! API through a tunnel lands on a factory with a GPU of its own.
//! Root only (test hosts), and Ray 2.60 from PyPI, which scripts/test.sh
//! installs in /opt/flambe-test/ray (linked into each host's ~/.flambe/ray,
//! as a cluster's own Ray of the right version would be).

use flambe_cluster::{Cluster, up};
use flambe_cluster::{DASHBOARD_PORT, start_ray, stop_ray};
use flambe_testbed::{Testbed, available, missing_prerequisite};
use serde_json::Value;
use std::io::{Read, Write};
use std::time::{Duration, Instant};

fn http(
    port: u16,
    token: Option<&str>,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> (u16, String) {
    let mut conn = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    let body = body.map(Value::to_string).unwrap_or_default();
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    write!(
        conn,
        "{method} {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut raw = String::new();
    conn.read_to_string(&mut raw).unwrap();
    let (head, rest) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    (
        head.split_whitespace().nth(1).unwrap().parse().unwrap(),
        rest.to_string(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ray_spans_the_hosts_and_places_gpu_jobs_on_factories() {
    if !available("ray_spans_the_hosts_and_places_gpu_jobs_on_factories") {
        return;
    }
    let tools = flambe_testbed::tools_dir().display().to_string();
    let ray = format!("{tools}/ray");
    if !std::path::Path::new(&format!("{ray}/bin/ray")).exists() {
        missing_prerequisite(
            "ray_spans_the_hosts",
            &format!("needs Ray in {ray} (scripts/test.sh installs it)"),
        );
        return;
    }
    let bed = Testbed::up(122, 3);
    let home = tempfile::tempdir().unwrap();
    // SAFETY: set before any other thread of this test binary reads it.
    unsafe { std::env::set_var("FLAMBE_HOME", home.path()) };
    let text = format!(
        "!SSHCluster\nname: rc\norchestrator_ip: {}\nfactories_ips: [{}, {}]\nusername: {}\nkey: {}\nsetup_cmds:\n  - mkdir -p ~/.flambe && ln -sfn {ray} ~/.flambe/ray && echo 2 > ~/.flambe/gpus\n  - mkdir -p ~/.ray && echo the-users-own-token > ~/.ray/auth_token\n",
        bed.addr(1),
        bed.addr(2),
        bed.addr(3),
        bed.user,
        bed.key.display()
    );
    let cfg = match flambe_config::load_str(std::path::Path::new("c.yaml"), &text, &|_| None)
        .unwrap()
        .runnable
    {
        flambe_config::Runnable::SshCluster(c) => c,
        _ => unreachable!(),
    };
    up(&cfg).await.unwrap();
    let mut cluster = Cluster::open("rc").await.unwrap();
    flambe_cluster::provision(&mut cluster, false)
        .await
        .unwrap();
    let started = Instant::now();
    let ray_cluster = start_ray(&cluster).await.unwrap();
    eprintln!(
        "Ray up on 3 hosts in {:.1}s",
        started.elapsed().as_secs_f64()
    );
    assert_eq!(ray_cluster.nodes, 3);
    // Starting again is a no-op.
    assert_eq!(start_ray(&cluster).await.unwrap().nodes, 3);

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    cluster
        .orchestrator()
        .tunnel(port, "127.0.0.1", DASHBOARD_PORT)
        .await
        .unwrap();
    // The cluster's Ray takes its own token, and nothing without it.
    let token = std::fs::read_to_string(cluster.files.ray_token()).unwrap();
    let token: &'static str = Box::leak(token.trim().to_string().into_boxed_str());
    let (status, body) =
        tokio::task::spawn_blocking(move || http(port, None, "GET", "/api/jobs/", None))
            .await
            .unwrap();
    assert_eq!(status, 401, "a call without the token: {body}");
    let (status, body) = tokio::task::spawn_blocking(move || {
        http(port, Some("the-users-own-token"), "GET", "/api/jobs/", None)
    })
    .await
    .unwrap();
    assert_eq!(status, 403, "a call with the user's own token: {body}");
    assert!(body.contains("Invalid authentication token"), "{body}");
    let submit = |n: u32| {
        serde_json::json!({
            "entrypoint": "echo host=$(hostname -I | tr -d ' ') gpu=$CUDA_VISIBLE_DEVICES && sleep 2",
            "entrypoint_num_gpus": 1,
            "submission_id": format!("flambe-test-{n}"),
        })
    };
    for n in 0..3 {
        let (status, body) = tokio::task::spawn_blocking(move || {
            http(port, Some(token), "POST", "/api/jobs/", Some(&submit(n)))
        })
        .await
        .unwrap();
        assert_eq!(status, 200, "{body}");
    }
    let mut seen = Vec::new();
    for n in 0..3 {
        let id = format!("flambe-test-{n}");
        let start = Instant::now();
        loop {
            let path = format!("/api/jobs/{id}");
            let (_, body) =
                tokio::task::spawn_blocking(move || http(port, Some(token), "GET", &path, None))
                    .await
                    .unwrap();
            let job: Value = serde_json::from_str(&body).unwrap();
            match job["status"].as_str() {
                Some("SUCCEEDED") => break,
                Some("FAILED" | "STOPPED") => panic!("{job}"),
                _ => {}
            }
            assert!(
                start.elapsed() < Duration::from_secs(120),
                "job {id} never finished: {job}"
            );
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        let path = format!("/api/jobs/{id}/logs");
        let (_, body) =
            tokio::task::spawn_blocking(move || http(port, Some(token), "GET", &path, None))
                .await
                .unwrap();
        let logs: Value = serde_json::from_str(&body).unwrap();
        let line = logs["logs"]
            .as_str()
            .unwrap()
            .lines()
            .find(|l| l.starts_with("host="))
            .unwrap()
            .to_string();
        seen.push(line);
    }
    for line in &seen {
        assert!(
            !line.contains(bed.addr(1)),
            "a GPU job ran on the orchestrator: {seen:?}"
        );
        let gpu = line.rsplit("gpu=").next().unwrap();
        assert!(gpu == "0" || gpu == "1", "{seen:?}");
    }
    stop_ray(&cluster).await.unwrap();
    cluster.close().await;
}
