"""tools/setup_env.sh's decisions about mmcv's ops (tools/setup/cuda_env.py), driven with fake
nvcc scripts on a temporary PATH and a patched "GPU visible" signal: CPU ops with the torchvision
route where no matching nvcc exists, the real toolkit behind a wrapper nvcc, the library headers
a partial toolkit lacks taken from torch's CUDA wheels, and refusals before compiling that name
what is missing. Nothing here compiles; the CUDA build itself is checked by hand on a GPU
machine (README)."""
from __future__ import annotations

import importlib.util
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.helpers import ROOT

SCRIPT = ROOT / 'tools' / 'setup_env.sh'
_spec = importlib.util.spec_from_file_location('cuda_env', ROOT / 'tools' / 'setup' / 'cuda_env.py')
cuda_env = importlib.util.module_from_spec(_spec)
sys.modules['cuda_env'] = cuda_env  # dataclasses look their module up there
_spec.loader.exec_module(cuda_env)

TORCH = '2.14.1+cu130'
SYSTEM_PATH = '/usr/bin:/bin'

FAKE_NVCC = """#!/bin/sh
# Answers what a real nvcc answers to the three questions cuda_env.py asks; a dry run reports
# the folder the script itself is in, as nvcc does.
here=$(cd "$(dirname "$0")" && pwd)
case "$1" in
  --version) echo "Cuda compilation tools, release {release}, V{release}.88" ;;
  --list-gpu-arch) printf 'compute_75\\ncompute_80\\ncompute_86\\ncompute_90\\n' ;;
  --dryrun) echo "#\\$ _HERE_=$here" >&2; echo "#\\$ TOP=$here/.." >&2 ;;
  *) echo "fake nvcc cannot $*" >&2; exit 1 ;;
esac
"""


def make_toolkit(folder: Path, release: str = '13.0',
                 headers=cuda_env.REQUIRED_HEADERS) -> Path:
    """A CUDA toolkit tree with a fake bin/nvcc, the given headers and libcudart.so."""
    for sub in ('bin', 'include', 'lib64'):
        (folder / sub).mkdir(parents=True)
    for header in headers:
        (folder / 'include' / header).write_text('')
    (folder / 'lib64' / 'libcudart.so').write_text('')
    nvcc = folder / 'bin' / 'nvcc'
    nvcc.write_text(FAKE_NVCC.replace('{release}', release))
    nvcc.chmod(0o755)
    return folder


def make_wrapper(folder: Path, target: Path) -> Path:
    """A bin/ folder whose nvcc is a script that runs ``target`` (what some images put on PATH)."""
    folder.mkdir(parents=True)
    wrapper = folder / 'nvcc'
    wrapper.write_text(f'#!/bin/sh\nexec {target} "$@"\n')
    wrapper.chmod(0o755)
    return folder


@pytest.fixture(autouse=True)
def no_default_toolkit(monkeypatch, tmp_path):
    """Keep the machine's own /usr/local/cuda out of the decisions."""
    monkeypatch.setattr(cuda_env, 'DEFAULT_CUDA_HOME', tmp_path / 'no-default-cuda')


def plan(env: dict, gpus=('9.0', ), torch_cuda: str | None = '13.0', include_dirs=()):
    return cuda_env.plan_ops(env, TORCH, torch_cuda, list(gpus), list(include_dirs))


def assert_hides_gpu_from_build(result):
    # mmcv's setup.py compiles CUDA kernels whenever torch sees a GPU.
    assert result.build_env == {'FORCE_CUDA': '0', 'CUDA_VISIBLE_DEVICES': ''}


def test_no_gpu_gives_cpu_ops():
    result = plan({'PATH': SYSTEM_PATH}, gpus=())
    assert result.target == 'cpu'
    assert result.note == ''
    assert_hides_gpu_from_build(result)


def test_gpu_without_nvcc_gives_cpu_ops_and_the_torchvision_route_in_one_line():
    result = plan({'PATH': SYSTEM_PATH})
    assert result.target == 'cpu'
    assert_hides_gpu_from_build(result)
    assert '\n' not in result.note
    for needed in ('no nvcc', 'CUDA 13', 'torchvision', "roi_ops='auto'", 'MMCV_CUDA_OPS=1'):
        assert needed in result.note


