"""The plugin as users install it: the configs are package data, inherited as
``_base_ = ['convnext_dense::PATH']`` from a config in any folder, and the metafile is read from
the installed package (convnext_dense/compat/config_package.py).

The in-suite tests use this checkout's editable install: the package's configs are the checkout's
``configs/`` (one source, through the link ``convnext_dense/.mim/configs``), the wheel takes every
one of them, a ``convnext_dense::`` base reads as mmengine reads the file itself, and mmengine
(either release) finds the package through its table. The slow test builds the wheel, installs
it into a folder of its own and, from an empty folder with neither the checkout nor the editable
install importable, trains one iteration of a config inheriting a paper config with mmseg's own
``tools/train.py`` (the README's command) and reads the metafile.
"""
from __future__ import annotations

import configparser
import glob
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import textwrap
import zipfile
from pathlib import Path

import pytest
import yaml
from mmengine.config import Config

import convnext_dense
from convnext_dense.analysis.metafile import METAFILE, read_metafile
from convnext_dense.compat.config_package import SCOPE, config_path, configs_dir
from convnext_dense.config import load_config
from tests.helpers import ROOT

PAPER = 'upernet/convnext_t_ade20k.py'
# What a user writes to run mmdet's or mmseg's own tools/train.py on a config that inherits the
# plugin's: the plugin imported first (custom_imports is read after _base_ is resolved).
RUN_WITH_PLUGIN = ('import runpy, sys, convnext_dense; sys.argv = sys.argv[1:]; '
                   'runpy.run_path(sys.argv[0], run_name="__main__")')


def config_files(folder: Path) -> set[str]:
    return {str(path.relative_to(folder)) for path in folder.rglob('*')
            if path.is_file() and '__pycache__' not in path.parts}


def scopes(node) -> set:
    """Every ``_scope_`` value in a config dict."""
    if isinstance(node, dict):
        found = {node['_scope_']} if '_scope_' in node else set()
        return found.union(*(scopes(value) for value in node.values()))
    if isinstance(node, (list, tuple)):
        return set().union(*(scopes(value) for value in node))
    return set()


# -- the editable install (in-suite) ---------------------------------------------------------------
def test_package_configs_are_the_checkout_configs():
    """One source: a relative link (so that it holds in any clone), not a copy."""
    link = ROOT / 'convnext_dense' / '.mim' / 'configs'
    assert link.is_symlink() and os.readlink(link) == '../../configs'
    assert configs_dir() == Path(convnext_dense.__file__).resolve().parent / '.mim' / 'configs'
    assert configs_dir().resolve() == (ROOT / 'configs').resolve()


def test_package_data_takes_every_config():
    """setup.cfg's package_data patterns, globbed as setuptools globs them (recursive, from the
    package folder, through the link), match every file of configs/ and the model index."""
    setup = configparser.ConfigParser()
    setup.read(ROOT / 'setup.cfg')
    patterns = setup['options.package_data']['convnext_dense'].split()
    package = ROOT / 'convnext_dense'
    matched = {os.path.relpath(path, package) for pattern in patterns
               for path in glob.glob(str(package / pattern), recursive=True)}
    configs = {f'.mim/configs/{name}' for name in config_files(ROOT / 'configs')}
    assert matched == configs | {'.mim/model-index.yml'}


def test_inheriting_a_plugin_config_by_package_name(tmp_path):
    """``convnext_dense::`` reads the config as mmengine reads its file, with no
    ``_scope_='convnext_dense'`` (the plugin has no registries of that scope: its dicts are built
    in the config's default_scope)."""
    user = tmp_path / 'my_config.py'
    user.write_text(f"_base_ = ['{SCOPE}::{PAPER}']\nmodel = dict(backbone=dict(arch='small'))\n")
    cfg = Config.fromfile(str(user))
    reference = Config.fromfile(str(ROOT / 'configs' / PAPER))
    reference.merge_from_dict({'model.backbone.arch': 'small'})
    assert cfg.to_dict() == reference.to_dict()
    assert SCOPE not in scopes(cfg.to_dict())
    assert cfg.model.backbone.type == 'ConvNeXt' and cfg.default_scope == 'mmseg'


def test_package_bases_are_found_once_per_process(tmp_path, monkeypatch):
    """mmengine searches mmdet's whole metafile index for every ``mmdet::`` base of every file
    it reads; with the plugin imported, each name is searched once, and found where mmengine
    finds it."""
    import mmengine.config.config as mmengine_config
    from mmengine.config.utils import _get_external_cfg_base_path
    from mmengine.utils import get_installed_path
    searched = []
    search = mmengine_config._get_external_cfg_path

    def counted(package_path, cfg_path):
        searched.append(cfg_path)
        return search(package_path, cfg_path)

    monkeypatch.setattr(mmengine_config, '_get_external_cfg_path', counted)
    base = 'mmdet::_base_/schedules/schedule_2x.py'  # a base no config of this project names
    for name in ('a', 'b'):
        (tmp_path / f'{name}.py').write_text(f"_base_ = ['{base}']\n")
        cfg = Config.fromfile(str(tmp_path / f'{name}.py'))
        assert cfg.train_cfg.max_epochs == 24
    assert searched.count('_base_/schedules/schedule_2x.py') == 1, searched
    path, scope = Config._get_cfg_path(base, str(tmp_path / 'c.py'))
    assert scope == 'mmdet'
    assert path == _get_external_cfg_base_path(get_installed_path('mmdet'),
                                               '_base_/schedules/schedule_2x.py')
    # relative bases are not remembered: each file's own folder
    assert Config._get_cfg_path('x.py', str(tmp_path / 'c.py')) == (str(tmp_path / 'x.py'), None)
    assert Config._get_cfg_path('x.py', '/elsewhere/c.py') == ('/elsewhere/x.py', None)


