#!/usr/bin/env python3
"""Turns scripts/bench.sh's JSON lines into a table of medians (printed), and
optionally docs/benchmarks.md and a PNG plot (needs matplotlib).

usage: bench_plot.py RESULTS.jsonl [--md FILE] [--png FILE] [--mosquitto VERSION]
"""

import argparse
import datetime
import json
import math
import os
import platform
import statistics
import subprocess
from collections import defaultdict

# label -> (title, metric key, unit, higher is better, target ratio or None)
FLOWS = [
    ("fan-in-q0", "fan-in QoS 0, 8 pub -> 1 sub", 2.5),
    ("fan-in-q1", "fan-in QoS 1, 8 pub -> 1 sub", 3.0),
    ("fan-in-q2", "fan-in QoS 2, 8 pub -> 1 sub", None),
    ("fan-out-q0", "fan-out QoS 0, 1 pub -> 8 sub", 2.5),
    ("pairs-q0", "pairs QoS 0, 8 pub -> own sub", None),
]
LAT_KEYS = [("p50", "p50"), ("p99", "p99"), ("p999", "p99.9"), ("max", "max")]
BROKERS = ("mosquitto", "musqratt")
# The durable fan-in run (issue 13): Mosquitto with persistence, MusQraTT durable and in memory.
DURABLE = ("mosquitto-persist", "musqratt-durable", "musqratt")
# The TLS runs (issue 15): both brokers behind a TLS listener with the same certificate.
TLS = ("mosquitto-tls", "musqratt-tls")
# A round during which other processes used more than this much CPU (% of one
# core) competed with the broker and the generator: flagged as disturbed.
NOISY_PCT = 25


def load(path):
    runs = defaultdict(list)  # (label, broker) -> [result]
    for line in open(path):
        line = line.strip()
        if line:
            d = json.loads(line)
            runs[(d["label"], d["broker"])].append(d)
    return runs


def ok(rs):
    return [r for r in rs if not r.get("error")]


def med(rs, f):
    vals = [f(r) for r in ok(rs)]
    vals = [v for v in vals if v is not None]
    return statistics.median(vals) if vals else None


def fmt(v, digits=0):
    if v is None:
        return "—"
    if abs(v) >= 1e6:
        return f"{v / 1e6:.2f} M"
    if abs(v) >= 1e4:
        return f"{v / 1e3:.0f} k"
    return f"{v:,.{digits}f}"


def ratio(a, b):
    return None if a in (None, 0) or b is None else b / a


def verdict(r, target, lower_better=False):
    if r is None or target is None:
        return ""
    good = r <= target if lower_better else r >= target
    return f"{'met' if good else 'missed'} ({'≤' if lower_better else '≥'} {target:g}×)"


def errors_of(rs):
    return [f"round {r.get('round')}: {r['error']}" for r in rs if r.get("error")]


LAT_NAMES = dict(LAT_KEYS)


def pooled(rs, q):
    """Quantile q (µs) of all samples of the runs rs, from their `latency_hist_ns`."""
    hist = defaultdict(int)
    for r in rs:
        for ns, n in r.get("latency_hist_ns") or []:
            hist[ns] += n
    total = sum(hist.values())
    if not total:
        return None
    rank, seen = max(1, math.ceil(q * total)), 0
    for ns in sorted(hist):
        seen += hist[ns]
        if seen >= rank:
            return ns / 1000


