#!/usr/bin/python3
"""run.py - the compile-time scaling benchmark: how fusec's time and memory
grow with the number of operators in a block (`make bench-compile`).

    run.py [--fusec build/fusec] [--sizes 1000,2000,...] [--opt 1,0]
           [--timeout 300] [--out bench/results/compile-STAMP]

For each size N, gen.py writes a block of about N operators (a mix of
Llama layers written with builtins and from primitives, long elementwise
chains and wide fan-out; see gen.py), and fusec compiles it to C at each
optimisation level.  Each compile is one child process; its wall time is
measured around it and its peak resident memory is the child's ru_maxrss
(os.wait4).  A run that exceeds the timeout is killed and recorded as such
(the sizes after it are skipped for that level).  The median of --repeat
runs is kept (the machine may be shared).

Writes OUT.csv (size, ops, nodes, opt, seconds (wall), cpu_seconds (user +
system, what a shared machine does not distort), peak_mb, status) and
OUT.svg, two panels against the number of operators on log-log axes:
CPU seconds and peak MB, one line per optimisation level (and per --label,
so a CSV from an older compiler can be drawn in the same chart with
--compare OLD.csv).  Standard library only.
"""
import argparse
import csv
import math
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from xml.sax.saxutils import escape

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import gen  # noqa: E402

DEFAULT_SIZES = [1000, 2000, 4000, 8000, 16000, 32000, 64000, 100000]


def run_once(cmd, timeout):
    """(wall seconds, CPU seconds (user + system), peak MB, status) of one child process."""
    t0 = time.monotonic()
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = t0 + timeout
    while True:
        pid, status, ru = os.wait4(p.pid, os.WNOHANG)
        if pid:
            break
        if time.monotonic() > deadline:
            p.send_signal(signal.SIGKILL)
            pid, status, ru = os.wait4(p.pid, 0)
            return time.monotonic() - t0, ru.ru_utime + ru.ru_stime, ru.ru_maxrss / 1024.0, "timeout"
        time.sleep(0.01)
    secs = time.monotonic() - t0
    err = p.stderr.read().decode(errors="replace")
    p.stderr.close()
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        sys.stderr.write(err[-2000:])
        return secs, ru.ru_utime + ru.ru_stime, ru.ru_maxrss / 1024.0, "exit %d" % code
    return secs, ru.ru_utime + ru.ru_stime, ru.ru_maxrss / 1024.0, "ok"


def count_nodes(fusec, path):
    """Operator nodes of the block after sema (fusec --emit=ir -O0)."""
    out = subprocess.run([fusec, "-O0", "--emit=ir", path], capture_output=True, text=True)
    return sum(1 for line in out.stdout.splitlines() if line.lstrip().startswith("%"))


def measure(a):
    rows = []
    tmp = tempfile.mkdtemp(prefix="fusec-bench-compile-")
    dead = set()
    for n in a.sizes:
        text, ops = gen.generate(n, a.mix.split(","))
        src = os.path.join(tmp, "big%d.fdl" % n)
        with open(src, "w") as f:
            f.write(text)
        nodes = count_nodes(a.fusec, src) if a.nodes else ""
        for opt in a.opt:
            if opt in dead:
                rows.append(dict(label=a.label, size=n, ops=ops, nodes=nodes, opt=opt, seconds="",
                                 cpu_seconds="", peak_mb="", status="skipped"))
                continue
            out = os.path.join(tmp, "big%d_O%s.c" % (n, opt))
            runs = []
            for _ in range(a.repeat):
                runs.append(run_once([a.fusec, "-O%s" % opt, src, "-o", out], a.timeout))
                if runs[-1][3] != "ok":
                    break
            status = runs[-1][3]
            secs = statistics.median(r[0] for r in runs)
            cpu = statistics.median(r[1] for r in runs)
            mb = statistics.median(r[2] for r in runs)
            if status != "ok":
                dead.add(opt)
            rows.append(dict(label=a.label, size=n, ops=ops, nodes=nodes, opt=opt,
                             seconds="%.3f" % secs, cpu_seconds="%.3f" % cpu, peak_mb="%.1f" % mb,
                             status=status))
            print("%-8s N=%-7d ops=%-7d nodes=%-7s -O%s  %8.2f s wall  %8.2f s cpu  %8.1f MB  %s"
                  % (a.label, n, ops, nodes, opt, secs, cpu, mb, status), flush=True)
            for suffix in (".c", ".h"):
                try:
                    os.unlink(out[:-2] + suffix)
                except OSError:
                    pass
        os.unlink(src)
    os.rmdir(tmp)
    return rows


FIELDS = ["label", "size", "ops", "nodes", "opt", "seconds", "cpu_seconds", "peak_mb", "status"]


def write_csv(rows, path):
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=FIELDS)
        w.writeheader()
        for r in rows:
            w.writerow({k: r.get(k, "") for k in FIELDS})


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


COLORS = ["#1f5fa8", "#c0392b", "#2e8b57", "#b8860b", "#8e6bbf", "#7fa7d9"]