def test_tools_read_plugin_configs_by_name():
    """tools/train.py, tools/test.py ... take ``convnext_dense::PATH`` for a config file."""
    name = 'mask_rcnn/cascade_convnext_t_coco_3x.py'
    by_name = load_config(f'{SCOPE}::{name}')
    assert by_name.to_dict() == load_config(str(ROOT / 'configs' / name)).to_dict()
    assert Path(by_name.filename).resolve() == (ROOT / 'configs' / name).resolve()
    with pytest.raises(FileNotFoundError,
                       match=r"config 'convnext_dense::upernet/nope\.py': no such file in the "
                             r"plugin's configs \(.*\); name one as FOLDER/FILE\.py under "
                             r".*mask_rcnn, upernet"):
        load_config(f'{SCOPE}::upernet/nope.py')


def test_metafile_is_read_from_the_package():
    """Its keys name configs the package holds, as ``convnext_dense::`` + key."""
    assert METAFILE == configs_dir() / 'metafile.yml'
    source = yaml.safe_load((ROOT / 'configs' / 'metafile.yml').read_text())['Models']
    models = read_metafile()
    assert list(models) == [model['config'] for model in source]
    for name in models:
        assert Path(config_path(f'{SCOPE}::{name}')).is_file()


def test_mmengine_finds_the_installed_package():
    """Through its own lookup (pkg_resources on mmengine 0.10.7, importlib.metadata on
    onedl-mmengine): the folder Python imports the plugin from, also for an editable install."""
    from mmengine.config.utils import MODULE2PACKAGE
    from mmengine.utils import get_installed_path, is_installed
    name = MODULE2PACKAGE[SCOPE]
    assert is_installed(name)
    assert Path(get_installed_path(name)) == Path(convnext_dense.__file__).parent


