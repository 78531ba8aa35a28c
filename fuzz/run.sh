#!/usr/bin/env bash
# Builds the fuzz targets with libFuzzer on stable Rust and runs one of them.
#
#   fuzz/run.sh <target> [libFuzzer options...]
#   fuzz/run.sh sim_plan -max_total_time=1800
#   fuzz/run.sh build            # build every target, run none
#
# The targets link libFuzzer through the libfuzzer-sys crate (it builds libFuzzer's C++
# with the system compiler); rustc instruments the code for coverage (SanitizerCoverage:
# inline 8-bit counters, PC table, comparison tracing) as cargo-fuzz would, without
# AddressSanitizer, which needs nightly. `--cfg fuzzing` exposes the internals the
# targets drive. `--target` keeps the flags off build scripts.
#
# Each run starts from corpus/<target> (the committed seeds and every input that found a
# bug) and writes what it discovers to run-corpus/<target> (not committed); a crash is
# written to artifacts/<target>/. Copy a crash input to corpus/<target>/crash-<what> once
# it is fixed, and name it in a regression test (see README.md).
set -euo pipefail
cd "$(dirname "$0")"

target="${1:?usage: fuzz/run.sh <target>|build [libFuzzer options...]}"
shift
triple="$(rustc -vV | sed -n 's/^host: //p')"
export RUSTFLAGS="--cfg fuzzing -Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares -Cdebug-assertions -Coverflow-checks"
cargo build --release --locked --bins --target "$triple"
[ "$target" = build ] && exit 0

bin="target/$triple/release/$target"
[ -x "$bin" ] || { echo "no target named $target (see fuzz_targets/)" >&2; exit 1; }
mkdir -p "run-corpus/$target" "artifacts/$target"
exec "$bin" -artifact_prefix="artifacts/$target/" "$@" "run-corpus/$target" "corpus/$target"
