#!/usr/bin/env bash
# Build (and with --push, push) the three images with tags taken from pyproject.toml:
#   REGISTRY/zerosum:<zerosum>-ray<ray>-gpu, REGISTRY/zerosum:<zerosum>-ray<ray>-cpu,
#   REGISTRY/zerosum-mlflow:<mlflow>
# usage: infra/docker/build.sh REGISTRY [--push]      e.g. infra/docker/build.sh ghcr.io/acme
set -euo pipefail
REGISTRY="${1:?usage: infra/docker/build.sh REGISTRY [--push]}"
PUSH="${2:-}"
cd "$(dirname "$0")/../.."
read -r ZEROSUM RAY MLFLOW < <(python3 - <<'PY'
import re, tomllib
project = tomllib.load(open("pyproject.toml", "rb"))["project"]
pins = {re.split(r"[\[=<>]", d)[0]: d.split("==")[1] for d in project["dependencies"] if "==" in d}
print(project["version"], pins["ray"], pins["mlflow"])
PY
)
ZEROSUM_IMAGE="$REGISTRY/zerosum:$ZEROSUM-ray$RAY"
docker build -f infra/docker/Dockerfile -t "$ZEROSUM_IMAGE-gpu" .
docker build -f infra/docker/Dockerfile --build-arg VARIANT=cpu \
    --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu -t "$ZEROSUM_IMAGE-cpu" .
docker build -f infra/docker/Dockerfile.mlflow -t "$REGISTRY/zerosum-mlflow:$MLFLOW" infra/docker
if [ "$PUSH" = "--push" ]; then
    for image in "$ZEROSUM_IMAGE-gpu" "$ZEROSUM_IMAGE-cpu" "$REGISTRY/zerosum-mlflow:$MLFLOW"; do
        docker push "$image"
    done
fi
echo "built $ZEROSUM_IMAGE-gpu $ZEROSUM_IMAGE-cpu $REGISTRY/zerosum-mlflow:$MLFLOW"
