//! `flambe cluster.yaml` for an `!AWSCluster`: the instances found or
//! created (rolled back on failure), their alarms, then the SSH cluster
//! code on them.

use crate::alarms::{self, AlarmPlan, Monitoring};
use crate::down::{AwsRecord, record_path};
use crate::ec2::{Aws, Instance, SSH_PORT};
use crate::error::AwsError;
use flambe_cluster::{Role, UpReport, cluster_dir};
use flambe_config::{AwsCluster, HostAddr, SshCluster};
use std::time::{Duration, Instant};

/// How long instances get to run, then to answer on SSH, before this run
/// gives up and rolls back (seconds; environment overrides for slow
/// regions and for the tests).
pub(crate) fn limit(var: &str, default_secs: u64) -> Duration {
    Duration::from_secs(
        std::env::var(var)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default_secs),
    )
}

/// Whether an SSH server answers at `addr`: its banner (`SSH-2.0-…`), not
/// just an open port (a half-booted instance or a middlebox may accept TCP).
pub(crate) async fn ssh_answers(addr: &str) -> bool {
    use tokio::io::AsyncReadExt;
    let attempt = async {
        let mut stream = tokio::net::TcpStream::connect((addr, SSH_PORT))
            .await
            .ok()?;
        let mut banner = [0u8; 4];
        stream.read_exact(&mut banner).await.ok()?;
        Some(&banner == b"SSH-")
    };
    matches!(
        tokio::time::timeout(Duration::from_secs(5), attempt).await,
        Ok(Some(true))
    )
}

