#!/usr/bin/env bash
# Set everything up and run the main job: train LeNet-5 on Fashion-MNIST and print its test accuracy.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
./build/qslim train --model lenet --epochs "${EPOCHS:-10}" --out runs/lenet "$@"
