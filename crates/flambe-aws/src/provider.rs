//! Instances of an `!AWSCluster`: find by tag, create, start, resize, roll
//! back, alarm, and hand over to the SSH cluster code.

use crate::alarms::{self, AlarmPlan, Monitoring};
use aws_sdk_cloudwatch::types::{
    ComparisonOperator, Dimension, Metric, MetricDataQuery, MetricDatum, MetricStat, StandardUnit,
};
use aws_sdk_ec2::types::{
    BlockDeviceMapping, EbsBlockDevice, Filter, Instance as Ec2Instance,
    InstanceNetworkInterfaceSpecification, InstanceType, Placement, ResourceType,
    RunInstancesMonitoringEnabled, Tag, TagSpecification, Tenancy, VolumeType,
};
use flambe_cluster::{ClusterError, Role, UpReport, home::cluster_dir};
use flambe_config::{AwsCluster, HostAddr, SshCluster};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Canonical's account: the owner of the default AMIs (Ubuntu 24.04 LTS).
const UBUNTU_OWNER: &str = "099720109477";
const UBUNTU_NAME: &str = "ubuntu/images/hvm-ssd-gp3/ubuntu-noble-24.04-amd64-server-*";
/// States an instance of a live cluster can be in.
const LIVE_STATES: &[&str] = &["pending", "running", "stopping", "stopped"];
const SSH_PORT: u16 = 22;

#[derive(Debug, thiserror::Error)]
pub enum AwsError {
    #[error(
        "no AWS region: set `region_name` in the cluster file, AWS_REGION, or a region in your AWS profile"
    )]
    NoRegion,
    #[error("{field}: {message}")]
    Timeout {
        field: &'static str,
        message: String,
    },
    #[error("AWS {call} failed: {detail}")]
    Api { call: String, detail: String },
    #[error(
        "cluster `{name}` already has instances created by `{owner}` ({ids}); flambe never touches another user's instances\nhint: give this cluster another `name`"
    )]
    NotYours {
        name: String,
        owner: String,
        ids: String,
    },
    #[error(
        "no default AMI found in {region} (Ubuntu 24.04 from Canonical)\nhint: set `orchestrator_ami` and `factory_ami` in the cluster file"
    )]
    NoDefaultAmi { region: String },
    #[error(
        "{failure}\nrolled back: terminated {terminated}, created by this run; instances that existed before were left as they were"
    )]
    RolledBack { failure: String, terminated: String },
    #[error("{0}")]
    Cluster(#[from] ClusterError),
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
}

/// How long instances just created may stay unknown to DescribeInstances.
const NOT_YET_VISIBLE: Duration = Duration::from_secs(120);

fn api<E: std::error::Error>(call: &str, e: E) -> AwsError {
    AwsError::Api {
        call: call.to_string(),
        detail: aws_sdk_ec2::error::DisplayErrorContext(e).to_string(),
    }
}

/// What `~/.flambe/clusters/NAME/aws.json` keeps, so that `cluster down`
/// knows where the instances are.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AwsRecord {
    pub region: String,
    pub creator: String,
}

/// Where the AWS provider keeps its record of a cluster.
pub fn record_path(name: &str) -> PathBuf {
    cluster_dir(name).join("aws.json")
}

pub struct Aws {
    ec2: aws_sdk_ec2::Client,
    cloudwatch: aws_sdk_cloudwatch::Client,
    pub region: String,
}

impl Aws {
    pub async fn connect(region: Option<&str>) -> Result<Aws, AwsError> {
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
        if let Some(r) = region {
            loader = loader.region(aws_config::Region::new(r.to_string()));
        }
        let conf = loader.load().await;
        let region = conf.region().ok_or(AwsError::NoRegion)?.to_string();
        Ok(Aws {
            ec2: aws_sdk_ec2::Client::new(&conf),
            cloudwatch: aws_sdk_cloudwatch::Client::new(&conf),
            region,
        })
    }
}

/// One instance of the cluster, as EC2 describes it.
#[derive(Debug, Clone)]
pub struct Instance {
    pub id: String,
    pub name: String,
    pub role: Option<Role>,
    pub creator: String,
    pub state: String,
    pub private_ip: Option<String>,
    pub public_ip: Option<String>,
}

