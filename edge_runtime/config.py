"""Typed run configs: dataclass defaults < a TOML/YAML file < command-line flags.

Every field of a config dataclass becomes a `--field-name` flag automatically, so a config file
and the command line can never disagree about what a run accepts. A field is declared once, with
`setting(help, default)`: a command's config inherits the option groups of edge_runtime.options
(the model, the batch shape, the seed, ...) and declares only what is its own after them. Where a
command needs another default for a field it inherits, it names the new value with @defaults,
which keeps the field's type and help text:

    @dataclass
    @defaults(batch_size=8, max_length=64)
    class FleetConfig(CoordinatorConfig): ...

A field declared with `group` holds a dataclass of settings that several configs share and pass on
as one object (the estimator's): its fields are flags and keys of the config like its own.

A `Literal[...]` field takes one of its values, a `tuple[Literal[...], ...]` field some of them;
anything else is refused by name before a model loads.
"""

from __future__ import annotations

import argparse
import dataclasses
import tomllib
import types
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import yaml

from edge_runtime.errors import UserError

C = TypeVar("C")


def setting(text: str, default):
    """A config field with its help text: the text becomes the flag's --help."""
    return dataclasses.field(default=default, metadata={"help": text})


def group(default):
    """A config field holding a frozen dataclass of settings whose own fields (declared with
    `setting`) are the config's flags and keys, spelled flat: `--mu`, `mu = 0.01`."""
    return dataclasses.field(default=default, metadata={"group": True})


def config_fields(cls: type) -> list[tuple[dataclasses.Field, Any, str | None]]:
    """(field, type, the group field it belongs to or None) of every setting of a config, a group's
    settings in the group's place."""
    hints = typing.get_type_hints(cls)
    found = []
    for f in dataclasses.fields(cls):
        if f.metadata.get("group"):
            inner = typing.get_type_hints(hints[f.name])
            found += [(g, inner[g.name], f.name) for g in dataclasses.fields(hints[f.name])]
        else:
            found.append((f, hints[f.name], None))
    return found


def config_values(config: Any) -> dict[str, Any]:
    """A config's settings by key, a group's spelled flat as in a config file (they rebuild the config)."""
    return {
        f.name: getattr(getattr(config, group_name) if group_name else config, f.name)
        for f, _, group_name in config_fields(type(config))
    }


def defaults(**values: Any) -> Callable[[type[C]], type[C]]:
    """Class decorator, placed under @dataclass: this config's own defaults for fields it inherits.

    Each named field is declared again on the class with the type and help of the one it inherits,
    so only the default changes (for this class and those derived from it) and the field keeps its
    place among the flags."""

    def apply(cls: type[C]) -> type[C]:
        if "__dataclass_fields__" in cls.__dict__:
            raise TypeError(f"@defaults goes under @dataclass on {cls.__name__}, so that the dataclass sees it")
        inherited = {
            f.name: f for base in cls.__mro__[1:] if dataclasses.is_dataclass(base) for f in dataclasses.fields(base)
        }
        own = cls.__dict__.get("__annotations__", {})
        for name in values:
            if name not in inherited or name in own:
                raise TypeError(f"{cls.__name__}: @defaults names {name!r}, which is not a field it only inherits")
        hints = typing.get_type_hints(cls)  # resolved in the module that declared each field
        cls.__annotations__ = {**own, **{name: hints[name] for name in values}}
        for name, value in values.items():
            setattr(cls, name, dataclasses.field(default=value, metadata=inherited[name].metadata))
        return cls

    return apply


def require_folder(path: str, what: str) -> None:
    """A folder a run writes to may not exist yet; a file in its place is a mistake."""
    if Path(path).expanduser().exists() and not Path(path).expanduser().is_dir():
        raise UserError(f"{what} {path!r} is a file, not a folder")


def require_at_least_one(config: Any, *names: str) -> None:
    """The counts a config's validate() checks (steps, batch sizes, threads, ...): each must be >= 1, or
    none where the field takes none (eval_examples: the whole split)."""
    for name in names:
        if getattr(config, name) is not None and getattr(config, name) < 1:
            raise UserError(f"{name} must be at least 1, got {getattr(config, name)}")


def _unwrap_optional(tp: Any) -> tuple[Any, bool]:
    args = typing.get_args(tp)
    if typing.get_origin(tp) in (typing.Union, types.UnionType) and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        return rest[0], True
    return tp, False


