//! `flambe site TARGET`, and the site every local run serves.

use crate::cli::SiteArgs;
use anyhow::{Context, bail};
use flambe_config::{Runnable, load_file};
use flambe_report::TensorBoardServer;
use flambe_report::site::{Site, SiteOptions, serve};
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// What serves one experiment's views: the site and, when installed, TensorBoard.
pub struct Views {
    pub site: Site,
    pub tensorboard: Option<TensorBoardServer>,
}

/// Start the site (and TensorBoard) over an experiment folder.
pub async fn start(dir: &Path, args: &SiteArgs) -> anyhow::Result<Views> {
    let tensorboard = if args.no_tensorboard {
        None
    } else {
        TensorBoardServer::launch(dir)
    };
    let token = if args.site_host.is_loopback() {
        None
    } else {
        Some(flambe_report::site::new_token().context("cannot make the site's access token")?)
    };
    let opts = SiteOptions {
        bind: SocketAddr::new(args.site_host, args.site_port),
        token,
        tensorboard: tensorboard.as_ref().map(|t| t.url.clone()),
    };
    let site = serve(dir.to_path_buf(), opts).await.with_context(|| {
        format!(
            "cannot serve the report site on {}:{}",
            args.site_host, args.site_port
        )
    })?;
    Ok(Views { site, tensorboard })
}

pub fn run(target: &Path, args: &SiteArgs) -> anyhow::Result<ExitCode> {
    let dir = results_dir(target)?;
    let rt = super::cluster::runtime()?;
    rt.block_on(async {
        let views = start(&dir, args).await?;
        // A reader that stops reading (`| head -1`) must not stop the site.
        let mut out = std::io::stdout();
        let _ = writeln!(out, "Report site: {}", views.site.url);
        if let Some(tb) = &views.tensorboard {
            let _ = writeln!(out, "TensorBoard: {}", tb.url);
        }
        let _ = out.flush();
        eprintln!("Serving {}; Ctrl-C to stop.", dir.display());
        tokio::signal::ctrl_c()
            .await
            .context("waiting for Ctrl-C")?;
        Ok(ExitCode::SUCCESS)
    })
}

/// A results folder, given directly or as the experiment file that names it.
fn results_dir(target: &Path) -> anyhow::Result<PathBuf> {
    if target.is_dir() {
        if !target.join("state.db").exists() {
            bail!(
                "{} holds no experiment results (no state.db)\nhint: give the folder save_path/NAME of an experiment, or its YAML file",
                target.display()
            );
        }
        return Ok(target.to_path_buf());
    }
    let config = load_file(target)?;
    match config.runnable {
        Runnable::Experiment(e) => Ok(e.save_path.join(&e.name)),
        other => bail!(
            "{} holds a {}, not an experiment",
            target.display(),
            other.tag()
        ),
    }
}
