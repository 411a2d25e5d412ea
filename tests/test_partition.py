"""Federated data splits: disjoint, complete, deterministic, and as skewed as alpha says."""

import numpy as np
import pytest

from edge_runtime.errors import UserError
from edge_runtime.tasks import load_split
from edge_runtime.tasks.partition import Partition, split_indices


def test_every_example_lands_in_exactly_one_part():
    labels = [i % 2 for i in range(1000)]
    for alpha in (None, 0.1, 1.0, 100.0):
        parts = split_indices(labels, 10, alpha, seed=3)
        flat = sorted(i for part in parts for i in part)
        assert flat == list(range(1000))
        assert parts == split_indices(labels, 10, alpha, seed=3)


def test_small_alpha_skews_labels_and_large_alpha_approaches_iid():
    labels = [i % 2 for i in range(4000)]

    def skew(alpha):  # mean distance of a device's share of label 1 from the global 0.5
        parts = split_indices(labels, 10, alpha, seed=0)
        return np.mean([abs(np.mean([labels[i] for i in part]) - 0.5) for part in parts])

    assert skew(0.1) > 0.25 > skew(1.0) > skew(1000.0)
    assert skew(1000.0) < 0.05


def test_a_partition_spec_round_trips_and_selects_real_examples():
    spec = Partition("sst2", 10, 3, 1.0, 7)
    assert Partition.parse(spec.spec()) == spec
    assert Partition.parse("sst2:0/4:iid:0").alpha is None
    examples = load_split("sst2", "train")[:400]
    chosen = spec.select(examples)
    assert 0 < len(chosen) < 400 and all(ex in examples for ex in chosen)


@pytest.mark.parametrize("spec", ["sst2:3", "sst2:10/10:1.0:0", "sst2:1/4:-1:0", "sst2:a/4:1:0"])
def test_bad_partition_specs_are_refused_in_one_line(spec):
    with pytest.raises(UserError):
        Partition.parse(spec)
