#!/usr/bin/env bash
# The learning table of README "Locomotion datasets made here": flow BC, IQL, ReBRAC, FQL, FlowQ and
# QIPO on flowrl/halfcheetah/medium-replay-v0 (made by `python -m flowrl.data locomotion halfcheetah`),
# 2 seeds each in one program, CPU-sized (2 x 256 networks, 30k updates; QIPO 12k, see below), one
# run after the other, then `python -m flowrl.report` over all of them.
#
#     MINARI_DATASETS_PATH=... bash benchmarks/locomotion_table.sh OUT_DIR
#
# Values that are not the agents' defaults, with their source:
# - IQL: expectile 0.7, AWR inverse temperature 3 (IQL paper, locomotion; CORL's
#   configs/offline/iql/halfcheetah/medium_replay_v2.yaml: iql_tau 0.7, beta 3.0);
# - ReBRAC: actor and critic BC weights 0.01 and 0.001 (CORL's
#   configs/offline/rebrac/halfcheetah/medium_replay_v2.yaml, the ReBRAC authors' values);
# - FQL: no published locomotion value; Q loss normalised by |Q| (`normalize_q_loss`) so that the
#   distillation weight alpha = 10 (the default) meets a Q term of order 1, as on OGBench's rewards;
# - FlowQ and QIPO: the agents' defaults (no per-dataset value public here);
# - QIPO: its per-update cost is ~50 x flow BC's (M = 16 support actions of 10 Euler steps), so it
#   gets 12k updates: 6k BC warm-up, 3k critic, 3k policy with a renewal every 1k, evaluated every
#   1k so that its last three evaluations (the final score) are all in the policy phase.
set -euo pipefail
OUT=${1:?usage: bash benchmarks/locomotion_table.sh OUT_DIR}
ENV_NAME=${ENV_NAME:-flowrl/halfcheetah/medium-replay-v0}
COMMON=(--env_name="$ENV_NAME" --num_seeds=2 --seed=0 --eval_episodes=10 --log_interval=5000
        --save_dir="$OUT/runs" --run_group=locomotion --agent.actor_hidden_dims=256,256)
VALUE=(--agent.value_hidden_dims=256,256)
FAST=(--offline_steps=30000 --eval_interval=5000)

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
run qipo --agent=agents/qipo.py "${VALUE[@]}" --offline_steps=12000 --eval_interval=1000 \
  --agent.bc_steps=6000 --agent.critic_steps=3000 --agent.renew_period=1000
python -m flowrl.report "$OUT/runs" --out "$OUT/report"
