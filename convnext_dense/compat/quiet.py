"""The upstream warnings a user cannot act on, silenced; every other warning stays.

The OpenMMLab stack warns, on every run, about its own use of APIs its authors deprecated: a
user of the tools (or of mmdet's and mmseg's own configs) can change nothing about them, and
they bury the lines that matter. Each entry below matches one message, by a regular expression
on its text and where it is raised (the warning's module, or the logger that logs it), and
says why it is not the user's to act on. Anything else, from upstream or from this package,
shows as before.

Two channels: ``warnings.warn`` (filtered by :func:`warnings.filterwarnings`, installed when
``convnext_dense`` is imported: the tools import it first, ``torchrun``'s children run the same
tools, and dataloader workers are forked with the filters in place or, when spawned, import
the tool's script again) and mmengine's logger (``print_log(..., level=WARNING)``: a
:class:`logging.Filter` on every ``MMLogger``, the loggers mmengine's runners create).
"""
from __future__ import annotations

import logging
import re
import warnings
from dataclasses import dataclass


@dataclass(frozen=True)
class UpstreamWarning:
    """A ``warnings.warn`` to ignore: ``message`` (a regex matched at the start of the text)
    of ``category``, raised from a module whose name matches ``module``."""

    message: str
    category: type[Warning]
    module: str
    why: str


@dataclass(frozen=True)
class UpstreamLogWarning:
    """A WARNING record of mmengine's logger to drop: ``message`` (a regex matched at the start
    of the text)."""

    message: str
    why: str


WARNINGS = (
    UpstreamWarning(
        r'pkg_resources is deprecated as an API', UserWarning,
        r'(mmengine\.utils\.package_utils|importlib)$',
        "mmengine 0.10.x's is_installed() imports setuptools' pkg_resources and reloads it "
        '(importlib.reload, hence the module) on every call: resolving a config\'s "mmdet::" / '
        '"mmseg::" base, building a runner. setuptools is pinned below 81, which still has it.'),
    UpstreamWarning(
        r'``build_loss`` would be deprecated soon', UserWarning, r'mmseg\.models\.builder$',
        "mmseg's own decode heads (BaseDecodeHead.__init__) build their losses with it."),
)

LOG_WARNINGS = (
    UpstreamLogWarning(
        r'"FileClient" will be deprecated in future',
        "mmengine's own CheckpointHook and LoggerHook create a FileClient in before_train."),
    UpstreamLogWarning(
        r'"HardDiskBackend" is the alias of "LocalBackend"',
        "the FileClient that mmengine's CheckpointHook creates picks that alias itself."),
    UpstreamLogWarning(
        r'The prefix is not set in metric class IoUMetric\.',
        "mmseg's IoUMetric has no default prefix; giving it one renames mIoU and the other "
        'keys that mmseg\'s configs, tools and checkpoints select ("save_best=\'mIoU\'").'),
)


class UpstreamLogFilter(logging.Filter):
    """Drops the WARNING records of :data:`LOG_WARNINGS`; passes every other record."""

    def __init__(self, entries=LOG_WARNINGS) -> None:
        super().__init__()
        self.pattern = re.compile('|'.join(f'(?:{entry.message})' for entry in entries))

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno != logging.WARNING:
            return True
        return self.pattern.match(str(record.getMessage())) is None


def _add_filter(logger: logging.Logger) -> None:
    if not any(isinstance(f, UpstreamLogFilter) for f in logger.filters):
        logger.addFilter(UpstreamLogFilter())


def silence_upstream_noise() -> None:
    """Install the filters of :data:`WARNINGS` and :data:`LOG_WARNINGS` (idempotent)."""
    for entry in WARNINGS:
        # filterwarnings replaces an equal filter rather than adding a second one
        warnings.filterwarnings('ignore', message=entry.message, category=entry.category,
                                module=entry.module)
    from mmengine.logging import MMLogger
    if not getattr(MMLogger.__init__, '_convnext_dense_quiet', False):
        original = MMLogger.__init__

        def __init__(self, *args, **kwargs):
            original(self, *args, **kwargs)
            _add_filter(self)

        __init__._convnext_dense_quiet = True
        __init__.__wrapped__ = original
        MMLogger.__init__ = __init__
    for logger in list(MMLogger._instance_dict.values()):  # those created before the import
        _add_filter(logger)
