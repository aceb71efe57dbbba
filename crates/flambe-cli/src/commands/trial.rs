//! `flambe trial-run SPEC` and `flambe trial-guard MARKER` (hidden): one
//! trial as a Ray job's entrypoint, and the guard that takes its trial
//! with it when the wrapper is killed.

use std::process::ExitCode;

pub fn run(spec: &str) -> anyhow::Result<ExitCode> {
    let spec = flambe_executor::decode_spec(spec)?;
    flambe_executor::leave_ray_environment(spec.ray_venv.as_deref());
    let code = flambe_ops::runtime()?.block_on(flambe_executor::run_trial(spec));
    Ok(ExitCode::from(u8::try_from(code).unwrap_or(1)))
}

pub fn guard(marker: &str) -> anyhow::Result<ExitCode> {
    flambe_executor::guard_trial(marker);
    Ok(ExitCode::SUCCESS)
}
