# Sourced by the benchmarks, from the repository's root: sets BIN to
# $FLAMBE_BIN (a flambe binary already built, e.g. by `cargo install`), or
# to a release build made now.
if [ -z "${FLAMBE_BIN:-}" ]; then
  cargo build --release --quiet -p flambe-cli
fi
BIN=${FLAMBE_BIN:-$PWD/target/x86_64-unknown-linux-musl/release/flambe}