def main_rows(runs):
    """(scenario, metric, mosquitto, musqratt, ratio, target) rows."""
    rows = []
    for label, title, target in FLOWS:
        m, q = (med(runs[(label, b)], lambda r: r["msgs_per_s"]) for b in BROKERS)
        r = ratio(m, q)
        t = verdict(r, target)
        if label == "fan-in-q1":
            lost = sum(x["lost"] for x in ok(runs[(label, "musqratt")]))
            t = (t + f"; loss {'0 — met' if lost == 0 else f'{lost} — missed'}") if t else t
        rows.append((title, "delivered msg/s", fmt(m), fmt(q), r, t))
    for key, name in LAT_KEYS:
        rs = [runs[("latency-q0", b)] for b in BROKERS]
        m, q = (med(x, lambda r, k=key: r["latency_us"][k]) for x in rs)
        r = ratio(m, q)
        t = verdict(r, 1.0, lower_better=True) if key in ("p99", "p999") else ""
        rows.append(("latency QoS 0 at 1,000 msg/s", f"{name} µs", fmt(m, 1), fmt(q, 1), r, t))
    # The same percentiles over every round's samples at once (from the runs'
    # histograms): the tail of 100,000 samples rather than a median of 5 tails.
    for key, name in (("p99", 0.99), ("p999", 0.999)):
        m, q = (pooled(ok(runs[("latency-q0", b)]), name) for b in BROKERS)
        rows.append(("latency QoS 0 at 1,000 msg/s", f"{LAT_NAMES[key]} µs, all rounds pooled",
                     fmt(m, 1), fmt(q, 1), ratio(m, q), ""))
    rs = [runs[("conns", b)] for b in BROKERS]
    m, q = (med(x, lambda r: r["rss_per_conn_bytes"]) for x in rs)
    r = ratio(m, q)
    rows.append(("idle connections", "RSS B/conn", fmt(m), fmt(q), r, verdict(r, 1.0, True)))
    m, q = (med(x, lambda r: r["connects_per_s"]) for x in rs)
    rows.append(("idle connections", "connects/s", fmt(m), fmt(q), ratio(m, q), ""))
    m, q = (med(x, lambda r: r["alive"]) for x in rs)
    clients = next((x["params"]["clients"] for x in ok(rs[1]) + ok(rs[0])), None)
    held = "" if q is None or clients is None else ("met" if q >= min(clients, 19000) else "missed")
    rows.append(("idle connections", "held (answer PINGREQ)", fmt(m), fmt(q), ratio(m, q),
                 f"{held} (19,000)" if held else ""))
    d = {b: med(runs[("fan-in-q1-durable", b)], lambda r: r["msgs_per_s"]) for b in DURABLE}
    lost = sum(x["lost"] for x in ok(runs[("fan-in-q1-durable", "musqratt-durable")]))
    r = ratio(d["mosquitto-persist"], d["musqratt-durable"])
    t = verdict(r, 3.0)
    t = (t + f"; loss {'0 — met' if lost == 0 else f'{lost} — missed'}") if t else t
    rows.append(("fan-in QoS 1 durable: Mosquitto persistence true vs MusQraTT fsync always",
                 "delivered msg/s", fmt(d["mosquitto-persist"]), fmt(d["musqratt-durable"]), r, t))
    r = ratio(d["musqratt"], d["musqratt-durable"])
    rows.append(("fan-in QoS 1: MusQraTT in-memory vs durable (fsync always)", "delivered msg/s",
                 f"in-memory: {fmt(d['musqratt'])}", f"durable: {fmt(d['musqratt-durable'])}", r,
                 verdict(r, 0.5)))
    m, q = (med(runs[("fan-in-q1-tls", b)], lambda r: r["msgs_per_s"]) for b in TLS)
    lost = sum(x["lost"] for x in ok(runs[("fan-in-q1-tls", "musqratt-tls")]))
    r = ratio(m, q)
    t = verdict(r, 1.0)
    t = (t + f"; loss {'0 — met' if lost == 0 else f'{lost} — missed'}") if t else t
    rows.append(("fan-in QoS 1 over TLS, 8 pub -> 1 sub", "delivered msg/s", fmt(m), fmt(q), r, t))
    for key, name in LAT_KEYS:
        m, q = (med(runs[("latency-q0-tls", b)], lambda r, k=key: r["latency_us"][k]) for b in TLS)
        r = ratio(m, q)
        t = verdict(r, 1.0, lower_better=True) if key in ("p99", "p999") else ""
        rows.append(("latency QoS 0 over TLS at 1,000 msg/s", f"{name} µs", fmt(m, 1), fmt(q, 1), r, t))
    w1, w2 = (med(runs[("scaling", b)], lambda r: r["msgs_per_s"]) for b in ("musqratt-w1", "musqratt-w2"))
    r = ratio(w1, w2)
    rows.append(("scaling: pairs QoS 0, MusQraTT 1 vs 2 workers", "delivered msg/s",
                 f"1 worker: {fmt(w1)}", f"2 workers: {fmt(w2)}", r, verdict(r, 1.7)))
    return rows


