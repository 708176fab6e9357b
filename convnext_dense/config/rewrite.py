"""Edits of a loaded config that the run preparation and the fast path make: a type replaced
everywhere in the tree, a hook added to ``custom_hooks`` once."""
from __future__ import annotations

from typing import Any

__all__ = ['add_custom_hook', 'replace_types']


def replace_types(node: Any, old: str | tuple[str, ...], new: str) -> int:
    """Replace ``type=old`` (one name or any of several) by ``type=new`` everywhere in a config
    tree; returns the count."""
    if isinstance(old, str):
        old = (old, )
    count = 0
    if isinstance(node, dict):
        if node.get('type') in old:
            node['type'] = new
            count += 1
        for value in node.values():
            count += replace_types(value, old, new)
    elif isinstance(node, (list, tuple)):
        for value in node:
            count += replace_types(value, old, new)
    return count


def add_custom_hook(cfg, hook_type: str, **kwargs) -> None:
    """Append ``dict(type=hook_type, **kwargs)`` to ``cfg.custom_hooks`` unless a hook of that
    type is there already (a config that sets it keeps its own settings)."""
    hooks = list(cfg.get('custom_hooks') or [])
    if not any(hook.get('type') == hook_type for hook in hooks):
        hooks.append(dict(type=hook_type, **kwargs))
    cfg.custom_hooks = hooks