def test_gpu_with_nvcc_of_another_cuda_major_gives_cpu_ops(tmp_path):
    toolkit = make_toolkit(tmp_path / 'cuda-12.4', release='12.4')
    result = plan({'PATH': f'{toolkit}/bin:{SYSTEM_PATH}'})
    assert result.target == 'cpu'
    assert_hides_gpu_from_build(result)
    for needed in ('CUDA 12.4', str(toolkit / 'bin' / 'nvcc'), 'CUDA 13.0', 'torchvision'):
        assert needed in result.note


def test_cuda_ops_asked_for_without_nvcc_fail_naming_both_ways_out():
    with pytest.raises(cuda_env.SetupError) as error:
        plan({'PATH': SYSTEM_PATH, 'MMCV_CUDA_OPS': '1'})
    message = str(error.value)
    for needed in ('no nvcc', 'CUDA 13 toolkit', 'CPU ops', 'MMCV_CUDA_OPS=1', 'torchvision'):
        assert needed in message


def test_force_cuda_with_nvcc_of_another_major_fails(tmp_path):
    toolkit = make_toolkit(tmp_path / 'cuda-12.4', release='12.4')
    env = {'PATH': f'{toolkit}/bin:{SYSTEM_PATH}', 'FORCE_CUDA': '1',
           'TORCH_CUDA_ARCH_LIST': '9.0'}
    with pytest.raises(cuda_env.SetupError, match=r'CUDA 12\.4.*CUDA 13\.0.*FORCE_CUDA'):
        plan(env, gpus=())


def test_wrapper_nvcc_on_path_gives_the_real_toolkit_as_cuda_home(tmp_path):
    toolkit = make_toolkit(tmp_path / 'opt' / 'cuda-13.0')
    wrappers = make_wrapper(tmp_path / 'usr' / 'bin', toolkit / 'bin' / 'nvcc')
    result = plan({'PATH': f'{wrappers}:{SYSTEM_PATH}'})
    assert result.target == 'cuda9.0'
    assert result.build_env == {'FORCE_CUDA': '1', 'TORCH_CUDA_ARCH_LIST': '9.0',
                                'CUDA_HOME': str(toolkit.resolve())}
    assert str(toolkit.resolve()) in result.note


def test_cuda_home_names_the_toolkit_before_path(tmp_path):
    wanted = make_toolkit(tmp_path / 'cuda-13.0')
    on_path = make_toolkit(tmp_path / 'cuda-12.4', release='12.4')
    result = plan({'PATH': f'{on_path}/bin:{SYSTEM_PATH}', 'CUDA_HOME': str(wanted)})
    assert result.build_env['CUDA_HOME'] == str(wanted.resolve())
    with pytest.raises(cuda_env.SetupError, match='CUDA_HOME=.*has no bin/nvcc'):
        plan({'PATH': f'{on_path}/bin:{SYSTEM_PATH}', 'CUDA_HOME': str(tmp_path),
              'MMCV_CUDA_OPS': '1'})


def test_headers_the_toolkit_lacks_come_from_torchs_cuda_wheels(tmp_path):
    toolkit = make_toolkit(tmp_path / 'cuda-13.0', headers=('cuda_runtime_api.h', ))
    wheel_include = tmp_path / 'site-packages' / 'nvidia' / 'cu13' / 'include'
    wheel_include.mkdir(parents=True)
    for header in cuda_env.REQUIRED_HEADERS:
        (wheel_include / header).write_text('')
    unrelated = tmp_path / 'site-packages' / 'nvidia' / 'cudnn' / 'include'
    unrelated.mkdir(parents=True)
    env = {'PATH': f'{toolkit}/bin:{SYSTEM_PATH}', 'CPATH': '/opt/mine/include'}
    result = plan(env, include_dirs=[unrelated, wheel_include])
    # After the user's own CPATH would hide nothing; before it, the wheels only fill gaps
    # (the toolkit's include folder is nvcc's -I, searched before CPATH).
    assert result.build_env['CPATH'] == f'{wheel_include}{os.pathsep}/opt/mine/include'
    assert result.target == 'cuda9.0'


