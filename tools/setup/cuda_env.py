"""Which ops mmcv is built with by tools/setup_env.sh, and the CUDA toolkit for that build.

mmcv's setup.py compiles CUDA kernels whenever torch sees a GPU (or FORCE_CUDA=1), and torch's
extension builder then takes the toolkit from the first ``nvcc`` on PATH. That goes wrong in
ways that only show minutes into the build: a wrapper script named nvcc outside the toolkit
(``CUDA_HOME`` becomes the wrapper's folder), a toolkit without the cuBLAS/cuSPARSE/cuSOLVER
headers that ``ATen/cuda/CUDAContext.h`` includes, an nvcc of another CUDA major than torch's,
an empty arch list when no GPU is visible. This module decides everything before the build:

- the ops target: ``cpu`` or ``cuda<archs>`` (``cuda9.0``, ``cuda8.0-9.0``), part of the wheel
  cache key and of the setup stamp;
- for a CUDA build: the real toolkit (from nvcc's own ``--dryrun`` report, not the path it was
  found at), ``TORCH_CUDA_ARCH_LIST``, and ``CPATH`` with the include folders of torch's own
  CUDA wheels (``nvidia/*/include`` in site-packages) for the headers the toolkit lacks;
- on a GPU machine without a usable nvcc, CPU ops, with one line saying that RoIAlign/nms then
  run on the GPU through torchvision (the ``roi_ops='auto'`` route).

A build that cannot succeed is refused here, naming what is missing and both ways out.

    python tools/setup/cuda_env.py plan           shell assignments for tools/setup_env.sh
    python tools/setup/cuda_env.py check TARGET   the installed mmcv has TARGET's kernels

Environment: ``MMCV_CUDA_OPS`` (``auto`` (default): CUDA ops when a GPU is visible and a
matching nvcc is found; ``1``: CUDA ops or an error; ``0``: CPU ops), ``FORCE_CUDA=1`` (mmcv's
own switch; same as ``MMCV_CUDA_OPS=1``), ``TORCH_CUDA_ARCH_LIST`` (the compute capabilities to
compile for; default: those of the visible GPUs), ``CUDA_HOME``/``CUDA_PATH`` (where to look
for nvcc first).
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

# What torch's ATen/cuda/CUDAContextLight.h includes (every mmcv .cu file includes it through
# pytorch_cuda_helper.hpp); a toolkit assembled from the compiler packages alone has only the
# first.
REQUIRED_HEADERS = ('cuda_runtime_api.h', 'cusparse.h', 'cublas_v2.h', 'cublasLt.h',
                    'cusolverDn.h')
CPU_ROUTE = ("RoIAlign and nms then run on the GPU through torchvision's kernels "
             "(roi_ops='auto')")
ARCH_PATTERN = re.compile(r'^(\d+)\.(\d+)([af]?)(\+PTX)?$')
# Where torch's extension builder looks last when neither CUDA_HOME nor PATH names an nvcc.
DEFAULT_CUDA_HOME = Path('/usr/local/cuda')


class SetupError(RuntimeError):
    """A CUDA build of mmcv that cannot succeed, or an installed mmcv without the wanted ops."""


@dataclass
class Toolkit:
    nvcc: Path     # where it was found: possibly a wrapper script outside the toolkit
    home: Path     # the toolkit the real nvcc belongs to: CUDA_HOME for torch
    release: str   # '13.0'
    archs: tuple[str, ...] = ()  # from `nvcc --list-gpu-arch`, e.g. ('7.5', '8.0', ...)

    @property
    def major(self) -> str:
        return self.release.split('.')[0]


@dataclass
class OpsPlan:
    target: str                 # 'cpu' or 'cuda<archs>'
    note: str = ''              # one line for the setup log, empty when nothing needs saying
    build_env: dict[str, str] = field(default_factory=dict)  # set only for the mmcv build

    def shell(self) -> str:
        """Bash assignments: ``ops_target``, ``ops_note`` and the array ``ops_build_env``."""
        pairs = ' '.join(shlex.quote(f'{key}={value}') for key, value in self.build_env.items())
        return (f'ops_target={shlex.quote(self.target)}\n'
                f'ops_note={shlex.quote(self.note)}\n'
                f'ops_build_env=({pairs})\n')


def find_nvcc(env: Mapping[str, str]) -> Path | None:
    """nvcc where torch's extension builder would look: CUDA_HOME/CUDA_PATH, PATH, then
    /usr/local/cuda."""
    home = env.get('CUDA_HOME') or env.get('CUDA_PATH')
    if home:
        candidate = Path(home, 'bin', 'nvcc')
        return candidate if os.access(candidate, os.X_OK) else None
    found = shutil.which('nvcc', path=env.get('PATH', ''))
    if found:
        return Path(found)
    candidate = DEFAULT_CUDA_HOME / 'bin' / 'nvcc'
    return candidate if os.access(candidate, os.X_OK) else None


def _run(args: Sequence[str], env: Mapping[str, str], cwd: str | None = None) -> str:
    """stdout and stderr of a command that must succeed (nvcc writes --dryrun to stderr)."""
    result = subprocess.run(list(args), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, check=True, timeout=60, env=dict(env), cwd=cwd)
    return result.stdout


def inspect_toolkit(nvcc: Path, env: Mapping[str, str]) -> Toolkit:
    """The release and real home of ``nvcc``; raises SetupError when it does not answer."""
    try:
        version = _run([str(nvcc), '--version'], env)
    except (OSError, subprocess.SubprocessError) as error:
        raise SetupError(f'{nvcc} --version failed ({error})') from error
    release = re.search(r'release (\d+\.\d+)', version)
    if release is None:
        raise SetupError(f'{nvcc} --version names no CUDA release: {version.strip()[-200:]!r}')
    # nvcc reports the folder it runs from as TOP in a dry run, also when it was started through
    # a wrapper script or a symlink; a dry run needs no source file and writes nothing.
    with tempfile.TemporaryDirectory() as scratch:
        try:
            dryrun = _run([str(nvcc), '--dryrun', '-c', 'probe.cu', '-o', 'probe.o'], env,
                          cwd=scratch)
        except (OSError, subprocess.SubprocessError):
            dryrun = ''
    top = re.search(r'^#\$ TOP=(.+)$', dryrun, re.MULTILINE)
    home = Path(top.group(1).strip()).resolve() if top else nvcc.resolve().parent.parent
    try:
        listed = _run([str(nvcc), '--list-gpu-arch'], env)
    except (OSError, subprocess.SubprocessError):
        listed = ''  # before CUDA 11.0: the arch check is left to nvcc itself
    archs = tuple(f'{int(m[:-1])}.{m[-1]}' for m in re.findall(r'compute_(\d+)', listed))
    return Toolkit(nvcc=nvcc, home=home, release=release.group(1), archs=archs)


def nvidia_include_dirs() -> list[Path]:
    """The include folders of the nvidia-* CUDA wheels torch was installed with
    (site-packages/nvidia/cu13/include, or nvidia/cusparse/include etc. for CUDA 12)."""
    spec = importlib.util.find_spec('nvidia')
    if spec is None or spec.submodule_search_locations is None:
        return []
    return sorted(path for root in spec.submodule_search_locations
                  for path in Path(root).glob('*/include') if path.is_dir())


def parse_arch_list(value: str) -> list[str]:
    """TORCH_CUDA_ARCH_LIST's entries ('8.6;9.0', '8.6 9.0+PTX'), sorted, without repeats."""
    archs = {item for item in re.split(r'[;\s]+', value.strip()) if item}
    bad = sorted(arch for arch in archs if not ARCH_PATTERN.match(arch))
    if bad:
        raise SetupError(f'TORCH_CUDA_ARCH_LIST={value!r}: {", ".join(bad)} is not a compute '
                         "capability; use numbers like '9.0' or '8.0;8.6;9.0' ('+PTX' allowed)")
    return sorted(archs, key=lambda arch: (*map(int, ARCH_PATTERN.match(arch).groups()[:2]),
                                           arch))


