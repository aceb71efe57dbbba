//! How many slots of a shape the Ray cluster can run at once, from its
//! nodes' total CPUs and GPUs (the dashboard's `/api/cluster_status`).
//!
//! A slot job that cannot run waits in Ray's queue and still costs the head
//! a job supervisor; when the queue of trials drains, such jobs must be
//! stopped, and Ray takes seconds over stopping a waiting job (the next
//! experiment's first slot waited behind them). So the pool submits no more
//! slots of a shape than the cluster holds; where the status cannot be read,
//! it falls back to doubling rounds.

use serde_json::Value;

/// Each node's total CPUs and GPUs.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Capacity {
    nodes: Vec<(f64, f64)>,
}

impl Capacity {
    /// The nodes of a `/api/cluster_status` answer (`usageByNode`: each
    /// resource as `[used, total]`).
    pub(crate) fn parse(status: &Value) -> Option<Capacity> {
        let by_node =
            status["data"]["clusterStatus"]["loadMetricsReport"]["usageByNode"].as_object()?;
        let total = |node: &Value, resource: &str| node[resource][1].as_f64().unwrap_or(0.0);
        Some(Capacity {
            nodes: by_node
                .values()
                .map(|node| (total(node, "CPU"), total(node, "GPU")))
                .collect(),
        })
    }

    /// How many jobs of `cpus` and `gpus` fit on the cluster at once;
    /// `None` where nothing bounds them (a job that asks for nothing).
    pub(crate) fn slots(&self, cpus: f64, gpus: u32) -> Option<usize> {
        if cpus <= 0.0 && gpus == 0 {
            return None;
        }
        // A fraction of a CPU is counted as Ray counts it, to 1/10,000.
        let fits = |total: f64, each: f64| ((total + 1e-4) / each).floor() as usize;
        Some(
            self.nodes
                .iter()
                .map(|&(node_cpus, node_gpus)| {
                    let by_cpu = if cpus > 0.0 {
                        fits(node_cpus, cpus)
                    } else {
                        usize::MAX
                    };
                    let by_gpu = if gpus > 0 {
                        fits(node_gpus, f64::from(gpus))
                    } else {
                        usize::MAX
                    };
                    by_cpu.min(by_gpu)
                })
                .sum(),
        )
    }
}

/// The cluster's capacity, or `None` where the dashboard does not say.
pub(crate) async fn fetch(client: &reqwest::Client, base: &str) -> Option<Capacity> {
    let resp = client
        .get(format!("{base}/api/cluster_status"))
        .send()
        .await
        .ok()?;
    Capacity::parse(&resp.json::<Value>().await.ok()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn slots_fit_per_node_by_cpus_and_gpus() {
        let status = json!({"data": {"clusterStatus": {"loadMetricsReport": {"usageByNode": {
            "head": {"orchestrator": [0.0, 1.0], "memory": [0.0, 1.0e9]},
            "a": {"CPU": [1.0, 2.0], "memory": [0.0, 1.0e9]},
            "b": {"CPU": [0.0, 8.0], "GPU": [0.0, 2.0]},
        }}}}});
        let capacity = Capacity::parse(&status).unwrap();
        assert_eq!(capacity.slots(1.0, 0), Some(10));
        assert_eq!(capacity.slots(0.5, 0), Some(20));
        assert_eq!(capacity.slots(3.0, 0), Some(2));
        assert_eq!(capacity.slots(1.0, 1), Some(2));
        assert_eq!(capacity.slots(0.0, 2), Some(1));
        assert_eq!(capacity.slots(0.0, 3), Some(0));
        assert_eq!(capacity.slots(0.0, 0), None);
        assert_eq!(Capacity::parse(&json!({"result": false})), None);
    }
}
