"""Generate the Python protobuf packages from ``proto/*.proto``.

The sources live in ``proto/`` (a folder Python never imports: the name ``proto``
belongs to the proto-plus distribution).  To make the generated modules import
each other as ``<package>.<name>_pb2`` without editing generated code, the
sources are staged under that package path in a temporary include root and
compiled from there with ``python -m grpc_tools.protoc``.

Two packages are generated from the same sources:

* ``services/common/pb``: what the services, clients and unit tests use;
* ``system_tests/pb``: the black-box grader's own copy, so ``system_tests``
  imports nothing from ``services/``.  Its protobuf *package* is renamed from
  ``optivex.exchange`` to ``optivex.systest`` because both copies are imported
  by one pytest process (``make test``) and protobuf's default descriptor pool
  refuses two definitions of one full name.  The wire format carries field
  numbers and types, never type names, so the bytes on the wire are identical.
  The staged ``.proto`` files are kept beside the modules for reference.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTO_DIR = ROOT / "proto"
PACKAGE = Path("services") / "common" / "pb"
SYSTEST_PACKAGE = Path("system_tests") / "pb"
SYSTEST_PROTO_PACKAGE = ("optivex.exchange", "optivex.systest")
"""(contract name, grader's name) of the protobuf package prefix."""


def _generate(sources: list[Path], package: Path, rename: tuple[str, str] | None) -> int:
    """Compile ``sources`` into ``package`` (a path under ROOT) with .pyi stubs."""
    from grpc_tools import protoc  # type: ignore[import-untyped]  # only a dev dependency

    out_pkg = ROOT / package
    out_pkg.mkdir(parents=True, exist_ok=True)
    for old in out_pkg.glob("*_pb2.py*"):
        old.unlink()
    with tempfile.TemporaryDirectory() as tmp:
        staged = Path(tmp) / package
        staged.mkdir(parents=True)
        for src in sources:
            text = src.read_text(encoding="utf-8")
            # Imports between the files are rewritten to the staged package path.
            for other in sources:
                text = text.replace(
                    f'import "{other.name}";', f'import "{package.as_posix()}/{other.name}";'
                )
            if rename is not None:
                text = text.replace(f"{rename[0]}.", f"{rename[1]}.").replace(
                    f"package {rename[0]};", f"package {rename[1]};"
                )
            (staged / src.name).write_text(text, encoding="utf-8")
        include = protoc.__file__ and Path(protoc.__file__).parent / "_proto"
        args = [
            "grpc_tools.protoc",
            f"-I{tmp}",
            f"-I{include}",
            f"--plugin=protoc-gen-mypy={Path(sys.executable).parent / 'protoc-gen-mypy'}",
            f"--python_out={ROOT}",
            f"--mypy_out={ROOT}",
            *[(package / s.name).as_posix() for s in sources],
        ]
        code = protoc.main(args)
        if code != 0:
            print(f"protoc failed with exit code {code}", file=sys.stderr)
            return int(code)
        if rename is not None:
            for src in sources:
                shutil.copyfile(staged / src.name, out_pkg / src.name)
    init = out_pkg / "__init__.py"
    if not init.exists():
        init.write_text(
            '"""Generated protobuf modules (never edit by hand; run `make proto`)."""\n'
        )
    (out_pkg / "py.typed").touch()
    print(f"generated {len(sources)} modules into {package.as_posix()}")
    return 0


def main() -> int:
    """Compile every ``.proto`` into ``services/common/pb`` and ``system_tests/pb``."""
    sources = sorted(PROTO_DIR.glob("*.proto"))
    if not sources:
        print("no .proto files under proto/", file=sys.stderr)
        return 1
    code = _generate(sources, PACKAGE, None)
    if code == 0:
        code = _generate(sources, SYSTEST_PACKAGE, SYSTEST_PROTO_PACKAGE)
    return code


if __name__ == "__main__":
    raise SystemExit(main())
