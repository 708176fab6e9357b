"""Running the models: what ``tools/train.py`` and ``tools/test.py`` prepare (:mod:`.run_config`),
the hooks every run gets (:mod:`.hooks`, :mod:`.fail_safe`), the fast path (:mod:`.fast_path`),
and building a config's model outside a Runner (:mod:`.build`). Importing it registers the hooks
and the channels-last DDP wrapper in mmengine's root registries."""
from .build import build_model, unwrap_model
from .fail_safe import (
    CheckpointWriteCheckHook,
    CheckpointWriteError,
    NonFiniteCheckHook,
    NonFiniteTrainingError,
    StopSignalHook,
)
from .fast_path import (
    ChannelsLastDistributedDataParallel,
    FastPathHook,
    apply_fast_path,
    configure_fast_path,
)
from .hooks import EvalProgressBarHook, LoadCheckpointHook, RNGStateHook
from .run_config import TASKS, adapt_to_cpu, make_runner, prepare_test_cfg, prepare_train_cfg

__all__ = ['TASKS', 'ChannelsLastDistributedDataParallel', 'CheckpointWriteCheckHook',
           'CheckpointWriteError', 'EvalProgressBarHook', 'FastPathHook', 'LoadCheckpointHook',
           'NonFiniteCheckHook', 'NonFiniteTrainingError', 'RNGStateHook', 'StopSignalHook',
           'adapt_to_cpu', 'apply_fast_path', 'build_model', 'configure_fast_path',
           'make_runner', 'prepare_test_cfg', 'prepare_train_cfg', 'unwrap_model']
