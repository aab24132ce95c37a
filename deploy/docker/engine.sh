# shellcheck shell=bash disable=SC2034 # ENGINE and ULIMITS are for the scripts that source it
# The container engine of verify-build.sh and smoke-images.sh, sourced by both.
#
# podman with runc: Debian's default runtime, crun, refuses hosts whose cgroups
# are hybrid (v1 and v2 mounted together). podman's default limits (nofile
# 1048576, nproc 32768) need CAP_SYS_RESOURCE when they exceed the caller's
# hard limits, and a sandboxed root may lack it: ULIMITS stays within them.

ENGINE=(podman --runtime "${OCI_RUNTIME:-runc}")

_hard_limit() {
    local have=$1 cap=$2
    if [ "$have" = unlimited ] || [ "$have" -gt "$cap" ]; then echo "$cap"; else echo "$have"; fi
}
NOFILE=$(_hard_limit "$(ulimit -Hn)" 1048576)
NPROC=$(_hard_limit "$(ulimit -Hu)" 32768)
ULIMITS=(--ulimit "nofile=$NOFILE:$NOFILE" --ulimit "nproc=$NPROC:$NPROC")