def svg(rows, path, title):
    series = {}
    for r in rows:
        if r.get("status") not in ("ok", "timeout") or not r.get("seconds"):
            continue
        key = "%s -O%s" % (r["label"], r["opt"])
        series.setdefault(key, []).append((int(r["ops"]), float(r.get("cpu_seconds") or r["seconds"]), float(r["peak_mb"]),
                                           r["status"]))
    W, H, ml, mr, mt, mb = 460, 340, 70, 20, 50, 55
    xs = [p[0] for s in series.values() for p in s] or [1000, 100000]
    xlo, xhi = 10 ** math.floor(math.log10(min(xs))), 10 ** math.ceil(math.log10(max(xs)))
    o = ['<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" '
         'font-family="DejaVu Sans, Helvetica, Arial, sans-serif" font-size="11">' % (2 * W + 20, H + 70),
         '<rect width="100%" height="100%" fill="white"/>',
         '<text x="12" y="22" font-size="15" font-weight="bold">%s</text>' % escape(title)]
    for panel, (idx, name, unit) in enumerate([(1, "CPU time, user + system", "s"), (2, "peak memory", "MB")]):
        ox = panel * (W + 20)
        vals = [p[idx] for s in series.values() for p in s] or [0.01, 1]
        ylo = 10 ** math.floor(math.log10(max(min(vals), 1e-3)))
        yhi = 10 ** math.ceil(math.log10(max(vals)))

        def X(v):
            return ox + ml + (math.log10(v) - math.log10(xlo)) / (math.log10(xhi) - math.log10(xlo)) * (W - ml - mr)

        def Y(v):
            v = max(v, ylo)
            return mt + (1 - (math.log10(v) - math.log10(ylo)) / (math.log10(yhi) - math.log10(ylo))) * (H - mt - mb)

        o.append('<text x="%d" y="%d" font-size="13" font-weight="bold">%s (%s, log scale)</text>'
                 % (ox + ml, mt - 12, name, unit))
        d = xlo
        while d <= xhi:
            o.append('<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#ddd"/>' % (X(d), mt, X(d), H - mb))
            o.append('<text x="%.1f" y="%d" text-anchor="middle">%s</text>' % (X(d), H - mb + 15, "{:,}".format(int(d))))
            d *= 10
        d = ylo
        while d <= yhi * 1.0001:
            o.append('<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#ddd"/>' % (ox + ml, Y(d), ox + W - mr, Y(d)))
            o.append('<text x="%d" y="%.1f" text-anchor="end">%g</text>' % (ox + ml - 5, Y(d) + 4, d))
            d *= 10
        o.append('<text x="%.1f" y="%d" text-anchor="middle">operators in the block</text>'
                 % (ox + ml + (W - ml - mr) / 2, H - mb + 32))
        for k, (key, pts) in enumerate(sorted(series.items())):
            c = COLORS[k % len(COLORS)]
            pts.sort()
            o.append('<polyline fill="none" stroke="%s" stroke-width="2" points="%s"/>'
                     % (c, " ".join("%.1f,%.1f" % (X(p[0]), Y(p[idx])) for p in pts)))
            for p in pts:
                if p[3] == "timeout":
                    o.append('<text x="%.1f" y="%.1f" fill="%s" font-size="10">timeout</text>'
                             % (X(p[0]) + 4, Y(p[idx]) - 4, c))
                o.append('<circle cx="%.1f" cy="%.1f" r="3" fill="%s"/>' % (X(p[0]), Y(p[idx]), c))
            if panel == 0:
                ly = H + 10 + 14 * k
                o.append('<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="%s" stroke-width="2"/>'
                         % (ml, ly, ml + 24, ly, c))
                o.append('<text x="%d" y="%d">%s</text>' % (ml + 30, ly + 4, escape(key)))
    o.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(o) + "\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--fusec", default="build/fusec")
    ap.add_argument("--sizes", default=",".join(map(str, DEFAULT_SIZES)))
    ap.add_argument("--opt", default="1,0")
    ap.add_argument("--mix", default="layers,chain,prim,fanout")
    ap.add_argument("--timeout", type=float, default=300)
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--label", default="fusec")
    ap.add_argument("--nodes", action="store_true", help="also count IR nodes (one more compile per size)")
    ap.add_argument("--compare", action="append", default=[], help="another run's CSV to draw too")
    ap.add_argument("--plot-only", metavar="CSV", help="only draw this CSV (with --compare)")
    ap.add_argument("--out", default=os.path.join("bench", "results", "compile-" + time.strftime("%Y%m%d-%H%M%S")))
    a = ap.parse_args()
    a.sizes = [int(s) for s in a.sizes.split(",") if s]
    a.opt = [s for s in a.opt.split(",") if s]
    os.makedirs(os.path.dirname(a.out) or ".", exist_ok=True)
    if a.plot_only:
        rows = read_csv(a.plot_only)
    else:
        rows = measure(a)
        write_csv(rows, a.out + ".csv")
        print("wrote %s.csv" % a.out)
    for c in a.compare:
        rows = read_csv(c) + rows
    svg(rows, a.out + ".svg", "fusec compile time and memory against block size")
    print("wrote %s.svg" % a.out)
    bad = [r for r in rows if r["label"] == a.label and r["status"] not in ("ok", "skipped")]
    return 1 if bad and not a.plot_only else 0


if __name__ == "__main__":
    sys.exit(main())
