#!/usr/bin/env bash
# The wheels benchmarks/gpu_validate.sh installs on the offline device machine (python 3.12):
# simpy for the simulator, onnx + onnxruntime (and what they need) for step 12. They land in
# .whl/ (git-ignored; about 36 MB, under the 64 MiB a device run may carry). Run it here,
# where an index is reachable, before the device call, and carry .whl.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
$PY -m pip download -q --dest .whl --python-version 3.12 --only-binary=:all: --no-deps \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 \
  simpy onnx onnxruntime protobuf flatbuffers ml_dtypes packaging typing_extensions
ls -l .whl
