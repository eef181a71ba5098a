#!/usr/bin/env python3
"""Scores one replay of an independent evaluation traffic file (../shared/eval-traffic)
against its truth file, as that generator's README says to score a monitor.

    bench/eval_score.py TRUTH ALERTS LABELS MODEL SEED

TRUTH is the generator's `*.truth.json`, ALERTS inferwatch's alert file (JSON lines of
alert state changes), LABELS the generator's `*.labels.csv.gz` (one row per line of the
data file: who sent it and when). Prints Markdown table rows: per episode whether an alert
named its client (or, for drift and the accuracy drop, its features or class), after how
many of the attacker's queries and how many minutes from the episode's start, by which
rule; then the honest clients flagged, by rule; then drift alerts on features before and
after the shift. Standard library only.
"""
import csv
import gzip
import json
import sys
from collections import defaultdict
from datetime import datetime

truth_path, alerts_path, labels_path, model, seed = sys.argv[1:6]
truth = json.load(open(truth_path))
alerts = [json.loads(line) for line in open(alerts_path) if line.strip()]
firing = [a for a in alerts if a["state"] == "firing"]


def ms(s):
    return int(datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp() * 1000)


def when(a):
    """An alert's time: the end of the window whose evaluation fired it (event time)."""
    return ms(a["window_end"])


episodes = truth["episodes"]
attack = {e["client_id"]: e for e in episodes if e["client_id"] != "all"}
benign = {c["client_id"] for c in truth["benign"]["clients"]}
benign |= {c["client_id"] for c in truth["benign"]["heavy_clients"]}
heavy = {c["client_id"]: c.get("kind", "heavy") for c in truth["benign"]["heavy_clients"]}

# The attackers' query times, from the label file (file order = arrival order).
queries = defaultdict(list)
with gzip.open(labels_path, "rt") as f:
    for row in csv.DictReader(f):
        c = row["client_id"]
        if c in attack and row["ts"]:
            queries[c].append(ms(row["ts"]))

