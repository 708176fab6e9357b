// The torch headers that every mmcv op source includes (through pytorch_cpp_helper.hpp and
// pytorch_device_registry.hpp), precompiled once per build by tools/setup/pch_cxx.sh.
// <torch/extension.h> is left out on purpose: only pybind.cpp needs it, and a precompiled
// header of it is larger than parsing it where it is used.
#include <ATen/ATen.h>
#include <ATen/TensorUtils.h>
#include <torch/types.h>

#include <string>
#include <vector>
