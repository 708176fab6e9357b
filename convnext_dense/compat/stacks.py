"""The two OpenMMLab stacks, and where the OneDL forks behave differently.

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

import importlib.metadata

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
