"""Start-up time of `geosynth --help` against a bare `python -c pass`, side by side.

Target: `geosynth --help` under 1 s. Run: python benchmarks/cli_startup.py
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time


def wall(cmd: list[str], repeat: int = 7) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    base = wall([sys.executable, "-c", "pass"])
    ours = wall([sys.executable, "-m", "geosynth", "--help"])
    torch = wall([sys.executable, "-c", "import torch"], repeat=3)
    print(f"python -c pass        {base * 1000:8.1f} ms")
    print(f"geosynth --help       {ours * 1000:8.1f} ms   ({ours / base:.1f}x bare python)")
    print(f"python -c import torch {torch * 1000:7.1f} ms   (what --help avoids)")
    print("target: geosynth --help < 1000 ms:", "met" if ours < 1.0 else "NOT met")


if __name__ == "__main__":
    main()
