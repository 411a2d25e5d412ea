"""Device profiles: the shipped ones load, and each kind of bad field is refused naming it."""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from edge_runtime.devices.profiles import (
    PRECISIONS,
    builtin_profiles,
    builtin_profiles_dir,
    load_profile,
    load_profiles,
)
from edge_runtime.errors import UserError

REPO_PROFILES = Path(__file__).resolve().parents[1] / "device_profiles"
REQUIRED_DEVICES = {
    "pixel-8",
    "galaxy-s24",
    "iphone-15-pro",
    "jetson-orin-nano-8gb",
    "jetson-agx-orin-64gb",
    "raspberry-pi-5-8gb",
    "macbook-air-m2-16gb",
    "laptop-rtx-4060-8gb",
}
# Every figure a profile must carry, each with a source or an estimate.
FIGURES = {
    "memory.total",
    "memory.bandwidth_gbytes_per_s",
    "compute.fp32_gflops",
    "compute.fp16_gflops",
    "compute.int8_gflops",
    "link.up_mbit_per_s",
    "link.down_mbit_per_s",
    "link.latency_ms",
    "availability.dropout_probability",
}


def test_every_shipped_profile_loads_with_a_cap_within_its_memory():
    profiles = builtin_profiles()
    assert REQUIRED_DEVICES <= set(profiles)
    for profile in profiles.values():
        assert 0 < profile.memory_cap <= profile.total_memory, profile.id
        assert FIGURES <= set(profile.provenance), profile.id
        assert {"memory.app_share", "memory.app_cap"} & set(profile.provenance), profile.id
        assert all(note.startswith(("source: ", "estimate: ")) for note in profile.provenance.values())
        # A device that trains at a precision has a throughput for it, and lower precisions are not slower.
        for precision in profile.precisions:
            assert profile.flops_per_second(precision) > 0
        assert profile.throughput["fp32"] <= profile.throughput["fp16"] <= profile.throughput["int8"], profile.id


def test_the_package_ships_the_top_level_profiles():
    assert sorted(p.name for p in builtin_profiles_dir().glob("*.yaml")) == sorted(
        p.name for p in REPO_PROFILES.glob("*.yaml")
    )


def test_the_runtime_loads_every_precision_a_profile_may_declare():
    from edge_runtime.models.precision import load_dtype

    for precision in PRECISIONS:
        load_dtype(precision)


def test_a_precision_the_device_lacks_is_refused_in_one_line():
    iphone = builtin_profiles()["iphone-15-pro"]
    with pytest.raises(UserError, match="iphone-15-pro does not run bf16"):
        iphone.flops_per_second("bf16")


def test_bf16_runs_at_the_fp16_figure():
    agx = builtin_profiles()["jetson-agx-orin-64gb"]
    assert agx.flops_per_second("bf16") == agx.flops_per_second("fp16") == 21000e9


def test_units_are_parsed_into_si():
    pixel = builtin_profiles()["pixel-8"]
    assert pixel.total_memory == 8 * 10**9 and pixel.memory_cap == 4 * 10**9
    assert pixel.uplink == 20e6 and pixel.downlink == 100e6 and pixel.latency == pytest.approx(0.030)
    assert pixel.memory_bandwidth == pytest.approx(68.2e9)
    assert pixel.availability.window == (23 * 60, 7 * 60)  # the pattern's default window
    nano = builtin_profiles()["jetson-orin-nano-8gb"]
    assert nano.memory_cap == 5.2e9  # given as a size, not a share


def _pixel() -> dict:
    return yaml.safe_load((REPO_PROFILES / "pixel-8.yaml").read_text())


def _set(data: dict, path: str, value) -> None:
    *parents, last = path.split(".")
    for key in parents:
        data = data[key]
    if value is _DELETE:
        del data[last]
    else:
        data[last] = value


class _Deleted:
    def __repr__(self) -> str:  # a stable test id, the same in every pytest process
        return "<deleted>"


_DELETE = _Deleted()

