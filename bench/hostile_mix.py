#!/usr/bin/env python3
"""Mixes hostile records into an honest JSONL stream, at random places.

    hostile_mix.py HONEST OUT COUNT SEED

Every kind of hostile record the monitor must survive, chosen at random: event times at
i64 min/max, zero, negative, years 0 and 9999, a day ahead; numbers 1e308, NaN and
+-Infinity (as strings and bare); 10^5-deep nesting; duplicate keys; invalid UTF-8;
oversized records; a flood of distinct client ids and model values; repeated request
ids; model and version left out. The honest records are kept in order, so the honest
episodes in them stay.
Prints the count of each kind to stderr.
"""
import datetime
import json
import random
import sys

honest, out, count, seed = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
rng = random.Random(seed)
lines = open(honest, "rb").read().splitlines()
n = len(lines)


def parsed(line):
    try:
        v = json.loads(line)
        return v if isinstance(v, dict) and isinstance(v.get("ts"), str) else None
    except ValueError:
        return None


# An honest record from the middle of the stream: the shape hostile records copy.
template = next(v for v in map(parsed, lines[n // 2:]) if v)


def rec(i, **over):
    """The template record at the honest time of line i, with `over` set."""
    r = dict(template)
    r["ts"] = ts_now(i)
    r.update(over)
    return json.dumps(r).encode()


def line_ts(line):
    try:
        return json.loads(line)["ts"]
    except (ValueError, KeyError, TypeError):
        return None


# The event time near each honest line (malformed lines take the one before them).
times = []
for line in lines:
    t = line_ts(line)
    times.append(t if isinstance(t, str) else (times[-1] if times else None))
first = next(t for t in times if t)
times = [t or first for t in times]


def ts_now(i):
    return times[min(i, n - 1)]


def day_ahead(ts):
    t = datetime.datetime.fromisoformat(ts.replace("Z", "+00:00")) + datetime.timedelta(days=1)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"


KINDS = [
    ("ts_i64_max", lambda i: rec(i, ts=9223372036854775807)),
    ("ts_i64_min", lambda i: rec(i, ts=-9223372036854775808)),
    ("ts_zero", lambda i: rec(i, ts=0)),
    ("ts_negative", lambda i: rec(i, ts=-86400000)),
    ("ts_year_9999", lambda i: rec(i, ts="9999-12-31T23:59:59Z")),
    ("ts_year_0", lambda i: rec(i, ts="0000-01-01T00:00:00Z")),
    ("ts_day_ahead", lambda i: rec(i, ts=day_ahead(ts_now(i)))),
    ("huge_number", lambda i: rec(i, features={**template.get("features", {}), "amount": 1e308})),
    ("nan_string", lambda i: rec(i, features={**template.get("features", {}), "amount": "NaN"})),
    ("inf_string", lambda i: rec(i, features={**template.get("features", {}), "amount": "-Infinity"})),
    ("bare_nan", lambda i: rec(i).replace(b'"ts"', b'"x": NaN, "ts"', 1)),
    ("deep_nesting", lambda i: b"[" * 100000 + b"]" * 100000),
    ("duplicate_keys", lambda i: rec(i)[:-1] + b', "client_id": "dup", "ts": 0}'),
    ("invalid_utf8", lambda i: rec(i).replace(b'"client_id": "', b'"client_id": "\xff\xfe', 1)),
    ("oversized", lambda i: rec(i, client_id="x" * 1_100_000)),
    ("distinct_client", lambda i: rec(i, client_id=f"c-{rng.getrandbits(64):x}",
                                      request_id=f"r-{rng.getrandbits(64):x}")),
    ("distinct_model", lambda i: rec(i, model=f"m-{rng.getrandbits(64):x}",
                                     request_id=f"r-{rng.getrandbits(64):x}")),
    ("repeated_request_id", lambda i: rec(i, request_id="r-same")),
    ("no_model", lambda i: json.dumps({k: v for k, v in json.loads(rec(i)).items()
                                       if k not in ("model", "model_version")}).encode()),
]
# Oversized and deeply nested records are expensive on purpose: fewer of them.
weights = [0.0005 if k in ("oversized", "deep_nesting") else 1.0 for k, _ in KINDS]

places = sorted(rng.randrange(n + 1) for _ in range(count))
counts = {k: 0 for k, _ in KINDS}
with open(out, "wb") as f:
    p = 0
    for i, line in enumerate(lines):
        while p < len(places) and places[p] == i:
            kind, make = rng.choices(KINDS, weights)[0]
            counts[kind] += 1
            f.write(make(i).replace(b"\n", b" ") + b"\n")
            p += 1
        f.write(line + b"\n")
    while p < len(places):
        kind, make = rng.choices(KINDS, weights)[0]
        counts[kind] += 1
        f.write(make(n - 1).replace(b"\n", b" ") + b"\n")
        p += 1
print(json.dumps(counts), file=sys.stderr)
