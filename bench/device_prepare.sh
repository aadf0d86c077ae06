#!/usr/bin/env bash
# Prepares .device/ (git-ignored) for a run of bench/device_check.sh on a GPU machine that reaches
# no package registry: Debian's packages of the build dependencies that a CUDA image may lack
# (zlib, OpenBLAS, inih and jansson headers and libraries, gfortran's runtime, pkgconf) in
# .device/debs, cuDNN's headers in .device/cudnn/include (for the wheels' libcudnn, should the
# image lack them), and the Fashion-MNIST files in .device/data (about 45 MiB in all, under the 64 MiB
# that a call carries). Run it here (Debian, with
# network to the package archive), then carry `.device` with the call:
#   bash bench/device_prepare.sh
#   device run: bash bench/device_check.sh 1, then bash bench/device_check.sh 2   (carry: .device)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
dst=$root/.device
pkgs=(zlib1g-dev libopenblas-dev libopenblas-pthread-dev libopenblas0-pthread libgfortran5
      libinih-dev libinih1 libinireader0 libjansson-dev libjansson4 pkgconf pkgconf-bin
      libpkgconf3)
rm -rf "$dst/debs" "$dst/prefix" "$dst/cudnn"
mkdir -p "$dst/debs" "$dst/data/fashion-mnist"
# Carried as .deb files (a third of their unpacked size); device_check.sh unpacks them there.
(cd "$dst/debs" && apt-get download "${pkgs[@]}" >/dev/null)

# cuDNN's headers (issue 14: the conv layers): the device image's PyTorch wheels carry libcudnn,
# perhaps without its headers; device_check.sh uses these only where it finds none there.
mkdir -p "$dst/cudnn/include"
cudnn_h=
for h in /usr/local/cuda/include/cudnn.h /usr/include/cudnn.h /usr/include/*/cudnn.h; do
    if [ -f "$h" ]; then
        cudnn_h=$h
        break
    fi
done
if [ -n "$cudnn_h" ]; then
    cp "$(dirname "$cudnn_h")"/cudnn*.h "$dst/cudnn/include/"
else
    echo "device_prepare: no cudnn.h here: the device build finds cuDNN only if its image has it"
fi

fm=/usr/share/datasets/fashion-mnist
[ -d "$fm" ] || { echo "device_prepare: $fm missing: apt-get install dataset-fashion-mnist"; exit 1; }
cp "$fm"/*-ubyte.gz "$dst/data/fashion-mnist/"
du -sh "$dst"
echo "device_prepare: ready; carry .device and run bench/device_check.sh 1, then 2, there"
