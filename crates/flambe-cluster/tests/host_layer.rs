//! The host layer against real OpenSSH servers on test hosts: tunnels,
//! timeouts, parallel runs with per-host results, errors that name the
//! host and the command. Root only (see flambe_testbed).

use flambe_cluster::HostError;
use flambe_cluster::{Cluster, up};
use flambe_testbed::{Testbed, available};
use std::io::{Read, Write};
use std::time::Duration;

fn cluster_config(bed: &Testbed, name: &str) -> flambe_config::SshCluster {
    let text = format!(
        "!SSHCluster\nname: {name}\norchestrator_ip: {}\nfactories_ips: [{}]\nusername: {}\nkey: {}\n",
        bed.addr(1),
        bed.addr(2),
        bed.user,
        bed.key.display()
    );
    match flambe_config::load_str(std::path::Path::new("c.yaml"), &text, &|_| None)
        .unwrap()
        .runnable
    {
        flambe_config::Runnable::SshCluster(c) => c,
        _ => unreachable!(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tunnels_timeouts_and_errors() {
    if !available("tunnels_timeouts_and_errors") {
        return;
    }
    let bed = Testbed::up(121, 2);
    let home = tempfile::tempdir().unwrap();
    // SAFETY: this test binary has no other thread reading the environment yet.
    unsafe { std::env::set_var("FLAMBE_HOME", home.path()) };
    up(&cluster_config(&bed, "hl")).await.unwrap();
    let cluster = Cluster::open("hl").await.unwrap();
    let orch = cluster.orchestrator();

    // A tunnel from here to a port that only listens on the orchestrator's loopback.
    orch.check("echo tunnelled > page.txt && (nohup python3 -m http.server 18765 --bind 127.0.0.1 >/dev/null 2>&1 &)")
        .await
        .unwrap();
    orch.check_within(
        "until python3 -c 'import socket; socket.create_connection((\"127.0.0.1\", 18765))' 2>/dev/null; do sleep 0.1; done",
        Duration::from_secs(30),
    )
    .await
    .unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    orch.tunnel(port, "127.0.0.1", 18765).await.unwrap();
    let mut conn = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    conn.write_all(b"GET /page.txt HTTP/1.0\r\n\r\n").unwrap();
    let mut body = String::new();
    conn.read_to_string(&mut body).unwrap();
    assert!(
        body.contains("200") && body.ends_with("tunnelled\n"),
        "{body}"
    );
    orch.run("pkill -f 'http.server 18765'").await.unwrap();

    // Parallel runs report per host.
    let results = cluster.exec("hostname -I", None).await.unwrap();
    let seen: Vec<(String, String)> = results
        .into_iter()
        .map(|(h, r)| (h, r.unwrap().stdout.trim().to_string()))
        .collect();
    assert_eq!(
        seen,
        vec![
            ("hl_orchestrator".into(), bed.addr(1).into()),
            ("hl_factory_0".into(), bed.addr(2).into())
        ]
    );

    // Failures name host and command and carry stderr; timeouts too.
    let factory = cluster.host("hl_factory_0").unwrap();
    match factory.check("echo broken >&2; exit 7").await {
        Err(e @ HostError::Command { .. }) => {
            let text = e.to_string();
            assert!(
                text.contains("on hl_factory_0, `echo broken >&2; exit 7` failed (exit code 7)"),
                "{text}"
            );
            assert!(text.contains("broken"), "{text}");
        }
        other => panic!("{other:?}"),
    }
    match factory
        .check_within("sleep 5", Duration::from_millis(300))
        .await
    {
        Err(HostError::Timeout { host, .. }) => assert_eq!(host, "hl_factory_0"),
        other => panic!("{other:?}"),
    }
    factory.mkdir("a dir/with space").await.unwrap();
    assert!(bed.home(2).join("a dir/with space").is_dir());
    // No container engine runs on the test hosts: the built command runs and
    // its failure names the host.
    let docker = factory
        .docker_run("busybox", "c1", &["-e".into(), "A=1".into()])
        .await;
    match docker {
        Err(HostError::Command { host, command, .. }) => {
            assert_eq!(host, "hl_factory_0");
            assert_eq!(command, "docker run -d --name c1 -e A=1 busybox");
        }
        Ok(id) => eprintln!("a container engine runs here: started {id}"),
        Err(e) => panic!("{e}"),
    }
    cluster.close().await;
}
