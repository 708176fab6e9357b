"""The layers of the package, lowest first: a module may import only from its own layer or a
lower one, and no two rooms (top-level subpackages and modules) may import each other in a
circle. ``tests/test_architecture.py`` checks every import of every module against this table;
``docs/architecture.md`` says what each room owns.

The package's ``__init__`` (what ``import convnext_dense`` registers and applies) sits above
every layer: no module of the package imports it.
"""
from __future__ import annotations

PACKAGE = 'convnext_dense'

LAYERS: tuple[tuple[str, ...], ...] = (
    # L0: kernels and custom ops, safe checkpoint reading and atomic writes; the package's
    # version and this table
    ('ops', 'fileio', 'version', '_layers'),
    # L1: what the plugin evens out in the OpenMMLab stacks; the ConvNeXt sizes as data
    ('compat', 'arch_settings'),
    # L2: checkpoint layouts, loading and fitting
    ('checkpoint', ),
    # L3: the backbone, its heads and layers
    ('models', ),
    # L4: the optimizer side, data, evaluation, pictures, synthetic inputs for the tests
    ('optim', 'datasets', 'evaluation', 'visualization', 'testing'),
    # L5: reading configs and checking them
    ('config', ),
    # L6: runs (preparation, hooks, the fast path) and building a config's model
    ('engine', ),
    # L7: what the tools call: the demo, exports, benchmarks, analysis
    ('apis', 'deployment', 'benchmarks', 'analysis'),
)
ENTRY_LAYER = len(LAYERS)  # the package's __init__


def room_of(module: str) -> str | None:
    """The room of a module of the package (``convnext_dense.engine.fast_path.hook`` ->
    ``engine``); None for the package itself."""
    parts = module.split('.')
    if parts[0] != PACKAGE:
        raise ValueError(f'{module!r} is not a module of {PACKAGE}')
    return parts[1] if len(parts) > 1 else None


def layer_of(module: str) -> int:
    """The layer index of a module of the package (0 = lowest); raises ``KeyError`` naming a
    room that is not in :data:`LAYERS`."""
    room = room_of(module)
    if room is None:
        return ENTRY_LAYER
    for index, rooms in enumerate(LAYERS):
        if room in rooms:
            return index
    raise KeyError(f'{module}: the room {room!r} is in no layer of {PACKAGE}._layers.LAYERS; '
                   'add it to the layer of what it imports')