def _coerce(name: str, tp: Any, value: Any) -> Any:
    base, optional = _unwrap_optional(tp)
    if value is None or (optional and isinstance(value, str) and value.lower() in ("", "none", "null")):
        if optional:
            return None
        raise UserError(f"config field '{name}' must not be empty")
    try:
        if typing.get_origin(base) is typing.Literal:
            allowed = typing.get_args(base)
            if value not in allowed:
                raise ValueError(f"choose one of: {', '.join(map(str, allowed))}")
            return value
        if typing.get_origin(base) is tuple:
            items = value.split(",") if isinstance(value, str) else list(value)
            element = (typing.get_args(base) or (str,))[0]
            return tuple(_coerce(name, element, str(i).strip()) for i in items if str(i).strip())
        if base is bool:
            if isinstance(value, bool):
                return value
            if str(value).lower() in ("1", "true", "yes", "on"):
                return True
            if str(value).lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError("expected true or false")
        if base is int and isinstance(value, float) and not value.is_integer():
            raise ValueError("expected an integer")
        return base(value)
    except (TypeError, ValueError) as error:
        raise UserError(f"config field '{name}': cannot use {value!r} ({error})") from None


def _choices(tp: Any) -> str:
    """The values a Literal field (or a tuple of them) takes, for its --help: "; one of a, b"."""
    base = _unwrap_optional(tp)[0]
    many = typing.get_origin(base) is tuple
    if many:
        base = (typing.get_args(base) or (str,))[0]
    if typing.get_origin(base) is not typing.Literal:
        return ""
    return f"; {'some' if many else 'one'} of {', '.join(map(str, typing.get_args(base)))}"


def read_config_file(path: str | Path) -> dict[str, Any]:
    """The top-level table of a .toml, .yaml or .yml file, its keys' dashes read as underscores; values are
    left as parsed (build_config coerces them). A missing, unparsable or non-table file is a UserError."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"config file not found: {path}")
    try:
        if path.suffix == ".toml":
            data = tomllib.loads(path.read_text())
        elif path.suffix in (".yaml", ".yml"):
            data = yaml.safe_load(path.read_text()) or {}
        else:
            raise UserError(f"config file must be .toml, .yaml or .yml: {path}")
    except (tomllib.TOMLDecodeError, yaml.YAMLError) as error:
        raise UserError(f"cannot parse {path}: {error}") from None
    if not isinstance(data, dict):
        raise UserError(f"{path} must hold a table of settings")
    return {str(k).replace("-", "_"): v for k, v in data.items()}


def build_config(cls: type[C], *sources: dict[str, Any]) -> C:
    """Later sources override earlier ones; unknown keys are refused by name."""
    fields = {f.name: (tp, group_name) for f, tp, group_name in config_fields(cls)}
    values: dict[str, Any] = {}
    grouped: dict[str, dict[str, Any]] = {}
    for source in sources:
        for key, value in source.items():
            if key not in fields:
                raise UserError(f"unknown config field '{key}'; known fields: {', '.join(fields)}")
            tp, group_name = fields[key]
            (grouped.setdefault(group_name, {}) if group_name else values)[key] = _coerce(key, tp, value)
    defaults = {f.name: f.default for f in dataclasses.fields(cls)}
    values |= {name: dataclasses.replace(defaults[name], **given) for name, given in grouped.items()}
    config = cls(**values)
    validate = getattr(config, "validate", None)
    if validate:
        validate()
    return config


def add_config_arguments(parser: argparse.ArgumentParser, cls: type) -> None:
    """Add --config and a flag for every setting of cls, a group's spelled flat. Every flag defaults to None,
    so that only the flags given override the file; a bool setting also takes --no-<flag>."""
    parser.add_argument("--config", help="TOML or YAML file with settings (flags override it)")
    for f, tp, _ in config_fields(cls):
        flag = "--" + f.name.replace("_", "-")
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        help_text = f.metadata.get("help", "")
        if _unwrap_optional(tp)[0] is bool:
            # A flag alone turns a setting on, --no-<flag> off; an explicit value (--resume false) is
            # still read, as a config file's true/false is.
            parser.add_argument(
                flag,
                dest=f.name,
                default=None,
                nargs="?",
                const="true",
                metavar="true|false",
                help=f"{help_text} (default: {str(default).lower()}; --no-{flag[2:]} for false)",
            )
            parser.add_argument(
                "--no-" + flag[2:], dest=f.name, action="store_const", const="false", help=argparse.SUPPRESS
            )
            continue
        parser.add_argument(
            flag,
            dest=f.name,
            default=None,
            metavar=f.name.upper(),
            help=f"{help_text} (default: {default}{_choices(tp)})",
        )


def config_sources(cls: type, args: argparse.Namespace) -> tuple[dict[str, Any], dict[str, Any]]:
    """What parsed args give, the --config file's values first and then the flags', for build_config."""
    from_file = read_config_file(args.config) if args.config else {}
    from_flags = {f.name: getattr(args, f.name) for f, _, _ in config_fields(cls) if getattr(args, f.name) is not None}
    return from_file, from_flags


def config_from_args(cls: type[C], args: argparse.Namespace) -> C:
    """The config that parsed args name: cls's defaults < the --config file < the flags given."""
    return build_config(cls, *config_sources(cls, args))
