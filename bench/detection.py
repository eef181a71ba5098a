#!/usr/bin/env python3
"""Scores one replay of a generated scenario against its truth file.

    bench/detection.py TRUTH ALERTS INPUT SEED

Prints Markdown table rows: scenario episode, detected by its rule (first firing),
queries the attacker had sent until then, minutes from the episode's start, and the
false alerts: firing alerts of the per-client rules on clients that planted nothing.
"""
import json
import sys
from datetime import datetime

truth_path, alerts_path, input_path, seed = sys.argv[1:5]
truth = [json.loads(line) for line in open(truth_path)]
alerts = [json.loads(line) for line in open(alerts_path)]
attackers = {t["client_id"] for t in truth if t["client_id"]}
PER_CLIENT = ("flood.", "probing.", "extraction.", "tampering.", "evasion.")


def ms(s):
    return int(datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp() * 1000)


# Per attacker, the event times of its records.
times = {a: [] for a in attackers}
with open(input_path, "rb") as f:
    for line in f:
        try:
            r = json.loads(line)
        except ValueError:
            continue
        c = r.get("client_id")
        if c in times:
            times[c].append(ms(r["ts"]))

for t in truth:
    if not t["client_id"]:
        continue
    firing = [a for a in alerts if a["state"] == "firing" and a["rule_id"] == t["rule"]
              and a["labels"].get("client_id") == t["client_id"]]
    if firing:
        at = min(ms(a["window_end"]) for a in firing)
        queries = sum(1 for x in times[t["client_id"]] if x < at)
        minutes = (at - t["start_ms"]) / 60000
        print(f"| {seed} | {t['episode']} | {t['rule']} | yes | {queries} | {minutes:.1f} |")
    else:
        print(f"| {seed} | {t['episode']} | {t['rule']} | **no** | - | - |")

false = sorted({(a["rule_id"], a["labels"].get("client_id")) for a in alerts
                if a["state"] == "firing" and a["rule_id"].startswith(PER_CLIENT)
                and a["labels"].get("client_id") not in attackers})
print(f"| {seed} | honest clients | all per-client rules | false alerts: {len(false)} | "
      f"{'; '.join(f'{r} {c}' for r, c in false) or '-'} | |")