def _ways_out(mode: str, fix: str) -> str:
    cpu = ('rerun with MMCV_CUDA_OPS=0' if mode == 'auto'
           else 'rerun without FORCE_CUDA=1 / MMCV_CUDA_OPS=1')
    return (f'Either {fix}, or build mmcv with CPU ops ({cpu}): {CPU_ROUTE}.')


def plan_ops(env: Mapping[str, str], torch_version: str, torch_cuda: str | None,
             gpu_archs: Sequence[str], include_dirs: Sequence[Path]) -> OpsPlan:
    """The ops target and build environment for mmcv.

    Args:
        env: the environment (MMCV_CUDA_OPS, FORCE_CUDA, TORCH_CUDA_ARCH_LIST, CUDA_HOME,
            CUDA_PATH, PATH, CPATH).
        torch_version: ``torch.__version__``, for messages.
        torch_cuda: ``torch.version.cuda`` ('13.0'), None for a torch without CUDA.
        gpu_archs: compute capabilities of the GPUs torch sees ('9.0', ...), empty for none.
        include_dirs: include folders of torch's CUDA wheels, searched for the headers the
            toolkit lacks.
    """
    mode = env.get('MMCV_CUDA_OPS', '').strip().lower() or 'auto'
    if mode not in ('auto', '0', '1'):
        raise SetupError(f'MMCV_CUDA_OPS={env["MMCV_CUDA_OPS"]!r} is not allowed; use auto '
                         "(CUDA ops when a GPU and a matching nvcc are found), 1 or 0")
    force_cuda = env.get('FORCE_CUDA', '0') == '1'
    if force_cuda and mode == '0':
        raise SetupError('FORCE_CUDA=1 asks for CUDA ops and MMCV_CUDA_OPS=0 for CPU ops; '
                         'unset one of them')
    if force_cuda:
        mode = '1'
    # mmcv's setup.py compiles CUDA kernels whenever torch sees a GPU: hide it from a CPU build.
    cpu_env = {'FORCE_CUDA': '0', 'CUDA_VISIBLE_DEVICES': ''}
    if mode == '0':
        note = f'MMCV_CUDA_OPS=0: mmcv gets CPU ops; {CPU_ROUTE}' if gpu_archs else ''
        return OpsPlan('cpu', note, cpu_env)
    if mode == 'auto' and not gpu_archs:
        return OpsPlan('cpu', '', cpu_env)

    major = torch_cuda.split('.')[0] if torch_cuda else None
    problem = fix = None
    toolkit = None
    if torch_cuda is None:
        problem = f'torch {torch_version} is built without CUDA (torch.version.cuda is None)'
        fix = 'install a CUDA build of torch'
    else:
        wanted = f'CUDA {major}.x (torch {torch_version} is built with CUDA {torch_cuda})'
        nvcc = find_nvcc(env)
        if nvcc is None:
            where = (f'CUDA_HOME={env.get("CUDA_HOME") or env.get("CUDA_PATH")} has no bin/nvcc'
                     if env.get('CUDA_HOME') or env.get('CUDA_PATH')
                     else f'no nvcc on PATH or in {DEFAULT_CUDA_HOME}/bin')
            problem = f'{where}; building them needs the nvcc of {wanted}'
            fix = f'install the CUDA {major} toolkit and put its bin/ on PATH (or set CUDA_HOME)'
        else:
            try:
                toolkit = inspect_toolkit(nvcc, env)
            except SetupError as error:
                problem = str(error)
                fix = f'install the CUDA {major} toolkit and put its bin/ first on PATH'
            else:
                if toolkit.major != major:
                    problem = (f'{nvcc} is CUDA {toolkit.release} (toolkit {toolkit.home}); '
                               f'building them needs the nvcc of {wanted}')
                    fix = (f'install the CUDA {major} toolkit and put its bin/ first on PATH '
                           '(or set CUDA_HOME)')
    if problem:
        if mode == 'auto':
            return OpsPlan('cpu', f'GPU visible, but mmcv gets CPU ops: {problem}. {CPU_ROUTE}; '
                                  f'for mmcv\'s CUDA kernels, {fix} and rerun '
                                  '(MMCV_CUDA_OPS=1 turns this into an error).', cpu_env)
        raise SetupError(f"mmcv's CUDA ops cannot be built: {problem}. {_ways_out(mode, fix)}")

    arch_value = env.get('TORCH_CUDA_ARCH_LIST', '')
    archs = parse_arch_list(arch_value) if arch_value.strip() else sorted(set(gpu_archs))
    if not archs:
        raise SetupError('FORCE_CUDA=1 / MMCV_CUDA_OPS=1 with no GPU visible: set '
                         'TORCH_CUDA_ARCH_LIST to the compute capabilities of the GPUs the '
                         "build is for (e.g. '9.0' for H100, '8.0;9.0' for A100 and H100)")
    if toolkit.archs:
        unsupported = [a for a in archs if ARCH_PATTERN.match(a).expand(r'\1.\2')
                       not in toolkit.archs]
        if unsupported:
            raise SetupError(
                f'nvcc {toolkit.release} ({toolkit.nvcc}) cannot compile for '
                f'{", ".join(unsupported)} (TORCH_CUDA_ARCH_LIST, or the visible GPUs); it '
                f'supports {", ".join(toolkit.archs)}. '
                + _ways_out(mode, 'install a CUDA toolkit that supports these GPUs and a torch '
                                  'built with it, or set TORCH_CUDA_ARCH_LIST'))

    toolkit_include = toolkit.home / 'include'
    extra_dirs = []
    missing = []
    for header in REQUIRED_HEADERS:
        if (toolkit_include / header).is_file():
            continue
        source = next((d for d in include_dirs if (d / header).is_file()), None)
        if source is None:
            missing.append(header)
        elif source not in extra_dirs:
            extra_dirs.append(source)
    if missing:
        raise SetupError(
            f"mmcv's CUDA ops cannot be built: {', '.join(missing)} "
            f'{"is" if len(missing) == 1 else "are"} in neither the CUDA '
            f'toolkit {toolkit.home}/include nor the include folders of torch\'s CUDA wheels '
            f'({", ".join(map(str, include_dirs)) or "none found"}). '
            + _ways_out(mode, f'install the complete CUDA {major} toolkit (with its library '
                              'headers)'))
    lib_dir = toolkit.home / ('lib64' if (toolkit.home / 'lib64').is_dir() else 'lib')
    if not any(lib_dir.glob('libcudart.so*')):
        raise SetupError(
            f"mmcv's CUDA ops cannot be built: the CUDA toolkit {toolkit.home} has no "
            f'{lib_dir.name}/libcudart.so to link against. '
            + _ways_out(mode, f'install the complete CUDA {major} toolkit'))

    # The toolkit's own -I folder comes before CPATH, so the wheels only fill what it lacks.
    cpath = os.pathsep.join([*map(str, extra_dirs), *filter(None, [env.get('CPATH', '')])])
    build_env = {'FORCE_CUDA': '1', 'TORCH_CUDA_ARCH_LIST': ';'.join(archs),
                 'CUDA_HOME': str(toolkit.home)}
    if cpath:
        build_env['CPATH'] = cpath
    note = f'CUDA ops for {";".join(archs)} with nvcc {toolkit.release} from {toolkit.home}'
    if extra_dirs:
        note += f', library headers from {", ".join(map(str, extra_dirs))}'
    return OpsPlan('cuda' + '-'.join(archs), note, build_env)


