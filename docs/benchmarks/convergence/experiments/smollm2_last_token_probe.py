"""The no-training start a ZO run on SmolLM2 should be held against: a ridge head on the hidden
state of the prompt's last token (the `review` prompt the ZO run scores with), solved in closed form
from N labelled SST-2 training examples by the product's own solver (FeatureStatistics + fit_head),
scored on the 872 dev examples. Forward passes only; the runtime does not ship this head for causal
LMs (they score label words). By default N is 512 and 2,048 examples drawn at random; with --k-shot K
the head reads exactly the K-a-class examples a `--k-shot K --seed S` training run trains on.

    E=docs/benchmarks/convergence/experiments
    OMP_NUM_THREADS=1 .venv/bin/python $E/smollm2_last_token_probe.py > $E/smollm2_last_token_probe.log
    OMP_NUM_THREADS=2 .venv/bin/python $E/smollm2_last_token_probe.py --k-shot 1024 --seeds 0,1 \
        > $E/smollm2_last_token_probe_k1024.log

With --adapter RUN/adapter (and that run's --k-shot and --seeds) the head is solved on the features
of the ZO-trained model instead: whether ZO's adaptation also makes the hidden state more separable.
"""

import argparse
import random

import numpy as np
import torch
from peft import PeftModel

from edge_runtime.models import load_model
from edge_runtime.tasks import few_shot, load_split
from edge_runtime.warm_start import FeatureStatistics, fit_head

parser = argparse.ArgumentParser()
parser.add_argument("--k-shot", type=int, default=0, help="0: 512 and 2,048 examples drawn at random")
parser.add_argument("--seeds", default="0", help="with --k-shot: the training runs' seeds")
parser.add_argument("--adapter", help="a trained run's adapter folder: the head reads the adapted model's features")
args = parser.parse_args()
PROMPT = "Review: {}\nSentiment:"
loaded = load_model("smollm2-135m")
tokenizer, model = loaded.tokenizer, loaded.model
if args.adapter:
    model = PeftModel.from_pretrained(model, args.adapter).eval()
tokenizer.padding_side = "left"  # the last position is every prompt's last token


@torch.no_grad()
def features(texts: list[str], batch: int = 32) -> np.ndarray:
    out = []
    for i in range(0, len(texts), batch):
        encoded = tokenizer([PROMPT.format(t) for t in texts[i : i + batch]], padding=True, truncation=True,
                            max_length=64, return_tensors="pt")
        hidden = model(**encoded, output_hidden_states=True).hidden_states[-1][:, -1]
        out.append(torch.nn.functional.normalize(hidden.float(), dim=-1).numpy())
    return np.concatenate(out)


train, dev = load_split("sst2", "train"), load_split("sst2", "eval")
x_dev, y_dev = features([ex.text for ex in dev]), np.array([ex.label for ex in dev])
if args.k_shot:
    picks = {f"the k-shot {args.k_shot} set of seed {seed}": few_shot(train, args.k_shot, int(seed))
             for seed in args.seeds.split(",")}
else:
    order = list(range(len(train)))
    random.Random(0).shuffle(order)
    picks = {f"{n} examples": [train[i] for i in order[:n]] for n in (512, 2048)}
for name, pick in picks.items():
    stats = FeatureStatistics.empty(2, x_dev.shape[1])
    stats.add(features([ex.text for ex in pick]), np.array([ex.label for ex in pick]))
    for solver in ("centroids", "ridge"):
        head = fit_head(stats, solver)
        accuracy = float(((x_dev @ head.weight.T + head.bias).argmax(1) == y_dev).mean())
        stderr = (accuracy * (1 - accuracy) / len(y_dev)) ** 0.5
        print(f"{solver} from {name}: dev accuracy {accuracy:.3f} +- {stderr:.3f} (872)", flush=True)
