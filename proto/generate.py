"""Regenerate the Python gRPC stubs of proto/ into restem_proto/ (one place, used by
server and client); with --check, exit 1 when the committed stubs differ from a fresh run."""

from __future__ import annotations

import argparse
import filecmp
import sys
import tempfile
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTO_DIR = ROOT / "proto"


def generate(out_dir: Path) -> list[Path]:
    """Run protoc on every .proto under proto/; return the generated files (relative)."""
    protos = sorted(str(p.relative_to(PROTO_DIR)) for p in PROTO_DIR.rglob("*.proto"))
    well_known = Path(protoc.__file__).parent / "_proto"
    args = ["protoc", f"-I{PROTO_DIR}", f"-I{well_known}", f"--python_out={out_dir}",
            f"--pyi_out={out_dir}", f"--grpc_python_out={out_dir}", *protos]
    if protoc.main(args) != 0:
        raise SystemExit(f"protoc failed on {protos}")
    return sorted(p.relative_to(out_dir) for p in (out_dir / "restem_proto").rglob("*_pb2*.py*"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="compare instead of writing")
    check = parser.parse_args().check
    if not check:
        for path in generate(ROOT):
            print(f"wrote {path}")
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        fresh = generate(Path(tmp))
        committed = sorted(p.relative_to(ROOT) for p in (ROOT / "restem_proto").rglob("*_pb2*.py*"))
        stale = [str(p) for p in fresh if not (ROOT / p).exists()
                 or not filecmp.cmp(Path(tmp) / p, ROOT / p, shallow=False)]
        stale += [f"{p} (no longer generated)" for p in committed if p not in fresh]
    if stale:
        print("stale gRPC stubs, run `make proto`: " + ", ".join(stale), file=sys.stderr)
        return 1
    print(f"{len(fresh)} stub files are fresh")
    return 0


if __name__ == "__main__":
    sys.exit(main())
