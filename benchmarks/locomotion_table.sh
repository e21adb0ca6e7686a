#!/usr/bin/env bash
# The learning table of docs/RESULTS.md: flow BC, IQL, ReBRAC, FQL, FlowQ and
# QIPO on flowrl/halfcheetah/medium-replay-v0 (made by `python -m flowrl.suites.data locomotion halfcheetah`),
# 2 seeds each in one program, CPU-sized, one run after the other, then `python -m flowrl.results.report`.
#
#     MINARI_DATASETS_PATH=... bash benchmarks/locomotion_table.sh OUT_DIR [UPDATES]
#
# Sizes: 2 x 256 networks, UPDATES updates (default 8000; the 2-core machine this ran on was shared
# and ran IQL at ~14 updates/s for 2 seeds), evaluated every UPDATES/4 with 10 episodes per seed, so
# the final score (mean of the last three evaluations) covers the second half of training.
# QIPO's update costs ~50 x flow BC's (M = 16 support actions of 10 Euler steps per state), so it
# runs 2 x 128 networks and 6000 updates: 2000 BC warm-up, 1500 critic, 2500 policy with a renewal
# every 500, evaluated every 1000 (its last three evaluations are all in the policy phase).
#
# Values that are not the agents' defaults, with their source:
# - IQL: expectile 0.7, AWR inverse temperature 3 (IQL paper, locomotion; CORL's
#   configs/offline/iql/halfcheetah/medium_replay_v2.yaml: iql_tau 0.7, beta 3.0);
# - ReBRAC: actor and critic BC weights 0.01 and 0.001 (CORL's
#   configs/offline/rebrac/halfcheetah/medium_replay_v2.yaml, the ReBRAC authors' values);
# - FQL: no published locomotion value; Q loss normalised by |Q| (`normalize_q_loss`) so that the
#   distillation weight alpha = 10 (the default) meets a Q term of order 1, as on OGBench's rewards;
# - FlowQ and QIPO: the agents' defaults (no per-dataset value public here).
set -euo pipefail
OUT=${1:?usage: bash benchmarks/locomotion_table.sh OUT_DIR [UPDATES]}
UPDATES=${2:-8000}
ENV_NAME=${ENV_NAME:-flowrl/halfcheetah/medium-replay-v0}
COMMON=(--env_name="$ENV_NAME" --num_seeds=2 --seed=0 --eval_episodes=10 --log_interval=1000
        --save_dir="$OUT/runs" --run_group=locomotion)
NETS=(--agent.actor_hidden_dims=256,256)
VALUE=(--agent.value_hidden_dims=256,256)
FAST=(--offline_steps="$UPDATES" --eval_interval=$((UPDATES / 4)) "${NETS[@]}")

run() {  # name, args...
  local name=$1; shift
  echo "=== $name $(date -u +%H:%M:%S)"
  nice -n 10 python main.py "${COMMON[@]}" "$@" > "$OUT/$name.log" 2>&1
  echo "=== $name done $(date -u +%H:%M:%S)"
}

mkdir -p "$OUT"
run flow_bc --agent=agents/flow_bc.py "${FAST[@]}"
run iql --agent=agents/iql.py "${FAST[@]}" "${VALUE[@]}" --agent.expectile=0.7 --agent.alpha=3.0
run rebrac --agent=agents/rebrac.py "${FAST[@]}" "${VALUE[@]}" --agent.alpha_actor=0.01 --agent.alpha_critic=0.001
run fql --agent=agents/fql.py "${FAST[@]}" "${VALUE[@]}" --agent.normalize_q_loss=True
run flowq --agent=agents/flowq.py "${FAST[@]}" "${VALUE[@]}"
run qipo --agent=agents/qipo.py --agent.actor_hidden_dims=128,128 --agent.value_hidden_dims=128,128 \
  --offline_steps=6000 --eval_interval=1000 --agent.bc_steps=2000 --agent.critic_steps=1500 --agent.renew_period=500
python -m flowrl.results.report "$OUT/runs" --out "$OUT/report"
