#!/usr/bin/env bash
# The one prepared call for a lent GPU machine (the device tool; docs/speed.md): the step and
# compile paths of issue 12 without Ray, which that machine's image lacks (it has torch, numpy,
# scipy, pyyaml, not pydantic). On the CPU machine first, once:
#
#   make gpu-wheels        # pydantic and its three needs, for the device's Python 3.12, in .whl/
#
# then run `bash bench/gpu_check.sh` there with `.whl` carried and timeout_s 600 (five
# variants of at most 110 s each, most of it compilation). Each line
# prints the plain eager loop's images/s, zerosum's, and their ratio, measured in the same
# process; the bf16 + reduce-overhead line is the target of 2x. The Ray Train run with NCCL
# (tests/gpu) also needs Ray's and MLflow's wheels, larger than one call carries: not here.
set -uo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  || { echo "gpu_check: installing .whl/*.whl failed (run make gpu-wheels here, and carry .whl)"; exit 2; }
export PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1
nvidia-smi -L
python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name(0))"
for variant in "" "--bf16" "--bf16 --compile default" "--bf16 --compile reduce-overhead" \
               "--bf16 --compile reduce-overhead --channels-last"; do
  echo "== step_throughput $variant"
  # shellcheck disable=SC2086  # the variant is several flags on purpose
  timeout 110 python3 bench/step_throughput.py --device cuda --rounds 300 --repeats 3 $variant
done
