#!/bin/bash
# Install everything bimfs needs to build, test (tools/test.sh), demo (tools/demo.sh) and
# benchmark (bench/) from Debian 12 packages. Idempotent and quiet: packages already
# installed are skipped, and apt runs only when something is missing. Runs as root, or
# through sudo otherwise.
set -euo pipefail

packages=(
    # build
    meson ninja-build pkg-config gcc libc6-dev
    libfuse3-dev libcurl4-openssl-dev libjansson-dev libqcow-dev libmicrohttpd-dev libssl-dev
    libexpat1-dev liblz4-dev zlib1g-dev
    # run and test
    fuse3 python3 python3-pytest attr util-linux e2fsprogs qemu-utils libqcow-utils
    ca-certificates openssl curl git clang-format
    # tools/test.sh checks the tests' Python with pyflakes (unused imports, undefined names)
    pyflakes3
    # the fuzz targets (tools/fuzz.sh): clang with libFuzzer and the sanitizer runtimes
    clang libclang-rt-14-dev
    # peers served over HTTP in tests, and the benchmarks (qemu-storage-daemon, jq)
    qemu-system-common jq
    # deploy/: systemd-analyze verify of the unit; the kustomize base's YAML and its
    # schema check (the test installs the npm package kubernetes-models)
    systemd python3-yaml
    # the S3 endpoint of the s3 backup target's tests checks every SigV4 signature with botocore
    python3-botocore
    # backups: the tests write and read Longhorn backups with independent code (lz4.frame),
    # the bench compares with the lz4 tool
    python3-lz4 lz4
)

missing=()
for p in "${packages[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
        missing+=("$p")
    fi
done
# node and npm: Debian's, unless a node is already there (NodeSource's nodejs bundles npm and
# conflicts with Debian's npm package).
if ! command -v node >/dev/null 2>&1; then
    missing+=(nodejs)
fi
if ! command -v npm >/dev/null 2>&1; then
    missing+=(npm)
fi
# Any nginx flavour will do; nginx-light is the smallest.
if ! command -v nginx >/dev/null 2>&1 && [ ! -x /usr/sbin/nginx ]; then
    missing+=(nginx-light)
fi

if [ ${#missing[@]} -eq 0 ]; then
    exit 0
fi

sudo=()
if [ "$(id -u)" -ne 0 ]; then
    if ! command -v sudo >/dev/null 2>&1; then
        echo "deps.sh: missing ${missing[*]}; run as root (no sudo here)" >&2
        exit 1
    fi
    sudo=(sudo)
fi

echo "deps.sh: installing ${missing[*]}"
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    -o Dpkg::Use-Pty=0 "${missing[@]}" >/dev/null
