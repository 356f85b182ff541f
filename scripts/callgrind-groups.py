#!/usr/bin/env python3
"""Where a request's instructions go: the self cost of every function in
callgrind profiles (callgrind.out files, as scripts/bench-compare.sh -o DIR
keeps them: cg-TARGET.out.N), grouped by function name into the rows of
docs/performance.md, "Where the instructions go", per request (issue 13).

    scripts/callgrind-groups.py [-n 20000] [-own] LABEL=FILE [LABEL=FILE ...]

-n is the requests each profile counted (bench-compare's -callgrind-n).
-own lists, per profile, tollgate's own functions (the first row), largest
first. Reads the callgrind format itself (no callgrind_annotate needed):
a function's self cost is the sum of its cost lines, not counting the
inclusive cost that follows each calls= line.
"""
import argparse
import re
import sys

# First match wins; a function no rule matches is in the last row.
GROUPS = (
    ("tollgate's own code (path, route, token cache, link, decision, reservation, count, settle, "
     "access line, metric calls, `hash/maphash`)",
     r"^github\.com/tollgate-dev/|^hash/maphash\."),
    ("writing and parsing headers (`net/http`, `net/textproto`, `bufio`, `httpguts`: canonicalise, "
     "sort, validate, escape, write, parse)",
     r"^net/textproto\.|^(vendor/)?golang\.org/x/net/http/httpguts\.|^bufio\.|^strings\.\(\*(byte)?[Rr]eplacer\)"
     r"|^net/http\.(Header\.|validateHeaders|readRequest|\(\*conn\)\.readRequest|ReadResponse|fixLength"
     r"|\(\*chunkWriter\)\.writeHeader|\(\*Request\)\.write|\(\*transferWriter\)|newTransferWriter"
     r"|readTransfer|\(\*transferReader\)|\(\*extraHeader\)|foreachHeaderElement|hasToken|\(\*headerSorter\))"
     r"|^slices\.[a-zA-Z]+CmpFunc\[.*net/http\.|^cmpbody$"),
    ("hash maps and hashing (header maps, caches)",
     r"^internal/runtime/maps\.|^runtime\.(map|memhash|strhash|nilinterhash|interhash|typehash|memequal|efaceeq"
     r"|ifaceeq)|^aeshash|^memeqbody$"),
    ("allocation",
     r"^runtime\.(mallocgc|newobject|newarray|makeslice|makeslicecopy|makemap|growslice|rawstring|rawbyteslice"
     r"|slicebytetostring|stringtoslicebyte|concatstring|convT|\(\*mcache\)|\(\*mcentral\)|nextFreeFast"
     r"|heapSetType|deductAssistCredit|publicationBarrier|memclrNoHeapPointers"
     r"|\(\*mspan\)\.(writeHeapBits|nextFreeIndex|refillAllocCache|init|initHeapBits))"),
    ("garbage collection and the page allocator",
     r"^runtime\.(gc|\(\*gc|scan|greyobject|markroot|findObject|spanOf|wbBuf|\(\*wbBuf\)|bulkBarrier"
     r"|gcWriteBarrier|wbMove|typedmemmove|typedslicecopy|\(\*mheap\)|\(\*pageAlloc\)|\(\*palloc|sweep|\(\*sweep"
     r"|bgsweep|bgscavenge|\(\*scavenge|\(\*mspan\)|markBits|\(\*markBits\)|\(\*gcBits|newMarkBits|newAllocBits"
     r"|typePointersOf|\(\*typePointers\)|\(\*lfstack\)|putempty|getempty|handoff|\(\*gcWork\)"
     r"|\(\*gcControllerState\)|sysUnused|sysUsed|madvise|pcvalue|findfunc|funcInfo|\(\*unwinder\)"
     r"|adjustframe|\(\*stkframe\)|tracebackPCs|heapBitsSmallForAddr)"),
    ("time and timers (clock reads, deadlines, the response-header timeout's timer)",
     r"^time\.|^runtime\.(nanotime|walltime|time_now|\(\*timer|\(\*timeTimer\)|timer|newTimer|blockTimerChan"
     r"|unblockTimerChan|maybeRunChan)|^__vdso|clock_gettime"),
    ("scheduling, channels, locks, system calls, the network poller, copying",
     r"^runtime\.(schedule|findRunnable|park|gopark|goready|ready|casgstatus|casGTo|runq|globrunq|netpoll"
     r"|epoll|futex|mcall|gogo|systemstack|goexit|mstart|stopm|startm|wakep|notesleep|notewakeup|lock|unlock"
     r"|chan|selectgo|sellock|selunlock|send|recv|closechan|acquireSudog|releaseSudog|entersyscall"
     r"|exitsyscall|reentersyscall|semacquire|semrelease|\(\*semaRoot\)|procyield|osyield|usleep|nanosleep"
     r"|resetspinning|checkTimers|pidle|runqsteal|stealWork|\(\*p\)|handoffp|acquirep|releasep|execute"
     r"|newproc|gfget|gfput|memmove|\(\*waitq\)|morestack|newstack|copystack|procPin|procUnpin|cheaprand"
     r"|rand|getg|mPark|save_g|asmcgocall|read|write|syscall|Syscall|fastrand|readyWithTime|goroutineReady"
     r"|dropg|resetForSleep|parkunlock|injectglist|wirep|needm|exitsyscallfast|spinning)"
     r"|^syscall\.|^internal/poll\.|^sync\.|^internal/sync\.|^internal/runtime/(atomic|syscall)\.|^memmove$"
     r"|^internal/chacha8rand\.|^net\.\(\*(conn|netFD)\)\.|^io\.(Copy|copyBuffer|ReadFull|ReadAtLeast)"),
)
OWN = GROUPS[0][0]
REST = "the rest (`net/http` request and connection handling, `ReverseProxy`, contexts, URLs)"
RULES = [(name, re.compile(rx)) for name, rx in GROUPS]


