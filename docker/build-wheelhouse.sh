#!/usr/bin/env bash
# Make a wheelhouse: bertd's wheel and every wheel it needs, torch included, in one folder that
# installs with no index at all. docker/Dockerfile installs from it when it is in the build context,
# and it is the bundle to carry into a closed network:
#
#   python3 -m venv venv && venv/bin/pip install -r dist/wheelhouse/requirements.txt
#
# Layout (docker/Dockerfile relies on it):
#   dist/wheelhouse/requirements.txt  --no-index, the two --find-links below, the torch and bertd pins
#   dist/wheelhouse/torch/            torch and everything it needs (nvidia-*, triton, sympy, ...)
#   dist/wheelhouse/*.whl             bertd and the rest of its dependencies
#   dist/wheelhouse/SHA256SUMS        to check a copy
#
# pip picks dependencies for the Python that runs it, down to the patch release (redis needs
# async-timeout only below Python 3.11.3), so resolve with the Python that will install the
# wheelhouse: by default this machine's, or with --image, the one in that Docker image (run with
# the host's network, pip trusting the host's CA bundle). For the default CUDA base image:
#
#   docker build --target python -t bertd-python -f docker/Dockerfile docker/
#   docker/build-wheelhouse.sh --cuda --image bertd-python
#
# Usage: docker/build-wheelhouse.sh [--cpu | --cuda] [--image IMAGE] [--out DIR]
#
#   TORCH_VARIANT   cpu (default: the small CPU-only build, torch==X+cpu) or cuda (PyPI's Linux
#                   build, which brings CUDA as nvidia-* wheels: several GB). --cpu / --cuda set it.
#   TORCH_VERSION   default 2.13.0
#   TORCH_SPEC      the torch requirement, overriding the two above (e.g. torch==2.13.0+cu128 with
#                   TORCH_INDEX_URL=https://download.pytorch.org/whl/cu128)
#   TORCH_INDEX_URL where a torch build missing from pip's usual indexes is looked for (default for
#                   cpu: https://download.pytorch.org/whl/cpu; only asked when the others lack it)
#   EXTRAS          bertd extras to include (default "cluster"; left out, with a note, when bertd lacks one)
#   RESOLVE_IMAGE   resolve with this image's python3 (--image); it needs python3 with venv
#   PYTHON          the host interpreter whose pip does the rest (default python3)
#   SOURCE          the bertd source tree (default: this repository)
#   WHEELHOUSE      output folder (default dist/wheelhouse; --out sets it); replaced as a whole
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
TORCH_VARIANT=${TORCH_VARIANT:-cpu}
WHEELHOUSE=${WHEELHOUSE:-$repo/dist/wheelhouse}
RESOLVE_IMAGE=${RESOLVE_IMAGE:-}
while [ $# -gt 0 ]; do
    case $1 in
        --cpu) TORCH_VARIANT=cpu ;;
        --cuda) TORCH_VARIANT=cuda ;;
        --image) RESOLVE_IMAGE=$2; shift ;;
        --out) WHEELHOUSE=$2; shift ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "build-wheelhouse: unknown argument $1 (try --help)" >&2; exit 2 ;;
    esac
    shift
done
TORCH_VERSION=${TORCH_VERSION:-2.13.0}
case $TORCH_VARIANT in
    cpu) TORCH_SPEC=${TORCH_SPEC:-torch==$TORCH_VERSION+cpu}
         TORCH_INDEX_URL=${TORCH_INDEX_URL-https://download.pytorch.org/whl/cpu} ;;
    cuda) TORCH_SPEC=${TORCH_SPEC:-torch==$TORCH_VERSION}
          TORCH_INDEX_URL=${TORCH_INDEX_URL-} ;;
    *) echo "build-wheelhouse: TORCH_VARIANT must be cpu or cuda, not $TORCH_VARIANT" >&2; exit 2 ;;
esac
EXTRAS=${EXTRAS-cluster}
PYTHON=${PYTHON:-python3}
SOURCE=${SOURCE:-$repo}
WHEELHOUSE=$(realpath -m "$WHEELHOUSE")

pip=("$PYTHON" -m pip)
"${pip[@]}" --version >/dev/null 2>&1 || { echo "build-wheelhouse: $PYTHON has no pip" >&2; exit 1; }

