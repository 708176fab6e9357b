"""Work-arounds for incompatibilities of the pinned OpenMMLab stack with current packages.

mmpretrain 1.2.0 does not import beside current transformers (4.5x and 5.x): its BLIP code
subclasses ``PreTrainedModel`` names that are now None and fails with ``TypeError: NoneType takes
no arguments``. mmdet 3.3 imports mmpretrain whenever it is installed (its ReID data
preprocessor guards only against ``ImportError``), so the mere presence of both packages breaks
``import mmdet.models`` for every mmdet user. :func:`import_mmpretrain` imports mmpretrain with
its dependency probe told that transformers is absent: mmpretrain then registers placeholders
for its multimodal models (broken anyway) and everything else works.

mmcv 2.1.0's NMS has no bfloat16 kernel: :func:`allow_bf16_nms` runs it on fp32 copies, so that
a detector trains under bf16 autocast (with ``FP32SingleRoIExtractor`` for RoIAlign).

Two stacks provide the imports ``mmengine``, ``mmcv``, ``mmdet``, ``mmseg`` and ``mmpretrain``:
OpenMMLab's releases and the maintained OneDL forks (``onedl-mmcv`` ...). Installed together they
overwrite each other's files; :func:`installed_stack` names the one installed and refuses a mix.
onedl-mmengine resolves a config's ``_base_ = ['mmseg::...']`` through the distribution name
``mmsegmentation``, which the fork installs as ``onedl-mmsegmentation``: it then stops with
"mmsegmentation is not installed". :func:`resolve_onedl_config_scopes` points those scopes at the
fork's distributions.

onedl-mmengine resumes an iteration-based run by advancing the sampler past the trained batches
without loading them (mmengine 0.10.7 loads and discards them). Dataloader workers draw the data
augmentation from their own generators, seeded when they start, so they then augment the resumed
batches with draws the uninterrupted run spent on the skipped ones: the resumed run is no longer
bitwise the same. :func:`replay_skipped_batches` brings back the loading where workers exist.
"""
from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.metadata
import importlib.util
import sys
from types import ModuleType

# Distribution names of each stack, import names in the same order: mmengine, mmcv, mmdet, mmseg,
# mmpretrain (the last one optional).
STACK_DISTRIBUTIONS = {
    'upstream': ('mmengine', 'mmcv', 'mmdet', 'mmsegmentation', 'mmpretrain'),
    'onedl': ('onedl-mmengine', 'onedl-mmcv', 'onedl-mmdetection', 'onedl-mmsegmentation',
              'onedl-mmpretrain'),
}


def _installed(distribution: str) -> bool:
    try:
        importlib.metadata.distribution(distribution)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


def installed_stack() -> str:
    """``'upstream'`` or ``'onedl'``: which OpenMMLab stack is installed.

    Raises ``ImportError`` naming the distributions when both stacks' are installed (one's files
    replaced the other's) or when mmengine, mmcv, mmdet or mmseg is missing.
    """
    found = {stack: [name for name in names if _installed(name)]
             for stack, names in STACK_DISTRIBUTIONS.items()}
    if found['upstream'] and found['onedl']:
        raise ImportError(
            f'both OpenMMLab stacks are installed ({", ".join(found["upstream"])} and '
            f'{", ".join(found["onedl"])}), whose files overwrite each other: use one venv per '
            'stack, with `pip install convnext_dense[upstream]` or `convnext_dense[onedl]`')
    for stack, names in found.items():
        required = STACK_DISTRIBUTIONS[stack][:4]
        if names:
            missing = [name for name in required if name not in names]
            if missing:
                raise ImportError(f'the {stack} OpenMMLab stack lacks {", ".join(missing)}: '
                                  f'pip install convnext_dense[{stack}]')
            return stack
    raise ImportError('no OpenMMLab stack is installed: pip install convnext_dense[upstream] '
                      'or convnext_dense[onedl]')


# The fork's distribution of each config scope whose upstream distribution name differs.
ONEDL_SCOPE_DISTRIBUTIONS = {'mmdet': 'onedl-mmdetection', 'mmseg': 'onedl-mmsegmentation',
                             'mmpretrain': 'onedl-mmpretrain'}


def resolve_onedl_config_scopes() -> None:
    """Let ``mmdet::``/``mmseg::``/``mmpretrain::`` config paths resolve on the OneDL stack.

    mmengine maps a scope to the distribution it looks up (``MODULE2PACKAGE``: ``mmseg`` ->
    ``mmsegmentation``) and falls back to the import name only when that is the same; where the
    upstream distribution is absent and the fork's is installed, the scope is mapped to the fork's.
    The upstream stack is left as it is.
    """
    from mmengine.config.utils import MODULE2PACKAGE
    for scope, fork in ONEDL_SCOPE_DISTRIBUTIONS.items():
        if (scope in MODULE2PACKAGE and not _installed(MODULE2PACKAGE[scope])
                and _installed(fork)):
            MODULE2PACKAGE[scope] = fork


def replay_skipped_batches(loop) -> None:
    """Make ``loop`` (a training loop about to resume) load and discard the batches it skips, as
    mmengine 0.10.7 does, when its dataloader has workers; a no-op on mmengine 0.10.7 and for
    single-process loading, whose generators the checkpoint restores (``RNGStateHook``)."""
    iterator = getattr(loop, 'dataloader_iterator', None)
    if iterator is None or not hasattr(iterator, 'skip_iter'):  # mmengine 0.10.7, epoch loops
        return
    if getattr(loop.dataloader, 'num_workers', 0) == 0:
        return

    def skip_iter(num_iters: int) -> None:
        for _ in range(num_iters):
            next(iterator)

    iterator.skip_iter = skip_iter


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


def allow_bf16_nms() -> None:
    """Let mmcv's NMS take bf16 boxes (as they come out of an RPN under bf16 autocast).

    mmcv 2.1.0's NMS kernels have no bfloat16 version ("expected scalar type Float but found
    BFloat16"); NMS returns indices, so computing it on fp32 copies changes nothing else. The
    router of :mod:`convnext_dense.ops.roi_ops` does so on either kernel (``roi_ops``: mmcv's or
    torchvision's NMS), and runs RoIAlign in fp32 where a kernel lacks the dtype.
    """
    from ..ops.roi_ops import route_mmcv_ops
    route_mmcv_ops()
