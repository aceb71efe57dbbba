//! How each operation step reads on the terminal (stderr, above any bars).

use flambe_cluster::Provider;
use flambe_ops::{Step, TensorBoardAt};

/// The line(s) a step prints; `None` for steps shown otherwise (progress).
pub fn text(step: &Step<'_>) -> Option<String> {
    Some(match step {
        Step::BringingUp {
            name,
            provider: Provider::Ssh,
            hosts,
        } => format!(
            "Bringing up SSH cluster `{name}` ({} hosts)…",
            hosts.unwrap_or(0)
        ),
        Step::BringingUp {
            name,
            provider: Provider::Aws,
            hosts,
        } => format!(
            "Bringing up AWS cluster `{name}` (1 orchestrator + {} factories)…",
            hosts.unwrap_or(1).saturating_sub(1)
        ),
        Step::BringingUp {
            name,
            provider: Provider::Custom,
            ..
        } => format!("Bringing up cluster `{name}`: asking its program for the hosts…"),
        Step::AwsInstances(report) => crate::print::cluster::aws_summary(report),
        Step::ClusterReady {
            seconds,
            tensorboard,
        } => format!(
            "Cluster ready in {seconds:.1}s; checking Ray {}{} on every host…",
            flambe_cluster::RAY_VERSION,
            if *tensorboard { " and TensorBoard" } else { "" }
        ),
        Step::Provisioned(done) => {
            let lines: Vec<String> = done
                .iter()
                .filter(|h| !h.steps.is_empty())
                .map(|host| {
                    let steps: Vec<String> = host
                        .steps
                        .iter()
                        .map(|s| format!("{} ({}, {:.1}s)", s.what, s.how, s.seconds))
                        .collect();
                    format!("Installed on {}: {}", host.host, steps.join(", "))
                })
                .collect();
            if lines.is_empty() {
                "Every host has what it needs: nothing installed".to_string()
            } else {
                lines.join("\n")
            }
        }
        Step::RayUp { nodes, seconds } => format!("Ray up with {nodes} nodes in {seconds:.1}s"),
        Step::ClusterExtensions(ext) => format!(
            "Extensions: environment {} {}",
            ext.key,
            if ext.installed_on.is_empty() {
                "up to date on every host, nothing installed".to_string()
            } else {
                format!("installed on {}", ext.installed_on.join(", "))
            }
        ),
        Step::Launched {
            name,
            results,
            started: true,
        } => format!("Experiment `{name}` started on the orchestrator ({results})"),
        Step::Launched { name, .. } => {
            format!("Experiment `{name}` is already running there: following it")
        }
        Step::PreparingExtensions { envs } => format!(
            "Extensions: preparing their environment in {}…",
            envs.display()
        ),
        Step::ExtensionsHere(env) => format!(
            "Extensions: {} ({})",
            if env.installed {
                "installed"
            } else {
                "up to date, nothing installed"
            },
            env.dir.display()
        ),
        Step::Views { views, dir } => {
            let tensorboard = match &views.tensorboard {
                Some(tb) => format!("TensorBoard: {}", tb.url),
                None => format!(
                    "TensorBoard: not installed (pip install tensorboard), or run `tensorboard --logdir {}`",
                    dir.display()
                ),
            };
            format!("Report site: {}\n{tensorboard}", views.site.url)
        }
        Step::SiteTunnel { url } => {
            format!("Report site: {url} (through an SSH tunnel to the orchestrator)")
        }
        Step::TensorBoardTunnel(TensorBoardAt::Tunnel(url)) => {
            format!("TensorBoard: {url} (through an SSH tunnel to the orchestrator)")
        }
        Step::TensorBoardTunnel(TensorBoardAt::TunnelFailed(e)) => {
            format!("TensorBoard: runs on the orchestrator, but the tunnel failed: {e}")
        }
        Step::TensorBoardTunnel(TensorBoardAt::Off) => "TensorBoard: off (--no-tensorboard), or it did not start on the orchestrator (see driver.log there)".to_string(),
        Step::Progress(_) => return None,
    })
}