def test_headers_found_nowhere_fail_before_compiling_naming_them(tmp_path):
    toolkit = make_toolkit(tmp_path / 'cuda-13.0', headers=('cuda_runtime_api.h', 'cublas_v2.h'))
    with pytest.raises(cuda_env.SetupError) as error:
        plan({'PATH': f'{toolkit}/bin:{SYSTEM_PATH}'})
    message = str(error.value)
    for needed in ('cusparse.h', 'cublasLt.h', 'cusolverDn.h', str(toolkit.resolve()),
                   'complete CUDA 13 toolkit', 'MMCV_CUDA_OPS=0', 'torchvision'):
        assert needed in message
    assert 'cublas_v2.h' not in message


def test_toolkit_without_cudart_fails(tmp_path):
    toolkit = make_toolkit(tmp_path / 'cuda-13.0')
    (toolkit / 'lib64' / 'libcudart.so').unlink()
    with pytest.raises(cuda_env.SetupError, match='lib64/libcudart.so'):
        plan({'PATH': f'{toolkit}/bin:{SYSTEM_PATH}'})


@pytest.mark.parametrize('arch_list', [None, '', ' ; '])
def test_force_cuda_without_gpu_needs_an_arch_list(tmp_path, arch_list):
    toolkit = make_toolkit(tmp_path / 'cuda-13.0')
    env = {'PATH': f'{toolkit}/bin:{SYSTEM_PATH}', 'FORCE_CUDA': '1'}
    if arch_list is not None:
        env['TORCH_CUDA_ARCH_LIST'] = arch_list
    with pytest.raises(cuda_env.SetupError, match='no GPU visible: set TORCH_CUDA_ARCH_LIST'):
        plan(env, gpus=())


def test_arch_list_overrides_the_gpus_and_keys_the_target(tmp_path):
    toolkit = make_toolkit(tmp_path / 'cuda-13.0')
    env = {'PATH': f'{toolkit}/bin:{SYSTEM_PATH}', 'TORCH_CUDA_ARCH_LIST': '9.0;8.0 9.0+PTX 8.0'}
    result = plan(env, gpus=('8.6', ))
    assert result.target == 'cuda8.0-9.0-9.0+PTX'
    assert result.build_env['TORCH_CUDA_ARCH_LIST'] == '8.0;9.0;9.0+PTX'
    # Two GPUs of one kind give one arch.
    assert plan({'PATH': f'{toolkit}/bin:{SYSTEM_PATH}'}, gpus=('9.0', '8.0', '9.0')).target \
        == 'cuda8.0-9.0'


def test_arch_nvcc_cannot_compile_for_is_refused(tmp_path):
    toolkit = make_toolkit(tmp_path / 'cuda-13.0')
    with pytest.raises(cuda_env.SetupError, match=r'cannot compile for 7\.0 .*supports 7\.5'):
        plan({'PATH': f'{toolkit}/bin:{SYSTEM_PATH}'}, gpus=('7.0', ))


@pytest.mark.parametrize('env, match', [
    ({'MMCV_CUDA_OPS': 'yes'}, "MMCV_CUDA_OPS='yes' is not allowed"),
    ({'MMCV_CUDA_OPS': '0', 'FORCE_CUDA': '1'}, 'FORCE_CUDA=1 .* MMCV_CUDA_OPS=0'),
    ({'MMCV_CUDA_OPS': '1', 'TORCH_CUDA_ARCH_LIST': 'Hopper'},
     "TORCH_CUDA_ARCH_LIST='Hopper': Hopper is not a compute capability"),
])
def test_bad_settings_are_named(tmp_path, env, match):
    toolkit = make_toolkit(tmp_path / 'cuda-13.0')
    with pytest.raises(cuda_env.SetupError, match=match):
        plan({'PATH': f'{toolkit}/bin:{SYSTEM_PATH}', **env})


