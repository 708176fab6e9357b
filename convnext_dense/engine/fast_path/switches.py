"""The fast path's switches: the config key ``fast_path = dict(bf16=False, channels_last=False,
compile=False)`` checked and completed (:func:`normalize_fast_path`), and the tools' flags
``--bf16``, ``--channels-last``, ``--compile`` (:func:`add_fast_path_arguments`)."""
from __future__ import annotations

SWITCHES = ('bf16', 'channels_last', 'compile')
COMPILE_DEFAULTS = dict(backend='inductor', mode=None, fullgraph=False, bucket_sizes=None,
                        recompile_limit=None)


def normalize_fast_path(fast_path: dict | None) -> dict:
    """``fast_path`` with every switch present: ``bf16`` and ``channels_last`` booleans,
    ``compile`` False or a dict of :data:`COMPILE_DEFAULTS`' keys (``True`` means the
    defaults)."""
    fast_path = dict(fast_path or {})
    unknown = set(fast_path) - set(SWITCHES)
    if unknown:
        raise ValueError(f'fast_path: unknown keys {sorted(unknown)}; the switches are '
                         f'{list(SWITCHES)}')
    result = {}
    for name in ('bf16', 'channels_last'):
        value = fast_path.get(name, False)
        if not isinstance(value, bool):
            raise TypeError(f'fast_path.{name} must be True or False, got {value!r}')
        result[name] = value
    compile_ = fast_path.get('compile', False)
    if compile_ is True:
        compile_ = dict(COMPILE_DEFAULTS)
    elif isinstance(compile_, dict):
        unknown = set(compile_) - set(COMPILE_DEFAULTS)
        if unknown:
            raise ValueError(f'fast_path.compile: unknown keys {sorted(unknown)}; allowed: '
                             f'{list(COMPILE_DEFAULTS)}')
        compile_ = {**COMPILE_DEFAULTS, **compile_}
    elif compile_ is not False and compile_ is not None:
        raise TypeError(f'fast_path.compile must be True, False or a dict of options, got '
                        f'{compile_!r}')
    result['compile'] = compile_ or False
    return result


def add_fast_path_arguments(parser) -> None:
    """The switches' flags of ``tools/train.py`` and ``tools/test.py`` (default None: a flag left
    out keeps the config's ``fast_path`` value)."""
    parser.add_argument('--bf16', action='store_true', default=None,
                        help='bfloat16 autocast without loss scaling (fp32 RoIAlign and NMS)')
    parser.add_argument('--channels-last', action='store_true', default=None,
                        help='channels-last weights and activations (cuDNN kernels for the '
                        '7x7 depthwise convolutions under bf16/fp16)')
    parser.add_argument('--compile', action='store_true', default=None,
                        help='torch.compile for fixed shapes: the backbone on size-bucketed '
                        'batches (detection), the encoder-decoder path (segmentation)')
