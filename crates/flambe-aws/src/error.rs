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
    #[error("{0}")]
    Cluster(#[from] ClusterError),
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
}

impl flambe_config::hint::Hint for AwsError {
    fn hint(&self) -> Option<String> {
        match self {
            AwsError::NotYours { .. } => Some("give this cluster another `name`".into()),
            AwsError::NoDefaultAmi { .. } => {
                Some("set `orchestrator_ami` and `factory_ami` in the cluster file".into())
            }
            _ => None,
        }
    }
}

/// How long instances just created may stay unknown to DescribeInstances.
pub(crate) const NOT_YET_VISIBLE: Duration = Duration::from_secs(120);

pub(crate) fn api<E: std::error::Error>(call: &str, e: E) -> AwsError {
    AwsError::Api {
        call: call.to_string(),
        detail: aws_sdk_ec2::error::DisplayErrorContext(e).to_string(),
    }
}
