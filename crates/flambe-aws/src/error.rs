//! What can go wrong with EC2 and CloudWatch, and how long instances may
//! stay invisible after they are created.

use flambe_cluster::ClusterError;
use std::time::Duration;

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
        "cluster `{name}` already has instances created by `{owner}` ({ids}); flambe never touches another user's instances"
    )]
    NotYours {
        name: String,
        owner: String,
        ids: String,
    },
    #[error("no default AMI found in {region} (Ubuntu 24.04 from Canonical)")]
    NoDefaultAmi { region: String },
    #[error(
        "{failure}\nrolled back: terminated {terminated}, created by this run; instances that existed before were left as they were"
    )]
    RolledBack {
        #[source]
        failure: Box<AwsError>,
        terminated: String,
    },
    #[error("{failure}\nthen terminating {created} (created by this run) failed too: {detail}")]
    RollbackFailed {
        failure: Box<AwsError>,
        created: String,
        detail: String,
    },
    #[error("{field}: {problem}")]
    IdleTimeout {
        field: &'static str,
        problem: IdleTimeoutError,
    },
    #[error("{name} has no public address (its subnet gives none)")]
    NoPublicAddress { name: String },
    #[error("{0}")]
    Cluster(#[from] ClusterError),
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
}

impl flambe_config::Hint for AwsError {
    fn hint(&self) -> Option<String> {
        match self {
            AwsError::NotYours { .. } => Some("give this cluster another `name`".into()),
            AwsError::NoDefaultAmi { .. } => {
                Some("set `orchestrator_ami` and `factory_ami` in the cluster file".into())
            }
            AwsError::RollbackFailed { .. } => Some("terminate them in the EC2 console".into()),
            AwsError::IdleTimeout {
                problem: IdleTimeoutError::BeyondCloudWatch { .. },
                ..
            } => Some("use at most 168, or -1 for no automatic shutdown".into()),
            AwsError::NoPublicAddress { .. } => Some(
                "use a subnet that maps public addresses, or `use_public: false` from inside the VPC"
                    .into(),
            ),
            _ => None,
        }
    }
}

/// An idle timeout (`orchestrator_timeout`, `factories_timeout`) that no
/// CloudWatch alarm can watch.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum IdleTimeoutError {
    #[error(
        "{hours} hours is not a timeout: use hours ≥ 0 (0: as soon as CPU goes down) or -1 (never)"
    )]
    NotATimeout { hours: f64 },
    #[error(
        "{hours} hours of idleness cannot be watched by a CloudWatch alarm, which looks back at most 7 days (168 hours)"
    )]
    BeyondCloudWatch { hours: f64 },
}

/// How long instances just created may stay unknown to DescribeInstances.
pub(crate) const NOT_YET_VISIBLE: Duration = Duration::from_secs(120);

pub(crate) fn api<E: std::error::Error>(call: &str, e: E) -> AwsError {
    AwsError::Api {
        call: call.to_string(),
        detail: aws_sdk_ec2::error::DisplayErrorContext(e).to_string(),
    }
}
