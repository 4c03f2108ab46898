#!/bin/bash
# The test command for bimfs (what CI runs, through .ci/run):
#
#   1. tools/deps.sh                  packages (idempotent)
#   2. build/          -Dwerror=true  build, then `meson test` (unit + integration)
#   3. build-sanitize/ ASan + UBSan   build, then `meson test` again; any sanitizer report fails
#   4. build-fuzz/     clang, libFuzzer: tools/fuzz.sh, each fuzz target for FUZZ_SECONDS
#                                     (default 15 s); any crash or sanitizer report fails
#   5. clang-format --dry-run --Werror on every .c/.h in git
#   6. pyflakes3 on the tests' Python (tests/): no unused import, no undefined name
#
# Every step runs even when an earlier one failed (a failed build skips its tests); a summary
# is printed at the end and the exit status is non-zero if anything failed.
#
# Environment: BUILD (default ./build), BUILD_SANITIZE (default ./build-sanitize),
# BUILD_FUZZ (default ./build-fuzz), FUZZ_SECONDS (default 15: six targets, the whole step
# with its build stays under 3 minutes),
# MESON_NUM_PROCESSES (default 3), MESON_TEST_ARGS (extra `meson test` arguments, e.g. a test
# name).
set -uo pipefail

cd "$(dirname "$0")/.."
root=$PWD
build=${BUILD:-$root/build}
build_san=${BUILD_SANITIZE:-$root/build-sanitize}
read -r -a test_args <<<"${MESON_TEST_ARGS:-}"
# The integration tests mostly wait on the daemon (I/O, timers), so three at a time keep two
# cores busy; the whole script stays around ten minutes.
jobs=${MESON_NUM_PROCESSES:-3}

summary=()
failed=0

# step NAME COMMAND...: run a step, record PASS/FAIL and its duration.
step() {
    local name=$1 start=$SECONDS rc
    shift
    echo
    echo "==> $name"
    "$@"
    rc=$?
    if [ $rc -eq 0 ]; then
        summary+=("PASS  $name ($((SECONDS - start))s)")
    else
        summary+=("FAIL  $name (exit $rc, $((SECONDS - start))s)")
        failed=1
    fi
    return $rc
}

skip() {
    summary+=("SKIP  $1 ($2)")
    failed=1
}

# setup DIR OPTIONS...: configure a build dir (reconfigure when it exists), then build it.
build_dir() {
    local dir=$1
    shift
    if [ -f "$dir/build.ninja" ]; then
        meson configure "$dir" "$@" >/dev/null || return
    else
        meson setup "$dir" "$@" >/dev/null || return
    fi
    ninja -C "$dir"
}

format_check() {
    local files
    if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
        # tracked files, and new ones not ignored (so a file is checked before its first commit)
        mapfile -t files < <(git ls-files --cached --others --exclude-standard -- '*.c' '*.h')
    else
        mapfile -t files < <(find . -path './build*' -prune -o \( -name '*.c' -o -name '*.h' \) \
            -type f -print)
    fi
    [ ${#files[@]} -gt 0 ] || return 0
    clang-format --dry-run --Werror "${files[@]}"
}

step "dependencies (tools/deps.sh)" ./tools/deps.sh

if step "build (-Dwerror=true) in ${build#$root/}" build_dir "$build" -Dwerror=true; then
    step "meson test" meson test -C "$build" --print-errorlogs --num-processes "$jobs" \
        "${test_args[@]}"
else
    skip "meson test" "build failed"
fi

# ASan + UBSan: any report aborts the process (abort_on_error), so the test that ran it fails:
# the integration fixtures check the daemon's exit status on every stop and scan its log for
# sanitizer reports, and bimctl's exit status is checked everywhere. LeakSanitizer stays on
# (it works here: root, ptrace allowed) and checks every clean exit of bimfs and bimctl; the
# crash tests kill -9 the daemon, which simply skips the check for that run. If LSan cannot
# run on a machine (e.g. a container that forbids ptrace), use detect_leaks=0: the FUSE daemon
# is otherwise fully covered by ASan's use-after-free/overflow checks. BIMFS_TEST_SANITIZE=1
# tells tests they run instrumented (conftest.SANITIZED), so the slow ones may use less data.
if step "build (ASan+UBSan) in ${build_san#$root/}" build_dir "$build_san" -Dwerror=true \
    -Db_sanitize=address,undefined -Db_lundef=false; then
    step "meson test (ASan+UBSan)" env BIMFS_TEST_SANITIZE=1 \
        ASAN_OPTIONS=halt_on_error=1:abort_on_error=1:detect_leaks=1:print_summary=1:strict_string_checks=1 \
        UBSAN_OPTIONS=halt_on_error=1:abort_on_error=1:print_stacktrace=1:print_summary=1 \
        meson test -C "$build_san" --print-errorlogs --num-processes "$jobs" \
        --timeout-multiplier 3 "${test_args[@]}"
else
    skip "meson test (ASan+UBSan)" "build failed"
fi

# The parsers of outside input under libFuzzer (tests/fuzz, docs/reliability.md), briefly:
# a regression check on the seed corpus plus a little exploration, not a fuzzing campaign.
step "fuzz (tools/fuzz.sh ${FUZZ_SECONDS:-15})" env BUILD_FUZZ="${BUILD_FUZZ:-$root/build-fuzz}" \
    ./tools/fuzz.sh "${FUZZ_SECONDS:-15}"

step "clang-format --dry-run --Werror" format_check

step "pyflakes3 tests/" pyflakes3 tests/

echo
echo "==> summary"
printf '  %s\n' "${summary[@]}"
if [ $failed -ne 0 ]; then
    echo "tools/test.sh: FAILED"
    exit 1
fi
echo "tools/test.sh: all passed"
