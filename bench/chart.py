#!/usr/bin/python3
"""chart.py - turns one benchmark CSV (bench/results/*.csv) into an SVG chart
and a markdown report.

    chart.py RUN.csv [--svg OUT.svg] [--md OUT.md]

The chart has one group of bars per workload and thread count, one bar per
contender, in two panels that share the rows:
  - left: speed relative to fusec fused on a log scale, centred on 1 (bars
    to the right are faster than fusec fused, to the left slower);
  - right: the fraction of the machine's limit reached (FLOPs / time / FMA
    peak for prefill, bytes / time / read bandwidth for decode): the
    roofline, as a bar per kernel.
A contender whose output disagreed with the others is drawn hatched in red
and labelled MISMATCH.

The markdown holds the machine, its measured limits, the results table and
the issue's targets as met / not met.  Standard library only.
"""
import csv
import math
import sys
from xml.sax.saxutils import escape

COLORS = ["#1f5fa8", "#7fa7d9", "#2e8b57", "#9acd9a", "#8e6bbf", "#c2a5e6", "#b8860b", "#e0c068"]
PEER_COLORS = {"OpenBLAS": "#d2691e", "PyTorch": "#c0392b"}


def load(path):
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    limits = [r for r in rows if r["kind"] == "limit"]
    results = [r for r in rows if r["kind"] == "result"]
    return limits, results


def num(s, default=0.0):
    try:
        return float(s)
    except (TypeError, ValueError):
        return default


def fmt_time(s):
    if s <= 0:
        return "-"
    if s < 1e-3:
        return "%.1f us" % (s * 1e6)
    if s < 1:
        return "%.2f ms" % (s * 1e3)
    return "%.3f s" % s


def groups(results):
    """[(key, [rows])] in file order; key = (workload, T, P, threads)."""
    out, index = [], {}
    for r in results:
        key = (r["workload"], r["T"], r["P"], r["threads"])
        if key not in index:
            index[key] = len(out)
            out.append((key, []))
        out[index[key]][1].append(r)
    return out


def group_title(key, rows):
    w, T, P, thr = key
    what = rows[0]["what"]
    size = "T=%s" % T + (" P=%s" % P if P not in ("", "0") else "")
    return "%s %s, %s, %s thread%s" % (w, what, size, thr, "" if thr == "1" else "s")


def color_map(results):
    labels = []
    for r in results:
        if r["contender"] not in labels:
            labels.append(r["contender"])
    cmap, k = {}, 0
    for lab in labels:
        if lab in PEER_COLORS:
            cmap[lab] = PEER_COLORS[lab]
        else:
            cmap[lab] = COLORS[k % len(COLORS)]
            k += 1
    return labels, cmap


def limit_text(limits):
    """The limits the fractions use: the widest FMA peak (the one measured
    at the start and at the end) and the read bandwidth, per thread count."""
    names = set(r["contender"] for r in limits)
    parts = []
    for r in limits:
        name, thr, v = r["contender"], r["threads"], num(r["limit_value"])
        if name.startswith("fma_peak") and name.count("_") == 3 and name + "_start" in names:
            parts.append("%s FMA %s thr: %.0f GFLOP/s" % (name.split("_")[2], thr, v))
        elif name == "read_bw_GBs":
            parts.append("read %s thr: %.1f GB/s" % (thr, v))
    return "; ".join(parts) + " (the higher of start and end)"