def check_mmcv_ops(target: str) -> None:
    """Raise SetupError unless the installed mmcv's ops load and, for a ``cuda*`` target, were
    compiled with CUDA of torch's major (and run on the GPU when one is visible)."""
    import torch
    from mmcv.ops import get_compiling_cuda_version, nms

    if not target.startswith('cuda'):
        return
    compiled = get_compiling_cuda_version()
    if compiled == 'not available':
        raise SetupError(f'mmcv\'s ops have no CUDA kernels (built for CPU), ops target {target}')
    if torch.version.cuda is None or compiled.split('.')[0] != torch.version.cuda.split('.')[0]:
        raise SetupError(f"mmcv's ops were compiled with CUDA {compiled}, torch "
                         f'{torch.__version__} runs CUDA {torch.version.cuda}')
    if torch.cuda.is_available():
        boxes = torch.tensor([[0., 0., 10., 10.], [1., 1., 11., 11.]], device='cuda')
        _, keep = nms(boxes, torch.tensor([0.9, 0.8], device='cuda'), 0.5)
        if keep.tolist() != [0]:
            raise SetupError(f'mmcv nms on the GPU kept {keep.tolist()} of two boxes with IoU '
                             '0.68 at threshold 0.5; expected [0]')


def gpu_capabilities() -> list[str]:
    import torch

    if not torch.cuda.is_available():
        return []
    return ['.'.join(map(str, torch.cuda.get_device_capability(i)))
            for i in range(torch.cuda.device_count())]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    commands = parser.add_subparsers(dest='command', required=True)
    commands.add_parser('plan', help='print bash assignments for tools/setup_env.sh')
    check = commands.add_parser('check', help="check the installed mmcv's ops")
    check.add_argument('target', help="ops target: 'cpu' or 'cuda<archs>'")
    args = parser.parse_args(argv)
    try:
        import torch
    except ImportError:
        return 3  # a venv set up before torch was installed: setup_env.sh installs it first
    try:
        if args.command == 'check':
            check_mmcv_ops(args.target)
            return 0
        plan = plan_ops(os.environ, torch.__version__, torch.version.cuda, gpu_capabilities(),
                        nvidia_include_dirs())
    except SetupError as error:
        print(f'setup_env.sh: {error}', file=sys.stderr)
        return 1
    print(plan.shell(), end='')
    return 0


if __name__ == '__main__':
    sys.exit(main())