def detail_rows(runs):
    """Delivery check and CPU per flow run: medians over rounds."""
    rows = []
    labels = [l for l, _, _ in FLOWS] + ["latency-q0", "conns", "fan-in-q1-durable",
                                         "fan-in-q1-tls", "latency-q0-tls", "scaling"]
    brokers = {"scaling": ("musqratt-w1", "musqratt-w2"), "fan-in-q1-durable": DURABLE,
               "fan-in-q1-tls": TLS, "latency-q0-tls": TLS}
    for label in labels:
        for b in brokers.get(label, BROKERS):
            rs = runs.get((label, b), [])
            if not ok(rs):
                if rs:
                    rows.append((label, b, "error", "", "", "", "", "", "", "", "; ".join(errors_of(rs))))
                continue
            sent = sum(r.get("sent", r.get("connected", 0)) for r in ok(rs))
            lost = sum(r.get("lost", r.get("failed", 0)) for r in ok(rs))
            dup = sum(r.get("duplicated", 0) for r in ok(rs))
            cpu = lambda k: med(rs, lambda r: r["cpu"].get(k))
            noisy = sum(1 for r in ok(rs) if r["cpu"].get("other_cpu_pct", 0) > NOISY_PCT)
            rounds = f"{len(ok(rs))} ({noisy} disturbed)" if noisy else str(len(ok(rs)))
            rows.append((label, b, rounds, fmt(sent), fmt(lost), str(dup),
                         fmt(cpu("broker_cpu_pct")), fmt(cpu("gen_cpu_pct")),
                         fmt(cpu("softirq_pct")), fmt(cpu("other_cpu_pct")), "; ".join(errors_of(rs))))
    return rows


def table(header, rows):
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        cells = [f"{c:.2f}×" if isinstance(c, float) else ("—" if c is None else str(c)) for c in row]
        out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out)


def machine(mosquitto, rev, note=""):
    model = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    mem = next((int(l.split()[1]) for l in open("/proc/meminfo") if l.startswith("MemTotal")), 0)
    if not rev:
        try:
            git = lambda *a: subprocess.run(["git", *a], capture_output=True, text=True).stdout.strip()
            rev = git("rev-parse", "--short", "HEAD")
            if git("status", "--porcelain", "--", "broker-component"):
                rev += " with uncommitted changes in broker-component/"
        except OSError:
            rev = "?"
    return (f"{os.cpu_count()} cores (`nproc`), {model}, {mem / 1024 / 1024:.1f} GiB RAM, "
            f"Linux {platform.release()}{'; ' + note if note else ''}; {mosquitto or 'mosquitto'}; "
            f"MusQraTT at commit {rev or '?'}")


MAIN_HEADER = ["scenario", "metric", "Mosquitto", "MusQraTT", "MusQraTT / Mosquitto", "issue 5 target"]
DETAIL_HEADER = ["run", "broker", "rounds", "sent (all rounds)", "lost", "duplicated",
                 "broker CPU %", "generator CPU %", "softirq %", "other CPU %", "errors"]


