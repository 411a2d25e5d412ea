"""The coordinator's parts one at a time: planners, merging, validation, replay, wire format, recovery."""

from dataclasses import fields

import numpy as np
import pytest

from coordinator.aggregation import FedAdam, FedAvg, WeightedUpdate, average_updates
from coordinator.capacity import Capacity, RoundShape, device_capacity
from coordinator.planners import PLANNERS, DeviceInfo
from coordinator.replay import replay_update
from coordinator.slices import Slice, slice_tensors
from coordinator.state_store import DamagedCheckpoint, GlobalState, StateStore
from coordinator.validation import RejectedUpdate, check_deltas, check_header, check_seeds
from edge_runtime.local.torch_model import TorchModel
from edge_runtime.protocol import pb
from edge_runtime.protocol.specs import adapter_message, adapter_of, method_message, method_of
from edge_runtime.protocol.tensors import BadTensors, from_chunks, to_chunks
from edge_runtime.seeded.blocks import blocks_of
from edge_runtime.spec import AdapterSpec, EstimatorSettings, MethodSpec
from edge_runtime.tasks import load_split
from tests.federation import LAPTOP, wire_task

SLICES = [
    Slice(f"layer{i}.q", (f"layer{i}.q.lora_A.default.weight", f"layer{i}.q.lora_B.default.weight"), 1000)
    for i in range(6)
]


def _devices(n):
    return [DeviceInfo(f"device-{i:02d}", LAPTOP, 10) for i in range(n)]


def _roomy(devices, nbytes=10**9, steps=5):
    return {d.id: Capacity(nbytes, steps, 0.1) for d in devices}


def test_lora_pairs_form_one_slice_and_a_head_its_own():
    shapes = {
        "m.layer.0.q.lora_A.default.weight": (8, 32),
        "m.layer.0.q.lora_B.default.weight": (32, 8),
        "m.classifier.modules_to_save.default.weight": (2, 32),
        "m.classifier.modules_to_save.default.bias": (2,),
    }
    slices = slice_tensors(shapes)
    assert [(s.id, len(s.tensors), s.numel) for s in slices] == [
        ("m.layer.0.q", 2, 512),
        ("m.classifier.modules_to_save.default", 2, 66),
    ]


