"""Encoders classify from one sentence embedding, pooled the way the encoder was trained.

A sentence-transformers model (all-MiniLM-L6-v2) was trained to produce the attention-masked mean
of its last hidden states, L2-normalised; its [CLS] token and BERT pooler were not trained for
that model at all. Scoring it through the pooler throws away what it learned (SST-2 dev, frozen
features, ridge head on 2,048 examples: mean pooling 0.789, [CLS] 0.722). So an encoder here is
`PooledClassifier`: the transformers base model (no task head), the pooling its folder declares
(sentence-transformers' `modules.json` and `1_Pooling/config.json`), and a linear `classifier`
over the embedding. The classifier is a plain linear map on purpose: the forward-only warm starts
(zero-shot label descriptions, class centroids, ridge) are linear heads on this embedding.

The module keeps the parameter names of transformers' `*ForSequenceClassification` (the base
model under its `base_model_prefix`, the head as `classifier`), so a trained peft adapter loads
into `AutoModelForSequenceClassification` + `PeftModel` unchanged; `Pooling.apply` is the one
step a plain-transformers user adds (the adapter folder's model card shows it).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import safetensors.torch
import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoModel, PretrainedConfig, PreTrainedModel
from transformers.modeling_outputs import SequenceClassifierOutput

from edge_runtime.errors import UserError

PoolingMode = Literal["mean", "cls"]
_ST_MODES = {"pooling_mode_mean_tokens": "mean", "pooling_mode_cls_token": "cls"}
# Beside a saved encoder's weights: the trained head (full fine-tuning saves the whole model).
CLASSIFIER_FILE = "classifier.safetensors"


@dataclass(frozen=True)
class Pooling:
    mode: PoolingMode = "mean"
    normalize: bool = False

    def apply(self, hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """[batch, length, width] hidden states -> [batch, width] embeddings."""
        if self.mode == "cls":
            pooled = hidden[:, 0]
        else:
            # Prefix tuning prepends virtual tokens to the mask but not to the hidden states.
            mask = attention_mask[..., -hidden.shape[-2] :].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(-2) / mask.sum(-2).clamp(min=1)
        return F.normalize(pooled, dim=-1) if self.normalize else pooled

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def of_folder(cls, folder: Path) -> Pooling:
        """The pooling a sentence-transformers folder declares; mean pooling for any other encoder
        (the better frozen feature of a plain BERT too, as Sentence-BERT measured)."""
        modules_file = folder / "modules.json"
        if not modules_file.is_file():
            return cls()
        try:
            modules = json.loads(modules_file.read_text())
            types = {m["type"].rsplit(".", 1)[-1]: m.get("path", "") for m in modules}
            pooling_config = json.loads((folder / types["Pooling"] / "config.json").read_text())
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
            raise UserError(f"cannot read the sentence-transformers pooling of {folder}: {error}") from None
        modes = [mode for key, mode in _ST_MODES.items() if pooling_config.get(key)]
        others = [
            key for key, on in pooling_config.items() if key.startswith("pooling_mode") and on and key not in _ST_MODES
        ]
        if len(modes) != 1 or others:
            raise UserError(
                f"{folder} pools with {', '.join(modes + others) or 'nothing'}; "
                "this runtime pools by mean or [CLS] token only"
            )
        return cls(mode=modes[0], normalize="Normalize" in types)

    def save(self, folder: Path, width: int) -> None:
        """sentence-transformers' description of this pooling, so the folder loads there too."""
        modules = [
            {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
            {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        ]
        if self.normalize:
            modules.append(
                {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"}
            )
            (folder / "2_Normalize").mkdir(exist_ok=True)
        (folder / "modules.json").write_text(json.dumps(modules, indent=2))
        (folder / "1_Pooling").mkdir(exist_ok=True)
        config = {"word_embedding_dimension": width} | {key: mode == self.mode for key, mode in _ST_MODES.items()}
        (folder / "1_Pooling" / "config.json").write_text(json.dumps(config, indent=2))


def pooled_classifier_in(module: nn.Module) -> PooledClassifier | None:
    """The PooledClassifier inside a (peft-wrapped) model, if it is an encoder's."""
    return next((m for m in module.modules() if isinstance(m, PooledClassifier)), None)


def trained_classifier(model: PooledClassifier) -> nn.Linear:
    """The linear head that trains: peft's trainable copy of it when peft wraps the model."""
    head = model.classifier
    copies = getattr(head, "modules_to_save", None)
    return copies[head.active_adapters[0]] if copies is not None else head


def freeze_classifier(module: nn.Module) -> None:
    """Keep an encoder's head as it is (the warm start's); a causal LM has none to freeze."""
    model = pooled_classifier_in(module)
    if model is not None:
        trained_classifier(model).requires_grad_(False)


class PooledClassifier(nn.Module):
    def __init__(self, encoder: PreTrainedModel, num_labels: int, pooling: Pooling) -> None:
        super().__init__()
        self.base_model_prefix = encoder.base_model_prefix
        self.config = encoder.config
        self.config.num_labels = num_labels
        self.pooling = pooling
        setattr(self, self.base_model_prefix, encoder)
        self.classifier = nn.Linear(encoder.config.hidden_size, num_labels, dtype=torch.float32, device=encoder.device)

    @classmethod
    def from_config(cls, config: PretrainedConfig, pooling: Pooling, **options) -> PooledClassifier:
        return cls(AutoModel.from_config(config, **options), config.num_labels, pooling)

    def save_pretrained(self, folder: str | Path) -> None:
        """A model folder `load_model` reads back whole: the encoder, its pooling, the head."""
        folder = Path(folder)
        self.encoder.save_pretrained(folder)
        self.pooling.save(folder, self.config.hidden_size)
        safetensors.torch.save_file(
            {k: v.contiguous() for k, v in self.classifier.state_dict().items()}, folder / CLASSIFIER_FILE
        )

    def load_classifier(self, folder: Path) -> bool:
        """The head saved beside the weights, when there is one of this shape."""
        path = folder / CLASSIFIER_FILE
        if not path.is_file():
            return False
        state = safetensors.torch.load_file(path)
        if state.get("weight") is None or state["weight"].shape != self.classifier.weight.shape:
            return False
        self.classifier.load_state_dict(state)
        return True

    @property
    def encoder(self) -> PreTrainedModel:
        return getattr(self, self.base_model_prefix)

    # What peft reads of the model it wraps, as of a transformers model. Without this one, peft
    # hooks the embeddings to require gradients, which breaks torch.func's forward-mode AD.
    is_gradient_checkpointing = False

    @property
    def device(self) -> torch.device:
        return self.classifier.weight.device

    @property
    def num_labels(self) -> int:
        return self.classifier.out_features

    @property
    def name_or_path(self) -> str:
        return self.encoder.name_or_path

    def get_input_embeddings(self) -> nn.Module:
        return self.encoder.get_input_embeddings()

    def embed(self, input_ids=None, attention_mask=None, **inputs) -> torch.Tensor:
        """The pooled sentence embeddings, in fp32: what the classifier reads, and what the warm
        starts fit a head to."""
        # peft passes its usual arguments along; the base model only needs its own.
        for unused in ("labels", "output_attentions", "output_hidden_states", "return_dict"):
            inputs.pop(unused, None)
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask, **inputs).last_hidden_state
        return self.pooling.apply(hidden.float(), attention_mask)

    def forward(self, input_ids=None, attention_mask=None, past_key_values=None, **inputs) -> SequenceClassifierOutput:
        if past_key_values is not None:  # prefix tuning; absent otherwise, as the base model expects
            inputs["past_key_values"] = past_key_values
        return SequenceClassifierOutput(logits=self.classifier(self.embed(input_ids, attention_mask, **inputs)))