def plot(runs, png):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.8), gridspec_kw={"width_ratios": [3, 2, 1.3]})
    colors = {"mosquitto": "#7f7f7f", "musqratt": "#d62728"}
    width = 0.38

    def bars(ax, groups, value, ylabel, title, log=False):
        for i, b in enumerate(BROKERS):
            meds, lo, hi = [], [], []
            for g in groups:
                vals = [value(r) for r in ok(runs.get((g, b), []))]
                m = statistics.median(vals) if vals else 0
                meds.append(m)
                lo.append(m - min(vals) if vals else 0)
                hi.append(max(vals) - m if vals else 0)
            xs = [x + (i - 0.5) * width for x in range(len(groups))]
            ax.bar(xs, meds, width, yerr=[lo, hi], capsize=3, label=b, color=colors[b])
        ax.set_xticks(range(len(groups)))
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        if log:
            ax.set_yscale("log")
        ax.legend()

    labels = [l for l, _, _ in FLOWS]
    bars(axes[0], labels, lambda r: r["msgs_per_s"], "delivered messages / s (median, min–max)",
         "Throughput", log=True)
    axes[0].set_xticklabels(labels, rotation=15)
    # Latency: one group per percentile, the same run.
    lat = {k: None for k, _ in LAT_KEYS}
    for i, b in enumerate(BROKERS):
        rs = ok(runs.get(("latency-q0", b), []))
        meds = [statistics.median([r["latency_us"][k] for r in rs]) if rs else 0 for k, _ in LAT_KEYS]
        xs = [x + (i - 0.5) * width for x in range(len(lat))]
        axes[1].bar(xs, meds, width, label=b, color=colors[b])
    axes[1].set_xticks(range(len(lat)))
    axes[1].set_xticklabels([n for _, n in LAT_KEYS])
    axes[1].set_yscale("log")
    axes[1].set_ylabel("end-to-end latency, µs (median of rounds)")
    axes[1].set_title("Latency, QoS 0 at 1,000 msg/s")
    axes[1].legend()
    bars(axes[2], ["conns"], lambda r: r["rss_per_conn_bytes"], "broker RSS per idle connection, bytes",
         "Memory per connection")
    conns = ok(runs.get(("conns", "musqratt"), []) + runs.get(("conns", "mosquitto"), []))
    axes[2].set_xticklabels([f"{conns[0]['params']['clients']:,} idle clients" if conns else ""])
    fig.tight_layout()
    fig.savefig(png, dpi=110)


def summary(line):
    """One progress line for bench.sh."""
    d = json.loads(line)
    parts = [f"{k}={d[k]:.0f}" for k in
             ("msgs_per_s", "rss_per_conn_bytes", "connects_per_s", "lost", "alive") if k in d]
    if "latency_us" in d:
        parts.append(f"p99={d['latency_us']['p99']}us")
    c = d.get("cpu", {})
    parts += [f"{k}={c.get(k + '_cpu_pct', 0):.0f}%" for k in ("broker", "gen", "other")]
    return " ".join(parts)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("results", nargs="?")
    ap.add_argument("--summary")
    ap.add_argument("--md")
    ap.add_argument("--png")
    ap.add_argument("--mosquitto", default="")
    ap.add_argument("--commit", default="", help="the MusQraTT source measured (default: git HEAD now)")
    ap.add_argument("--note", default="", help="machine state worth knowing (e.g. kdamond paused)")
    a = ap.parse_args()
    if a.summary:
        print(summary(a.summary))
        return
    runs = load(a.results)
    main_t = table(MAIN_HEADER, main_rows(runs))
    detail_t = table(DETAIL_HEADER, detail_rows(runs))
    print(main_t)
    print()
    print(detail_t)
    if a.png:
        try:
            plot(runs, a.png)
        except ImportError:
            print("matplotlib missing: no plot")
            a.png = None
    if a.md:
        write_md(a, main_t, detail_t)


def write_md(a, main_t, detail_t):
    per_label = {}
    for rs in load(a.results).values():
        for r in rs:
            per_label[r.get("label")] = max(per_label.get(r.get("label"), 0), r.get("round", 1))
    counts = sorted(set(per_label.values())) or [0]
    rounds = (f"{counts[0]} rounds" if len(counts) == 1
              else f"{counts[0]}–{counts[-1]} rounds per scenario, see the rounds column")
    path = a.md
    head = open(path).read().split("<!-- results -->")[0] if os.path.exists(path) else ""
    if not head:
        head = "# Benchmarks\n\n"
    body = [
        "<!-- results -->",
        "## Latest results",
        "",
        f"Run on {datetime.date.fromtimestamp(os.path.getmtime(a.results)).isoformat()} by `make bench` ({rounds}, medians). Machine: "
        + machine(a.mosquitto, a.commit, a.note) + ".",
        "",
        main_t,
        "",
        "Delivery check and CPU, medians over rounds (100% = one core busy for the whole window; "
        "*softirq* is the kernel's loopback TCP work charged to no process; *other* is every other "
        f"process on the machine, i.e. noise; a round with other > {NOISY_PCT}% is counted as disturbed):",
        "",
        detail_t,
        "",
    ]
    if a.png:
        body += [f"![throughput, latency and memory per connection]({os.path.basename(a.png)})", ""]
    with open(path, "w") as f:
        f.write(head.rstrip("\n") + "\n\n" + "\n".join(body))


if __name__ == "__main__":
    main()
