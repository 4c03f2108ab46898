#!/bin/bash
# Run the libFuzzer targets of tests/fuzz/ (docs/reliability.md):
#
#   tools/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]     default 300 s, every target
#
# Configures a clang build (build-fuzz/, CC=clang, -Dfuzz=true; every library with
# -fsanitize=fuzzer-no-link,address,undefined), builds the targets only, and runs each one for
# the given time on a copy of its seed corpus (tests/fuzz/corpus/<target>/; the committed
# corpus never grows). Prints executions per second per target. Fails (exit 1) when any
# target crashes, leaks, times out on an input or trips a sanitizer; the input that did it
# is kept in build-fuzz/fuzz-artifacts/<target>/ and can be replayed with
# `build-fuzz/tests/fuzz/fuzz_<target> FILE`.
#
# Environment: BUILD_FUZZ (default ./build-fuzz), FUZZ_ARGS (extra libFuzzer options).
set -uo pipefail

cd "$(dirname "$0")/.."
root=$PWD
build=${BUILD_FUZZ:-$root/build-fuzz}
seconds=${1:-300}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(request cfg qcow http_range url peer restore)
read -r -a extra_args <<<"${FUZZ_ARGS:-}"

if ! [[ $seconds =~ ^[0-9]+$ ]] || [ "$seconds" -eq 0 ]; then
    echo "usage: tools/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]" >&2
    exit 2
fi
if ! command -v clang >/dev/null 2>&1; then
    echo "fuzz.sh: clang is missing (tools/deps.sh installs it)" >&2
    exit 1
fi

if [ -f "$build/build.ninja" ]; then
    meson configure "$build" -Dfuzz=true >/dev/null || exit 1
else
    CC=clang meson setup "$build" -Dfuzz=true >/dev/null || exit 1
fi
ninja -C "$build" "${targets[@]/#/tests/fuzz/fuzz_}" || exit 1

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

results=()
failed=0
for t in "${targets[@]}"; do
    exe=$build/tests/fuzz/fuzz_$t
    artifacts=$build/fuzz-artifacts/$t
    mkdir -p "$work/$t" "$artifacts"
    max_len=4096
    [ "$t" = qcow ] && max_len=65536 # the seed images are up to 64 KiB
    cp -r "$root/tests/fuzz/corpus/$t/." "$work/$t/"
    echo
    echo "==> fuzz_$t for ${seconds}s"
    # -timeout: an input that takes this long is a hang; -rss_limit_mb: the parsers are
    # bounded, more memory than this is a bug; UBSan reports abort (-fno-sanitize-recover).
    ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:strict_string_checks=1 \
        UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
        "$exe" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=$max_len \
        -print_final_stats=1 -artifact_prefix="$artifacts/" "${extra_args[@]}" "$work/$t" \
        >"$work/$t.log" 2>&1
    rc=$?
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$work/$t.log")
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$work/$t.log")
    cov=$(grep -o 'cov: [0-9]*' "$work/$t.log" | tail -1)
    if [ $rc -eq 0 ]; then
        results+=("PASS  fuzz_$t: ${rate:-?} exec/s, ${runs:-?} runs, ${cov:-cov: ?}")
        tail -n 3 "$work/$t.log"
    else
        failed=1
        results+=("FAIL  fuzz_$t (exit $rc): input kept in ${artifacts#$root/}/")
        # the report: what libFuzzer and the sanitizers printed after the last status line
        grep -v -E '^#[0-9]+\s+(NEW|REDUCE|pulse|RELOAD)' "$work/$t.log" | tail -n 60
    fi
done

echo
echo "==> fuzz summary (${seconds}s per target)"
printf '  %s\n' "${results[@]}"
exit $failed
