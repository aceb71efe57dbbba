//! `flambe site TARGET [--cluster C]`: the report site of a results folder
//! here, or of an experiment on a cluster through a tunnel.

use crate::cli::SiteArgs;
use anyhow::Context;
use flambe_ops::ViewOptions;
use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

pub fn run(target: &Path, cluster: Option<&Path>, args: &SiteArgs) -> anyhow::Result<ExitCode> {
    if let Some(cluster_file) = cluster {
        let name = target.display().to_string();
        let cluster = flambe_ops::cluster_of(cluster_file)?;
        flambe_ops::runtime()?.block_on(flambe_ops::serve_cluster_site(
            &cluster,
            &name,
            |url| {
                println!("Report site: {url}");
                eprintln!("Serving `{name}` from cluster `{cluster}`; Ctrl-C to stop.");
            },
            async {
                let _ = tokio::signal::ctrl_c().await;
            },
        ))?;
        return Ok(ExitCode::SUCCESS);
    }
    let served = flambe_ops::site_target_of(target)?;
    let opts = ViewOptions {
        host: args.site_host,
        port: args.site_port,
        tensorboard: !args.no_tensorboard,
    };
    flambe_ops::runtime()?.block_on(async {
        let views = flambe_ops::start_views(&served, &opts).await?;
        // A reader that stops reading (`| head -1`) must not stop the site.
        let mut out = std::io::stdout();
        let _ = writeln!(out, "Report site: {}", views.site.url);
        if let Some(tb) = &views.tensorboard {
            let _ = writeln!(out, "TensorBoard: {}", tb.url);
        }
        let _ = out.flush();
        let folder = match &served {
            flambe_report::Served::One(dir) => dir.path().to_path_buf(),
            flambe_report::Served::Many(root) => root.clone(),
        };
        eprintln!("Serving {}; Ctrl-C to stop.", folder.display());
        tokio::signal::ctrl_c()
            .await
            .context("waiting for Ctrl-C")?;
        Ok(ExitCode::SUCCESS)
    })
}
