#!/usr/bin/env bash
# The GPU figures of BENCHMARKS.md in one device call (about 6-8 minutes on an H100/H200), for a
# session that is lent a GPU machine. That machine has torch, transformers, accelerate, aiohttp and
# pandas, but not the rest of bertd's needs; carry them as wheels. Here, in the repository root:
#
#   echo /.whl/ >> .git/info/exclude
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#     --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
#     -d .whl aiosqlite loguru openpyxl et_xmlfile python-calamine defusedxml pytest-aiohttp pytest-asyncio \
#     pydantic pydantic-core annotated-types typing-inspection typing-extensions swagger-ui-bundle peft psutil
#
# (pydantic: the typed job and messages of bertd/protocol.py; swagger-ui-bundle: the server's docs page;
# peft: LoRA. Check `python3 -c "import pydantic, peft"` there first: any the machine already has can go.)
#
# then run `bash bench/gpu_session.sh` through the device tool with carry [".whl"] and a timeout
# of about 560 s. Output comes back under $OUT (the device tool's folder), or ./gpu-out here.
# A second call, `PART=predict bash bench/gpu_session.sh` (timeout about 560 s), measures prediction
# jobs (bf16 autocast) against pipeline() in fp32 on the GPU: the GPU goal of the predictions issue.
# Not yet run on a device: written in a session that had none; fix what it trips on.
set -uo pipefail
out="${OUT:-gpu-out}"
mkdir -p "$out"
rows="${ROWS:-4000}"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH="/tmp/site:$PWD" PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu.txt"
python3 -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__)" \
  | tee -a "$out/gpu.txt"
if [ "${PART:-train}" = predict ]; then
  timeout 540 python3 bench/predict_throughput.py --rows 20000 --base-rows 20000 --skip-online 2>&1 \
    | grep -v "Writing\|Loading" | tee "$out/predict.txt"
  exit 0
fi
# The training tests on the GPU first (bf16 autocast, compile auto, the OOM message path run there).
timeout 150 python3 -m pytest -q -x -p no:cacheprovider tests/test_train.py tests/test_cpu_dropout.py 2>&1 \
  | tail -5 | tee "$out/tests.txt"
# LORA=1 adds the bertd LoRA recipe (the device image has peft); it needs time the default run leaves.
timeout 420 python3 bench/train_throughput.py --rows "$rows" ${LORA:+--lora} --epochs 1 --batch-size 64 --max-length 512 2>&1 \
  | grep -v "Writing\|Loading" | tee "$out/throughput.txt"
