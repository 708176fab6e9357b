"""The package's layers (``convnext_dense/_layers.py``, described in ``docs/architecture.md``):
every import of every module, at module level or inside a function, relative or absolute, goes
to the module's own layer or a lower one, and no rooms import each other in a circle.

The modules are read with ``ast``, not imported, so an import that only runs on a GPU or in a
tool is checked as well."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

from convnext_dense import _layers

PACKAGE_DIR = Path(_layers.__file__).resolve().parent


def module_name(path: Path, package_dir: Path = PACKAGE_DIR) -> str:
    parts = path.relative_to(package_dir.parent).with_suffix('').parts
    return '.'.join(parts[:-1] if parts[-1] == '__init__' else parts)


def package_modules(package_dir: Path = PACKAGE_DIR) -> dict[str, Path]:
    """``{module name: file}`` of every module of the package."""
    return {module_name(path, package_dir): path for path in sorted(package_dir.rglob('*.py'))}


def imports_of(module: str, source: str, is_package: bool, known: set[str]) -> list[str]:
    """The modules of the package that ``source`` (the module ``module``) imports, anywhere in
    it. ``from X import name`` counts as an import of ``X.name`` where that is a module."""
    tree = ast.parse(source, filename=module)
    package = module if is_package else module.rpartition('.')[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split('.')
                base = base[:len(base) - (node.level - 1)]
                origin = '.'.join(base + ([node.module] if node.module else []))
            else:
                origin = node.module or ''
            targets = [f'{origin}.{alias.name}' if f'{origin}.{alias.name}' in known else origin
                       for alias in node.names]
        else:
            continue
        found += [target for target in targets
                  if target == _layers.PACKAGE or target.startswith(_layers.PACKAGE + '.')]
    return list(dict.fromkeys(found))


def import_graph(modules: dict[str, Path]) -> dict[str, list[str]]:
    known = set(modules)
    return {name: imports_of(name, path.read_text(encoding='utf-8'),
                             path.name == '__init__.py', known)
            for name, path in modules.items()}


def upward_imports(graph: dict[str, list[str]]) -> list[str]:
    """One line per import of a higher layer, naming the module, the import and both layers."""
    problems = []
    for module, targets in graph.items():
        layer = _layers.layer_of(module)
        for target in targets:
            if _layers.layer_of(target) > layer:
                problems.append(f'{module} (layer {layer}, {_layers.room_of(module)}) imports '
                                f'{target} (layer {_layers.layer_of(target)}, '
                                f'{_layers.room_of(target) or "the package entry"})')
    return problems


def room_cycles(graph: dict[str, list[str]]) -> list[list[str]]:
    """Circles of imports between rooms, each as the rooms in order, the first repeated last."""
    edges: dict[str, set[str]] = {}
    for module, targets in graph.items():
        room = _layers.room_of(module) or _layers.PACKAGE
        for target in targets:
            other = _layers.room_of(target) or _layers.PACKAGE
            if other != room:
                edges.setdefault(room, set()).add(other)
    cycles, done = [], set()

    def visit(room: str, path: list[str]) -> None:
        if room in path:
            cycles.append(path[path.index(room):] + [room])
            return
        if room in done:
            return
        for other in sorted(edges.get(room, ())):
            visit(other, path + [room])
        done.add(room)

    for room in sorted(edges):
        visit(room, [])
    return cycles


@pytest.fixture(scope='module')
def graph():
    return import_graph(package_modules())


def test_every_room_has_a_layer(graph):
    rooms = {_layers.room_of(module) for module in graph} - {None}
    listed = {room for layer in _layers.LAYERS for room in layer}
    assert rooms - listed == set(), 'rooms missing from convnext_dense/_layers.py'
    assert listed - rooms == set(), 'rooms in convnext_dense/_layers.py that do not exist'


def test_no_module_imports_a_higher_layer(graph):
    problems = upward_imports(graph)
    assert not problems, 'imports of a higher layer:\n' + '\n'.join(problems)


def test_no_import_cycle_between_rooms(graph):
    cycles = room_cycles(graph)
    assert not cycles, 'rooms importing each other: ' + '; '.join(' -> '.join(c) for c in cycles)


def test_the_graph_sees_every_kind_of_import(graph):
    """Imports inside functions and relative ones of a package's ``__init__`` are in the graph
    (a reader that missed them would pass every check)."""
    assert 'convnext_dense.compat.mmpretrain' in graph['convnext_dense.compat']  # from .x
    # function level, three dots, from a subpackage's module
    assert 'convnext_dense.engine.build' in graph['convnext_dense.engine.fast_path.ddp']
    assert 'convnext_dense.engine' in graph['convnext_dense']  # from . import engine


def test_an_upward_import_and_a_cycle_are_reported(tmp_path):
    """The checks on a made-up package: a function-level relative import of a higher layer, and
    two rooms of one layer importing each other."""
    package = tmp_path / _layers.PACKAGE
    files = {
        '__init__.py': 'from .models import Net\n',
        'checkpoint/__init__.py': '',
        'checkpoint/loading.py': 'def load():\n    from ..models.net import Net\n',
        'models/__init__.py': 'from .net import Net\n',
        'models/net.py': 'import torch\n',
        'optim/__init__.py': 'from convnext_dense.datasets import toy\n',
        'datasets/__init__.py': '',
        'datasets/toy.py': 'from ..optim import Constructor\n',
    }
    for name, text in files.items():
        (package / name).parent.mkdir(parents=True, exist_ok=True)
        (package / name).write_text(text)
    graph = import_graph(package_modules(package))
    assert upward_imports(graph) == [
        'convnext_dense.checkpoint.loading (layer 2, checkpoint) imports '
        'convnext_dense.models.net (layer 3, models)']
    assert room_cycles(graph) == [['datasets', 'optim', 'datasets']]
