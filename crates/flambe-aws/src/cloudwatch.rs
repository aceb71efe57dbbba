//! The instances' idle alarms in CloudWatch (see `alarms` for what they
//! measure), and marking instances active.

use crate::alarms::{self, AlarmPlan};
use crate::ec2::Aws;
use crate::error::{AwsError, api};
use aws_sdk_cloudwatch::types::{
    ComparisonOperator, Dimension, Metric, MetricDataQuery, MetricDatum, MetricStat, StandardUnit,
};

impl Aws {
    /// The alarm of one instance (or none, deleting an old one).
    pub(crate) async fn set_alarm(
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
    pub(crate) async fn mark_active(&self, instances: &[String]) -> Result<(), AwsError> {
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

    pub(crate) async fn delete_alarms(&self, names: Vec<String>) -> Result<(), AwsError> {
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
