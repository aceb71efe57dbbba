//! `flambe trial-run SPEC`, `flambe trial-guard MARKER`, `flambe slot-run
//! SPEC` and `flambe slot-feed SOCKET` (hidden): one trial as a Ray job's
//! entrypoint, the guard that takes its trial with it when the wrapper is
//! killed, a slot worker (trials in turn, as one Ray job), and the relay
//! between a slot worker's ssh session and its driver.

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

pub fn slot(spec: &str) -> anyhow::Result<ExitCode> {
    let spec = flambe_executor::decode_slot_spec(spec)?;
    flambe_executor::leave_ray_environment(spec.ray_venv.as_deref());
    let code = flambe_ops::runtime()?.block_on(flambe_executor::run_slot(spec));
    Ok(ExitCode::from(u8::try_from(code).unwrap_or(1)))
}

pub fn feed(socket: &std::path::Path) -> anyhow::Result<ExitCode> {
    let code = flambe_executor::relay_feed(socket);
    Ok(ExitCode::from(u8::try_from(code).unwrap_or(1)))
}
