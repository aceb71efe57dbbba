//! # flambe-aws: `!AWSCluster` on EC2
//!
//! The only crate that links the AWS SDK (it takes minutes and gigabytes to
//! build: nothing else rebuilds it). It finds or creates the cluster's
//! instances, waits for them and their SSH, and hands them to the SSH
//! cluster code (`flambe_cluster::up`), which does everything else exactly
//! as for machines the user already has. Idle instances terminate
//! themselves through CloudWatch alarms ([`alarms`]).
//!
//! Credentials and region come the standard way (environment, profile,
//! `region_name`), and so does the endpoint: `AWS_ENDPOINT_URL` points the
//! SDK at a local moto server in the tests.

pub mod alarms;
pub mod provider;

pub use provider::{AwsError, AwsUp, down, up};
