#!/usr/bin/env bash
# The test command (README's second command; .ci/run calls it too).
# Installs what the tests need (moto's EC2 server in a venv), then runs every test.
# Fails loudly if anything cannot be installed: no test is skipped for a missing service.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/nodewright/target}"
CACHE="${NODEWRIGHT_CACHE:-$HOME/.cache/nodewright}"
VENV="$CACHE/venv"
MOTO_VERSION="5.2.1"
if ! "$VENV/bin/python" -c "import moto, flask; assert moto.__version__ == '$MOTO_VERSION'" 2>/dev/null; then
  echo "== installing moto[server]==$MOTO_VERSION into $VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "moto[server]==$MOTO_VERSION"
fi
export NODEWRIGHT_PYTHON="$VENV/bin/python"
echo "== cargo test"
cargo test --locked "$@"
