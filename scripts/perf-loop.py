#!/usr/bin/env python3
"""Charges the samples of `perf script` (with call graphs, -g) that fall in
BenchmarkCachedPathScale's measured loop to the step of the path they are
in (the function the loop calls: the path is inlined into the loop) and to
the function they are in. scripts/perf-scale.sh runs it:

    perf script -i perf.data | python3 scripts/perf-loop.py
"""
import collections
import re
import sys

LOOP = "BenchmarkCachedPathScale.func1"
# The path's closure: when the compiler does not inline it into the loop,
# the steps are inlined into it instead, and a sample's step is told by the
# package of the function the closure called (STEPS, first match).
PATH = "inProcessPath.func1"
STEPS = (
    ("proxy/auth.", "token"),
    ("sidecar.gateAdapter", "decision"),
    ("entitlements.", "decision"),
    ("sidecar.quotaAdapter", "reservation"),
    ("meter.(*Quotas)", "reservation"),
    ("meter.(*Share)", "reservation"),
    ("sidecar.hold", "reservation"),
    ("sidecar.counterAdapter", "count"),
    ("meter.(*Meter)", "count"),
    ("meter.ckey", "count"),
    ("sidecar.memoOf", "memo"),
)
# The loop's own bookkeeping, not the path: warming the next requests and
# the stopped timer.
SKIP = ("warm", "StopTimer", "StartTimer")


def step_of(below, callee):
    """The step of a sample whose frame below the loop is below and, under
    that, callee (None when the sample is in below itself)."""
    if not below.endswith(PATH):
        return short(below)
    if callee is None:
        return "the path's closure"
    for prefix, name in STEPS:
        if prefix in callee:
            return name
    return "other: " + short(callee)


def short(frame):
    return frame.split("/")[-1]


def main(lines):
    step, where, total, stack = collections.Counter(), collections.Counter(), 0, []

    def done():
        nonlocal total
        for i, frame in enumerate(stack):  # leaf first
            if frame.endswith(LOOP):
                below = stack[i - 1] if i else "(the loop)"
                if not any(s in below for s in SKIP):
                    total += 1
                    name = step_of(below, stack[i - 2] if i >= 2 else None)
                    step[name] += 1
                    where[(name, short(stack[0]))] += 1
                return

    for line in lines:
        line = line.rstrip("\n")
        if not line.strip():
            done()
            stack = []
        elif line[0] in "\t ":
            parts = line.split(None, 1)
            if len(parts) == 2:
                stack.append(re.sub(r"\+0x[0-9a-f]+$", "", parts[1].split(" (")[0]))
    done()
    print(f"{total} samples in the measured loop")
    for title, counts, n in (("by step", step, 12), ("by step and function", where, 25)):
        print(f"== {title}")
        for key, v in counts.most_common(n):
            name = key if isinstance(key, str) else "  ".join(key)
            print(f"{100 * v / max(total, 1):6.2f}%  {name}")


if __name__ == "__main__":
    main(sys.stdin)