impl Instance {
    fn from_ec2(i: &Ec2Instance) -> Instance {
        let tag = |k: &str| {
            i.tags()
                .iter()
                .find(|t| t.key() == Some(k))
                .and_then(|t| t.value())
                .unwrap_or("")
                .to_string()
        };
        Instance {
            id: i.instance_id().unwrap_or("").to_string(),
            name: tag("Name"),
            role: match tag("Role").as_str() {
                "orchestrator" => Some(Role::Orchestrator),
                "factory" => Some(Role::Factory),
                _ => None,
            },
            creator: tag("creator"),
            state: i
                .state()
                .and_then(|s| s.name())
                .map(|n| n.as_str().to_string())
                .unwrap_or_default(),
            private_ip: i.private_ip_address().map(str::to_string),
            public_ip: i.public_ip_address().map(str::to_string),
        }
    }

    /// The factory's index from its name (`NAME_factory_3` → 3).
    fn factory_index(&self, cluster: &str) -> Option<u32> {
        self.name
            .strip_prefix(&format!("{cluster}_factory_"))
            .and_then(|i| i.parse().ok())
    }
}

impl Aws {
    /// The live instances tagged as this cluster's (any creator).
    pub async fn cluster_instances(&self, cluster: &str) -> Result<Vec<Instance>, AwsError> {
        let filter = |name: &str, values: &[&str]| {
            Filter::builder()
                .name(name)
                .set_values(Some(values.iter().map(|v| v.to_string()).collect()))
                .build()
        };
        let mut out = Vec::new();
        let mut pages = self
            .ec2
            .describe_instances()
            .filters(filter("tag:Cluster-Name", &[cluster]))
            .filters(filter("tag:Purpose", &["flambe"]))
            .filters(filter("instance-state-name", LIVE_STATES))
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| api("DescribeInstances", e))?;
            for r in page.reservations() {
                out.extend(r.instances().iter().map(Instance::from_ec2));
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    async fn default_ami(&self) -> Result<String, AwsError> {
        let images = self
            .ec2
            .describe_images()
            .owners(UBUNTU_OWNER)
            .filters(Filter::builder().name("name").values(UBUNTU_NAME).build())
            .filters(Filter::builder().name("state").values("available").build())
            .send()
            .await
            .map_err(|e| api("DescribeImages", e))?;
        images
            .images()
            .iter()
            .max_by_key(|i| i.creation_date().unwrap_or("").to_string())
            .and_then(|i| i.image_id())
            .map(str::to_string)
            .ok_or_else(|| AwsError::NoDefaultAmi {
                region: self.region.clone(),
            })
    }

    /// The AMI's root device (`/dev/sda1` on Ubuntu, `/dev/xvda` on Amazon
    /// Linux), so that `volume_size` resizes the root volume.
    async fn root_device(&self, ami: &str) -> String {
        let described = self.ec2.describe_images().image_ids(ami).send().await;
        described
            .ok()
            .and_then(|d| {
                d.images()
                    .first()
                    .and_then(|i| i.root_device_name().map(str::to_string))
            })
            .unwrap_or_else(|| "/dev/sda1".to_string())
    }

    async fn run_instance(
        &self,
        cfg: &AwsCluster,
        role: Role,
        name: &str,
        ami: &str,
    ) -> Result<String, AwsError> {
        let instance_type = match role {
            Role::Orchestrator => &cfg.orchestrator_type,
            Role::Factory => &cfg.factories_type,
        };
        let mut tags = TagSpecification::builder().resource_type(ResourceType::Instance);
        for (k, v) in flambe_cluster::plan::instance_tags(cfg, role, name) {
            tags = tags.tags(Tag::builder().key(k).value(v).build());
        }
        let volume = BlockDeviceMapping::builder()
            .device_name(self.root_device(ami).await)
            .ebs(
                EbsBlockDevice::builder()
                    .volume_size(cfg.volume_size as i32)
                    .volume_type(VolumeType::from(cfg.volume_type.as_str()))
                    .delete_on_termination(true)
                    .build(),
            )
            .build();
        let monitoring = RunInstancesMonitoringEnabled::builder()
            .enabled(false)
            .build();
        let mut req = self
            .ec2
            .run_instances()
            .image_id(ami)
            .instance_type(InstanceType::from(instance_type.as_str()))
            .min_count(1)
            .max_count(1)
            .key_name(&cfg.key_name)
            .block_device_mappings(volume)
            .tag_specifications(tags.build())
            .monitoring(monitoring);
        if cfg.dedicated {
            req = req.placement(Placement::builder().tenancy(Tenancy::Dedicated).build());
        }
        req = if cfg.use_public {
            // A public address needs the interface spelled out.
            req.network_interfaces(
                InstanceNetworkInterfaceSpecification::builder()
                    .device_index(0)
                    .subnet_id(&cfg.subnet_id)
                    .groups(&cfg.security_group)
                    .associate_public_ip_address(true)
                    .build(),
            )
        } else {
            req.subnet_id(&cfg.subnet_id)
                .security_group_ids(&cfg.security_group)
        };
        let out = req
            .send()
            .await
            .map_err(|e| api(&format!("RunInstances ({name})"), e))?;
        let id = out.instances().first().and_then(|i| i.instance_id());
        tracing::info!(host = %name, instance = ?id, %ami, %instance_type, "RunInstances");
        id.map(str::to_string).ok_or_else(|| AwsError::Api {
            call: format!("RunInstances ({name})"),
            detail: "no instance in the answer".into(),
        })
    }

    async fn terminate(&self, ids: &[String]) -> Result<(), AwsError> {
        if ids.is_empty() {
            return Ok(());
        }
        tracing::info!(instances = ?ids, "TerminateInstances");
        self.ec2
            .terminate_instances()
            .set_instance_ids(Some(ids.to_vec()))
            .send()
            .await
            .map_err(|e| api("TerminateInstances", e))?;
        Ok(())
    }

    async fn start(&self, ids: &[String]) -> Result<(), AwsError> {
        if ids.is_empty() {
            return Ok(());
        }
        self.ec2
            .start_instances()
            .set_instance_ids(Some(ids.to_vec()))
            .send()
            .await
            .map_err(|e| api("StartInstances", e))?;
        Ok(())
    }

    /// Wait until every instance in `ids` is running with its addresses.
    async fn wait_running(
        &self,
        ids: &[String],
        limit: Duration,
    ) -> Result<Vec<Instance>, AwsError> {
        let deadline = Instant::now() + limit;
        let unseen_until = Instant::now() + NOT_YET_VISIBLE;
        loop {
            let answer = self
                .ec2
                .describe_instances()
                .set_instance_ids(Some(ids.to_vec()))
                .send()
                .await;
            let out = match answer {
                Ok(out) => out,
                // EC2 is eventually consistent: an instance RunInstances just
                // made can be unknown to DescribeInstances for a while (AWS
                // documents it). Not yet visible is not gone: wait, bounded.
                Err(e)
                    if e.as_service_error().and_then(|s| s.meta().code())
                        == Some("InvalidInstanceID.NotFound")
                        && Instant::now() < unseen_until.min(deadline) =>
                {
                    tracing::info!(instances = ?ids, "not visible to DescribeInstances yet; waiting");
                    tokio::time::sleep(Duration::from_secs(2)).await;
                    continue;
                }
                Err(e) => return Err(api("DescribeInstances", e)),
            };
            let all: Vec<Instance> = out
                .reservations()
                .iter()
                .flat_map(|r| r.instances().iter().map(Instance::from_ec2))
                .collect();
            if all.len() == ids.len()
                && all
                    .iter()
                    .all(|i| i.state == "running" && i.private_ip.is_some())
            {
                return Ok(all);
            }
            if Instant::now() > deadline {
                let waiting: Vec<String> = all
                    .iter()
                    .filter(|i| i.state != "running")
                    .map(|i| format!("{} ({})", i.id, i.state))
                    .collect();
                return Err(AwsError::Timeout {
                    field: "instances",
                    message: format!(
                        "not running after {} s: {}",
                        limit.as_secs(),
                        waiting.join(", ")
                    ),
                });
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    }

    /// The alarm of one instance (or none, deleting an old one).
    async fn set_alarm(
        &self,
        cluster: &str,
        instance: &str,
        plan: Option<AlarmPlan>,
    ) -> Result<(), AwsError> {
        let name = alarms::alarm_name(cluster, instance);
        let Some(plan) = plan else {
            self.cloudwatch
                .delete_alarms()
                .alarm_names(&name)
                .send()
                .await
                .map_err(|e| api("DeleteAlarms", e))?;
            return Ok(());
        };
        let dimension = Dimension::builder()
            .name("InstanceId")
            .value(instance)
            .build();
        let stat = |namespace: &str, metric: &str| {
            MetricStat::builder()
                .metric(
                    Metric::builder()
                        .namespace(namespace)
                        .metric_name(metric)
                        .dimensions(dimension.clone())
                        .build(),
                )
                .period(plan.period_secs as i32)
                .stat("Maximum")
                .build()
        };
        self.cloudwatch
            .put_metric_alarm()
            .alarm_name(&name)
            .alarm_description(format!(
                "flambe: terminate {instance} of cluster {cluster} after {} s of CPU under {}% (missing data is not idle)",
                plan.window_secs(),
                alarms::IDLE_CPU_PERCENT
            ))
            .actions_enabled(true)
            .alarm_actions(alarms::terminate_action(&self.region))
            .metrics(
                MetricDataQuery::builder()
                    .id("cpu")
                    .metric_stat(stat("AWS/EC2", "CPUUtilization"))
                    .return_data(false)
                    .build(),
            )
            .metrics(
                MetricDataQuery::builder()
                    .id("activity")
                    .metric_stat(stat(alarms::ACTIVITY_NAMESPACE, alarms::ACTIVITY_METRIC))
                    .return_data(false)
                    .build(),
            )
            .metrics(
                MetricDataQuery::builder()
                    .id("busy")
                    .expression("MAX([cpu, activity])")
                    .label("CPU, or 100 when flambe last ran")
                    .return_data(true)
                    .build(),
            )
            .evaluation_periods(plan.evaluation_periods as i32)
            .datapoints_to_alarm(plan.evaluation_periods as i32)
            .threshold(alarms::IDLE_CPU_PERCENT)
            .comparison_operator(ComparisonOperator::LessThanThreshold)
            .treat_missing_data("notBreaching")
            .send()
            .await
            .map_err(|e| api(&format!("PutMetricAlarm ({name})"), e))?;
        Ok(())
    }

    /// One activity point per instance: the idle clocks start over.
    async fn mark_active(&self, instances: &[String]) -> Result<(), AwsError> {
        for id in instances {
            self.cloudwatch
                .put_metric_data()
                .namespace(alarms::ACTIVITY_NAMESPACE)
                .metric_data(
                    MetricDatum::builder()
                        .metric_name(alarms::ACTIVITY_METRIC)
                        .dimensions(Dimension::builder().name("InstanceId").value(id).build())
                        .value(100.0)
                        .unit(StandardUnit::Percent)
                        .build(),
                )
                .send()
                .await
                .map_err(|e| api("PutMetricData", e))?;
        }
        Ok(())
    }

    /// Names of the cluster's alarms.
    pub async fn cluster_alarms(&self, cluster: &str) -> Result<Vec<String>, AwsError> {
        let out = self
            .cloudwatch
            .describe_alarms()
            .alarm_name_prefix(alarms::alarm_prefix(cluster))
            .send()
            .await
            .map_err(|e| api("DescribeAlarms", e))?;
        Ok(out
            .metric_alarms()
            .iter()
            .filter_map(|a| a.alarm_name().map(str::to_string))
            .collect())
    }

    async fn delete_alarms(&self, names: Vec<String>) -> Result<(), AwsError> {
        // DeleteAlarms takes at most 100 names per call.
        for chunk in names.chunks(100) {
            self.cloudwatch
                .delete_alarms()
                .set_alarm_names(Some(chunk.to_vec()))
                .send()
                .await
                .map_err(|e| api("DeleteAlarms", e))?;
        }
        Ok(())
    }
}

/// How long instances get to run, then to answer on SSH, before this run
/// gives up and rolls back (seconds; environment overrides for slow
/// regions and for the tests).
fn limit(var: &str, default_secs: u64) -> Duration {
    Duration::from_secs(
        std::env::var(var)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default_secs),
    )
}

/// Whether an SSH server answers at `addr`: its banner (`SSH-2.0-…`), not
/// just an open port (a half-booted instance or a middlebox may accept TCP).
async fn ssh_answers(addr: &str) -> bool {
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

async fn wait_for_ssh(addrs: &[(String, String)], limit: Duration) -> Result<(), AwsError> {
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
fn alarm_plans(cfg: &AwsCluster) -> Result<(Option<AlarmPlan>, Option<AlarmPlan>), AwsError> {
    let check = |field: &'static str, hours: f64| {
        alarms::plan(hours, Monitoring::Basic)
            .map_err(|message| AwsError::Timeout { field, message })
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

type Brought = (Instance, Vec<Instance>, Vec<String>, Vec<String>);

/// Everything up to "every instance answers on SSH"; `created` collects
/// what this run created, for the rollback.
async fn bring_up(
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
        return Err(AwsError::Timeout {
            field: "use_public",
            message: format!(
                "{name} has no public address (its subnet gives none)\nhint: use a subnet that maps public addresses, or `use_public: false` from inside the VPC"
            ),
        });
    }
    wait_for_ssh(&addrs, limit("FLAMBE_AWS_SSH_TIMEOUT", 300)).await?;
    Ok((orchestrator, factories, stopped, extra))
}

fn connect_addr(cfg: &AwsCluster, i: &Instance) -> String {
    let addr = if cfg.use_public {
        &i.public_ip
    } else {
        &i.private_ip
    };
    addr.clone().unwrap_or_default()
}

/// Terminate what this run created; the error says what was undone.
async fn rollback(aws: &Aws, created: &[String], failure: AwsError) -> AwsError {
    if created.is_empty() {
        return failure;
    }
    match aws.terminate(created).await {
        Ok(()) => AwsError::RolledBack {
            failure: failure.to_string(),
            terminated: created.join(", "),
        },
        Err(e) => AwsError::Api {
            call: "rollback".into(),
            detail: format!(
                "{failure}\nthen terminating {} (created by this run) failed too: {e}\nhint: terminate them in the EC2 console",
                created.join(", ")
            ),
        },
    }
}

/// The instances as the SSH cluster code sees them.
fn as_ssh_cluster(cfg: &AwsCluster, orchestrator: &Instance, factories: &[Instance]) -> SshCluster {
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
fn mark_provider(name: &str) {
    let files = flambe_cluster::state::ClusterFiles::new(cluster_dir(name));
    if let Ok(Some(mut state)) = files.load() {
        state.provider = flambe_cluster::state::Provider::Aws;
        let _ = files.save(&state);
    }
}

/// Whether `name` is an AWS cluster known here.
pub fn is_aws_cluster(name: &str) -> bool {
    record_path(name).exists()
}

/// What `down` removed.
#[derive(Debug)]
pub struct AwsDown {
    pub terminated: Vec<String>,
    pub alarms: Vec<String>,
}

/// Terminate the cluster's instances (this creator's only), delete its
/// alarms and its local state (cluster key included).
pub async fn down(name: &str) -> Result<AwsDown, AwsError> {
    let text = std::fs::read_to_string(record_path(name)).map_err(|source| AwsError::Io {
        what: format!(
            "no AWS cluster `{name}` known here ({})",
            record_path(name).display()
        ),
        source,
    })?;
    let record: AwsRecord = serde_json::from_str(&text).map_err(|e| AwsError::Io {
        what: format!("cannot read {}", record_path(name).display()),
        source: std::io::Error::other(e),
    })?;
    let aws = Aws::connect(Some(&record.region)).await?;
    let ids: Vec<String> = aws
        .cluster_instances(name)
        .await?
        .into_iter()
        .filter(|i| i.creator == record.creator)
        .map(|i| i.id)
        .collect();
    aws.terminate(&ids).await?;
    let alarm_names = aws.cluster_alarms(name).await?;
    aws.delete_alarms(alarm_names.clone()).await?;
    let dir = cluster_dir(name);
    std::fs::remove_dir_all(&dir).map_err(|source| AwsError::Io {
        what: format!("cannot remove {}", dir.display()),
        source,
    })?;
    Ok(AwsDown {
        terminated: ids,
        alarms: alarm_names,
    })
}
