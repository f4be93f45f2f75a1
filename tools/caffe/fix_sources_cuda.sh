#!/usr/bin/env bash
# Source fixes for CUDA builds only (MRFNET_GPU=1), run inside the unpacked tree after
# fix_sources.sh and speedups.sh. Kept apart so that the CPU build's cache key does not follow
# them. Every fix says why; tests/test_gpu_build.py checks what can be checked without a GPU.
set -euo pipefail

# 1. CUDA 13 removed cudaDeviceProp::clockRate, ::deviceOverlap and ::kernelExecTimeoutEnabled,
#    which `caffe device_query` prints: read them as device attributes (these exist in every
#    CUDA since 5.0, so the fix is the same for an older toolkit given as CUDA_DIR).
perl -0pi -e '
  s/prop\.clockRate/[&] { int v = 0; cudaDeviceGetAttribute(&v, cudaDevAttrClockRate, device); return v; }()/;
  s/prop\.deviceOverlap/[&] { int v = 0; cudaDeviceGetAttribute(&v, cudaDevAttrGpuOverlap, device); return v; }()/;
  s/prop\.kernelExecTimeoutEnabled/[&] { int v = 0; cudaDeviceGetAttribute(&v, cudaDevAttrKernelExecTimeout, device); return v; }()/;
' src/caffe/common.cpp
grep -q cudaDevAttrKernelExecTimeout src/caffe/common.cpp

# 2. Multi-GPU training. This tree's tools/caffe.cpp calls caffe::NCCL (BVLC's 2017 multi-GPU
#    code), but its parallel.hpp/.cpp, solver and data layers are still rc3's P2PSync design:
#    there is no NCCL class and the Makefile never defines USE_NCCL, so `caffe train -gpu 0,1`
#    stopped with "Multi-GPU execution not available - rebuild with USE_NCCL" whatever the
#    config said. Run the tree's own P2PSync, as rc3's tools/caffe.cpp did (one solver thread
#    per GPU, each with the prototxt's batch, gradients summed over a GPU tree). The snapshot
#    (-snapshot) was already restored into the root solver above, which P2PSync copies.
perl -0pi -e 's/#ifdef USE_NCCL\n    caffe::NCCL<float> nccl\(solver\);\n    nccl\.Run\(gpus, FLAGS_snapshot\.size\(\) > 0 \? FLAGS_snapshot\.c_str\(\) : NULL\);\n#else\n    LOG\(FATAL\) << "Multi-GPU execution not available - rebuild with USE_NCCL";\n#endif/    \/\/ mrfnet-caffe (fix_sources_cuda.sh): the tree\x27s rc3 multi-GPU code.\n    caffe::P2PSync<float> sync(solver, NULL, solver->param());\n    sync.Run(gpus);/' tools/caffe.cpp
grep -q 'caffe::P2PSync<float> sync(solver, NULL, solver->param());' tools/caffe.cpp

