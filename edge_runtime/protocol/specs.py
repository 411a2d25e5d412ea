"""What trains, on the wire: `AdapterSpec` and `MethodSpec` (edge_runtime/spec.py) travel as the
messages of the same names, field for field, so a field added to a spec but not to its message fails
the first conversion, naming it. A setting from a closed set (a precision, a restore) travels as the
enum value of its name in capitals; a `MethodSpec`'s settings sit in its message beside its name."""

from __future__ import annotations

from dataclasses import fields
from typing import Any

from google.protobuf.message import Message

from edge_runtime.protocol import pb
from edge_runtime.spec import AdapterSpec, EstimatorSettings, MethodSpec


def adapter_message(spec: AdapterSpec) -> pb.AdapterSpec:
    return _filled(pb.AdapterSpec(), spec)


def method_message(spec: MethodSpec) -> pb.MethodSpec:
    return _filled(pb.MethodSpec(name=spec.name), spec.settings)


def adapter_of(task: pb.Task) -> AdapterSpec:
    """What the coordinator asked this task to train."""
    return AdapterSpec(**_values(task.adapter, AdapterSpec))


def method_of(task: pb.Task) -> MethodSpec:
    """How the coordinator asked this task to train: the device builds its method from it, and the
    coordinator's replay of the task's seeds reads it."""
    return MethodSpec(task.method.name, EstimatorSettings(**_values(task.method, EstimatorSettings)))


def _filled(message: Message, spec: Any) -> Any:
    for f in fields(spec):
        value, field = getattr(spec, f.name), message.DESCRIPTOR.fields_by_name[f.name]
        if value is None:  # an optional setting left unset
            continue
        if field.is_repeated:
            getattr(message, f.name).extend(value)
        else:
            setattr(message, f.name, field.enum_type.values_by_name[value.upper()].number if field.enum_type else value)
    return message


def _values(message: Message, spec: type) -> dict[str, Any]:
    values = {}
    for f in fields(spec):
        value, field = getattr(message, f.name), message.DESCRIPTOR.fields_by_name[f.name]
        if field.is_repeated:
            value = tuple(value)
        elif field.enum_type:
            value = field.enum_type.values_by_number[value].name.lower()
        elif field.has_presence and not message.HasField(f.name):
            value = None
        values[f.name] = value
    return values