def test_mmcv_cuda_ops_0_keeps_cpu_ops_beside_a_matching_nvcc(tmp_path):
    toolkit = make_toolkit(tmp_path / 'cuda-13.0')
    result = plan({'PATH': f'{toolkit}/bin:{SYSTEM_PATH}', 'MMCV_CUDA_OPS': '0'})
    assert result.target == 'cpu'
    assert_hides_gpu_from_build(result)
    assert 'torchvision' in result.note


def test_torch_without_cuda_cannot_get_cuda_ops(tmp_path):
    toolkit = make_toolkit(tmp_path / 'cuda-13.0')
    with pytest.raises(cuda_env.SetupError, match=r'torch.version.cuda is None'):
        plan({'PATH': f'{toolkit}/bin:{SYSTEM_PATH}', 'MMCV_CUDA_OPS': '1',
              'TORCH_CUDA_ARCH_LIST': '9.0'}, gpus=(), torch_cuda=None)


def test_shell_assignments_survive_spaces_and_quotes(tmp_path):
    result = cuda_env.OpsPlan('cuda9.0', "it's a note", {'CUDA_HOME': '/opt/my cuda', 'X': ''})
    shown = subprocess.run(
        ['bash', '-c', 'eval "$1"; printf "%s\\n" "$ops_target" "$ops_note" "${ops_build_env[@]}"',
         '_', result.shell()], capture_output=True, text=True, check=True).stdout
    assert shown.splitlines() == ['cuda9.0', "it's a note", 'CUDA_HOME=/opt/my cuda', 'X=']


def test_plan_command_with_a_visible_gpu(tmp_path, monkeypatch, capsys):
    toolkit = make_toolkit(tmp_path / 'cuda-13.0')
    monkeypatch.setenv('PATH', f'{toolkit}/bin:{SYSTEM_PATH}')
    for name in ('CUDA_HOME', 'CUDA_PATH', 'FORCE_CUDA', 'MMCV_CUDA_OPS', 'TORCH_CUDA_ARCH_LIST'):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(torch.version, 'cuda', '13.0')
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)
    monkeypatch.setattr(torch.cuda, 'device_count', lambda: 2)
    monkeypatch.setattr(torch.cuda, 'get_device_capability', lambda i: ((8, 0), (9, 0))[i])
    assert cuda_env.main(['plan']) == 0
    assert 'ops_target=cuda8.0-9.0\n' in capsys.readouterr().out
    # Without the GPU, FORCE_CUDA=1 and an empty arch list stop with a message, no traceback.
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    monkeypatch.setenv('FORCE_CUDA', '1')
    monkeypatch.setenv('TORCH_CUDA_ARCH_LIST', '')
    assert cuda_env.main(['plan']) == 1
    captured = capsys.readouterr()
    assert captured.out == ''
    assert captured.err.startswith('setup_env.sh: ') and 'TORCH_CUDA_ARCH_LIST' in captured.err


@pytest.mark.skipif(torch.version.cuda is None, reason='torch without CUDA has no nvidia wheels')
def test_torchs_cuda_wheels_provide_the_library_headers():
    dirs = cuda_env.nvidia_include_dirs()
    for header in ('cusparse.h', 'cublas_v2.h', 'cusolverDn.h'):
        assert any((folder / header).is_file() for folder in dirs), (header, dirs)


def test_installed_mmcv_against_each_target():
    from mmcv.ops import get_compiling_cuda_version

    cuda_env.check_mmcv_ops('cpu')
    if get_compiling_cuda_version() == 'not available':
        with pytest.raises(cuda_env.SetupError, match='no CUDA kernels'):
            cuda_env.check_mmcv_ops('cuda9.0')
    else:
        cuda_env.check_mmcv_ops('cuda9.0')


# The script's own functions, run by bash as the script defines them.
def shell_function(name: str) -> str:
    match = re.search(rf'^{name}\(\) {{\n.*?^}}\n', SCRIPT.read_text(), re.MULTILINE | re.DOTALL)
    assert match, f'{name}() not found in {SCRIPT}'
    return match.group(0)


