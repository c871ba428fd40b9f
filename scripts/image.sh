#!/usr/bin/env bash
# Builds nodewright's container image from the Dockerfile at the repository's root.
#
#   bash scripts/image.sh [TAG]      # default tag: nodewright:<version in Cargo.toml>
#   IMAGE_BUILDER=podman bash scripts/image.sh
#
# Uses the first container builder that works: docker (with a running daemon), podman,
# buildah. Where none works it says so and exits 0: building the image is not part of the
# test suite's pass/fail on machines without a container builder.
set -euo pipefail
cd "$(dirname "$0")/.."
VERSION="$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)"
TAG="${1:-nodewright:$VERSION}"

works() {
  case "$1" in
    docker) command -v docker >/dev/null && docker info >/dev/null 2>&1 ;;
    podman) command -v podman >/dev/null && podman info >/dev/null 2>&1 ;;
    buildah) command -v buildah >/dev/null && buildah info >/dev/null 2>&1 ;;
    *) return 1 ;;
  esac
}

BUILDER=""
for b in ${IMAGE_BUILDER:-docker podman buildah}; do
  if works "$b"; then BUILDER="$b"; break; fi
done
if [ -z "$BUILDER" ]; then
  echo "no container builder available: image not built"
  echo "(tried: ${IMAGE_BUILDER:-docker podman buildah}; docker needs a running daemon)"
  exit 0
fi

echo "== building $TAG with $BUILDER"
case "$BUILDER" in
  docker) DOCKER_BUILDKIT=1 docker build -t "$TAG" . ;;
  podman) podman build -t "$TAG" . ;;
  buildah) buildah bud -t "$TAG" . ;;
esac
echo "== built $TAG"
