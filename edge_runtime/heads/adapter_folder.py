"""A trained adapter as a folder: peft's files, plus what scoring needs beyond them.

peft saves the adapter weights (and an encoder's linear head). What it cannot know is how this
runtime turns the model's outputs into scores: an encoder's pooling and logit scale, a causal LM's
prompt template and calibration offsets. `HEAD_FILE` holds them, and the folder's README says in a
few lines of plain transformers + peft how to get the same scores (tests run those lines).
"""

from __future__ import annotations

import json
from pathlib import Path

from torch import nn

from edge_runtime.heads.base import Head
from edge_runtime.heads.label_words import CandidateScoringHead
from edge_runtime.models.pooled_classifier import pooled_classifier_in
from edge_runtime.models.registry import PUBLIC_IDS

HEAD_FILE = "edgetune_head.json"


def head_description(module: nn.Module, head: Head) -> dict:
    description: dict = {"constants": head.constants()}
    if isinstance(head, CandidateScoringHead):
        template = head.template
        description["template"] = {
            "name": template.name,
            "prompt": template.prompt,
            "candidates": None if template.candidates is None else list(template.candidates),
            "calibration": template.calibration,
        }
    pooled = pooled_classifier_in(module)
    if pooled is not None:
        description["pooling"] = pooled.pooling.as_dict()
    return description


def save_adapter(module: nn.Module, head: Head, folder: str | Path, *, model: str, card: dict | None = None) -> None:
    """The adapter folder: peft's files naming `model`'s public id as the base (the local folder the
    weights came from goes in `HEAD_FILE`), the head's settings, and a README on how it was trained
    (`card`: method, data, accuracy) and how to score with it."""
    folder = Path(folder)
    module.save_pretrained(str(folder))
    config_file = folder / "adapter_config.json"
    if config_file.is_file():  # full fine-tuning saves a model folder, not an adapter
        config = json.loads(config_file.read_text())
        local = config.get("base_model_name_or_path")
        config["base_model_name_or_path"] = PUBLIC_IDS.get(model, model)
        config_file.write_text(json.dumps(config, indent=2))
    else:
        local = None
    description = head_description(module, head) | {
        "base_model": PUBLIC_IDS.get(model, model),
        "base_model_local_path": local,
        "training": card or {},
    }
    (folder / HEAD_FILE).write_text(json.dumps(description, indent=2))
    (folder / "README.md").write_text(_usage(description))


def _usage(description: dict) -> str:
    constants = description["constants"]
    if "pooling" in description:
        pooling = description["pooling"]
        normalize = "\nembedding = torch.nn.functional.normalize(embedding, dim=-1)" if pooling["normalize"] else ""
        pool = (
            "embedding = hidden[:, 0]"
            if pooling["mode"] == "cls"
            else "mask = inputs['attention_mask'].unsqueeze(-1).float()\n"
            "embedding = (hidden * mask).sum(1) / mask.sum(1)"
        )
        code = f"""from peft import PeftModel
from transformers import AutoModelForSequenceClassification, AutoTokenizer

base = AutoModelForSequenceClassification.from_pretrained(BASE_MODEL, num_labels=NUM_LABELS)
model = PeftModel.from_pretrained(base, ADAPTER_FOLDER).eval()
inputs = AutoTokenizer.from_pretrained(BASE_MODEL)(texts, padding=True, return_tensors="pt")
hidden = model(**inputs, output_hidden_states=True).hidden_states[-1]
{pool}{normalize}
logits = model.base_model.model.classifier(embedding) * {constants.get("logit_scale", 1.0)!r}"""
        how = (
            "The encoder is scored from its pooled sentence embedding, not from its [CLS] pooler: "
            f"{pooling['mode']} pooling{', L2-normalised' if pooling['normalize'] else ''}, then the linear "
            "classifier, times the logit scale the warm start fixed."
        )
    else:
        template = description["template"]
        offsets = constants.get("score_offsets")
        code = f"""from peft import PeftModel
from transformers import AutoModelForCausalLM

model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(BASE_MODEL), ADAPTER_FOLDER).eval()
# prompt template {template["name"]!r}: {template["prompt"]!r}, candidates {template["candidates"]!r}
# score of a candidate = mean log-probability of its tokens after the prompt{" - its offset" if offsets else ""}
offsets = {offsets!r}"""
        how = "The causal LM scores each candidate continuation of a prompt by its mean token log-probability" + (
            ", minus the calibration offset of that candidate." if offsets else "."
        )
    training = description["training"]
    trained = "".join(f"- {key.replace('_', ' ')}: {value}\n" for key, value in training.items())
    return f"""# edgetune adapter for {description["base_model"]}

{trained and "## How it was trained" + chr(10) + chr(10) + trained + chr(10)}## How to score with it

{how} `{HEAD_FILE}` holds these settings. With transformers and peft alone (BASE_MODEL is
`{description["base_model"]}`, or the local copy named in `{HEAD_FILE}`):

```python
{code}
```
"""