for e in episodes:
    start = ms(e["start_ts"])
    c = e["client_id"]
    if c != "all":
        # The tampering client is honest outside its episode: only alerts from the
        # episode's start count for it.
        hits = [a for a in firing if a["labels"].get("client_id") == c]
        if e["type"] == "tampering":
            hits = [a for a in hits if when(a) >= start]
        if hits:
            first = min(hits, key=when)
            at = when(first)
            n = sum(1 for t in queries[c] if t < at)
            rules = sorted({a["rule_id"] for a in hits})
            print(f"| {model} | {seed} | {e['id']} | yes | {n} | "
                  f"{(at - start) / 60000:.1f} | {first['rule_id']} ({', '.join(rules)}) |")
        else:
            print(f"| {model} | {seed} | {e['id']} | **no** | - | - | - |")
    elif e["type"] == "drift":
        listed = set(e["details"]["features"])
        drift = [a for a in firing if a["rule_id"].startswith("drift.")]
        right = sorted({a["labels"].get("feature") for a in drift
                        if when(a) >= start and a["labels"].get("feature") in listed})
        wrong = sorted({f"{a['labels'].get('feature')}@{'before' if when(a) < start else 'after'}"
                        for a in drift
                        if when(a) < start or a["labels"].get("feature") not in listed})
        first = min((when(a) for a in drift if when(a) >= start
                     and a["labels"].get("feature") in listed), default=None)
        delay = f"{(first - start) / 60000:.1f}" if first is not None else "-"
        print(f"| {model} | {seed} | drift | {len(right)}/{len(listed)} listed features | - | "
              f"{delay} | false: {len(wrong)} {' '.join(wrong[:8])}{' ...' if len(wrong) > 8 else ''} |")
    elif e["type"] == "performance":
        d = e["details"]
        target, version = d["target_class"], d["model_version"]
        perf = [a for a in firing if a["rule_id"].startswith("performance.")]
        drift_start = min((ms(x["start_ts"]) for x in episodes if x["type"] == "drift"),
                          default=start)
        # The class-recall rule for the target class and the new version.
        hit = [a for a in perf if a["rule_id"] == "performance.class_recall_drop"
               and a["labels"].get("class") == target
               and a["labels"].get("model_version") == version and when(a) >= start]
        # Any performance alert before the inputs drifted is false; between the drift
        # and the switch, and for other classes, an alert is judged by the measured
        # recall of its class in that stretch (the episode's per-window recall).
        windows = d.get("recall_by_class_by_window", {})
        before = next((v for k, v in windows.items() if "before the drift" in k), {})
        drifted = next((v for k, v in windows.items() if "drift on" in k and "version 1" in k), {})
        after = next((v for k, v in windows.items() if f"version {version}" in k), {})

        tamper = next((x for x in episodes if x["type"] == "tampering"), None)

        def justified(a):
            t, c = when(a), a["labels"].get("class")
            if t < drift_start:
                return False
            if (tamper and t >= ms(tamper["start_ts"]) and t >= start
                    and a["labels"].get("model_version") != version):
                # After the switch the old version serves only the tampering client's
                # records, whose answers come from a poisoned model.
                return True
            now = after if t >= start and a["labels"].get("model_version") == version else drifted
            if c is None:  # a model-level alert: overall accuracy fell from the drift on
                acc = d.get("overall_accuracy_by_window", {})
                vals = list(acc.values())
                return len(vals) >= 2 and min(vals[1:]) <= vals[0] - 0.05
            if a["rule_id"] == "performance.class_precision_drop":
                # The class the lost ones are answered as (or a drift-hurt class's
                # confusions): judged by its answers' share rising.
                return c == d.get("flipped_to") or c in drifted
            return c in before and c in now and now[c] <= before[c] - 0.1
        other = [a for a in perf if a not in hit]
        false = sorted({f"{a['rule_id'].split('.')[1]}:{a['labels'].get('class', '-')}"
                        f"@v{a['labels'].get('model_version')}"
                        f"@{(when(a) - ms(truth['start_ts'])) / 60000:.0f}m"
                        for a in other if not justified(a)})
        early = [a for a in perf if when(a) < drift_start]
        note = f"before the drift: {len(early)}; unjustified: {len(false)} {' '.join(false[:6])}"
        if hit:
            at = min(when(a) for a in hit)
            print(f"| {model} | {seed} | {e['id']} | yes | - | {(at - start) / 60000:.1f} | "
                  f"performance.class_recall_drop ({target}, version {version}); {note} |")
        else:
            print(f"| {model} | {seed} | {e['id']} | **no** | - | - | {note} |")
        # Estimated (confidence-based) against realised accuracy, windows before the drift.
        probe = {}
        for a in alerts:
            if a["rule_id"] == "bench.performance_probe":
                v = a["evidence"]["values"]
                probe[(v["model_version"], v["at"])] = v
        # Honest windows: the 10 minutes a row covers hold no attacker's records.
        attacks = [(ms(x["start_ts"]), ms(x["end_ts"])) for x in episodes
                   if x["client_id"] != "all"]
        def at_ms(at):
            return ms(at.replace(" ", "T") + ("" if at.endswith("Z") else "Z"))
        rows = [v for (ver, at), v in probe.items()
                if at_ms(at) <= drift_start and v.get("accuracy") is not None]
        honest = [v for v in rows
                  if not any(a0 < at_ms(v["at"]) and a1 >= at_ms(v["at"]) - 600_000
                             for a0, a1 in attacks)]
        if rows:
            def gap(k, rows):
                vals = [abs(v[k] - v["accuracy"]) for v in rows if v[k] is not None]
                return f"{max(vals):.3f}" if vals else "-"
            # The first ten minutes: no labelled reference hour yet; the estimate is
            # calibrated on the baseline's held-out rows when it has them.
            t0 = ms(truth["start_ts"])
            early = [v for v in honest if at_ms(v["at"]) <= t0 + 600_000]
            later = [v for v in honest if at_ms(v["at"]) > t0 + 600_000]
            print(f"| {model} | {seed} | estimated vs realised accuracy | {len(honest)} honest "
                  f"windows | - | - | first ten minutes ({len(early)}): largest gap "
                  f"{gap('estimated_accuracy', early)} (uncalibrated mean confidence "
                  f"{gap('mean_confidence', early)}); later ({len(later)}): "
                  f"{gap('estimated_accuracy', later)}; on the labelled records of all "
                  f"{len(rows)} windows before the drift: "
                  f"{gap('estimated_accuracy_labelled', rows)} |")

# Honest clients flagged: any firing alert naming a client that planted nothing (the
# tampering client only before its episode).
flagged = defaultdict(set)
for a in firing:
    c = a["labels"].get("client_id")
    if not c:
        continue
    e = attack.get(c)
    if e is None or (e["type"] == "tampering" and when(a) < ms(e["start_ts"])):
        flagged[c].add(a["rule_id"])
by_rule = defaultdict(list)
for c, rules in flagged.items():
    for r in rules:
        by_rule[r].append(heavy.get(c, "benign") if c in benign or c in attack else "unknown")
summary = "; ".join(f"{r}: {len(v)} ({', '.join(sorted(set(x for x in v if x != 'benign')))})"
                    if any(x != "benign" for x in v) else f"{r}: {len(v)}"
                    for r, v in sorted(by_rule.items())) or "-"
print(f"| {model} | {seed} | honest clients flagged | {len(flagged)} | - | - | {summary} |")
