"""Weight families whose licences restrict their use, told apart from a checkpoint's keys and
name, so that loading one names its licence in the log.

* DINOv3 ConvNeXt (Siméoni et al., "DINOv3", 2025; facebookresearch/dinov3): the DINOv3
  License. The official ``dinov3_convnext_*_pretrain_lvd1689m-*.pth`` files, Hugging Face's
  ``facebook/dinov3-convnext-*-pretrain-lvd1689m`` (``DINOv3ConvNextModel``) and timm's
  ``convnext_*.dinov3_lvd1689m``.
* EUPE ConvNeXt ("Efficient Universal Perception Encoder", 2026; facebookresearch/EUPE): the
  FAIR Noncommercial Research License. ``EUPE-ConvNeXt-{T,S,B}.pt`` and timm's
  ``convnext_*.eupe_lvd1689m``.

Both come from the same model code and key names (``models/convnext.py``) and neither has a
classifier, so the keys alone tell them apart only when EUPE's distillation ``projectors.*``
were kept; the file or folder name decides otherwise, and a file that is one of the two by its
keys but neither by its name gets both notices.
"""
from __future__ import annotations

import re
from collections.abc import Iterable

LICENCES = {
    'dinov3': ('DINOv3 License',
               'https://github.com/facebookresearch/dinov3/blob/main/LICENSE.md'),
    'eupe': ('FAIR Noncommercial Research License',
             'https://github.com/facebookresearch/EUPE/blob/main/LICENSE.md'),
}
_WHAT = {'dinov3': 'DINOv3 ConvNeXt weights', 'eupe': 'EUPE ConvNeXt weights'}


def weight_families(layout: str, keys: Iterable[str], source: str,
                    final_norm: str | None) -> tuple[str, ...]:
    """The licensed families (keys of :data:`LICENCES`) a checkpoint may belong to.

    Args:
        layout: Its detected layout.
        keys: Its keys (as stored).
        source: Its file name, URL or folder (a Hugging Face / timm hub name included).
        final_norm: Where its final norm went (``ConversionReport.final_norm``): a patch-token
            norm (``'stage4'``) in the official or timm layout is DINOv3's or EUPE's.
    """
    name = source.lower()
    if 'eupe' in name or any(re.search(r'(^|\.)projectors\.', key) for key in keys):
        return ('eupe', )
    if 'dinov3' in name or layout == 'hf_dinov3':
        # transformers' DINOv3ConvNextModel holds DINOv3's weights only
        return ('dinov3', )
    if final_norm == 'stage4' and layout in ('official', 'timm'):
        return ('dinov3', 'eupe')
    return ()


def licence_notice(families: tuple[str, ...]) -> str | None:
    """One log line naming the licence(s) of ``families`` and where to read them."""
    if not families:
        return None
    if len(families) == 1:
        family = families[0]
        title, url = LICENCES[family]
        return (f'{_WHAT[family]} are released under the {title}, which applies to their use '
                f'and to models made from them: read it at {url}')
    notes = '; '.join(f'{_WHAT[f]}: {LICENCES[f][0]} ({LICENCES[f][1]})' for f in families)
    return (f'these look like DINOv3 or EUPE ConvNeXt weights (a final patch-token norm and no '
            f'classifier), which are released under licences that apply to their use and to '
            f'models made from them: {notes}')
