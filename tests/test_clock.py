"""Step FLOPs against a hand count, the virtual clock's arithmetic, and availability."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from edge_runtime.costs.flops import pass_flops, step_cost, weight_bytes
from edge_runtime.costs.timing import step_seconds, transfer_seconds
from edge_runtime.devices.profiles import Availability, builtin_profiles
from edge_runtime.errors import UserError
from edge_runtime.fleet.availability import DeviceAvailability
from edge_runtime.memory.model import Workload, meta_model
from edge_runtime.models import architecture_config
from edge_runtime.spec import AdapterSpec, EstimatorSettings, MethodSpec

BATCH, SEQ = 4, 32
TOKENS = BATCH * SEQ


def _layer_matmul_params(model: str) -> int:
    """Weights of the transformer layers' linear maps, LoRA's A and B included (2-D, inside a layer)."""
    net = meta_model(Workload(AdapterSpec(model)))
    return sum(
        p.numel() for name, p in net.named_parameters() if p.dim() == 2 and (".layers." in name or ".layer." in name)
    )


def _attention_flops(model: str) -> int:
    # Scores (Q K^T) and the weighted sum (A V): two matmuls of B x S x S x hidden multiply-adds per layer.
    config = architecture_config(model)
    return config.num_hidden_layers * 2 * 2 * BATCH * SEQ * SEQ * config.hidden_size


def test_forward_flops_match_a_hand_count_on_tiny_llama():
    config = architecture_config("tiny-llama")
    # The candidate-scoring head projects only the last position onto the vocabulary.
    head = 2 * config.vocab_size * config.hidden_size * BATCH
    hand = 2 * _layer_matmul_params("tiny-llama") * TOKENS + _attention_flops("tiny-llama") + head
    # Tolerance 1%: the counter sees only matmuls, as this count does, so they should agree exactly.
    work = Workload(AdapterSpec("tiny-llama"), batch=BATCH, seq_len=SEQ)
    assert pass_flops(work, "forward") == pytest.approx(hand, rel=0.01)


def test_forward_flops_match_a_hand_count_on_tiny_bert():
    config = architecture_config("tiny-bert")
    h = config.hidden_size
    # Pooler (h x h) and classifier (h x 2) act on the [CLS] position of each example only.
    head = 2 * (h * h + h * 2) * BATCH
    hand = 2 * _layer_matmul_params("tiny-bert") * TOKENS + _attention_flops("tiny-bert") + head
    work = Workload(AdapterSpec("tiny-bert"), batch=BATCH, seq_len=SEQ)
    assert pass_flops(work, "forward") == pytest.approx(hand, rel=0.01)


def test_flops_grow_linearly_with_the_batch():
    one, two = (
        pass_flops(Workload(AdapterSpec("tiny-llama"), batch=b, seq_len=SEQ), "forward") for b in (BATCH, 2 * BATCH)
    )
    assert two == 2 * one


def test_step_flops_follow_each_method_kind():
    def work(method, queries=1):
        return Workload(
            AdapterSpec("tiny-llama"), MethodSpec(method, EstimatorSettings(queries=queries)), batch=BATCH, seq_len=SEQ
        )

    forward = pass_flops(work("zo-sgd"), "forward")
    jvp = pass_flops(work("forward-grad"), "jvp")
    backward = pass_flops(work("fo-sgd"), "backward")
    assert step_cost(work("zo-sgd", queries=3)).flops == 6 * forward  # 2q forward passes
    assert step_cost(work("zo-sgd-cons")).flops == 5 * forward  # 2q + 3 candidates
    assert step_cost(work("forward-grad", queries=2)).flops == 2 * jvp  # q jvp passes
    assert step_cost(work("fo-adam")).flops == backward  # one forward + backward
    # Measured, not assumed: a jvp runs each matmul's primal and tangent products (and the frozen
    # operand's zero tangent), a LoRA backward only the input gradients of the frozen layers.
    assert 2 * forward < jvp < 3.5 * forward
    assert 1.8 * forward < backward < 2.5 * forward


def test_weight_bytes_follow_the_base_precision():
    fp32, int8 = (weight_bytes(Workload(AdapterSpec("tiny-llama", precision=p))) for p in ("fp32", "int8"))
    assert 0.25 * fp32 < int8 < 0.5 * fp32  # int8 tables plus fp32 scales, adapters, norms and embeddings
    cost = step_cost(
        Workload(AdapterSpec("tiny-llama", precision="int8"), MethodSpec("zo-sgd"), batch=BATCH, seq_len=SEQ)
    )
    assert cost.bytes_read == 2 * int8 and cost.passes == 2


def _profiles():
    profiles = builtin_profiles()
    return profiles["pixel-8"], profiles["jetson-agx-orin-64gb"]


def test_a_slower_device_takes_proportionally_longer():
    pixel, agx = _profiles()
    flops = step_cost(Workload(AdapterSpec("tiny-llama"), MethodSpec("zo-sgd"), batch=BATCH, seq_len=SEQ)).flops
    ratio = step_seconds(pixel, flops, "fp32") / step_seconds(agx, flops, "fp32")
    assert ratio == pytest.approx(agx.throughput["fp32"] / pixel.throughput["fp32"])
    half_speed = dataclasses.replace(pixel, throughput={k: v / 2 for k, v in pixel.throughput.items()})
    assert step_seconds(half_speed, flops, "fp32") == pytest.approx(2 * step_seconds(pixel, flops, "fp32"))
    assert step_seconds(pixel, 1e12, "fp32") == pytest.approx(1e12 / 90e9)


def test_precision_picks_the_throughput_and_unsupported_ones_are_refused():
    pixel, _ = _profiles()
    assert step_seconds(pixel, 1e12, "int8") == pytest.approx(step_seconds(pixel, 1e12, "fp32") / 4)
    with pytest.raises(UserError, match="pixel-8 does not run bf16"):
        step_seconds(pixel, 1e12, "bf16")


def test_a_pass_that_reads_more_than_it_computes_is_bound_by_memory_bandwidth():
    pixel, _ = _profiles()
    assert step_seconds(pixel, 1e6, "fp32", bytes_read=68.2e9) == pytest.approx(1.0)
    assert step_seconds(pixel, 90e9, "fp32", bytes_read=1e6) == pytest.approx(1.0)


def test_link_time_is_latency_plus_bytes_over_bandwidth():
    pixel, _ = _profiles()  # 20 Mbit/s up, 100 Mbit/s down, 30 ms
    assert transfer_seconds(pixel, 0, "up") == pytest.approx(0.030)
    assert transfer_seconds(pixel, 2.5e6, "up") == pytest.approx(0.030 + 2.5e6 * 8 / 20e6)
    assert transfer_seconds(pixel, 2.5e6, "down") == pytest.approx(0.030 + 2.5e6 * 8 / 100e6)


HOUR = 3600.0


def _night(jitter: float = 0.0, dropout: float = 0.1) -> Availability:
    return Availability("charging-at-night", (23 * 60, 7 * 60), jitter, dropout)


def test_availability_follows_the_pattern():
    night = DeviceAvailability.draw(_night(), np.random.default_rng(0))
    assert night.shift == 0.0
    assert [night.is_online(h * HOUR) for h in (22, 23, 2, 6.99, 7, 12)] == [False, True, True, True, False, False]
    assert night.is_online(2 * HOUR + 3 * 86_400)  # every virtual day
    assert night.seconds_left(6 * HOUR) == pytest.approx(HOUR) and night.seconds_left(12 * HOUR) == 0
    office = DeviceAvailability.draw(builtin_profiles()["macbook-air-m2-16gb"].availability, np.random.default_rng(0))
    assert office.is_online(13 * HOUR) and not office.is_online(3 * HOUR)
    always = DeviceAvailability.draw(builtin_profiles()["raspberry-pi-5-8gb"].availability, np.random.default_rng(0))
    assert always.is_online(3 * HOUR) and always.seconds_left(3 * HOUR) == math.inf


def test_each_device_shifts_its_window_within_the_jitter():
    shifts = [DeviceAvailability.draw(_night(jitter=60), np.random.default_rng(seed)).shift for seed in range(200)]
    assert all(-HOUR <= s <= HOUR for s in shifts) and len(set(shifts)) == 200
    assert min(shifts) < -HOUR / 2 and max(shifts) > HOUR / 2  # spread over the whole +-jitter
    late = DeviceAvailability(_night(jitter=60), shift=HOUR)  # on the charger an hour late
    assert not late.is_online(23.5 * HOUR) and late.is_online(7.5 * HOUR)


def test_availability_is_deterministic_for_a_seed():
    def replay(seed: int) -> tuple[float, list[bool]]:
        rng = np.random.default_rng(seed)
        device = DeviceAvailability.draw(_night(jitter=60), rng)
        return device.shift, [device.drops_out(rng) for _ in range(50)]

    assert replay(7) == replay(7)
    assert replay(7) != replay(8)


def test_dropouts_happen_at_the_profiles_rate():
    rng = np.random.default_rng(0)
    device = DeviceAvailability.draw(_night(dropout=0.1), rng)
    rate = np.mean([device.drops_out(rng) for _ in range(20_000)])
    assert rate == pytest.approx(0.1, abs=0.01)  # 4.7 standard deviations of a binomial mean
    never = DeviceAvailability.draw(_night(dropout=0.0), rng)
    assert not any(never.drops_out(rng) for _ in range(1000))


def test_batched_perturbed_copies_read_the_weights_once_per_pass_at_the_same_flops():
    work = Workload(
        AdapterSpec("tiny-llama"), MethodSpec("zo-sgd", EstimatorSettings(queries=4)), batch=BATCH, seq_len=SEQ
    )
    sequential = step_cost(work)
    batched = step_cost(dataclasses.replace(work, perturbations_per_pass=8))
    halves = step_cost(dataclasses.replace(work, perturbations_per_pass=3))
    assert batched.flops == sequential.flops and batched.passes == sequential.passes == 8
    assert sequential.bytes_read == 8 * weight_bytes(work) and batched.bytes_read == weight_bytes(work)
    assert halves.bytes_read == 3 * weight_bytes(work)  # 3 + 3 + 2 copies
    # A phone at batch 1 is bound by reading the weights: the batched step is several times faster.
    pixel, _ = _profiles()
    one = dataclasses.replace(work, batch=1, seq_len=32)
    slow, fast = (
        step_seconds(pixel, c.flops, "fp32", c.bytes_read)
        for c in (step_cost(one), step_cost(dataclasses.replace(one, perturbations_per_pass=8)))
    )
    assert fast < slow