def svg(limits, results, path):
    labels, cmap = color_map(results)
    gs = groups(results)
    bar_h, gap, head = 15, 26, 118
    left_w, panel_w, mid = 270, 420, 150
    x1 = left_w                     # ratio panel
    x2 = left_w + panel_w + mid     # roofline panel
    width = x2 + panel_w + 120
    height = head + sum(len(r) * bar_h + gap for _, r in gs) + 60
    o = []
    o.append('<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" '
             'font-family="DejaVu Sans, Helvetica, Arial, sans-serif" font-size="11">' % (width, height))
    o.append('<defs><pattern id="hatch" width="6" height="6" patternUnits="userSpaceOnUse" '
             'patternTransform="rotate(45)"><rect width="6" height="6" fill="#fdd"/>'
             '<line x1="0" y1="0" x2="0" y2="6" stroke="#d00" stroke-width="3"/></pattern></defs>')
    o.append('<rect width="100%" height="100%" fill="white"/>')
    r0 = results[0] if results else {}
    o.append('<text x="12" y="22" font-size="16" font-weight="bold">fusec benchmark suite: %s</text>'
             % escape("%s (%s), %s, %s run" % (r0.get("host", "?"), r0.get("cpu", "?"), r0.get("run", "?"),
                                             r0.get("mode", "?"))))
    o.append('<text x="12" y="40" fill="#444">measured limits: %s</text>' % escape(limit_text(limits)))
    o.append('<text x="12" y="56" fill="#444">median of interleaved runs after a warm-up, caches flushed '
             'before each run; whiskers: min..max</text>')
    # legend
    lx, ly = 12, 74
    for lab in labels:
        o.append('<rect x="%d" y="%d" width="12" height="12" fill="%s"/>' % (lx, ly - 10, cmap[lab]))
        o.append('<text x="%d" y="%d">%s</text>' % (lx + 16, ly, escape(lab)))
        lx += 24 + 7 * len(lab)
        if lx > width - 200:
            lx, ly = 12, ly + 16
    # panel headers and axes
    top = head - 6
    o.append('<text x="%d" y="%d" font-weight="bold">speed relative to %s (log scale)</text>'
             % (x1, top - 14, escape(labels[0] if labels else "fusec")))
    o.append('<text x="%d" y="%d" font-weight="bold">fraction of the machine limit (roofline)</text>'
             % (x2, top - 14))
    # the log axis spans the speeds present, in steps of 1-3-10
    speeds = []
    for _, rows in gs:
        ref = next((num(r["median_s"]) for r in rows if num(r["time_vs_fused"]) == 1.0), 0)
        speeds += [ref / num(r["median_s"]) for r in rows if ref > 0 and num(r["median_s"]) > 0]
    steps = [0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1, 3, 10, 30, 100, 300, 1000]
    smin, smax = min(speeds + [1]), max(speeds + [1])
    lo_t = max([t for t in steps if t <= min(smin, 0.3)] or [steps[0]])
    hi_t = min([t for t in steps if t >= max(smax, 3)] or [steps[-1]])
    ticks = [t for t in steps if lo_t <= t <= hi_t]
    lo, hi = math.log10(ticks[0]), math.log10(ticks[-1])

    def rx(v):
        v = min(max(v, ticks[0]), ticks[-1])
        return x1 + (math.log10(v) - lo) / (hi - lo) * panel_w

    def fx(f):
        return x2 + min(max(f, 0), 1.2) / 1.2 * panel_w

    bottom = height - 50
    for t in ticks:
        o.append('<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="%s"/>'
                 % (rx(t), top, rx(t), bottom, "#888" if t == 1 else "#e4e4e4"))
        o.append('<text x="%.1f" y="%d" text-anchor="middle" fill="#555">%gx</text>' % (rx(t), bottom + 14, t))
    for f in (0, 0.25, 0.5, 0.75, 1.0):
        o.append('<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="%s"/>'
                 % (fx(f), top, fx(f), bottom, "#888" if f == 1 else "#e4e4e4"))
        o.append('<text x="%.1f" y="%d" text-anchor="middle" fill="#555">%d%%</text>'
                 % (fx(f), bottom + 14, round(100 * f)))
    y = head
    for key, rows in gs:
        o.append('<text x="12" y="%d" font-weight="bold">%s</text>' % (y + 10, escape(group_title(key, rows))))
        ref = next((num(r["median_s"]) for r in rows if num(r["time_vs_fused"]) == 1.0), 0)
        for i, r in enumerate(rows):
            yy = y + 14 + i * bar_h
            lab = r["contender"]
            med = num(r["median_s"])
            bad = r["check"] != "ok"
            fill = "url(#hatch)" if bad else cmap[lab]
            o.append('<text x="%d" y="%d" text-anchor="end" fill="#333">%s</text>'
                     % (x1 - 6, yy + 10, escape(lab)))
            if med <= 0:
                skipped = r["check"] == "SKIPPED"
                o.append('<text x="%d" y="%d" fill="%s">%s</text>'
                         % (x1 + 4, yy + 10, "#888" if skipped else "#d00",
                            "skipped (time budget)" if skipped else escape(r["check"])))
                continue
            speed = ref / med if ref > 0 else 0
            if speed > 0:
                a, b = sorted((rx(1), rx(speed)))
                o.append('<rect x="%.1f" y="%d" width="%.1f" height="%d" fill="%s"/>'
                         % (a, yy + 1, max(b - a, 1), bar_h - 3, fill))
                # spread: the same ratio at the min and max times
                mn, mx = num(r["min_s"]), num(r["max_s"])
                wl, wr = a, b
                if mn > 0 and mx > 0 and int(num(r["n"])) > 1:
                    o.append('<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#555"/>'
                             % (rx(ref / mx), yy + bar_h // 2, rx(ref / mn), yy + bar_h // 2))
                    wl, wr = min(a, rx(ref / mx)), max(b, rx(ref / mn))
                if abs(speed - 1) < 0.005 and num(r["time_vs_fused"]) == 1.0:
                    how = "reference"
                elif speed >= 1:
                    how = "%.2fx faster" % speed
                else:
                    how = "%.2fx slower" % (1 / speed)
                txt = "%s, %s%s" % (fmt_time(med), how, "  MISMATCH" if bad else "")
                tx = wr + 4 if speed >= 1 else wl - 4
                anchor = "start" if speed >= 1 else "end"
                if speed < 1 and wl - x1 < 130:
                    tx, anchor = wr + 4, "start"
                o.append('<text x="%.1f" y="%d" text-anchor="%s" fill="%s">%s</text>'
                         % (tx, yy + 10, anchor, "#d00" if bad else "#222", escape(txt)))
            frac = num(r["frac_of_limit"])
            o.append('<rect x="%.1f" y="%d" width="%.1f" height="%d" fill="%s"/>'
                     % (x2, yy + 1, max(fx(frac) - x2, 1), bar_h - 3, fill))
            o.append('<text x="%.1f" y="%d" fill="#222">%.0f%% %s</text>'
                     % (fx(frac) + 4, yy + 10, 100 * frac,
                        "bw" if r["limit"].startswith("read") else "FMA"))
        y += len(rows) * bar_h + gap
    o.append('<text x="12" y="%d" fill="#666">ratios per pair are to %s on the same workload and threads; '
             'FLOPs count matrix products (2 per multiply-add, causal attention pairs only); '
             'bytes = weights + KV cache read + inputs/outputs</text>'
             % (height - 12, escape(labels[0] if labels else "fusec fused")))
    o.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(o) + "\n")


def targets(results):
    """The issue's targets on the all-thread rows: [(text, value, goal, unit)]."""
    if not results:
        return []
    thr = str(max(int(r["threads"]) for r in results))
    ref = results[0]["contender"]

    def row(w, lab):
        for r in results:
            if r["workload"] == w and r["threads"] == thr and r["contender"] == lab and r["check"] == "ok" \
                    and num(r["median_s"]) > 0:
                return r
        return None

    def med(r):
        return num(r["median_s"])

    f1, f2, f3 = row("W1", ref), row("W2", ref), row("W3", ref)
    u2, u3 = row("W2", ref + " -O0"), row("W3", ref + " -O0")
    p1, p2 = row("W1", "PyTorch"), row("W2", "PyTorch")
    out = [
        ("W1 decode at >= 85% of the read bandwidth", 100 * num(f1["frac_of_limit"]) if f1 else None, 85, "%"),
        ("W2 prefill at >= 75% of the FMA peak", 100 * num(f2["frac_of_limit"]) if f2 else None, 75, "%"),
        ("W2 fused >= 1.1x faster than unfused", med(u2) / med(f2) if f2 and u2 else None, 1.1, "x"),
        ("W3 fused >= 2x faster than unfused", med(u3) / med(f3) if f3 and u3 else None, 2.0, "x"),
        ("W1 >= 1.5x faster than PyTorch eager", med(p1) / med(f1) if f1 and p1 else None, 1.5, "x"),
        ("W2 >= 1.5x faster than PyTorch eager", med(p2) / med(f2) if f2 and p2 else None, 1.5, "x"),
    ]
    return thr, ref, out


def markdown(limits, results, path):
    r0 = results[0] if results else {}
    o = ["Run %s on `%s` (%s), %s mode." % (r0.get("run", "?"), r0.get("host", "?"), r0.get("cpu", "?"),
                                           r0.get("mode", "?")), ""]
    o.append("Machine limits, measured at the start and again at the end of the run; the fractions "
             "use the higher of the two:")
    o.append("")
    o.append("| threads | FMA peak (start, end) | read bandwidth (start, end) | other FMA peaks |")
    o.append("| ---: | --- | --- | --- |")
    thr_set = []
    for r in limits:
        if r["threads"] not in thr_set and r["threads"] != "0":
            thr_set.append(r["threads"])
    val = {(r["threads"], r["contender"]): num(r["limit_value"]) for r in limits}
    for t in thr_set:
        names = [r["contender"] for r in limits if r["threads"] == t and r["contender"].startswith("fma_peak")
                 and r["contender"].count("_") == 3]
        main = next((n for n in names if (t, n + "_start") in val), None)
        others = ", ".join("%s %.1f" % (n.split("_")[2], val[(t, n)]) for n in names if n != main)
        peak = "%s %.1f GFLOP/s (%.1f, %.1f)" % (main.split("_")[2], val[(t, main)], val[(t, main + "_start")],
                                                 val.get((t, main + "_end"), 0)) if main else "-"
        bw = "%.1f GB/s (%.1f, %.1f)" % (val.get((t, "read_bw_GBs"), 0), val.get((t, "read_bw_GBs_start"), 0),
                                         val.get((t, "read_bw_GBs_end"), 0))
        o.append("| %s | %s | %s | %s |" % (t, peak, bw, others or "-"))
    loads = {r["contender"]: num(r["limit_value"], -1) for r in limits if r["contender"].startswith("load_")}
    if loads:
        o.append("")
        o.append("Load average (1 min): %.2f at the start, %.2f at the end." %
                 (loads.get("load_average_start", -1), loads.get("load_average_end", -1)))
    o.append("")
    o.append("| workload | thr | contender | median | min .. max | n | GFLOP/s | GB/s | of limit | t / fused | check |")
    o.append("| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
    for key, rows in groups(results):
        for i, r in enumerate(rows):
            w, T, P, thr = key
            name = "%s T=%s%s" % (w, T, " P=%s" % P if P not in ("", "0") else "") if i == 0 else ""
            med = num(r["median_s"])
            n = int(num(r["n"]))
            spread = "%s .. %s" % (fmt_time(num(r["min_s"])), fmt_time(num(r["max_s"]))) if n > 1 else \
                ("one run" if n == 1 else "-")
            frac = num(r["frac_of_limit"])
            lim = "%.0f%% %s" % (100 * frac, "bw" if r["limit"].startswith("read") else "FMA") if med > 0 else "-"
            ratio = "%.2fx" % num(r["time_vs_fused"]) if num(r["time_vs_fused"]) > 0 else "-"
            check = r["check"] if r["check"] != "ok" else "ok %.0e" % num(r["rel_l2"])
            if r["check"] == "SKIPPED":
                check = "skipped (time budget)"
            elif r["check"] != "ok":
                check = "**%s** %.1e" % (r["check"], num(r["rel_l2"]))
            o.append("| %s | %s | %s | %s | %s | %d | %.1f | %.1f | %s | %s | %s |" % (
                name, thr if i == 0 else "", r["contender"], fmt_time(med), spread, n,
                num(r["gflops"]), num(r["gbs"]), lim, ratio, check))
    t = targets(results)
    if t:
        thr, ref, out = t
        o.append("")
        o.append("Targets of issue 5, for %s at %s threads:" % (ref, thr))
        o.append("")
        o.append("| target | measured | status |")
        o.append("| --- | ---: | --- |")
        for text, value, goal, unit in out:
            if value is None:
                o.append("| %s | - | not measured |" % text)
            else:
                o.append("| %s | %.2f%s | %s |" % (text, value, unit, "met" if value >= goal else "not met"))
    with open(path, "w") as f:
        f.write("\n".join(o) + "\n")


def main(argv):
    if len(argv) < 2:
        print("usage: chart.py RUN.csv [--svg OUT.svg] [--md OUT.md]", file=sys.stderr)
        return 2
    src, svg_path, md_path = argv[1], None, None
    i = 2
    while i < len(argv):
        if argv[i] == "--svg" and i + 1 < len(argv):
            svg_path = argv[i + 1]
        elif argv[i] == "--md" and i + 1 < len(argv):
            md_path = argv[i + 1]
        else:
            print("chart.py: unknown argument %s" % argv[i], file=sys.stderr)
            return 2
        i += 2
    limits, results = load(src)
    if not results:
        print("chart.py: %s holds no results" % src, file=sys.stderr)
        return 1
    if svg_path:
        svg(limits, results, svg_path)
    if md_path:
        markdown(limits, results, md_path)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
