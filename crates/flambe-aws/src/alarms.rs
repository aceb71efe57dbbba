//! Idle alarms: how `orchestrator_timeout` / `factories_timeout` hours of low
//! CPU become a CloudWatch alarm that terminates the instance.
//!
//! Flambé used 1-minute periods (blind under EC2's default 5-minute basic
//! monitoring: four of five periods have no data) and could not express
//! more than a day. Here:
//! - the period follows the instance's monitoring: 300 s for basic
//!   monitoring (what flambe launches), 60 s for detailed; timeouts over a
//!   day use 1-hour periods, because CloudWatch limits period × evaluations
//!   to one day below 1-hour periods and to seven days otherwise;
//! - the alarm fires when *every* period of the window is idle (datapoints
//!   to alarm = evaluation periods), idle meaning the CPU's *maximum* in the
//!   period stayed under [`IDLE_CPU_PERCENT`] (a short burst of work is work);
//! - missing data is `notBreaching`: a booting or stopped instance, which
//!   reports nothing, never counts as idle;
//! - a timeout is rounded up to whole periods; one over seven days is
//!   refused with a message, before any API call.
//!
//! Resetting the idle clock: the alarm watches `MAX([cpu, activity])`, where
//! `activity` is flambe's own metric (`Flambe/Activity`, `Runs`, per
//! instance) that every `flambe` run publishes at 100 for each instance it
//! uses. One such point breaks the run of idle periods, so the window starts
//! over, without faking the instance's real `CPUUtilization` (which Flambé
//! did, by publishing 100% CPU points): dashboards and other alarms keep the
//! truth, and the resets are visible as what they are.

use crate::error::IdleTimeoutError;

/// CPU (maximum over a period, percent) below which a period is idle.
pub const IDLE_CPU_PERCENT: f64 = 5.0;
pub const ACTIVITY_NAMESPACE: &str = "Flambe/Activity";
pub const ACTIVITY_METRIC: &str = "Runs";

const DAY: u64 = 86_400;
const WEEK: u64 = 7 * DAY;
const HOUR: u64 = 3_600;

/// EC2 monitoring levels: how often `CPUUtilization` has a point.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Monitoring {
    /// Every 5 minutes (the default, free).
    Basic,
    /// Every minute (paid). Instances launch with basic monitoring today;
    /// the alarm plan already handles this, for when a config can ask for it.
    #[cfg_attr(
        not(test),
        expect(dead_code, reason = "no config asks for detailed monitoring yet")
    )]
    Detailed,
}

impl Monitoring {
    pub fn resolution_secs(self) -> u64 {
        match self {
            Monitoring::Basic => 300,
            Monitoring::Detailed => 60,
        }
    }
}

/// What the alarm of one instance looks like.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AlarmPlan {
    pub period_secs: u64,
    pub evaluation_periods: u64,
}

impl AlarmPlan {
    /// The idle time after which the alarm fires, in seconds.
    pub fn window_secs(&self) -> u64 {
        self.period_secs * self.evaluation_periods
    }
}

/// The alarm for `hours` of idleness: `Ok(None)` for -1 (no alarm), an error
/// message for a timeout CloudWatch cannot express.
pub fn plan(hours: f64, monitoring: Monitoring) -> Result<Option<AlarmPlan>, IdleTimeoutError> {
    if hours == -1.0 {
        return Ok(None);
    }
    if !hours.is_finite() || hours < 0.0 {
        return Err(IdleTimeoutError::NotATimeout { hours });
    }
    let resolution = monitoring.resolution_secs();
    let wanted = (hours * HOUR as f64).ceil() as u64;
    if wanted > WEEK {
        return Err(IdleTimeoutError::BeyondCloudWatch { hours });
    }
    let period = if wanted <= DAY { resolution } else { HOUR };
    let evaluations = wanted.div_ceil(period).max(1);
    Ok(Some(AlarmPlan {
        period_secs: period,
        evaluation_periods: evaluations,
    }))
}

/// The alarm's name for an instance of a cluster.
pub fn alarm_name(cluster: &str, instance_id: &str) -> String {
    format!("{}{instance_id}", alarm_prefix(cluster))
}

/// Every alarm of a cluster starts with this.
pub fn alarm_prefix(cluster: &str) -> String {
    format!("flambe-{cluster}-")
}

/// The EC2 action that terminates the instance the alarm watches.
pub fn terminate_action(region: &str) -> String {
    format!("arn:aws:automate:{region}:ec2:terminate")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(hours: f64) -> AlarmPlan {
        plan(hours, Monitoring::Basic).unwrap().unwrap()
    }

    #[test]
    fn periods_follow_monitoring_and_the_limits_of_cloudwatch() {
        assert_eq!(plan(-1.0, Monitoring::Basic), Ok(None));
        // 0: the first idle period (5 minutes under basic monitoring).
        assert_eq!(
            p(0.0),
            AlarmPlan {
                period_secs: 300,
                evaluation_periods: 1
            }
        );
        assert_eq!(
            p(1.0),
            AlarmPlan {
                period_secs: 300,
                evaluation_periods: 12
            }
        );
        assert_eq!(
            plan(1.0, Monitoring::Detailed).unwrap().unwrap(),
            AlarmPlan {
                period_secs: 60,
                evaluation_periods: 60
            }
        );
        // A day fits 5-minute periods exactly; more needs 1-hour periods.
        assert_eq!(
            p(24.0),
            AlarmPlan {
                period_secs: 300,
                evaluation_periods: 288
            }
        );
        assert_eq!(
            p(36.0),
            AlarmPlan {
                period_secs: 3600,
                evaluation_periods: 36
            }
        );
        assert_eq!(p(168.0).window_secs(), WEEK);
        // Rounded up to whole periods.
        assert_eq!(p(0.1).window_secs(), 600);
        let err = plan(200.0, Monitoring::Basic).unwrap_err();
        assert!(err.to_string().contains("at most 7 days"), "{err}");
        assert!(plan(-2.0, Monitoring::Basic).is_err());
    }
}
