"""Reading a config file, with errors that name the file and the key.

* ``--cfg-options`` keys are checked against the config (:func:`check_cfg_options`): a key whose
  parent does not exist, or a new key that is one typo away from an existing one, is an error
  naming it (mmengine would silently add it).
* A syntax error in the config or in any file of its ``_base_`` chain names that file and the
  line (mmengine shows the line but not the file).
* The config's ``roi_ops`` (:mod:`convnext_dense.ops.roi_ops`) and ``default_scope`` (the task:
  one of :data:`SCOPES`) are checked.

Every tool reads its config with :func:`load_config`.
"""
from __future__ import annotations

import ast
import difflib
import os.path as osp
from typing import Any

from mmengine.config import Config

from ..compat.config_package import resolve_config_path
from ..ops.roi_ops import check_roi_ops

# The tasks the tools run, by the config's default_scope (mmdet's and mmseg's default_runtime
# set it); what a tool does differently for each is convnext_dense.engine.run_config.TASKS.
SCOPES = ('mmdet', 'mmseg')
__all__ = ['SCOPES', 'check_cfg_options', 'load_config']


def _close_keys(name: str, keys) -> list[str]:
    return difflib.get_close_matches(name, [str(k) for k in keys], n=3, cutoff=0.75)


def check_cfg_options(cfg: Config, options: dict[str, Any]) -> None:
    """Refuse ``--cfg-options`` keys that are not in the config, naming the key.

    A new key is allowed where no existing sibling looks like it: a new ``randomness.seed`` is
    fine, ``train_cfg.max_iter`` next to ``max_iters`` or ``optim_wraper.lr`` next to
    ``optim_wrapper`` is a typo.
    """
    for key in options:
        node: Any = cfg._cfg_dict if isinstance(cfg, Config) else cfg
        parts = key.split('.')
        for depth, part in enumerate(parts):
            path = '.'.join(parts[:depth + 1])
            if isinstance(node, (list, tuple)):
                if not part.isdigit() or int(part) >= len(node):
                    raise KeyError(f'--cfg-options {key}: {path!r} indexes a list of '
                                   f'{len(node)} items')
                node = node[int(part)]
                continue
            if not isinstance(node, dict):
                raise KeyError(f'--cfg-options {key}: {".".join(parts[:depth])!r} is a '
                               f'{type(node).__name__}, not a dict of options')
            if part in node:
                node = node[part]
                continue
            close = _close_keys(part, node.keys())
            if close:
                raise KeyError(f'--cfg-options {key}: the config has no {path!r}; did you '
                               f'mean {", ".join(repr(c) for c in close)}?')
            break  # a new key (and subtree)


def _base_files(config: str, tree: ast.Module) -> list[str]:
    """The files ``config`` inherits: its ``_base_`` entries, or the relative imports of a
    ``with read_base():`` block (mmengine's lazy-import configs)."""
    names: list[str] = []
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
                isinstance(target, ast.Name) and target.id == '_base_'
                for target in node.targets):
            try:
                value = ast.literal_eval(node.value)
            except (ValueError, TypeError):
                break
            names = [value] if isinstance(value, str) else list(value) \
                if isinstance(value, (list, tuple)) else []
            break
    paths = []
    for name in names:
        try:
            paths.append(Config._get_cfg_path(name, config)[0])
        except Exception:  # an uninstalled package's 'mmdet::...': fromfile says so itself
            continue
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level > 0 and node.module:
            folder = osp.dirname(config)
            for _ in range(node.level - 1):
                folder = osp.dirname(folder)
            paths.append(osp.join(folder, *node.module.split('.')) + '.py')
    return [osp.normpath(path) for path in paths if path.endswith('.py')]


def _config_syntax_error(config: str, seen: set[str]) -> SyntaxError | None:
    """The first syntax error in ``config`` or the files it inherits, with its file name.

    mmengine 0.10.7 parses each file of the ``_base_`` chain with ``ast.parse`` and no file name
    (``Config._is_lazy_import``) before its own check that would name it, so a syntax error
    reaches the user as ``File "<unknown>", line 7`` without saying which file holds it.
    """
    if osp.abspath(config) in seen or not osp.isfile(config):
        return None
    seen.add(osp.abspath(config))
    with open(config, encoding='utf-8') as f:
        source = f.read()
    try:
        tree = ast.parse(source, filename=config)
    except SyntaxError as error:
        return error
    for base in _base_files(config, tree):
        error = _config_syntax_error(base, seen)
        if error is not None:
            return error
    return None


def load_config(config: str, cfg_options: dict | None = None) -> Config:
    """Read a config file (or a plugin config by name, ``convnext_dense::PATH``) and apply
    checked ``--cfg-options``."""
    config = resolve_config_path(config)
    if not osp.isfile(config):
        raise FileNotFoundError(f'config file {config!r} does not exist')
    try:
        cfg = Config.fromfile(config)
    except SyntaxError:
        error = _config_syntax_error(config, set())
        if error is None:
            raise
        raise SyntaxError(f'config file {error.filename!r}, line {error.lineno}: {error.msg}',
                          (error.filename, error.lineno, error.offset, error.text,
                           error.end_lineno, error.end_offset)) from None
    if cfg_options:
        check_cfg_options(cfg, cfg_options)
        cfg.merge_from_dict(cfg_options)
    check_roi_ops(cfg.get('roi_ops', 'auto'))  # RoIAlign/NMS kernels: convnext_dense.ops.roi_ops
    scope = cfg.get('default_scope')
    if scope not in SCOPES:
        raise ValueError(f'{config}: default_scope={scope!r}; this tool runs mmdet and mmseg '
                         f'configs ({SCOPES}), whose _base_ default_runtime sets it')
    return cfg
