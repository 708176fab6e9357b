"""mmpretrain beside current transformers.

mmpretrain 1.2.0 does not import beside current transformers (4.5x and 5.x): its BLIP code
subclasses ``PreTrainedModel`` names that are now None and fails with ``TypeError: NoneType takes
no arguments``. mmdet 3.3 imports mmpretrain whenever it is installed (its ReID data
preprocessor guards only against ``ImportError``), so the mere presence of both packages breaks
``import mmdet.models`` for every mmdet user. :func:`import_mmpretrain` imports mmpretrain with
its dependency probe told that transformers is absent: mmpretrain then registers placeholders
for its multimodal models (broken anyway) and everything else works.
"""
from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import sys
from types import ModuleType


class _TransformersHidden:
    """Runs a module's loader with mmpretrain's dependency probe told that transformers is
    absent (the probe calls ``importlib_metadata.distribution``)."""

    def __init__(self, loader) -> None:
        self.loader = loader

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module) -> None:
        import importlib_metadata
        real_distribution = importlib_metadata.distribution

        def distribution(name: str):
            if name == 'transformers':
                raise importlib_metadata.PackageNotFoundError(name)
            return real_distribution(name)

        importlib_metadata.distribution = distribution
        try:
            self.loader.exec_module(module)
        finally:
            importlib_metadata.distribution = real_distribution


class _MmpretrainFinder(importlib.abc.MetaPathFinder):
    """Finds ``mmpretrain`` as the path finder does, with :class:`_TransformersHidden` around its
    loader: ``mmpretrain/__init__.py`` imports everything mmpretrain has, all of it then under
    the hidden transformers."""

    def find_spec(self, fullname, path, target=None):
        if fullname != 'mmpretrain':
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is not None and spec.loader is not None:
            spec.loader = _TransformersHidden(spec.loader)
        return spec


def guard_mmpretrain_import() -> None:
    """Make every later ``import mmpretrain`` (mmdet's included) hide transformers from
    mmpretrain's dependency probe; imports nothing now (mmpretrain and mmdet take seconds)."""
    if 'mmpretrain' in sys.modules:
        return
    if not any(isinstance(finder, _MmpretrainFinder) for finder in sys.meta_path):
        sys.meta_path.insert(0, _MmpretrainFinder())


def import_mmpretrain() -> ModuleType | None:
    """Import ``mmpretrain.models`` safely; None when mmpretrain is not installed."""
    if 'mmpretrain.models' in sys.modules:
        return sys.modules['mmpretrain.models']
    if importlib.util.find_spec('mmpretrain') is None:
        return None
    guard_mmpretrain_import()
    import mmpretrain.models
    return mmpretrain.models
