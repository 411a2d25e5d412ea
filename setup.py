"""Generates the gRPC stubs from proto/ while building; everything else is in pyproject.toml.

The stubs are written into the source tree (edge_runtime/protocol/stubs/, git-ignored) before the
normal build copies the package, so regular and editable installs (PEP 660 runs build_py with
editable_mode) both find them, and nobody edits generated code by hand.
"""

from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

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


class BuildWithProtos(build_py):
    def run(self) -> None:
        compile_protos()
        super().run()


setup(cmdclass={"build_py": BuildWithProtos})
