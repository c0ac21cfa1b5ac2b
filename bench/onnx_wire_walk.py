"""How long the wire-level ONNX walk takes on files a careless or hostile user might pass (issue 18, item 6).

Before the fix, ``check_external_data`` read the whole file and walked zeros two bytes per
Python step (20 MB 6 s, 80 MB 25 s, 3 GB sparse over 5 minutes). Now a file over protobuf's
2 GiB is refused from its size, zeros on their first byte, and the time grows with the number
of fields. The last row is that worst case: a well-formed file of two-byte scalar fields.

    python bench/onnx_wire_walk.py            # check_external_data and `symnets info`, per file
    python bench/onnx_wire_walk.py --no-cli   # the check only
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from symnets_deploy.errors import ArtifactError
from symnets_deploy.external_data import check_external_data

MB = 2**20
CASES = {  # name -> (size, filler): None leaves a sparse hole, bytes repeat to fill the file
    "20 MiB of zeros": (20 * MB, b"\x00"),
    "80 MiB of zeros": (80 * MB, b"\x00"),
    "3 GiB sparse": (3 * 2**30, None),
    "8 MiB of 2-byte fields (4M)": (8 * MB, b"\x08\x00"),  # ir_version = 0, repeated: well-formed
}


def make(path: Path, size: int, filler: bytes | None) -> Path:
    if filler is None:
        path.touch()
        os.truncate(path, size)
    else:
        path.write_bytes(filler * (size // len(filler)))
    return path


def timed(call) -> tuple[float, str]:
    start = time.perf_counter()
    outcome = call()
    return time.perf_counter() - start, outcome


def check(path: Path) -> str:
    try:
        check_external_data(path)
        return "accepted"
    except ArtifactError as exc:
        return str(exc).split(": ", 1)[1][:70]


def info(path: Path) -> str:
    done = subprocess.run([sys.executable, "-m", "symnets_deploy.cli", "info", str(path)], capture_output=True, text=True, check=False)
    return f"exit {done.returncode}, {len(done.stderr.strip().splitlines())} line(s)"


def main() -> None:
    cli = "--no-cli" not in sys.argv
    print("| file | check_external_data | outcome |" + (" symnets info | outcome |" if cli else ""))
    print("|---|---|---|" + ("---|---|" if cli else ""))
    with tempfile.TemporaryDirectory() as folder:
        for name, (size, filler) in CASES.items():
            path = make(Path(folder) / "model.onnx", size, filler)
            seconds, outcome = timed(lambda path=path: check(path))
            row = f"| {name} | {seconds * 1000:.1f} ms | {outcome} |"
            if cli:
                seconds, outcome = timed(lambda path=path: info(path))
                row += f" {seconds:.2f} s | {outcome} |"
            print(row, flush=True)
            path.unlink()


if __name__ == "__main__":
    main()
