//! The report site and TensorBoard over one results folder.

use anyhow::{Context, anyhow, bail};
use flambe_config::with_hint;
use flambe_config::{Runnable, load_file};
use flambe_experiment::ResultsDir;
use flambe_report::TensorBoardServer;
use flambe_report::{Served, Site, SiteOptions, serve};
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

/// Start the site (and TensorBoard) over an experiment's results folder,
/// or over a `save_path` of several. Off loopback, the site asks for a
/// token (in its URL).
pub async fn start_views(served: &Served, opts: &ViewOptions) -> anyhow::Result<Views> {
    let folder = match served {
        Served::One(dir) => dir.path(),
        Served::Many(root) => root.as_path(),
    };
    let tensorboard = if opts.tensorboard {
        TensorBoardServer::launch(folder)
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
    let site = serve(served.clone(), site_opts).await.with_context(|| {
        format!(
            "cannot serve the report site on {}:{}",
            opts.host, opts.port
        )
    })?;
    Ok(Views { site, tensorboard })
}

/// What `flambe site TARGET` serves: an experiment's results folder (given
/// directly or as the experiment file that names it), or a `save_path`
/// whose folders hold experiments.
pub fn site_target_of(target: &Path) -> anyhow::Result<Served> {
    if target.is_dir() {
        let dir = ResultsDir::at(target);
        if dir.has_state() {
            return Ok(Served::One(dir));
        }
        let holds_experiments = std::fs::read_dir(target)
            .with_context(|| format!("cannot read {}", target.display()))?
            .flatten()
            .any(|e| ResultsDir::at(e.path()).has_state());
        if !holds_experiments {
            return Err(with_hint(
                anyhow!(
                    "{} holds no experiment results (no state.db in it or in its folders)",
                    target.display()
                ),
                "give an experiment's folder (save_path/NAME), its save_path, or its YAML file",
            )
            .into());
        }
        return Ok(Served::Many(target.to_path_buf()));
    }
    let config = load_file(target)?;
    match config.runnable {
        Runnable::Experiment(e) => Ok(Served::One(ResultsDir::new(&e.save_path, &e.name))),
        other => bail!(
            "{} holds a {}, not an experiment",
            target.display(),
            other.tag()
        ),
    }
}
