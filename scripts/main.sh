#!/usr/bin/env bash
# Set everything up and run the main job: the quick FP32-vs-INT8 table — train LeNet-5, ResNet-20
# and MobileNetV2-small on Fashion-MNIST, quantize each (PTQ, QAT, dynamic) and print the table.
# Rerunning resumes (finished jobs are recorded in runs/table-quick/results.json).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
./build/qslim table --preset quick --out runs/table-quick "$@"
