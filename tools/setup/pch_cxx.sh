#!/usr/bin/env bash
# C++ compiler wrapper for building mmcv's ops: compiles each .cpp with a precompiled header of
# the torch headers (tools/setup/torch_headers.hpp) that every op source includes.
#
# Parsing those headers is most of each file's compile time (about 13 of 14 s for
# csrc/pytorch/roi_align.cpp with gcc 12 and torch 2.14 headers); a precompiled header parses
# them once per build. The header is built with exactly the flags of the compile that first
# needs it (gcc only uses a .gch made with the same options), keyed by a hash of those flags,
# and under a lock, so parallel compile jobs build it once. gcc includes it before the source
# (-include), where the source's own #include then finds its include guard set.
# -Winvalid-pch says so if gcc ever has to fall back to parsing the headers.
#
#   CXX=tools/setup/pch_cxx.sh PCH_REAL_CXX=c++ PCH_DIR=/tmp/pch  (set by tools/setup_env.sh)
set -euo pipefail
real=${PCH_REAL_CXX:-c++}
if [ "$(command -v "$real")" = "$(command -v "$0")" ]; then
  echo "pch_cxx.sh: PCH_REAL_CXX=$real is this wrapper itself; set it to the compiler" >&2
  exit 2
fi
pch_dir=${PCH_DIR:?PCH_DIR must name a folder for the precompiled headers}
header=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/torch_headers.hpp

source_file=
compiling=0
for arg in "$@"; do
  case $arg in
    -c) compiling=1 ;;
    *.cpp|*.cc|*.cxx) source_file=$arg ;;
  esac
done
if [ "$compiling" = 0 ] || [ -z "$source_file" ]; then
  exec "$real" "$@"  # linking, version probes: untouched
fi

# The options that shape the header: all but the source, the output and dependency files.
flags=()
skip_next=0
for arg in "$@"; do
  if [ "$skip_next" = 1 ]; then skip_next=0; continue; fi
  case $arg in
    -c|-MMD|-MD) ;;
    -o|-MF|-MT|-MQ) skip_next=1 ;;
    "$source_file") ;;
    *) flags+=("$arg") ;;
  esac
done
key=$( { printf '%s\n' "$real" "${flags[@]}"; cat "$header"; } | sha256sum | cut -c1-16)
dir=$pch_dir/$key
mkdir -p "$dir"
if [ ! -f "$dir/torch_headers.hpp.gch" ]; then
  (
    flock 9
    if [ ! -f "$dir/torch_headers.hpp.gch" ]; then
      cp "$header" "$dir/torch_headers.hpp"
      "$real" "${flags[@]}" -x c++-header "$dir/torch_headers.hpp" \
        -o "$dir/torch_headers.hpp.gch.partial"
      mv "$dir/torch_headers.hpp.gch.partial" "$dir/torch_headers.hpp.gch"
    fi
  ) 9>"$dir/lock"
fi
exec "$real" -include "$dir/torch_headers.hpp" -Winvalid-pch "$@"
