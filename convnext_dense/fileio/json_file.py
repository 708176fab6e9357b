"""Reading a JSON file with errors that name it (a Hugging Face folder's ``config.json``, a
sharded checkpoint's ``*.index.json``)."""
from __future__ import annotations

import json
import os
from typing import Any


def read_json(path: str) -> Any:
    """The content of the JSON file ``path``; a missing file or one that is not JSON is an
    error naming it."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f'{path} does not exist')
    with open(path, encoding='utf-8') as f:
        try:
            return json.load(f)
        except json.JSONDecodeError as error:
            raise ValueError(f'{path} is not JSON: {error}') from None
