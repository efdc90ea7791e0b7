#!/usr/bin/env bash
# Build the bertd image on a machine that cannot pull from Docker Hub: a Debian base made from
# Debian's packages (docker/build-base.sh), the Dockerfile's `python` stage on it, a wheelhouse with
# the CPU build of torch resolved by that stage's Python (docker/build-wheelhouse.sh --image), then
# docker/Dockerfile. Prints how long each step took. Needs a running Docker engine; build-base.sh
# needs root and debootstrap.
#
#   IMAGE       tag to build                       (default bertd:test, what tests/test_container.py runs)
#   BASE_IMAGE  base to build on                   (default bertd-base:bookworm, made when missing)
#   BUILD_NETWORK network of the build's RUN steps (default none with bertd-base:bookworm, which
#               proves the wheelhouse installs offline; the engine's default with other bases,
#               which may need apt)
#   Other variables reach build-wheelhouse.sh (TORCH_VARIANT, EXTRAS, ...) and build-base.sh.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
IMAGE=${IMAGE:-bertd:test}
BASE_IMAGE=${BASE_IMAGE:-bertd-base:bookworm}
if [ "$BASE_IMAGE" = bertd-base:bookworm ]; then BUILD_NETWORK=${BUILD_NETWORK:-none}; else BUILD_NETWORK=${BUILD_NETWORK:-default}; fi

timings=()
step() {
    local name=$1 started=$SECONDS
    shift
    echo "== $name"
    "$@"
    timings+=("$(printf '%-12s %4d s' "$name" $((SECONDS - started)))")
}

total=$SECONDS
if [ "$BASE_IMAGE" = bertd-base:bookworm ]; then
    step base env BASE_TAG="$BASE_IMAGE" docker/build-base.sh
fi
# The Dockerfile's first stage alone (tiny context): the Python the wheelhouse is resolved for. The
# full build below finds it in the cache.
step python docker build --quiet --network "$BUILD_NETWORK" --build-arg BASE_IMAGE="$BASE_IMAGE" --target python \
    -t "$IMAGE-python" -f docker/Dockerfile docker/
step wheelhouse docker/build-wheelhouse.sh --image "$IMAGE-python"
step image docker build --force-rm --network "$BUILD_NETWORK" --build-arg BASE_IMAGE="$BASE_IMAGE" -t "$IMAGE" -f docker/Dockerfile .
step check docker run --rm --network none "$IMAGE" --version

echo "== timings"
printf '%s\n' "${timings[@]}"
printf '%-12s %4d s\n' total $((SECONDS - total))
echo "$IMAGE: $(docker image inspect -f '{{.Size}}' "$IMAGE" | awk '{printf "%.0f MB", $1/1e6}')"
