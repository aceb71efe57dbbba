//! The report site and TensorBoard over one results folder.

use anyhow::{Context, anyhow, bail};
use flambe_config::with_hint;
use flambe_config::{Runnable, load_file};
use flambe_experiment::ResultsDir;
use flambe_report::TensorBoardServer;
use flambe_report::{Site, SiteOptions, serve};
use std::net::{IpAddr, SocketAddr};
use std::path::Path;

/// Where and whether to serve the views.
#[derive(Debug, Clone)]
pub struct ViewOptions {
    /// The address the site listens on (off loopback: with a token).
    pub host: IpAddr,
    /// 0: any free port.
    pub port: u16,
    /// Serve TensorBoard too, when it is installed.
    pub tensorboard: bool,
}

/// What serves one experiment's views: the site and, when installed,
/// TensorBoard. Both stop when this is dropped.
pub struct Views {
    /// The report site.
    pub site: Site,
    /// TensorBoard, when installed and wanted.
    pub tensorboard: Option<TensorBoardServer>,
}

impl std::fmt::Debug for Views {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Views")
            .field("site", &self.site.url)
            .field("tensorboard", &self.tensorboard.as_ref().map(|t| &t.url))
            .finish()
    }
}

/// Start the site (and TensorBoard) over an experiment's results folder.
/// Off loopback, the site asks for a token (in its URL).
pub async fn start_views(dir: &ResultsDir, opts: &ViewOptions) -> anyhow::Result<Views> {
    let tensorboard = if opts.tensorboard {
        TensorBoardServer::launch(dir.path())
    } else {
        None
    };
    let token = if opts.host.is_loopback() {
        None
    } else {
        Some(flambe_report::new_token().context("cannot make the site's access token")?)
    };
    let site_opts = SiteOptions {
        bind: SocketAddr::new(opts.host, opts.port),
        token,
        tensorboard: tensorboard.as_ref().map(|t| t.url.clone()),
    };
    let site = serve(dir.clone(), site_opts).await.with_context(|| {
        format!(
            "cannot serve the report site on {}:{}",
            opts.host, opts.port
        )
    })?;
    Ok(Views { site, tensorboard })
}

/// A results folder, given directly or as the experiment file that names it.
pub fn results_dir_of(target: &Path) -> anyhow::Result<ResultsDir> {
    if target.is_dir() {
        let dir = ResultsDir::at(target);
        if !dir.has_state() {
            return Err(with_hint(
                anyhow!(
                    "{} holds no experiment results (no state.db)",
                    target.display()
                ),
                "give the folder save_path/NAME of an experiment, or its YAML file",
            )
            .into());
        }
        return Ok(dir);
    }
    let config = load_file(target)?;
    match config.runnable {
        Runnable::Experiment(e) => Ok(ResultsDir::new(&e.save_path, &e.name)),
        other => bail!(
            "{} holds a {}, not an experiment",
            target.display(),
            other.tag()
        ),
    }
}
