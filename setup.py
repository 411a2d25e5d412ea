"""Generates the gRPC stubs from proto/ before setuptools looks for packages; everything else is in
pyproject.toml.

The stubs are written into the source tree (edge_runtime/protocol/stubs/, git-ignored) when this
file runs, which is before setuptools collects the package list: a wheel built from a clean clone
holds them, as do regular and editable installs, and nobody edits generated code by hand.
"""

from pathlib import Path

from setuptools import setup

ROOT = Path(__file__).parent
PROTOS = sorted((ROOT / "proto").rglob("*.proto"))


def compile_protos() -> None:
    from grpc_tools import protoc

    include = Path(protoc.__file__).parent / "_proto"
    out = ROOT / "edge_runtime" / "protocol" / "stubs"
    for proto in PROTOS:
        # Mapping proto/ onto the package path makes the generated modules import each other as
        # edge_runtime.protocol.stubs..., not as top-level modules.
        args = ["protoc", f"-Iedge_runtime/protocol/stubs={ROOT / 'proto'}", f"-I{include}", f"--python_out={ROOT}",
                f"--pyi_out={ROOT}", f"--grpc_python_out={ROOT}", str(proto)]
        if protoc.main(args) != 0:
            raise RuntimeError(f"protoc failed on {proto}")
    (out / "__init__.py").touch()


compile_protos()
setup()
