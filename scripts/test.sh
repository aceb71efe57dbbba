#!/usr/bin/env bash
# Installs what the test suite needs (idempotent, quiet), then runs all of it:
# formatting, lints, and every test of the workspace. Used by .ci/run.
#
#   scripts/test.sh            install + fmt + clippy + tests
#   SKIP_INSTALL=1 scripts/test.sh   skip the install step
#   INSTALL_ONLY=1 scripts/test.sh   only the install step
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)
step() { printf '\n==> %s (%ss)\n' "$1" "$(( $(date +%s) - start ))"; }

# Python tools the tests use, in one venv every test host user can read.
# Debian's python3 (not a pyenv one under /root) so non-root users can run it.
TOOLS=${FLAMBE_TEST_TOOLS:-/opt/flambe-test}
export FLAMBE_TEST_TOOLS="$TOOLS"
export FLAMBE_TEST_PYTHON="$TOOLS/venv/bin/python"

if [ -z "${SKIP_INSTALL:-}" ]; then
  step "installing test prerequisites into $TOOLS"
  need_apt=()
  # musl-tools: the static build's C compiler (bundled SQLite, aws-lc);
  # debootstrap and dpkg-dev: the bare test hosts and their apt repository;
  # slurmctld, slurmd, slurm-client and munge: a real Slurm for the Slurm
  # plugin's test (scripts/slurm-testbed.sh runs them on test hosts).
  for pkg in python3-venv rsync openssh-server openssh-client iproute2 chromium musl-tools debootstrap dpkg-dev slurmctld slurmd slurm-client munge; do
    dpkg -s "$pkg" >/dev/null 2>&1 || need_apt+=("$pkg")
  done
  # Node may come from elsewhere (with its own npm): ask for commands, not packages.
  command -v node >/dev/null 2>&1 || need_apt+=(nodejs)
  command -v npm >/dev/null 2>&1 || need_apt+=(npm)
  if [ ${#need_apt[@]} -gt 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq "${need_apt[@]}" >/dev/null
  fi
  # Every build is static (.cargo/config.toml): the musl target's std.
  if ! rustup target list --installed 2>/dev/null | grep -qx x86_64-unknown-linux-musl; then
    rustup target add x86_64-unknown-linux-musl >/dev/null 2>&1
  fi
  if [ ! -x "$FLAMBE_TEST_PYTHON" ]; then
    /usr/bin/python3 -m venv "$TOOLS/venv"
  fi
  # tensorboard: its own EventAccumulator is the reference reader of the
  # event files flambe writes.
  # Pinned to the version flambe installs on orchestrators, so a host that
  # links this one has what flambe would install.
  if ! "$FLAMBE_TEST_PYTHON" -c 'import tensorboard; assert tensorboard.__version__ == "2.21.0"' 2>/dev/null; then
    "$TOOLS/venv/bin/pip" install -q --disable-pip-version-check 'tensorboard==2.21.0'
  fi
  # Ray from PyPI, in a venv every test host's user can read (hosts link it
  # into ~/.flambe/ray: they have no network to install it themselves).
  if ! "$TOOLS/ray/bin/ray" --version 2>/dev/null | grep -q 'version 2.60.0'; then
    /usr/bin/python3 -m venv "$TOOLS/ray"
    "$TOOLS/ray/bin/pip" install -q --disable-pip-version-check 'ray[default]==2.60.0'
  fi
  # moto: a local AWS (EC2, CloudWatch) for the !AWSCluster tests; its boto3
  # is the tests' second opinion on what flambe created.
  if ! "$TOOLS/moto/bin/python" -c 'import moto, boto3; assert moto.__version__ == "5.2.5"' 2>/dev/null; then
    /usr/bin/python3 -m venv "$TOOLS/moto"
    "$TOOLS/moto/bin/pip" install -q --disable-pip-version-check 'moto[server]==5.2.5'
  fi
  # A wheel folder for hosts without network: pip builds extension folders
  # in isolation, so it needs setuptools and wheel from somewhere.
  if [ ! -f "$TOOLS/wheels/setuptools-75.8.0-py3-none-any.whl" ] || [ ! -f "$TOOLS/wheels/wheel-0.45.1-py3-none-any.whl" ]; then
    "$TOOLS/venv/bin/pip" download -q --disable-pip-version-check --no-deps --dest "$TOOLS/wheels" 'setuptools==75.8.0' 'wheel==0.45.1'
  fi
  # Bare test hosts: Debian 12 and 11 roots (debootstrap minbase), a wheel
  # folder with the pinned Ray and TensorBoard for them, a local apt
  # repository with what flambe may install there (cached; made once).
  scripts/testbed.sh roots
  # playwright-core drives Debian's chromium in the report site's browser test.
  if [ ! -d "$TOOLS/node/node_modules/playwright-core" ]; then
    mkdir -p "$TOOLS/node"
    (cd "$TOOLS/node" && npm install --silent --no-audit --no-fund playwright-core@1 >/dev/null)
  fi
fi

[ -z "${INSTALL_ONLY:-}" ] || exit 0

step "cargo fmt --check"
cargo fmt --all --check

step "cargo clippy"
cargo clippy --quiet --all-targets -- -D warnings

step "cargo test"
test_start=$(date +%s)
log=$(mktemp)
set +e
cargo test --quiet --workspace --no-fail-fast 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
passed=$(grep -o '[0-9]* passed' "$log" | awk '{s+=$1} END {print s+0}')
failed=$(grep -o '[0-9]* failed' "$log" | awk '{s+=$1} END {print s+0}')
rm -f "$log"
echo
echo "suite: tests took $(( $(date +%s) - test_start ))s, everything $(( $(date +%s) - start ))s"
echo "$passed passed, $failed failed"
exit "$status"