BAD_FIELDS = [
    # (field to change, new value, the start of the one-line refusal after "pixel-8.yaml: ")
    ("colour", "blue", "colour: unknown field"),
    ("link.latency_ms", _DELETE, "link.latency_ms: missing"),
    ("compute.int8_gflops", {"value": 360}, "compute.int8_gflops: missing source or estimate"),
    (
        "compute.int8_gflops",
        {"value": 360, "source": "https://a", "estimate": "b"},
        "compute.int8_gflops: give a source or an estimate, not both",
    ),
    ("compute.fp32_gflops.note", "my notes", "compute.fp32_gflops.note: unknown field"),
    (
        "compute.fp32_gflops",
        {"value": 90, "source": "a blog I read"},
        "compute.fp32_gflops.source: a source must include its URL",
    ),
    ("compute.fp32_gflops", 90, "compute.fp32_gflops: expected {value: ..., source: URL}"),
    ("compute.fp32_gflops.value", "fast", "compute.fp32_gflops.value: expected a number, got 'fast'"),
    ("link.up_mbit_per_s.value", -5, "link.up_mbit_per_s.value: must be a positive number"),
    ("memory.total.value", "8 gigs", "memory.total.value: cannot read '8 gigs' as a size"),
    ("memory.app_share.value", 1.5, "memory.app_share.value: a share of the memory must be at most 1"),
    ("memory.app_cap", {"value": "4GB", "estimate": "x"}, "memory.app_share: give exactly one"),
    ("precisions", ["fp32", "fp8"], "precisions: 'fp8' is not one of"),
    ("backends", "torch", "backends: expected a non-empty list"),
    ("kind", "tablet", "kind: 'tablet' is not one of"),
    ("name", 7, "name: expected non-empty text"),
    ("availability.pattern", "weekends", "availability.pattern: 'weekends' is not one of"),
    ("availability.window", "25:00-07:00", "availability.window: expected a daily window"),
    ("availability.dropout_probability.value", 1.0, "availability.dropout_probability.value: expected a probability"),
]


@pytest.mark.parametrize("field, value, message", BAD_FIELDS, ids=[f"{f}={v!r}"[:40] for f, v, _ in BAD_FIELDS])
def test_a_bad_field_is_refused_in_one_line_naming_it(tmp_path, field, value, message):
    data = _pixel()
    _set(data, field, value if value is _DELETE else copy.deepcopy(value))
    path = tmp_path / "pixel-8.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(UserError) as refused:
        load_profile(path)
    text = str(refused.value)
    assert text.startswith(f"pixel-8.yaml: {message}"), text
    assert "\n" not in text


def test_a_cap_above_total_memory_is_refused(tmp_path):
    data = _pixel()
    del data["memory"]["app_share"]
    data["memory"]["app_cap"] = {"value": "9GB", "estimate": "too much"}
    (tmp_path / "pixel-8.yaml").write_text(yaml.safe_dump(data))
    with pytest.raises(UserError, match=r"^pixel-8.yaml: memory.app_cap: 9,000,000,000 bytes is above memory.total"):
        load_profile(tmp_path / "pixel-8.yaml")


def test_always_available_devices_take_no_window(tmp_path):
    data = yaml.safe_load((REPO_PROFILES / "raspberry-pi-5-8gb.yaml").read_text())
    data["availability"]["window"] = "09:00-17:00"
    (tmp_path / "pi.yaml").write_text(yaml.safe_dump(data))
    with pytest.raises(UserError, match="^pi.yaml: availability.window: the pattern 'always' has no window"):
        load_profile(tmp_path / "pi.yaml")


def test_unreadable_files_and_folders_are_one_line_errors(tmp_path):
    with pytest.raises(UserError, match="device profile not found"):
        load_profile(tmp_path / "missing.yaml")
    with pytest.raises(UserError, match="no device profiles"):
        load_profiles(tmp_path)
    (tmp_path / "broken.yaml").write_text("name: [unclosed\n")
    with pytest.raises(UserError, match="^broken.yaml: not valid YAML") as refused:
        load_profile(tmp_path / "broken.yaml")
    assert "\n" not in str(refused.value)
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(UserError, match="^list.yaml: expected a table of fields"):
        load_profile(tmp_path / "list.yaml")


def test_profiles_clock_and_availability_load_without_torch():
    # A device agent or the coordinator reads profiles and keeps virtual time with no PyTorch installed.
    code = (
        "import sys; import edge_runtime.costs.timing, edge_runtime.devices.profiles, "
        "edge_runtime.fleet.availability; edge_runtime.devices.profiles.builtin_profiles(); "
        "assert 'torch' not in sys.modules, 'torch imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
