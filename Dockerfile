# cuvae in a container: the CUDA devel image builds, the CUDA runtime image runs (their cuDNN
# variants, for the conv layers).
#   docker build -t cuvae .    (--build-arg CUDA_VERSION=12.8.1 for another toolkit,
#                               --build-arg CUDA_ARCHITECTURES=86-real for other GPUs)
#   docker run --gpus all -v $PWD/runs:/runs cuvae train /opt/cuvae/configs/fashion_mnist.ini
# Data and runs are volumes: /data (your IDX, NumPy or image-folder data; Fashion-MNIST is baked in from the distribution
# package at /usr/share/datasets/fashion-mnist) and /runs (run directories: checkpoints, metrics).
# The entrypoint is exec-form, so SIGTERM from `docker stop` or a pre-empting scheduler reaches
# cuvae itself, which writes a checkpoint and exits 143; restart the same command with
# `--resume auto` to continue.

ARG CUDA_VERSION=13.0.0
ARG UBUNTU=ubuntu24.04
# Ubuntu's names of Debian's libpng-dev / libjpeg62-turbo-dev (image folders): libpng-dev,
# libjpeg-turbo8-dev; at run time libpng16-16t64, libjpeg-turbo8.
# The GPUs the binary holds machine code for (CMake's list; the default: A100, A10G/RTX 30xx,
# L4/RTX 40xx, H100/H200, plus PTX for newer ones), e.g. --build-arg CUDA_ARCHITECTURES=89-real
ARG CUDA_ARCHITECTURES="80-real;86-real;89-real;90-real;90-virtual"

# The cudnn variants: cuDNN 9 runs the conv layers (model.encoder's conv/convt) on the GPU.
FROM nvidia/cuda:${CUDA_VERSION}-cudnn-devel-${UBUNTU} AS build
ARG CUDA_ARCHITECTURES
ENV DEBIAN_FRONTEND=noninteractive
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential cmake pkg-config zlib1g-dev \
        libopenblas-dev libinih-dev libjansson-dev libpng-dev libjpeg-turbo8-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY CMakeLists.txt ./
COPY host host
COPY cuda cuda
COPY bench bench
COPY tests tests
COPY configs configs
RUN cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DBUILD_TESTING=OFF \
        -DCMAKE_CUDA_ARCHITECTURES="${CUDA_ARCHITECTURES}" \
 && cmake --build build -j"$(nproc)" \
 && install -D build/cuvae /opt/cuvae/bin/cuvae \
 && cp -r configs /opt/cuvae/configs

FROM nvidia/cuda:${CUDA_VERSION}-cudnn-runtime-${UBUNTU}
ENV DEBIAN_FRONTEND=noninteractive
RUN apt-get update \
 && apt-get install -y --no-install-recommends zlib1g libopenblas0-pthread libinih1 libjansson4 \
        libpng16-16t64 libjpeg-turbo8 \
        dataset-fashion-mnist \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /opt/cuvae /opt/cuvae
ENV PATH=/opt/cuvae/bin:$PATH
VOLUME ["/data", "/runs"]
WORKDIR /runs
ENTRYPOINT ["/opt/cuvae/bin/cuvae"]
CMD ["train", "/opt/cuvae/configs/fashion_mnist.ini", "output.dir=/runs/fashion_mnist", "--resume", "auto"]