def group_of(fn):
    for name, rx in RULES:
        if rx.search(fn):
            return name
    return REST


def self_costs(path):
    """Self cost (the first event, Ir) per function name in a callgrind
    file."""
    names, costs = {}, {}
    npos, fn, skip = 1, None, False
    with open(path, errors="replace") as f:
        for line in f:
            line = line.rstrip("\n")
            if not line:
                continue
            c = line[0]
            if c.isdigit() or c in "+-*":
                if skip:  # the inclusive cost of the call above
                    skip = False
                    continue
                parts = line.split()
                if fn is not None and len(parts) > npos:
                    costs[fn] = costs.get(fn, 0) + int(parts[npos])
                continue
            if line.startswith("positions:"):
                npos = len(line.split()) - 1
            elif line.startswith("fn="):
                fn = compressed(names, line[3:])
            elif line.startswith("cfn="):
                compressed(names, line[4:])  # defines a name a later fn= may use
            elif line.startswith("calls="):
                skip = True
    return costs


def compressed(names, spec):
    """The name in "(id) name" or "(id)" (callgrind's name compression),
    remembered by id."""
    m = re.match(r"\((\d+)\)\s?(.*)$", spec)
    if not m:
        return spec
    if m.group(2):
        names[m.group(1)] = m.group(2)
    return names.get(m.group(1), spec)


def profile(arg):
    """A LABEL=FILE argument."""
    label, sep, path = arg.partition("=")
    if not sep or not label or not path:
        raise argparse.ArgumentTypeError(f"{arg!r} is not LABEL=FILE")
    return label, path


def main(argv):
    p = argparse.ArgumentParser(prog="callgrind-groups.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-n", type=int, default=20000, help="requests each profile counted (default 20000)")
    p.add_argument("-own", action="store_true", help="list tollgate's own functions per profile")
    p.add_argument("profiles", nargs="+", type=profile, metavar="LABEL=FILE")
    a = p.parse_args(argv)
    if a.n <= 0:
        p.error("-n must be > 0")
    n, own, profiles = a.n, a.own, a.profiles
    rows = [name for name, _ in GROUPS] + [REST]
    table, owns = {}, {}
    for label, path in profiles:
        per, mine = dict.fromkeys(rows, 0), []
        for fn, ir in self_costs(path).items():
            g = group_of(fn)
            per[g] += ir
            if g == OWN:
                mine.append((ir, fn))
        table[label], owns[label] = per, sorted(mine, reverse=True)
    labels = [label for label, _ in profiles]
    print("| what | " + " | ".join(labels) + " |")
    print("|---|" + "---|" * len(labels))
    for r in rows:
        print(f"| {r} | " + " | ".join(f"{table[l][r] / n / 1000:.1f} k" for l in labels) + " |")
    print("| **total** | " + " | ".join(f"**{sum(table[l].values()) / n / 1000:.1f} k**" for l in labels) + " |")
    if own:
        for label in labels:
            print(f"\n{label}: tollgate's own functions, instructions per request")
            for ir, fn in owns[label]:
                if ir / n >= 10:
                    print(f"{ir / n:9.0f}  {fn}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
