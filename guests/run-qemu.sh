#!/bin/sh
# Boot a pyxen guest ELF under QEMU (PVH boot through the PHYS32_ENTRY note),
# show its console (debugcon, port 0xE9) and judge the outcome.
#
#   run-qemu.sh [--expect OUTCOME] [--timeout SECONDS] GUEST.elf [extra qemu args]
#   run-qemu.sh --all          # every guest with its expected outcome
#
# OUTCOME is one of:
#   success  "Test result: SUCCESS" (the default)
#   skip     "Test result: SKIP: ..."
#   failure  "Test result: FAILURE: ..."
#   reset    no result line and QEMU exited by itself (-no-reboot turns a
#            reset or triple fault into an exit)
#   hang     no result line and QEMU still running at the timeout
# Exit status: 0 when the outcome matches, 1 otherwise, 2 on usage errors.
#
# If guests/<name>/<name>.cfg has `cmdline = "..."` or `ramdisk = "..."`, they
# are passed as -append / -initrd (paths in the cfg are relative to the
# repository root).  QEMU_CPU overrides the CPU model (default: max).

set -u
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
qemu=${QEMU:-qemu-system-x86_64}
cpu=${QEMU_CPU:-max}

usage() {
    sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

# Expected outcome under QEMU (no Xen) of each guest.
expected_outcome() {
    case "$1" in
        test-triple-fault) echo reset ;;
        test-hlt|bench-first-insn|idle) echo hang ;;
        test-hypercalls|test-hypercalls32|test-fuzz) echo skip ;;
        # These need Xen features (event channels, timers, grants, SMP, a peer
        # domain): without Xen they print the reason and SKIP.
        test-events|test-time|test-smp|test-gntpeer|test-gntdeny|test-evfuzz|bench-ev) echo skip ;;
        # xenstored and the console daemon: SKIP without Xen.
        test-xenstore|test-shutdown|test-pvconsole) echo skip ;;
        *) echo success ;;
    esac
}

cfg_value() {  # cfg_value FILE KEY -> the quoted value, or nothing
    [ -f "$1" ] || return 0
    sed -n "s/^[[:space:]]*$2[[:space:]]*=[[:space:]]*\"\(.*\)\"[[:space:]]*\$/\1/p" "$1" | head -n 1
}

run_one() {
    expect=$1 timeout_s=$2 elf=$3
    shift 3
    [ -f "$elf" ] || { echo "run-qemu.sh: no such file: $elf" >&2; return 2; }
    name=$(basename "$elf" .elf)
    cfg="$here/$name/$name.cfg"
    cmdline=$(cfg_value "$cfg" cmdline)
    ramdisk=$(cfg_value "$cfg" ramdisk)

    set -- -kernel "$elf" -display none -serial none -monitor none \
        -debugcon stdio -device isa-debug-exit,iobase=0xf4,iosize=0x04 \
        -no-reboot -m 64 -cpu "$cpu" "$@"
    [ -n "$cmdline" ] && set -- "$@" -append "$cmdline"
    if [ -n "$ramdisk" ]; then
        case "$ramdisk" in /*) ;; *) ramdisk="$root/$ramdisk" ;; esac
        set -- "$@" -initrd "$ramdisk"
    fi

    log=$(mktemp)
    timeout "$timeout_s" "$qemu" "$@" >"$log" 2>&1
    status=$?
    cat "$log"
    result=$(grep -a '^Test result: ' "$log" | tail -n 1)
    rm -f "$log"

    case "$result" in
        "Test result: SUCCESS") got=success ;;
        "Test result: SKIP"*) got=skip ;;
        "Test result: FAILURE"*) got=failure ;;
        "") if [ "$status" -eq 124 ]; then got=hang; else got=reset; fi ;;
        *) got=unknown ;;
    esac
    # isa-debug-exit: 0 -> status 1 (SUCCESS/SKIP), 1 -> status 3 (FAILURE).
    case "$got" in
        success|skip) [ "$status" -eq 1 ] || got="$got-but-qemu-status-$status" ;;
        failure) [ "$status" -eq 3 ] || got="$got-but-qemu-status-$status" ;;
    esac

    if [ "$got" = "$expect" ]; then
        echo "run-qemu.sh: $name: $got (as expected)"
        return 0
    fi
    echo "run-qemu.sh: $name: $got, expected $expect (qemu status $status)"
    return 1
}

expect=""
timeout_s=""
while [ $# -gt 0 ]; do
    case "$1" in
        --expect) [ $# -ge 2 ] || usage; expect=$2; shift 2 ;;
        --timeout) [ $# -ge 2 ] || usage; timeout_s=$2; shift 2 ;;
        --all)
            failed=""
            for elf in "$here"/out/*.elf; do
                n=$(basename "$elf" .elf)
                e=$(expected_outcome "$n")
                t=60; [ "$e" = hang ] && t=5
                echo "=== $n (expect $e)"
                run_one "$e" "$t" "$elf" || failed="$failed $n"
            done
            if [ -n "$failed" ]; then
                echo "run-qemu.sh: unexpected outcome:$failed"
                exit 1
            fi
            echo "run-qemu.sh: all guests behaved as expected"
            exit 0 ;;
        -h|--help) usage ;;
        *) break ;;
    esac
done
[ $# -ge 1 ] || usage
elf=$1
shift
[ -n "$expect" ] || expect=success
if [ -z "$timeout_s" ]; then
    timeout_s=60
    [ "$expect" = hang ] && timeout_s=5
fi
case "$expect" in
    success|skip|failure|reset|hang) ;;
    *) usage ;;
esac
run_one "$expect" "$timeout_s" "$elf" "$@"
