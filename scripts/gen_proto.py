"""Generate the Python protobuf package from ``proto/*.proto``.

The sources live in ``proto/`` (a folder Python never imports: the name ``proto``
belongs to the proto-plus distribution).  To make the generated modules import
each other as ``services.common.pb.<name>_pb2`` without editing generated code,
the sources are staged under that package path in a temporary include root and
compiled from there with ``python -m grpc_tools.protoc``.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTO_DIR = ROOT / "proto"
PACKAGE = Path("services") / "common" / "pb"


def main() -> int:
    """Compile every ``.proto`` into ``services/common/pb`` with .pyi stubs."""
    from grpc_tools import protoc  # imported late: only a dev dependency

    sources = sorted(PROTO_DIR.glob("*.proto"))
    if not sources:
        print("no .proto files under proto/", file=sys.stderr)
        return 1
    out_pkg = ROOT / PACKAGE
    out_pkg.mkdir(parents=True, exist_ok=True)
    for old in out_pkg.glob("*_pb2.py*"):
        old.unlink()
    with tempfile.TemporaryDirectory() as tmp:
        staged = Path(tmp) / PACKAGE
        staged.mkdir(parents=True)
        for src in sources:
            text = src.read_text(encoding="utf-8")
            # Imports between the files are rewritten to the staged package path.
            for other in sources:
                text = text.replace(f'import "{other.name}";', f'import "{PACKAGE.as_posix()}/{other.name}";')
            (staged / src.name).write_text(text, encoding="utf-8")
        include = protoc.__file__ and Path(protoc.__file__).parent / "_proto"
        args = [
            "grpc_tools.protoc",
            f"-I{tmp}",
            f"-I{include}",
            f"--plugin=protoc-gen-mypy={Path(sys.executable).parent / 'protoc-gen-mypy'}",
            f"--python_out={ROOT}",
            f"--mypy_out={ROOT}",
            *[(PACKAGE / s.name).as_posix() for s in sources],
        ]
        code = protoc.main(args)
        if code != 0:
            print(f"protoc failed with exit code {code}", file=sys.stderr)
            return int(code)
    init = out_pkg / "__init__.py"
    if not init.exists():
        init.write_text('"""Generated protobuf modules (never edit by hand; run `make proto`)."""\n')
    (out_pkg / "py.typed").touch()
    print(f"generated {len(sources)} modules into {PACKAGE.as_posix()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
