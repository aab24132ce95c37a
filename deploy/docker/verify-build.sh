#!/usr/bin/env bash
# The offline verification build: builds the images of deploy/docker/Dockerfile
# on a machine that reaches PyPI and Debian's mirror but no container registry
# and not download.pytorch.org, then starts each image as user 10001 on a
# read-only root file system and checks that its service comes up.
#
#   deploy/docker/verify-build.sh            # the five CPU targets
#   TARGETS="gateway" deploy/docker/verify-build.sh
#
# What differs from `make images` (the production path), and only here:
# * the base image is a stand-in for python:3.11-slim-bookworm, made from
#   Debian's packages with mmdebstrap (Debian's python3.11 in /usr/bin instead
#   of the python.org build in /usr/local/bin); the host's own extra CA
#   certificates go into it, so that pip in the build trusts what the host's
#   pip trusts (a TLS-inspecting egress proxy);
# * TORCH_INDEX_URL points at a PEP 503 index served on the loopback from the
#   CPU wheel of torch that lies on this disk (TORCH_WHEEL) and its
#   dependencies, downloaded from PyPI; builds use the host's network for that;
# * the engine is podman (buildah), with the settings of engine.sh (runc, and
#   limits a sandboxed root may set); Docker's BuildKit builds the same way
#   (deploy/README.md says how).
# The GPU target is not built: its torch comes from download.pytorch.org only.
#
# Needs root, the virtualenv of `make install` and Debian's podman, buildah, runc,
# mmdebstrap and curl (`apt-get install podman buildah runc mmdebstrap curl`).

set -euo pipefail

REPO=${REPO:-$(cd "$(dirname "$0")/../.." && pwd)}
# shellcheck source=deploy/docker/engine.sh
. "$REPO/deploy/docker/engine.sh"
TARGETS=${TARGETS:-gateway auth-service billing-service job-service inference-service}
IMAGE_PREFIX=${IMAGE_PREFIX:-lipsync/}
IMAGE_TAG=${IMAGE_TAG:-dev}
WORK=${VERIFY_WORK:-/var/tmp/lipsync-verify}
BASE_IMAGE=${BASE_IMAGE:-localhost/lipsync-verify/python:3.11-slim-bookworm}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
SECURITY_MIRROR=${DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}
# The CPU wheel of requirements.txt's torch for Python 3.11; searched for when unset.
TORCH_WHEEL=${TORCH_WHEEL:-}
INDEX_PORT=${INDEX_PORT:-18765}
PYTHON=${PYTHON:-$REPO/.venv/bin/python}

log() { printf '\n=== %s\n' "$*" >&2; }

base_image() {
    if "${ENGINE[@]}" image exists "$BASE_IMAGE"; then
        return
    fi
    log "base image $BASE_IMAGE (mmdebstrap, bookworm)"
    local hooks=() extra_ca
    shopt -s nullglob
    extra_ca=(/usr/local/share/ca-certificates/*.crt)
    shopt -u nullglob
    if [ ${#extra_ca[@]} -gt 0 ]; then
        hooks=(--customize-hook="copy-in ${extra_ca[*]} /usr/local/share/ca-certificates/")
    fi
    # mmdebstrap, not the shell, puts the root directory in for "$1".
    # shellcheck disable=SC2016
    hooks+=(--customize-hook='chroot "$1" update-ca-certificates'
        --customize-hook='rm -rf "$1"/usr/share/doc/* "$1"/usr/share/man/* "$1"/var/cache/apt/*.bin')
    # python-is-python3: the Dockerfile calls `python`; python3-venv: `python -m venv`.
    nice -n 19 mmdebstrap --variant=minbase --quiet \
        --include=python3.11,python3-venv,python-is-python3,ca-certificates "${hooks[@]}" \
        bookworm "$WORK/base.tar" \
        "deb $MIRROR bookworm main" \
        "deb $MIRROR bookworm-updates main" \
        "deb $SECURITY_MIRROR bookworm-security main"
    "${ENGINE[@]}" import \
        --change 'ENV LANG=C.UTF-8' \
        --change 'CMD ["python3"]' \
        "$WORK/base.tar" "$BASE_IMAGE" >/dev/null
    rm -f "$WORK/base.tar"
}

torch_index() {
    # /simple/<normalized name>/<files>: http.server's directory listings are
    # the anchors PEP 503 asks for.
    local simple=$WORK/torch-index/simple
    if [ ! -d "$simple/torch" ]; then
        local version
        version=$(sed -n 's/^torch==//p' "$REPO/requirements.txt")
        if [ -z "$TORCH_WHEEL" ]; then
            TORCH_WHEEL=$(find / -xdev -name "torch-$version+cpu-cp311-*.whl" 2>/dev/null | head -n 1)
        fi
        [ -n "$TORCH_WHEEL" ] || { echo "no CPU wheel of torch $version: set TORCH_WHEEL" >&2; exit 1; }
        log "torch index from $TORCH_WHEEL"
        local files=$WORK/torch-index/files
        mkdir -p "$files"
        "$PYTHON" -m pip download --quiet --only-binary=:all: --dest "$files" \
            --python-version 3.11 --implementation cp --platform manylinux_2_28_x86_64 \
            "$TORCH_WHEEL"
        local file name
        for file in "$files"/*.whl; do
            name=$(basename "$file" | cut -d- -f1 | tr 'A-Z_.' 'a-z--')
            mkdir -p "$simple/$name"
            ln -f "$file" "$simple/$name/"
        done
    fi
    "$PYTHON" -m http.server --bind 127.0.0.1 --directory "$WORK/torch-index" "$INDEX_PORT" \
        >"$WORK/torch-index.log" 2>&1 &
    INDEX_PID=$!
    local _
    for _ in $(seq 50); do
        curl -fs "http://127.0.0.1:$INDEX_PORT/simple/torch/" >/dev/null && return
        sleep 0.1
    done
    echo "the torch index did not start: $WORK/torch-index.log" >&2
    exit 1
}

build() {
    local target=$1 start
    log "build $target"
    start=$(date +%s)
    nice -n 19 "${ENGINE[@]}" build --network host --pull=never "${ULIMITS[@]}" \
        --build-arg PYTHON_IMAGE="$BASE_IMAGE" \
        --build-arg TORCH_INDEX_URL="http://127.0.0.1:$INDEX_PORT/simple" \
        -f "$REPO/deploy/docker/Dockerfile" --target "$target" \
        -t "$IMAGE_PREFIX$target:$IMAGE_TAG" "$REPO"
    echo "built $target in $(($(date +%s) - start)) s" | tee -a "$WORK/times.txt" >&2
}

cleanup() {
    [ -z "${INDEX_PID:-}" ] || kill "$INDEX_PID" 2>/dev/null || true
}

main() {
    mkdir -p "$WORK"
    : >"$WORK/times.txt"
    trap cleanup EXIT
    base_image
    case " $TARGETS " in
        *" inference-service "*) torch_index ;;
    esac
    local target targets
    read -r -a targets <<<"$TARGETS"
    for target in "${targets[@]}"; do
        build "$target"
    done
    cleanup
    INDEX_PID=
    "$REPO/deploy/docker/smoke-images.sh" "${targets[@]}"
    "${ENGINE[@]}" images --filter "reference=$IMAGE_PREFIX*" >&2
    cat "$WORK/times.txt" >&2
}

main "$@"
