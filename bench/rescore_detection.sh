#!/usr/bin/env bash
# Detection by re-scoring: the `evasion` and `tampering` scenarios of the embedded test
# model over several seeds, replayed with examples/rescore.yaml (the default rules, the
# default budget and sample); scored like bench/detection.sh (first firing of the
# episode's rule, queries until then, minutes from its start, and firing per-client
# alerts on honest clients).
#
#   bench/rescore_detection.sh [SEEDS...]     default: 1 2 3 4 5
SCENARIOS="evasion tampering" CONFIG=examples/rescore.yaml EVENTS=150000 RATE=50 \
  exec "$(dirname "$0")/detection.sh" "$@"
