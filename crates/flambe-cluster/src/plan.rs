//! What a cluster config describes, computed without touching any machine.

use flambe_config::{AwsCluster, SshCluster};
use serde::{Deserialize, Serialize};
use std::fmt;

/// What a host is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Runs the driver, the Ray head, the report site and TensorBoard.
    Orchestrator,
    /// Runs trials.
    Factory,
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::Orchestrator => "orchestrator",
            Role::Factory => "factory",
        })
    }
}

/// One machine of an SSH cluster.
#[derive(Debug, Clone, Serialize)]
pub struct HostPlan {
    /// Its name in the cluster.
    pub name: String,
    /// What it is for.
    pub role: Role,
    /// The address flambe connects to from here (per `use_public`).
    pub connect: String,
    /// The address the other hosts use to reach this one.
    pub private: String,
}

/// The orchestrator first, then the factories in config order.
pub fn ssh_hosts(c: &SshCluster) -> Vec<HostPlan> {
    let host = |name: String, role, addr: &flambe_config::HostAddr| HostPlan {
        name,
        role,
        connect: if c.use_public {
            addr.public.clone()
        } else {
            addr.private.clone()
        },
        private: addr.private.clone(),
    };
    std::iter::once(host(
        format!("{}_orchestrator", c.name),
        Role::Orchestrator,
        &c.orchestrator,
    ))
    .chain(
        c.factories
            .iter()
            .enumerate()
            .map(|(i, a)| host(format!("{}_factory_{i}", c.name), Role::Factory, a)),
    )
    .collect()
}

/// One EC2 instance an AWS cluster would run.
#[derive(Debug, Clone, Serialize)]
pub struct InstancePlan {
    /// Its name in the cluster.
    pub name: String,
    /// What it is for.
    pub role: Role,
    /// The EC2 instance type.
    pub instance_type: String,
    /// `None`: the documented default AMI for the region.
    pub ami: Option<String>,
    /// The alarm's idle hours before termination; `None`: never.
    pub idle_timeout_hours: Option<f64>,
    /// Every tag it gets.
    pub tags: Vec<(String, String)>,
}

/// Tags as Flambé writes them, so either tool finds the other's instances.
pub fn instance_tags(c: &AwsCluster, role: Role, name: &str) -> Vec<(String, String)> {
    let mut tags = vec![
        ("Name".to_string(), name.to_string()),
        ("creator".to_string(), c.creator.clone()),
        ("Purpose".to_string(), "flambe".to_string()),
        ("Cluster-Name".to_string(), c.name.clone()),
        ("Role".to_string(), role.to_string()),
    ];
    for (k, v) in &c.tags {
        if !tags.iter().any(|(existing, _)| existing == k) {
            tags.push((k.clone(), v.clone()));
        }
    }
    tags
}

/// The instances an `!AWSCluster` runs, orchestrator first.
pub fn aws_instances(c: &AwsCluster) -> Vec<InstancePlan> {
    let timeout = |h: f64| (h >= 0.0).then_some(h);
    let orchestrator_name = format!("{}_orchestrator", c.name);
    let mut out = vec![InstancePlan {
        tags: instance_tags(c, Role::Orchestrator, &orchestrator_name),
        name: orchestrator_name,
        role: Role::Orchestrator,
        instance_type: c.orchestrator_type.clone(),
        ami: c.orchestrator_ami.clone(),
        idle_timeout_hours: timeout(c.orchestrator_timeout),
    }];
    for i in 0..c.factories_num {
        let name = format!("{}_factory_{i}", c.name);
        out.push(InstancePlan {
            tags: instance_tags(c, Role::Factory, &name),
            name,
            role: Role::Factory,
            instance_type: c.factories_type.clone(),
            ami: c.factory_ami.clone(),
            idle_timeout_hours: timeout(c.factories_timeout),
        });
    }
    out
}
