//! The AWS provider's record of a cluster (`aws.json`), and `down`.

use crate::ec2::Aws;
use crate::error::AwsError;
use flambe_cluster::cluster_dir;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

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
