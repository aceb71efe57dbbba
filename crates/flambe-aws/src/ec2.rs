//! The cluster's EC2 instances: find them by tag, create, start, wait for,
//! terminate.

use crate::error::{AwsError, NOT_YET_VISIBLE, api};
use aws_sdk_ec2::types::{
    BlockDeviceMapping, EbsBlockDevice, Filter, Instance as Ec2Instance,
    InstanceNetworkInterfaceSpecification, InstanceType, Placement, ResourceType,
    RunInstancesMonitoringEnabled, Tag, TagSpecification, Tenancy, VolumeType,
};
use flambe_cluster::Role;
use flambe_config::AwsCluster;
use std::time::{Duration, Instant};

/// Canonical's account: the owner of the default AMIs (Ubuntu 24.04 LTS).
pub(crate) const UBUNTU_OWNER: &str = "099720109477";
pub(crate) const UBUNTU_NAME: &str = "ubuntu/images/hvm-ssd-gp3/ubuntu-noble-24.04-amd64-server-*";
/// States an instance of a live cluster can be in.
pub(crate) const LIVE_STATES: &[&str] = &["pending", "running", "stopping", "stopped"];
pub(crate) const SSH_PORT: u16 = 22;

pub struct Aws {
    pub(crate) ec2: aws_sdk_ec2::Client,
    pub(crate) cloudwatch: aws_sdk_cloudwatch::Client,
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
    pub(crate) fn from_ec2(i: &Ec2Instance) -> Instance {
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
    pub(crate) fn factory_index(&self, cluster: &str) -> Option<u32> {
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

    pub(crate) async fn default_ami(&self) -> Result<String, AwsError> {
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
    pub(crate) async fn root_device(&self, ami: &str) -> String {
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

    pub(crate) async fn run_instance(
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
        for (k, v) in flambe_cluster::instance_tags(cfg, role, name) {
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

    pub(crate) async fn terminate(&self, ids: &[String]) -> Result<(), AwsError> {
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

    pub(crate) async fn start(&self, ids: &[String]) -> Result<(), AwsError> {
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
    pub(crate) async fn wait_running(
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
}
