#!/usr/bin/env bash
# Hostile-traffic soak: hostile records of every kind (bench/hostile_mix.py) mixed at
# random into the generator's mixed traffic (honest clients plus attack episodes), through
# `replay` and, with a broker, through Kafka `run`. Reports records/s, peak RSS, panics
# (must be 0), and whether the attack episodes fire the same rules as without the
# hostile records.
#
#   bench/hostile_soak.sh [HOSTILE] [HONEST] [SEED]   default: 10000000 2000000 1
#
# Kafka: uses $KAFKA_BROKERS, or starts the test broker (scripts/kafka.sh); set
# SOAK_KAFKA=0 to skip it.
set -euo pipefail
source "$(dirname "$0")/common.sh"
hostile=${1:-10000000}
honest=${2:-2000000}
seed=${3:-1}

"$bin" gen --scenario mixed --seed "$seed" --events "$honest" --rate 200 \
  --out "$work/honest.jsonl" --truth "$work/truth.jsonl" 2>/dev/null
python3 bench/hostile_mix.py "$work/honest.jsonl" "$work/hostile.jsonl" "$hostile" "$seed" 2>"$work/kinds.json"

firing() { # alerts file -> sorted "rule labels" of firing alerts
  python3 -c 'import json,sys
for l in open(sys.argv[1]):
    a = json.loads(l)
    if a["state"] == "firing": print(a["rule_id"], json.dumps(a["labels"], sort_keys=True))' "$1" | sort -u
}

replay() { # name input
  /usr/bin/time -f '%e %M' -o "$work/time" \
    "$bin" replay --config examples/replay.yaml --input "$2" --no-progress \
    --alerts-out "$work/$1.alerts.jsonl" >/dev/null 2>"$work/$1.stderr"
  echo $? >"$work/$1.rc"
}

machine
echo "hostile kinds: $(cat "$work/kinds.json")"
echo
set +e
replay clean "$work/honest.jsonl"
replay hostile "$work/hostile.jsonl"
set -e
firing "$work/clean.alerts.jsonl" >"$work/clean.firing"
firing "$work/hostile.alerts.jsonl" >"$work/hostile.firing"
read -r secs kb <"$work/time"
total=$(wc -l <"$work/hostile.jsonl")
panics=$(grep -c "panicked" "$work/hostile.stderr" || true)
missing=$(comm -23 "$work/clean.firing" "$work/hostile.firing" | wc -l)
extra=$(comm -13 "$work/clean.firing" "$work/hostile.firing" | wc -l)
echo "| path | records | exit | panics | seconds | records/s | peak RSS (MiB) | honest alerts kept | alerts added |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|"
awk -v n="$total" -v rc="$(cat "$work/hostile.rc")" -v p="$panics" -v s="$secs" -v kb="$kb" \
  -v kept="$(( $(wc -l <"$work/clean.firing") - missing ))/$(wc -l <"$work/clean.firing")" -v extra="$extra" \
  'BEGIN { printf "| replay | %d | %s | %d | %.1f | %.0f | %.0f | %s | %d |\n", n, rc, p, s, n / s, kb / 1024, kept, extra }'
comm -23 "$work/clean.firing" "$work/hostile.firing" | sed 's/^/replay, not kept: /' >"$work/lost"

if [ "${SOAK_KAFKA:-1}" = 1 ]; then
  kafka_broker
  topic=soak-$$
  scripts/kafka.sh topic "$topic" 6 >&2
  # A broker takes no message over its message.max.bytes (1 MB): the oversized
  # records stay out of the topic, as they would in production.
  awk 'length($0) < 900000' "$work/hostile.jsonl" | scripts/kafka.sh produce "$topic" >&2
  total=$(awk 'length($0) < 900000' "$work/hostile.jsonl" | wc -l)
  sed -e "s|\${KAFKA_BROKERS}|$KAFKA_BROKERS|" -e "s|\${INFERWATCH_TOPIC}|$topic|" \
    -e "s|\${INFERWATCH_GROUP:-inferwatch}|soak-$$|" -e "s|\${INFERWATCH_OUT:-../out}|$work|" \
    -e "s|^queries: .*|queries: $PWD/queries|" -e "s|stdout: true|stdout: false|" \
    examples/kafka.yaml >"$work/kafka.yaml"
  set +e
  /usr/bin/time -f '%e %M' -o "$work/time" "$bin" run --config "$work/kafka.yaml" --http off \
    --until-idle 20s --alerts-out "$work/kafka.alerts.jsonl" >"$work/kafka.summary" 2>"$work/kafka.stderr"
  rc=$?
  set -e
  read -r secs kb <"$work/time"
  firing "$work/kafka.alerts.jsonl" >"$work/kafka.firing"
  panics=$(grep -c "panicked" "$work/kafka.stderr" || true)
  missing=$(comm -23 "$work/clean.firing" "$work/kafka.firing" | wc -l)
  extra=$(comm -13 "$work/clean.firing" "$work/kafka.firing" | wc -l)
  awk -v n="$total" -v rc="$rc" -v p="$panics" -v s="$secs" -v kb="$kb" \
    -v kept="$(( $(wc -l <"$work/clean.firing") - missing ))/$(wc -l <"$work/clean.firing")" -v extra="$extra" \
    'BEGIN { printf "| kafka run (incl. 20 s idle) | %d | %s | %d | %.1f | %.0f | %.0f | %s | %d |\n", n, rc, p, s, n / s, kb / 1024, kept, extra }'
  comm -23 "$work/clean.firing" "$work/kafka.firing" | sed 's/^/kafka run, not kept: /' >>"$work/lost"
fi
# Which honest alerts did not fire again (rule and labels), after the table.
if [ -s "$work/lost" ]; then
  echo
  cat "$work/lost"
fi
