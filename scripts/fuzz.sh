#!/usr/bin/env bash
# Runs every cargo-fuzz target in fuzz/ for a bounded time (CI: 60 s each).
#
#   bash scripts/fuzz.sh            # 60 s per target
#   FUZZ_SECONDS=600 bash scripts/fuzz.sh
#
# Needs the nightly toolchain (libFuzzer's sanitizer flags) and cargo-fuzz, which this script
# installs from crates.io into the cache folder the first time. A crash fails the script and
# leaves the input under fuzz/artifacts/<target>/. Fails loudly when nightly is missing:
# a fuzz run that cannot start is never reported as passed.
set -euo pipefail
cd "$(dirname "$0")/.."
CACHE="${NODEWRIGHT_CACHE:-$HOME/.cache/nodewright}"
SECONDS_EACH="${FUZZ_SECONDS:-60}"
CARGO_FUZZ_VERSION="0.13.2"

rustup run nightly rustc --version >/dev/null 2>&1 ||
  { echo "ERROR: the fuzz run needs the nightly toolchain (rustup toolchain install nightly)" >&2; exit 1; }

FUZZ_BIN="$CACHE/cargo-fuzz-$CARGO_FUZZ_VERSION/bin"
if [ ! -x "$FUZZ_BIN/cargo-fuzz" ]; then
  echo "== installing cargo-fuzz $CARGO_FUZZ_VERSION into $FUZZ_BIN"
  cargo install --quiet --locked --version "$CARGO_FUZZ_VERSION" --root "$(dirname "$FUZZ_BIN")" cargo-fuzz
fi
export PATH="$FUZZ_BIN:$PATH"

# Its own target folder outside the clone: the nightly, sanitizer-instrumented build shares
# nothing with the main one.
FUZZ_TARGET_DIR="$CACHE/fuzz-target"
unset CARGO_TARGET_DIR
cd fuzz
targets="$(cargo +nightly fuzz list)"
[ -n "$targets" ] || { echo "ERROR: cargo fuzz list found no target" >&2; exit 1; }
for t in $targets; do
  echo "== cargo fuzz run $t (${SECONDS_EACH} s)"
  mkdir -p "corpus/$t"
  cargo +nightly fuzz run --target-dir "$FUZZ_TARGET_DIR" "$t" "corpus/$t" -- -max_total_time="$SECONDS_EACH" -rss_limit_mb=4096 -timeout=30
done
echo "== fuzz: every target ran ${SECONDS_EACH} s without a crash"