pub(crate) async fn wait_for_ssh(
    addrs: &[(String, String)],
    limit: Duration,
) -> Result<(), AwsError> {
    let deadline = Instant::now() + limit;
    for (name, addr) in addrs {
        while !ssh_answers(addr).await {
            if Instant::now() > deadline {
                return Err(AwsError::Timeout {
                    field: "ssh",
                    message: format!(
                        "{name} ({addr}) did not answer on port {SSH_PORT} within {} s (FLAMBE_AWS_SSH_TIMEOUT)",
                        limit.as_secs()
                    ),
                });
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
    Ok(())
}

/// What `up` did.
#[derive(Debug)]
pub struct AwsUp {
    pub created: Vec<String>,
    pub started: Vec<String>,
    pub terminated: Vec<String>,
    pub reused: Vec<String>,
    pub alarms: usize,
    pub ssh: UpReport,
}

/// The alarm plans of both roles, checked before any API call.
pub(crate) fn alarm_plans(
    cfg: &AwsCluster,
) -> Result<(Option<AlarmPlan>, Option<AlarmPlan>), AwsError> {
    let check = |field: &'static str, hours: f64| {
        alarms::plan(hours, Monitoring::Basic)
            .map_err(|problem| AwsError::IdleTimeout { field, problem })
    };
    Ok((
        check("orchestrator_timeout", cfg.orchestrator_timeout)?,
        check("factories_timeout", cfg.factories_timeout)?,
    ))
}

/// Create or reuse the cluster's instances, then set it up as an SSH
/// cluster. A failure before the instances answer on SSH terminates what
/// this run created.
pub async fn up(cfg: &AwsCluster) -> Result<AwsUp, AwsError> {
    let (orchestrator_alarm, factory_alarm) = alarm_plans(cfg)?;
    let aws = Aws::connect(cfg.region_name.as_deref()).await?;
    let existing = aws.cluster_instances(&cfg.name).await?;
    let foreign: Vec<&Instance> = existing
        .iter()
        .filter(|i| i.creator != cfg.creator)
        .collect();
    if let Some(first) = foreign.first() {
        return Err(AwsError::NotYours {
            name: cfg.name.clone(),
            owner: first.creator.clone(),
            ids: foreign
                .iter()
                .map(|i| i.id.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        });
    }
    let mut created = Vec::new();
    let result = bring_up(&aws, cfg, &existing, &mut created).await;
    let (orchestrator, factories, started, terminated) = match result {
        Ok(v) => v,
        Err(failure) => return Err(rollback(&aws, &created, failure).await),
    };
    // Alarms, and the idle clocks start over.
    let mut alarm_count = 0;
    let mut all = vec![orchestrator.id.clone()];
    aws.set_alarm(&cfg.name, &orchestrator.id, orchestrator_alarm)
        .await?;
    alarm_count += usize::from(orchestrator_alarm.is_some());
    for f in &factories {
        aws.set_alarm(&cfg.name, &f.id, factory_alarm).await?;
        alarm_count += usize::from(factory_alarm.is_some());
        all.push(f.id.clone());
    }
    aws.mark_active(&all).await?;
    std::fs::create_dir_all(cluster_dir(&cfg.name)).map_err(|source| AwsError::Io {
        what: "cannot create the cluster folder".into(),
        source,
    })?;
    let record = AwsRecord {
        region: aws.region.clone(),
        creator: cfg.creator.clone(),
    };
    std::fs::write(
        record_path(&cfg.name),
        serde_json::to_string_pretty(&record).unwrap_or_default(),
    )
    .map_err(|source| AwsError::Io {
        what: format!("cannot write {}", record_path(&cfg.name).display()),
        source,
    })?;
    let ssh = flambe_cluster::up(&as_ssh_cluster(cfg, &orchestrator, &factories)).await?;
    mark_provider(&cfg.name);
    let reused = all
        .iter()
        .filter(|id| !created.contains(id))
        .cloned()
        .collect();
    Ok(AwsUp {
        created,
        started,
        terminated,
        reused,
        alarms: alarm_count,
        ssh,
    })
}

pub(crate) type Brought = (Instance, Vec<Instance>, Vec<String>, Vec<String>);

/// Everything up to "every instance answers on SSH"; `created` collects
/// what this run created, for the rollback.
pub(crate) async fn bring_up(
    aws: &Aws,
    cfg: &AwsCluster,
    existing: &[Instance],
    created: &mut Vec<String>,
) -> Result<Brought, AwsError> {
    let orchestrator_name = format!("{}_orchestrator", cfg.name);
    let mut orchestrator_id = existing
        .iter()
        .find(|i| i.role == Some(Role::Orchestrator))
        .map(|i| i.id.clone());
    let mut factory_ids: Vec<(u32, String)> = Vec::new();
    let mut extra = Vec::new();
    for i in existing.iter().filter(|i| i.role == Some(Role::Factory)) {
        match i.factory_index(&cfg.name) {
            Some(n) if n < cfg.factories_num => factory_ids.push((n, i.id.clone())),
            _ => extra.push(i.id.clone()),
        }
    }
    let stopped: Vec<String> = existing
        .iter()
        .filter(|i| matches!(i.state.as_str(), "stopped" | "stopping") && !extra.contains(&i.id))
        .map(|i| i.id.clone())
        .collect();
    aws.start(&stopped).await?;

    let mut amis = (cfg.orchestrator_ami.clone(), cfg.factory_ami.clone());
    let missing_factories: Vec<u32> = (0..cfg.factories_num)
        .filter(|n| !factory_ids.iter().any(|(i, _)| i == n))
        .collect();
    if (orchestrator_id.is_none() && amis.0.is_none())
        || (!missing_factories.is_empty() && amis.1.is_none())
    {
        let default = aws.default_ami().await?;
        amis.0.get_or_insert(default.clone());
        amis.1.get_or_insert(default);
    }
    if orchestrator_id.is_none() {
        let ami = amis.0.clone().unwrap_or_default();
        let id = aws
            .run_instance(cfg, Role::Orchestrator, &orchestrator_name, &ami)
            .await?;
        created.push(id.clone());
        orchestrator_id = Some(id);
    }
    for n in missing_factories {
        let name = format!("{}_factory_{n}", cfg.name);
        let ami = amis.1.clone().unwrap_or_default();
        let id = aws.run_instance(cfg, Role::Factory, &name, &ami).await?;
        created.push(id.clone());
        factory_ids.push((n, id));
    }
    factory_ids.sort();
    // Factories beyond `factories_num`: terminated with their alarms.
    aws.terminate(&extra).await?;
    let extra_alarms: Vec<String> = extra
        .iter()
        .map(|id| alarms::alarm_name(&cfg.name, id))
        .collect();
    aws.delete_alarms(extra_alarms).await?;

    let orchestrator_id = orchestrator_id.unwrap_or_default();
    let mut ids = vec![orchestrator_id.clone()];
    ids.extend(factory_ids.iter().map(|(_, id)| id.clone()));
    let running = aws
        .wait_running(&ids, limit("FLAMBE_AWS_RUNNING_TIMEOUT", 600))
        .await?;
    let find = |id: &str| running.iter().find(|i| i.id == id).cloned();
    let orchestrator = find(&orchestrator_id).unwrap_or_else(|| running[0].clone());
    let factories: Vec<Instance> = factory_ids.iter().filter_map(|(_, id)| find(id)).collect();
    let addrs: Vec<(String, String)> = std::iter::once(&orchestrator)
        .chain(&factories)
        .map(|i| (i.name.clone(), connect_addr(cfg, i)))
        .collect();
    if let Some((name, _)) = addrs.iter().find(|(_, a)| a.is_empty()) {
        return Err(AwsError::NoPublicAddress { name: name.clone() });
    }
    wait_for_ssh(&addrs, limit("FLAMBE_AWS_SSH_TIMEOUT", 300)).await?;
    Ok((orchestrator, factories, stopped, extra))
}

pub(crate) fn connect_addr(cfg: &AwsCluster, i: &Instance) -> String {
    let addr = if cfg.use_public {
        &i.public_ip
    } else {
        &i.private_ip
    };
    addr.clone().unwrap_or_default()
}

/// Terminate what this run created; the error says what was undone.
pub(crate) async fn rollback(aws: &Aws, created: &[String], failure: AwsError) -> AwsError {
    if created.is_empty() {
        return failure;
    }
    match aws.terminate(created).await {
        Ok(()) => AwsError::RolledBack {
            failure: Box::new(failure),
            terminated: created.join(", "),
        },
        Err(e) => AwsError::RollbackFailed {
            failure: Box::new(failure),
            created: created.join(", "),
            detail: e.to_string(),
        },
    }
}

/// The instances as the SSH cluster code sees them.
pub(crate) fn as_ssh_cluster(
    cfg: &AwsCluster,
    orchestrator: &Instance,
    factories: &[Instance],
) -> SshCluster {
    let addr = |i: &Instance| HostAddr {
        public: connect_addr(cfg, i),
        private: i.private_ip.clone().unwrap_or_default(),
    };
    SshCluster {
        name: cfg.name.clone(),
        orchestrator: addr(orchestrator),
        factories: factories.iter().map(addr).collect(),
        username: cfg.username.clone(),
        key: cfg.key.clone(),
        use_public: cfg.use_public,
        port: SSH_PORT,
        setup_cmds: cfg.setup_cmds.clone(),
    }
}

/// The cluster's local state names AWS as its provider (`cluster status`).
pub(crate) fn mark_provider(name: &str) {
    let files = flambe_cluster::ClusterFiles::new(cluster_dir(name));
    if let Ok(Some(mut state)) = files.load() {
        state.provider = flambe_cluster::Provider::Aws;
        let _ = files.save(&state);
    }
}