def test_the_plugin_is_imported_before_the_config_is_read(tmp_path):
    """``custom_imports`` does not make ``convnext_dense::`` bases resolve (mmengine reads it
    after ``_base_``); importing the plugin first does."""
    (tmp_path / 'my_config.py').write_text(textwrap.dedent(f"""\
        _base_ = ['{SCOPE}::{PAPER}']
        custom_imports = dict(imports=['convnext_dense'], allow_failed_imports=False)
        """))
    read = "from mmengine.config import Config; print(Config.fromfile('my_config.py').model.type)"
    alone = subprocess.run([sys.executable, '-c', read], cwd=tmp_path, capture_output=True,
                           text=True, timeout=300)
    assert alone.returncode != 0
    assert 'mmengine does not support to load convnext_dense config' in alone.stderr
    first = subprocess.run([sys.executable, '-c', f'import convnext_dense; {read}'],
                           cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr[-3000:]
    assert first.stdout.splitlines()[-1] == 'EncoderDecoder'


# -- the wheel, away from the checkout (slow) ------------------------------------------------------
# A user's config: the paper's UperNet-T with toy sizes, for a CPU and one process.
USER_CONFIG = f"""\
_base_ = ['{SCOPE}::{PAPER}']

norm_cfg = dict(type='BN', requires_grad=True)  # SyncBN needs several processes
model = dict(
    data_preprocessor=dict(size=(64, 64)),
    backbone=dict(arch='atto', drop_path_rate=0.0, init_cfg=None),
    decode_head=dict(in_channels=[40, 80, 160, 320], channels=16, norm_cfg=norm_cfg),
    auxiliary_head=dict(in_channels=160, channels=16, norm_cfg=norm_cfg))
train_dataloader = dict(
    batch_size=2, num_workers=0, persistent_workers=False,
    dataset=dict(data_root='data/ade', pipeline=[
        dict(type='LoadImageFromFile'),
        dict(type='LoadAnnotations', reduce_zero_label=True),
        dict(type='RandomResize', scale=(128, 64), ratio_range=(0.5, 2.0), keep_ratio=True),
        dict(type='RandomCrop', crop_size=(64, 64), cat_max_ratio=0.75),
        dict(type='RandomFlip', prob=0.5),
        dict(type='PackSegInputs'),
    ]))
val_dataloader = val_evaluator = val_cfg = None
test_dataloader = test_evaluator = test_cfg = None
# fp16 AMP needs a GPU
optim_wrapper = dict(
    _delete_=True, type='OptimWrapper', constructor='ConvNeXtLayerDecayOptimWrapperConstructor',
    optimizer=dict(type='AdamW', lr=1e-4, betas=(0.9, 0.999), weight_decay=0.05),
    paramwise_cfg=dict(decay_rate=0.9, decay_type='stage_wise', num_layers=6))
train_cfg = dict(max_iters=1)
default_hooks = dict(logger=dict(interval=1))
"""

# Run in the installed package's environment: where everything comes from, and what it reads.
CHECK = """\
import json, sys
from pathlib import Path
import convnext_dense
from mmengine.config import Config
from convnext_dense.analysis.metafile import METAFILE, read_metafile
cfg = Config.fromfile('my_config.py')
print('RESULT ' + json.dumps(dict(
    sys_path=sys.path, package=convnext_dense.__file__,
    finders=[repr(finder) for finder in sys.meta_path], metafile=str(METAFILE),
    paper=read_metafile()[sys.argv[1]]['paper'],
    config=json.dumps(cfg.to_dict(), sort_keys=True, default=repr))))
"""


def copy_sources(target: Path) -> Path:
    """What the wheel is built from, links kept (pip builds a local folder in place: its build/
    and egg-info stay out of the checkout)."""
    target.mkdir()
    for name in ('setup.cfg', 'pyproject.toml', 'README.md'):
        shutil.copy2(ROOT / name, target / name)
    ignore = shutil.ignore_patterns('__pycache__', '*.egg-info')
    for name in ('convnext_dense', 'configs'):
        shutil.copytree(ROOT / name, target / name, symlinks=True, ignore=ignore)
    return target


@pytest.mark.slow
def test_wheel_installed_elsewhere(tmp_path):
    source = copy_sources(tmp_path / 'source')
    subprocess.run([sys.executable, '-m', 'pip', 'wheel', '--no-deps', '--no-build-isolation',
                    '--disable-pip-version-check', '-q', '-w', tmp_path / 'wheels', source],
                   check=True, timeout=600)
    wheel, = (tmp_path / 'wheels').glob('convnext_dense-*.whl')
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        for name in config_files(ROOT / 'configs'):  # every config, byte for byte
            assert archive.read(f'convnext_dense/.mim/configs/{name}') == \
                (ROOT / 'configs' / name).read_bytes()
    assert 'convnext_dense/.mim/model-index.yml' in names
    target = tmp_path / 'target'
    subprocess.run([sys.executable, '-m', 'pip', 'install', '--no-deps', '--no-index',
                    '--disable-pip-version-check', '-q', '--target', target, wheel],
                   check=True, timeout=600)

    work = tmp_path / 'work'  # an empty folder, the user's project
    from convnext_dense.testing.datasets import write_ade_like
    write_ade_like(str(work / 'data' / 'ade'), (4, 1), 48, 64, 150)
    (work / 'my_config.py').write_text(USER_CONFIG)
    # -S: no site-packages .pth files, so not the editable install's finder, which maps
    # convnext_dense to the checkout; the venv's packages come through PYTHONPATH.
    python = [sys.executable, '-S']
    env = dict(os.environ, OMP_NUM_THREADS='1', PYTHONPATH=os.pathsep.join(
        [str(target), sysconfig.get_paths()['purelib']]))
    check = subprocess.run([*python, '-c', CHECK, PAPER], cwd=work, env=env,
                           capture_output=True, text=True, timeout=600)
    assert check.returncode == 0, check.stderr[-3000:]
    line, = (line for line in check.stdout.splitlines() if line.startswith('RESULT '))
    seen = json.loads(line[len('RESULT '):])
    # the checkout is not on sys.path; the target is the one folder holding the package
    folders = [Path(entry or work).resolve() for entry in seen['sys_path']]
    assert ROOT.resolve() not in folders and (ROOT / 'tools').resolve() not in folders
    assert [f for f in folders if (f / 'convnext_dense').exists()] == [target.resolve()]
    assert Path(seen['package']).parent == target / 'convnext_dense'
    assert not any('editable' in finder.lower() for finder in seen['finders'])
    assert Path(seen['metafile']) == target / 'convnext_dense/.mim/configs/metafile.yml'
    expected = {m['config']: m for m in yaml.safe_load(
        (ROOT / 'configs/metafile.yml').read_text())['Models']}[PAPER]['paper']
    assert seen['paper'] == expected
    # the same config as the checkout's files give it
    here = Config.fromfile(str(work / 'my_config.py'))
    assert seen['config'] == json.dumps(here.to_dict(), sort_keys=True, default=repr)

    # mmseg's own tools/train.py, the plugin imported first: one training iteration
    import mmseg
    train = Path(mmseg.__file__).parent / '.mim' / 'tools' / 'train.py'
    run = subprocess.run([*python, '-c', RUN_WITH_PLUGIN, train, 'my_config.py', '--work-dir',
                          'run'], cwd=work, env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    scalars, = (work / 'run').glob('*/vis_data/scalars.json')
    record, = [json.loads(line) for line in scalars.read_text().splitlines()]
    assert record['step'] == 1 and 0 < record['loss'] < float('inf')
