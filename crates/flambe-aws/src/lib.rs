//! # flambe-aws: `!AWSCluster` on EC2
//!
//! The only crate that links the AWS SDK (it takes minutes and gigabytes to
//! build: nothing else rebuilds it). It finds or creates the cluster's
//! instances, waits for them and their SSH, and hands them to the SSH
//! cluster code (`flambe_cluster::up`), which does everything else exactly
//! as for machines the user already has. Idle instances terminate
//! themselves through CloudWatch alarms (`alarms`).
//!
//! Credentials and region come the standard way (environment, profile,
//! `region_name`), and so does the endpoint: `AWS_ENDPOINT_URL` points the
//! SDK at a local moto server in the tests.
//!
//! - `ec2`: the cluster's instances (find by tag, create, start, wait, terminate);
//! - `cloudwatch`: the idle alarms, and marking instances active;
//! - `up`: bring-up with rollback of what this run created;
//! - `down`: the provider's record (`aws.json`) and `down`;
//! - `error`: [`AwsError`], with the hint for each kind.
//!
//! Modules are private; what other crates use is re-exported here.

mod alarms;
mod cloudwatch;
mod down;
mod ec2;
mod error;
mod up;

pub use down::{AwsDown, AwsRecord, down, is_aws_cluster, record_path};
pub use ec2::{Aws, Instance};
pub use error::{AwsError, IdleTimeoutError};
pub use up::{AwsUp, up};
