#!/usr/bin/env bash
# The test suite on burn's wgpu backend as well as the CPU ones. On a machine
# without a GPU, Mesa's software Vulkan (lavapipe) is the adapter: this
# script installs it where apt-get is available and root runs it. The wgpu
# build of burn is a second build (its own target folder), so CI does not
# run this; it takes 20 to 40 minutes the first time on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! ls /usr/share/vulkan/icd.d/lvp_icd*.json >/dev/null 2>&1 && command -v apt-get >/dev/null; then
  apt-get install -y -q mesa-vulkan-drivers || {
    apt-get update -q && apt-get install -y -q mesa-vulkan-drivers
  }
fi
# The device test prints which devices ran; a GPU device that cannot start
# is reported as skipped on stderr.
CARGO_TARGET_DIR=target/wgpu cargo test --features wgpu --lib device -- --nocapture
CARGO_TARGET_DIR=target/wgpu cargo test --features wgpu