@pytest.mark.parametrize("count", [2, 6, 15])
def test_spry_covers_every_slice_whatever_the_number_of_devices(count):
    devices = _devices(count)
    for round_ in range(4):
        plan = PLANNERS["spry"]().assign(round_, devices, SLICES, _roomy(devices))
        covered = {s.id for pieces in plan.slices.values() for s in pieces}
        assert covered == {s.id for s in SLICES} and not plan.uncovered
        assert len(plan.slices) == count  # more devices than slices: they share; fewer: they wrap around
        if count < len(SLICES):
            assert max(len(p) for p in plan.slices.values()) == -(-len(SLICES) // count)


def test_spry_binds_slices_to_device_ids_not_to_the_order_devices_arrive_in():
    devices = _devices(6)
    plan = PLANNERS["spry"]().assign(3, devices, SLICES, _roomy(devices))
    shuffled = PLANNERS["spry"]().assign(3, list(reversed(devices)), SLICES, _roomy(devices))
    assert plan.slices == shuffled.slices
    without = PLANNERS["spry"]().assign(3, devices[1:], SLICES, _roomy(devices))
    moved = [d for d in plan.slices if d in without.slices and plan.slices[d] != without.slices[d]]
    assert len(moved) < 5  # a device leaving reshuffles some positions, not every binding
    later = PLANNERS["spry"]().assign(4, devices, SLICES, _roomy(devices))
    assert plan.slices != later.slices  # rounds rotate, so every device's data reaches every slice


def test_a_device_whose_cap_is_too_small_gets_a_smaller_share_or_nothing():
    devices = _devices(3)
    capacity = _roomy(devices)
    capacity["device-00"] = Capacity(1000, 5, 0.1)  # holds one slice's state
    capacity["device-01"] = Capacity(0, 5, 0.1, "memory cap too small for the model alone")
    plan = PLANNERS["spry"]().assign(0, devices, SLICES, capacity)
    assert len(plan.slices.get("device-00", [])) <= 1
    assert "device-01" in plan.excluded and "device-01" not in plan.slices
    assert {s.id for p in plan.slices.values() for s in p} == {s.id for s in SLICES}
    full = PLANNERS["fedavg-full"]().assign(0, devices, SLICES, capacity)
    assert set(full.slices) == {"device-02"} and "device-00" in full.excluded


def test_capacity_from_a_real_profile_and_the_memory_model():
    shape = _forward_grad_shape()
    roomy = device_capacity(LAPTOP, shape)
    assert roomy.usable and roomy.steps == 20
    tight = device_capacity(replace_cap(LAPTOP, 10**6), shape)
    assert not tight.usable and "memory cap" in tight.reason
    slow = device_capacity(pb.DeviceProfile(**{**_fields(LAPTOP), "gflops_fp32": 1e-4}), shape)
    assert slow.steps == 0 and "one step takes" in slow.reason


def test_a_device_is_planned_only_for_methods_its_backend_trains_with():
    from edge_runtime.ort.methods import METHODS
    from edge_runtime.spec import ONNX_RUNTIME_METHODS

    assert tuple(METHODS) == ONNX_RUNTIME_METHODS  # the planner's list is the backend's
    onnx_only = pb.DeviceProfile(**{**_fields(LAPTOP), "backends": ["onnxruntime"]})
    shape = _forward_grad_shape()
    refused = device_capacity(onnx_only, shape)
    assert not refused.usable and "trains with zo-sgd" in refused.reason and "not forward-grad" in refused.reason
    assert device_capacity(onnx_only, replace_method(shape, "zo-sgd")).usable
    assert device_capacity(pb.DeviceProfile(**{**_fields(LAPTOP), "backends": ["torch"]}), shape).usable


def _forward_grad_shape():
    return RoundShape(
        AdapterSpec("tiny-llama", max_length=64),
        MethodSpec("forward-grad"),
        batch_size=8,
        local_steps=20,
        deadline_s=60,
    )


def replace_method(shape, method):
    from dataclasses import replace

    return replace(shape, method=MethodSpec(method))


def replace_cap(profile, cap):
    return pb.DeviceProfile(**{**_fields(profile), "memory_cap_bytes": cap})


def _fields(message):
    return {f.name: v for f, v in message.ListFields()}


def test_merge_is_a_weighted_mean_per_tensor_and_leaves_untrained_tensors_alone():
    params = {"a": np.zeros(3, np.float32), "b": np.ones(2, np.float32)}
    updates = [
        WeightedUpdate("x", 1, {"a": np.array([3, 0, 0], np.float32)}),
        WeightedUpdate("y", 3, {"a": np.array([-1, 4, 0], np.float32)}),
    ]
    mean = average_updates(updates)
    np.testing.assert_allclose(mean["a"], [0, 3, 0])
    assert average_updates(list(reversed(updates)))["a"].tobytes() == mean["a"].tobytes()
    FedAvg(1.0).step(params, mean)
    np.testing.assert_allclose(params["a"], [0, 3, 0])
    np.testing.assert_array_equal(params["b"], [1, 1])


def test_fedadam_follows_reddi_et_al():
    params, delta = {"w": np.zeros(2, np.float32)}, {"w": np.array([0.1, -0.2], np.float32)}
    opt = FedAdam(lr=0.01, beta1=0.9, beta2=0.99, tau=1e-3)
    opt.step(params, delta)
    m, v = 0.1 * -delta["w"], 0.99 * 1e-6 + 0.01 * delta["w"] ** 2
    np.testing.assert_allclose(params["w"], -0.01 * m / (np.sqrt(v) + 1e-3), rtol=1e-5)


def _task(**overrides):
    return wire_task(
        AdapterSpec("tiny-bert"),
        MethodSpec("zo-sgd", EstimatorSettings(queries=2)),
        task_id="0:d",
        round=0,
        tensors=["a"],
        steps=10,
        batch_size=4,
        **overrides,
    )


@pytest.mark.parametrize(
    "header, reason",
    [
        (dict(task_id="0:other"), "task"),
        (dict(steps=11), "steps"),
        (dict(examples=41), "examples"),
        (dict(loss_after=float("nan")), "loss_after"),
    ],
)
def test_headers_that_claim_more_than_the_task_gave_are_rejected(header, reason):
    good = dict(task_id="0:d", round=0, steps=10, examples=40, loss_before=1.0, loss_after=0.9)
    check_header(pb.UpdateHeader(**good), _task())
    with pytest.raises(RejectedUpdate, match=reason):
        check_header(pb.UpdateHeader(**{**good, **header}), _task())


@pytest.mark.parametrize(
    "deltas, reason",
    [
        ({"a": np.zeros(3, np.float32), "b": np.zeros(1, np.float32)}, "differ"),
        ({"a": np.zeros(4, np.float32)}, "shape"),
        ({"a": np.array([0, np.inf, 0], np.float32)}, "NaN or Inf"),
        ({"a": np.full(3, 1e3, np.float32)}, "norm"),
    ],
)
def test_bad_tensors_are_rejected(deltas, reason):
    check_deltas({"a": np.ones(3, np.float32)}, _task(), {"a": (3,)}, max_norm=100)
    with pytest.raises(RejectedUpdate, match=reason):
        check_deltas(deltas, _task(), {"a": (3,)}, max_norm=100)


def test_seed_uploads_must_have_one_finite_bounded_scalar_per_step_and_query():
    header = pb.UpdateHeader(steps=3, scalars=[0.1] * 6)
    check_seeds(header, _task(), 1e6)
    for scalars in ([0.1] * 5, [0.1] * 5 + [float("nan")], [0.1] * 5 + [1e9]):
        with pytest.raises(RejectedUpdate):
            check_seeds(pb.UpdateHeader(steps=3, scalars=scalars), _task(), 1e6)


@pytest.mark.parametrize("method", ["zo-sgd", "forward-grad", "zo-sgd-block"])
def test_replaying_seeds_and_scalars_rebuilds_the_devices_own_update(method):
    model = TorchModel(AdapterSpec("tiny-llama", "sst2", max_length=32))
    everything = list(model.params)
    names = everything[:2] + everything[-2:]  # tensors of two layers: block-wise ZO perturbs one per query
    assert len(blocks_of(names, "layer")) == 2
    task = wire_task(
        model.spec,
        MethodSpec(method, EstimatorSettings(mu=1e-2, queries=2)),
        tensors=names,
        steps=6,
        batch_size=4,
        lr=1e-2,
        seed=1234,
    )
    result = model.train(task, load_split("sst2", "train")[:16])
    assert result.steps == 6 and len(result.scalars) == 12
    rebuilt = replay_update(
        {n: tuple(model.params[n].shape) for n in names},
        result.scalars,
        seed=task.seed,
        lr=task.lr,
        method=method_of(task),
    )
    for name in names:
        np.testing.assert_allclose(rebuilt[name], result.deltas[name], rtol=1e-4, atol=1e-7)
        assert np.abs(result.deltas[name]).max() > 0


def test_training_a_slice_changes_only_its_tensors_and_restores_the_model():
    model = TorchModel(AdapterSpec("tiny-bert", "sst2", max_length=32))
    before = model.state()
    names = list(model.params)[:2]
    result = model.train(
        wire_task(model.spec, MethodSpec("forward-grad"), tensors=names, steps=3, batch_size=4, lr=1e-2, seed=1),
        load_split("sst2", "train")[:8],
    )
    assert set(result.deltas) == set(names)
    for name, value in model.state().items():
        np.testing.assert_array_equal(value, before[name])


def test_what_trains_crosses_the_wire_field_for_field():
    # Every value differs from its default, so a field the conversion dropped would show.
    adapter = AdapterSpec(
        "tiny-llama", "rte", "int8", "prefix", 4, 8, ("q_proj",), 1, True, 64, 3, "{premise}?", ("yes", "no")
    )
    method = MethodSpec(
        "zo-sgd-block", EstimatorSettings(0.5, 3, 2.0, 0.5, 0.8, 0.9, 1e-6, "inplace", "tensor", 0.5, "random")
    )
    sent = pb.Task(adapter=adapter_message(adapter), method=method_message(method))
    task = pb.Task.FromString(sent.SerializeToString())
    assert adapter_of(task) == adapter and method_of(task) == method
    assert set(pb.AdapterSpec.DESCRIPTOR.fields_by_name) == {f.name for f in fields(AdapterSpec)}
    assert set(pb.MethodSpec.DESCRIPTOR.fields_by_name) == {"name"} | {f.name for f in fields(EstimatorSettings)}
    assert method_of(pb.Task(method=method_message(MethodSpec()))).settings.grad_clip is None
    assert adapter_of(pb.Task(adapter=adapter_message(AdapterSpec("tiny-llama")))).lora_layers is None


def test_tensor_chunks_round_trip_and_refuse_lies():
    tensors = {"a": np.arange(600, dtype=np.float32).reshape(20, 30), "b": np.ones(3, np.float32)}
    chunks = list(to_chunks(tensors, chunk_bytes=1000))
    assert len(chunks) > 3
    back = from_chunks(chunks, max_bytes=10**6)
    assert all(np.array_equal(back[k], v) for k, v in tensors.items())
    with pytest.raises(BadTensors, match="limit"):
        from_chunks(chunks, max_bytes=1000)
    with pytest.raises(BadTensors, match="continue"):
        from_chunks([chunks[0], chunks[2]], max_bytes=10**6)
    with pytest.raises(BadTensors, match="incomplete"):
        from_chunks(chunks[:1], max_bytes=10**6)
    forged = pb.TensorChunk(name="x", shape=[2], dtype="float64", data=b"\0" * 16)
    with pytest.raises(BadTensors, match="dtype"):
        from_chunks([forged], max_bytes=10**6)


def test_a_damaged_checkpoint_is_detected(tmp_path):
    store = StateStore(tmp_path)
    name, sha = store.write(GlobalState(1, {"a": np.ones(4, np.float32)}, {"m.a": np.zeros(4, np.float32)}))
    state = store.read(1, name, sha)
    assert list(state.params) == ["a"] and list(state.optimizer) == ["m.a"]
    data = (tmp_path / name).read_bytes()
    (tmp_path / name).write_bytes(data[: len(data) // 2])
    with pytest.raises(DamagedCheckpoint, match="torn or damaged"):
        store.read(1, name, sha)


def test_method_auto_gives_each_device_the_soonest_method_that_fits_it():
    from coordinator.capacity import memory_needed
    from coordinator.method_rule import candidate_shapes, choose

    shapes = candidate_shapes(_forward_grad_shape())
    smallest = 2048  # one slice's bytes (all of tiny-llama's LoRA: 14,336)
    need = {name: memory_needed(shape, smallest) for name, shape in shapes.items()}
    assert need["zo-sgd"] < need["fo-adam-ckpt"] < need["fo-adam"]  # checkpointing keeps fewer activations
    assert choose(LAPTOP, shapes, smallest, "causal_lm").method == "fo-adam"  # the fewest measured steps
    between = choose(replace_cap(LAPTOP, need["fo-adam"] - 1000), shapes, smallest, "causal_lm")
    assert between.method == "fo-adam-ckpt" and "fo-adam: does not fit" in between.why
    # Below backprop's floor neither forward-only method reached the target: the faster step wins.
    forward_only = choose(replace_cap(LAPTOP, need["fo-adam-ckpt"] - 1000), shapes, smallest, "causal_lm")
    assert forward_only.method in ("zo-sgd", "forward-grad") and "not reached" in forward_only.why
    onnx_only = choose(
        pb.DeviceProfile(**{**_fields(LAPTOP), "backends": ["onnxruntime"]}), shapes, smallest, "causal_lm"
    )
    assert onnx_only.method == "zo-sgd"
    nothing = choose(replace_cap(LAPTOP, 10**6), shapes, smallest, "causal_lm")
    assert not nothing.capacity.usable and "no method fits: memory cap" in nothing.why
    for cap in np.linspace(min(need.values()) - 10**5, max(need.values()) + 10**5, 25):
        chosen = choose(replace_cap(LAPTOP, int(cap)), shapes, smallest, "causal_lm")
        fits = chosen.capacity.usable and chosen.capacity.trainable_bytes >= smallest
        assert fits == (cap >= min(need.values())), (cap, chosen)