# The target's Python and wheel tags: for --image, asked of the image; torch (fetched here, on the
# host) must match them.
tags=()
if [ -n "$RESOLVE_IMAGE" ]; then
    read -r target_version target_full platforms < <(docker run --rm --network none --entrypoint python3 "$RESOLVE_IMAGE" -c '
import os, platform, sys
glibc = int(os.confstr("CS_GNU_LIBC_VERSION").split()[1].split(".")[1])
machine = platform.machine()
print("%d.%d" % sys.version_info[:2], platform.python_version(),
      ",".join("manylinux_2_%d_%s" % (minor, machine) for minor in range(glibc, 4, -1)))') \
        || { echo "build-wheelhouse: cannot run python3 in $RESOLVE_IMAGE" >&2; exit 1; }
    tags=(--only-binary=:all: --python-version "$target_version" --implementation cp)
    for platform in ${platforms//,/ }; do tags+=(--platform "$platform"); done
else
    target_full=$("$PYTHON" -c 'import platform; print(platform.python_version())')
fi

started=$SECONDS
stage="$WHEELHOUSE.partial"
rm -rf "$stage"
mkdir -p "$stage/torch"
echo "build-wheelhouse: $TORCH_SPEC for Python $target_full${RESOLVE_IMAGE:+ (that of $RESOLVE_IMAGE)}, into $WHEELHOUSE"

# 1. bertd's own wheel (pure Python: built here whatever the target).
"${pip[@]}" wheel --quiet --no-deps --wheel-dir "$stage" "$SOURCE"
bertd_wheel=$(cd "$stage" && ls bertd-*.whl)
read -r bertd_version provided_extras < <("$PYTHON" - "$stage/$bertd_wheel" <<'PY'
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as wheel:
    name = next(n for n in wheel.namelist() if n.endswith(".dist-info/METADATA"))
    lines = wheel.read(name).decode().splitlines()
version = next(line.split(":", 1)[1].strip() for line in lines if line.startswith("Version:"))
extras = [line.split(":", 1)[1].strip() for line in lines if line.startswith("Provides-Extra:")]
print(version, ",".join(extras) or "-")
PY
)
wanted=()
for extra in ${EXTRAS//,/ }; do
    if [[ ",$provided_extras," == *",$extra,"* ]]; then
        wanted+=("$extra")
    else
        echo "build-wheelhouse: note: bertd $bertd_version has no extra '$extra'; the wheelhouse is made without it" >&2
    fi
done
extras_suffix=""
[ ${#wanted[@]} -gt 0 ] && extras_suffix="[$(IFS=,; echo "${wanted[*]}")]"

# 2. torch alone, from pip's usual indexes and find-links, else from TORCH_INDEX_URL: an exact pin,
# so a CPU request can never end in a CUDA build.
if ! "${pip[@]}" download --quiet --no-deps "${tags[@]}" --dest "$stage" "$TORCH_SPEC" >"$stage/torch.log" 2>&1; then
    [ -n "$TORCH_INDEX_URL" ] || { cat "$stage/torch.log" >&2; echo "build-wheelhouse: pip found no $TORCH_SPEC" >&2; exit 1; }
    echo "build-wheelhouse: $TORCH_SPEC is not on pip's usual indexes; trying $TORCH_INDEX_URL"
    "${pip[@]}" download --quiet --no-deps "${tags[@]}" --extra-index-url "$TORCH_INDEX_URL" --dest "$stage" "$TORCH_SPEC"
fi
rm -f "$stage/torch.log"

# 3. One resolution of everything (torch from step 2), so the versions agree; then torch's own
# closure, with the versions just chosen, into torch/ (the image's first layer).
if [ -z "$RESOLVE_IMAGE" ]; then
    "${pip[@]}" wheel --quiet --wheel-dir "$stage" --find-links "$stage" "$stage/$bertd_wheel$extras_suffix" "$TORCH_SPEC"
    "${pip[@]}" download --quiet --no-index --find-links "$stage" --dest "$stage/torch" "$TORCH_SPEC"
else
    # pip in the image, on the host's network, trusting the host's CA bundle (TLS proxies), with
    # the host's proxy and index settings; the files it writes belong to the caller.
    ca=${PIP_CERT:-/etc/ssl/certs/ca-certificates.crt}
    trust=()
    [ -f "$ca" ] && trust=(--volume "$ca:/etc/bertd-host-ca.pem:ro" --env PIP_CERT=/etc/bertd-host-ca.pem)
    docker run --rm --network host --user "$(id -u):$(id -g)" --env HOME=/tmp "${trust[@]}" \
        --env HTTP_PROXY --env HTTPS_PROXY --env NO_PROXY --env http_proxy --env https_proxy --env no_proxy \
        --env PIP_INDEX_URL --env PIP_EXTRA_INDEX_URL --env PIP_DEFAULT_TIMEOUT --env PIP_DISABLE_PIP_VERSION_CHECK=1 \
        --volume "$stage:/wheelhouse" --entrypoint sh "$RESOLVE_IMAGE" -c '
            python3 -m venv /tmp/venv \
            && /tmp/venv/bin/pip wheel --quiet --wheel-dir /wheelhouse --find-links /wheelhouse "/wheelhouse/$0" "$1" \
            && /tmp/venv/bin/pip download --quiet --no-index --find-links /wheelhouse --dest /wheelhouse/torch "$1"' \
        "$bertd_wheel$extras_suffix" "$TORCH_SPEC"
fi
for wheel in "$stage"/torch/*.whl; do rm -f "$stage/$(basename "$wheel")"; done

torch_wheel=$(cd "$stage/torch" && ls torch-*.whl)
if [ "$TORCH_VARIANT" = cpu ] && { [[ $torch_wheel != *+cpu* ]] || ls "$stage"/torch/nvidia_* >/dev/null 2>&1; }; then
    echo "build-wheelhouse: asked for a CPU torch but got $torch_wheel (with CUDA wheels?); giving up" >&2
    exit 1
fi

cat >"$stage/requirements.txt" <<EOF
# bertd $bertd_version with $torch_wheel, resolved for Python $target_full by docker/build-wheelhouse.sh.
# Install with no index:  python3 -m venv venv && venv/bin/pip install -r requirements.txt
# (the --find-links paths are relative to this file)
--no-index
--find-links .
--find-links torch
$TORCH_SPEC
bertd$extras_suffix==$bertd_version
EOF
sums=$(cd "$stage" && find . -type f -print0 | sort -z | xargs -0 sha256sum)
printf '%s\n' "$sums" >"$stage/SHA256SUMS"

rm -rf "$WHEELHOUSE"
mv "$stage" "$WHEELHOUSE"
count=$(find "$WHEELHOUSE" -name '*.whl' | wc -l)
echo "build-wheelhouse: $count wheels ($(du -sh "$WHEELHOUSE" | cut -f1)) in $WHEELHOUSE in $((SECONDS - started)) s"