# 3. No GPU, no driver, a wrong or repeated GPU id: `caffe device_query/train/test/time -gpu ...` died in
#    a CUDA_CHECK ("Check failed: error == cudaSuccess (35 vs. 0) CUDA driver version is
#    insufficient...") with a stack trace. Check once, where the -gpu flag is parsed, and stop
#    with what is missing and what to do instead (exit status 1).
perl -0pi -e 's/static void get_gpus\(vector<int>\* gpus\) \{/static void get_gpus_unchecked(vector<int>* gpus) {/' tools/caffe.cpp
perl -0pi -e 's/#include <cstring>\n/#include <cstdlib>\n#include <cstring>\n#include <iostream>\n/' tools/caffe.cpp
GET_GPUS='// mrfnet-caffe (fix_sources_cuda.sh): a GPU asked for (-gpu, or solver_mode: GPU) must
// exist; otherwise say what is missing and what to do, instead of a failed CUDA_CHECK.
static void get_gpus(vector<int>* gpus) {
  if (FLAGS_gpu.size() == 0) {
    get_gpus_unchecked(gpus);
    return;
  }
  int count = 0, driver = 0;
  const cudaError_t error = cudaGetDeviceCount(&count);
  if (error != cudaSuccess || count == 0) {
    cudaDriverGetVersion(&driver);
    std::cerr << "caffe: -gpu " << FLAGS_gpu << " asks for an NVIDIA GPU, but CUDA finds none ("
        << (error != cudaSuccess ? cudaGetErrorString(error) : "no CUDA device") << ").\n"
        << "  NVIDIA driver: " << (driver ? "found, supports CUDA " : "not found")
        << (driver ? std::to_string(driver / 1000) + "." + std::to_string(driver % 1000 / 10) : "")
        << "; this Caffe is a CUDA " << CUDART_VERSION / 1000 << "." << CUDART_VERSION % 1000 / 10
        << " build and needs an NVIDIA GPU with a driver for CUDA " << CUDART_VERSION / 1000
        << "." << CUDART_VERSION % 1000 / 10 << " or newer (nvidia-smi lists both).\n"
        << "  On a machine without one, leave out -gpu (and use solver_mode: CPU) to run on the CPU.\n";
    exit(1);
  }
  get_gpus_unchecked(gpus);
  for (int i = 0; i < gpus->size(); ++i) {
    if ((*gpus)[i] < 0 || (*gpus)[i] >= count) {
      std::cerr << "caffe: -gpu " << FLAGS_gpu << ": there is no GPU " << (*gpus)[i]
          << "; CUDA sees " << count << " (ids 0 to " << count - 1 << ", as nvidia-smi lists them).\n";
      exit(1);
    }
    for (int j = 0; j < i; ++j) {
      if ((*gpus)[j] == (*gpus)[i]) {  // P2PSync runs one solver per GPU (a CHECK failure before)
        std::cerr << "caffe: -gpu " << FLAGS_gpu << " names GPU " << (*gpus)[i] << " twice; "
            << "each GPU runs one solver, so name each once.\n";
        exit(1);
      }
    }
  }
}
' perl -0pi -e 's|(// Parse phase from flags\n)|$ENV{GET_GPUS}\n$1|' tools/caffe.cpp
grep -q 'static void get_gpus_unchecked' tools/caffe.cpp
[ "$(grep -c 'static void get_gpus(vector<int>\* gpus) {' tools/caffe.cpp)" = 1 ]

# 4. The Proposal layer (an SSD/Faster R-CNN extra of this tree) declares Backward_gpu without a
#    body, and its .cu instantiates forward and backward: "explicit instantiation ... but no
#    definition available" (an error for nvcc's host compiler). It has no backward on the CPU
#    either ({}): give the GPU one the same empty body and instantiate the forward only.
perl -0pi -e 's/(virtual void Backward_gpu\(const vector<Blob<Dtype>\*>& top,\n      const vector<bool>& propagate_down, const vector<Blob<Dtype>\*>& bottom\));/$1 {}/' \
  include/caffe/layers/proposal_layer.hpp
sed -i 's/^INSTANTIATE_LAYER_GPU_FUNCS(ProposalLayer);/INSTANTIATE_LAYER_GPU_FORWARD(ProposalLayer);/' src/caffe/layers/proposal_layer.cu
grep -q 'propagate_down, const vector<Blob<Dtype>\*>& bottom) {}' include/caffe/layers/proposal_layer.hpp
[ "$(grep -c 'propagate_down, const vector<Blob<Dtype>\*>& bottom) {}' include/caffe/layers/proposal_layer.hpp)" = 2 ]
grep -q '^INSTANTIATE_LAYER_GPU_FORWARD(ProposalLayer);' src/caffe/layers/proposal_layer.cu

# 5. Extra layers of this tree with no .cu at all (HardSigmoid, HardSwish, MaxUnPool,
#    PixelShuffle, ReLU6, Upsample) still declare Forward_gpu/Backward_gpu, which only the
#    CPU_ONLY stubs define: libcaffe.so linked with undefined references. Drop the declarations,
#    so that Layer's own Forward_gpu/Backward_gpu run their CPU code (Caffe's fallback for layers
#    without GPU code; blobs sync between host and device).
for cpp in src/caffe/layers/*_layer.cpp; do
  [ -e "${cpp%.cpp}.cu" ] && continue
  cls=$(sed -n 's/^ *STUB_GPU(\([A-Za-z0-9_]*\));.*/\1/p' "$cpp")
  [ -n "$cls" ] || continue
  hpp=$(grep -l "class $cls\b" include/caffe/layers/*.hpp)
  perl -0pi -e 's/\n[ \t]*virtual void (?:Forward|Backward)_gpu\([^;{]*\);//g' $hpp
  if grep -q '_gpu(' $hpp; then echo "fix_sources_cuda.sh: $hpp still declares GPU functions" >&2; exit 1; fi
done

# 6. In CPU mode (no -gpu) a CUDA build still asked CUDA for the current device whenever a
#    thread started (the data layers' prefetch thread): on a machine without a driver `caffe
#    train` of a net with a Data layer died with "Check failed: error == cudaSuccess (35 vs. 0)".
#    Ask only in GPU mode, as the rest of Caffe does.
perl -0pi -e 's/  CUDA_CHECK\(cudaGetDevice\(&device\)\);/  if (Caffe::mode() == Caffe::GPU) { CUDA_CHECK(cudaGetDevice(&device)); }/; s/  CUDA_CHECK\(cudaSetDevice\(device\)\);/  if (mode == Caffe::GPU) { CUDA_CHECK(cudaSetDevice(device)); }/' src/caffe/internal_thread.cpp
[ "$(grep -c 'if (Caffe::mode() == Caffe::GPU) { CUDA_CHECK(cudaGetDevice(&device)); }\|if (mode == Caffe::GPU) { CUDA_CHECK(cudaSetDevice(device)); }' src/caffe/internal_thread.cpp)" = 2 ]
