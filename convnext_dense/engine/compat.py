"""Work-arounds for incompatibilities of the pinned OpenMMLab stack with current packages.

mmpretrain 1.2.0 does not import beside current transformers (4.5x and 5.x): its BLIP code
subclasses ``PreTrainedModel`` names that are now None and fails with ``TypeError: NoneType takes
no arguments``. mmdet 3.3 imports mmpretrain whenever it is installed (its ReID data
preprocessor guards only against ``ImportError``), so the mere presence of both packages breaks
``import mmdet.models`` for every mmdet user. :func:`import_mmpretrain` imports mmpretrain with
its dependency probe told that transformers is absent: mmpretrain then registers placeholders
for its multimodal models (broken anyway) and everything else works.
"""
from __future__ import annotations

import importlib.util
import sys
from types import ModuleType


def import_mmpretrain() -> ModuleType | None:
    """Import ``mmpretrain.models`` safely; None when mmpretrain is not installed."""
    if 'mmpretrain.models' in sys.modules:
        return sys.modules['mmpretrain.models']
    if importlib.util.find_spec('mmpretrain') is None:
        return None
    import importlib_metadata
    real_distribution = importlib_metadata.distribution

    def distribution(name: str):
        if name == 'transformers':
            raise importlib_metadata.PackageNotFoundError(name)
        return real_distribution(name)

    importlib_metadata.distribution = distribution
    try:
        import mmpretrain.models
    finally:
        importlib_metadata.distribution = real_distribution
    return mmpretrain.models


def guard_mmpretrain_import() -> None:
    """Import mmpretrain safely now if transformers is installed beside it, so that mmdet's
    later ``import mmpretrain`` finds it in ``sys.modules`` instead of failing."""
    if importlib.util.find_spec('transformers') is not None:
        import_mmpretrain()