def run_shell(code: str, **variables) -> subprocess.CompletedProcess:
    assignments = ''.join(f'{key}={shlex.quote(value)}\n' for key, value in variables.items())
    return subprocess.run(['bash', '-c', f'set -euo pipefail\n{assignments}{code}'],
                          capture_output=True, text=True, timeout=120)


def test_stamp_differs_between_ops_targets():
    code = shell_function('stamp_inputs') + 'stamp_inputs | sha256sum\n'
    common = dict(ROOT=str(ROOT), STACK='upstream', PYTHON=sys.executable)
    stamps = [run_shell(code, ops_target=target, **common).stdout
              for target in ('cpu', 'cuda9.0', 'cuda9.0', 'cuda8.0-9.0')]
    assert stamps[1] == stamps[2] and len(stamps[1]) > 64
    assert len({stamps[0], stamps[1], stamps[3]}) == 3


def test_cpu_ops_mmcv_counts_as_installed_only_for_a_cpu_target(tmp_path):
    from mmcv.ops import get_compiling_cuda_version

    if get_compiling_cuda_version() != 'not available':
        pytest.skip('this venv has an mmcv with CUDA kernels')
    import mmcv

    dist = 'onedl-mmcv' if 'onedl' in Path(sys.prefix).name else 'mmcv'
    code = shell_function('mmcv_installed') + 'mmcv_installed\n'
    marker = tmp_path / 'mmcv-ops'
    common = dict(ROOT=str(ROOT), PY=sys.executable, MMCV_DIST=dist,
                  MMCV_VERSION=mmcv.__version__, mmcv_ops_file=str(marker))
    assert run_shell(code, ops_target='cpu', **common).returncode == 0
    # A venv first set up on a machine without CUDA ops: rebuilt where they are wanted, also when
    # the record of the ops target claims them.
    assert run_shell(code, ops_target='cuda9.0', **common).returncode == 1
    marker.write_text(f'{dist} {mmcv.__version__} cuda9.0\n')
    assert run_shell(code, ops_target='cuda9.0', **common).returncode == 1


def fake_venv(folder: Path) -> Path:
    """A venv folder whose python runs this interpreter for cuda_env.py only: any later step of
    the setup would fail here instead of installing into the test environment."""
    (folder / 'bin').mkdir(parents=True)
    python = folder / 'bin' / 'python'
    python.write_text(f'#!/bin/sh\ncase "$1" in\n  */tools/setup/cuda_env.py) exec '
                      f'{sys.executable} "$@" ;;\n  *) echo "fake venv: $*" >&2; exit 99 ;;\n'
                      'esac\n')
    python.chmod(0o755)
    return folder


@pytest.mark.parametrize('settings, needed', [
    ({'FORCE_CUDA': '1', 'TORCH_CUDA_ARCH_LIST': ''}, ['TORCH_CUDA_ARCH_LIST']),
    ({'MMCV_CUDA_OPS': '1', 'TORCH_CUDA_ARCH_LIST': '9.0', 'release': '12.4'},
     ['CUDA 12.4', 'CUDA 13', 'torchvision']),
])
def test_setup_script_stops_before_building(tmp_path, settings, needed):
    if torch.version.cuda is None or torch.cuda.is_available():
        pytest.skip('needs a CUDA build of torch and no visible GPU')
    settings = dict(settings)
    release = settings.pop('release', torch.version.cuda)
    toolkit = make_toolkit(tmp_path / 'cuda', release=release)
    env = {'PATH': f'{toolkit}/bin:{SYSTEM_PATH}', 'HOME': str(tmp_path), 'STACK': 'upstream',
           'VENV': str(fake_venv(tmp_path / 'venv')), 'PYTHON': sys.executable,
           'CONVNEXT_DENSE_CACHE': str(tmp_path / 'cache'), **settings}
    result = subprocess.run(['bash', str(SCRIPT)], env=env, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 1, result.stderr
    assert result.stderr.startswith('setup_env.sh: '), result.stderr
    for text in needed:
        assert text in result.stderr
    assert 'fake venv' not in result.stderr and 'building' not in result.stdout
    assert not (tmp_path / 'cache').exists()
