"""The plugin's configs as package data, inherited as ``convnext_dense::PATH`` from anywhere.

The configs ship inside the package, as ``convnext_dense/.mim/configs``: in the repository a link
to ``configs/`` (one source; building a wheel copies the files it points at), in an installed
wheel a folder. :func:`configs_dir` returns it, :func:`config_path` finds a config in it.

mmengine resolves a ``scope::path`` base (``mmdet::``, ``mmseg::``) through the ``.mim/configs``
folder of the packages of its table ``mmengine.config.utils.MODULE2PACKAGE``;
:func:`register_config_package`, called by ``import convnext_dense``, enters the plugin there.
A config in any folder can then inherit the plugin's configs, and this repository's tools take
``convnext_dense::mask_rcnn/cascade_convnext_t_coco_3x.py`` for a config file
(:func:`resolve_config_path`). The plugin must be imported before the config is read: mmengine
reads ``custom_imports`` only after it has resolved ``_base_``.

Three things make the entry work on both mmengine releases and every kind of install:

* The table's value is looked up as a distribution, and the package folder taken from the
  distribution's location. Under an editable install (PEP 660) that location is
  site-packages, where mmengine 0.10.7 then looks for a ``convnext_dense`` folder that is not
  there (onedl-mmengine falls back to the import system). A name no distribution carries, a
  module of the package folder, sends both to ``importlib.util.find_spec``: the folder Python
  imports the package from, installed, editable or on ``PYTHONPATH``.
* mmengine first looks a ``scope::`` path up in ``.mim/model-index.yml`` (OpenMMLab's index of
  configs with released weights; it stops if the file is missing) and then as a file under
  ``.mim/configs``. The plugin's index lists nothing, so every path is a file; its metafile
  (``configs/metafile.yml``, :mod:`convnext_dense.analysis.metafile`) has a schema of its own.
* mmengine marks each dict that a ``scope::`` base contributes with ``_scope_=scope``, to build
  it with that package's registries. The plugin has none of its own (it registers in
  mmengine's root registries, which mmdet's and mmseg's see), and its configs name mmdet or
  mmseg in ``default_scope``: a dict marked ``convnext_dense`` would be built in mmengine's root
  registry, where mmdet's and mmseg's datasets, transforms and hooks are not found.
  ``convnext_dense::`` bases are therefore read as a local base is, without a scope: their
  dicts are built in the config's ``default_scope``.
"""
from __future__ import annotations

from pathlib import Path

SCOPE = 'convnext_dense'
# A module directly in the package folder, which no distribution is named after (see above).
_LOCATOR = f'{SCOPE}.version'


def configs_dir() -> Path:
    """The folder of the plugin's configs, inside the installed package (in a checkout, the link
    ``convnext_dense/.mim/configs`` to ``configs/``)."""
    return Path(__file__).resolve().parents[1] / '.mim' / 'configs'


def config_path(name: str) -> str:
    """The file of the plugin's config ``name``: ``upernet/convnext_t_ade20k.py`` or
    ``convnext_dense::upernet/convnext_t_ade20k.py``."""
    relative = name.split('::', 1)[1] if name.startswith(f'{SCOPE}::') else name
    path = configs_dir() / relative
    if not path.is_file():
        folders = sorted(p.name for p in configs_dir().iterdir() if p.is_dir())
        raise FileNotFoundError(f'config {name!r}: no such file in the plugin\'s configs '
                                f'({configs_dir()}); name one as FOLDER/FILE.py under '
                                f'{", ".join(folders)}')
    return str(path)


def resolve_config_path(config: str) -> str:
    """``config`` as a file path: ``convnext_dense::PATH`` becomes the installed config's file,
    anything else is returned as it is."""
    return config_path(config) if config.startswith(f'{SCOPE}::') else config


def _unscoped(original):
    """``Config._get_cfg_path`` that gives ``convnext_dense::`` bases no scope, and finds each
    ``package::PATH`` once per process: mmengine looks every such base up in the package's
    whole metafile index before trying the path itself (a quarter of a second for mmdet's, for
    each base of each file read), and the answer depends only on the installed package."""
    external: dict[str, tuple[str, str | None]] = {}

    def get_cfg_path(cfg_path: str, filename: str):
        if '::' not in cfg_path:  # relative to ``filename``
            path, scope = original(cfg_path, filename)
        else:
            if cfg_path not in external:
                external[cfg_path] = original(cfg_path, filename)
            path, scope = external[cfg_path]
        return path, None if scope == SCOPE else scope

    get_cfg_path.unscoped = SCOPE
    return get_cfg_path


def register_config_package() -> None:
    """Let mmengine resolve ``convnext_dense::PATH`` in ``_base_`` (idempotent)."""
    from mmengine.config import Config
    from mmengine.config.utils import MODULE2PACKAGE
    MODULE2PACKAGE[SCOPE] = _LOCATOR  # also PKG2PROJECT: the same dict
    if getattr(Config._get_cfg_path, 'unscoped', None) != SCOPE:
        Config._get_cfg_path = staticmethod(_unscoped(Config._get_cfg_path))
