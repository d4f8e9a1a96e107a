"""Events-to-frames speed: vectorised ``render_event_frames`` against EventGPT's per-event loop.

One second of DSEC-sized events (3,000,000 seeded random events over 640x480, sorted by t) is
split into 5 equal-count chunks and drawn both ways. The pixels must be identical (exit status
1 otherwise). The vectorised path is timed as the best of a few runs, the loop once; where the
loop would take more than ``--loop-budget-s`` it is timed on a prefix and scaled linearly (the
output says so). The target is a speed-up of at least 50x.

    python benchmarks/bench_events.py [--events N] [--out benchmarks/out/events.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from analyze.files import write_text_atomic
from capture.data.events import render_event_frames, render_events_loop, split_equal_count
from capture.data.sample import DSEC_HEIGHT, DSEC_WIDTH, EVENT_DTYPE

TARGET_SPEEDUP = 50.0
N_CHUNKS = 5
PROBE_EVENTS = 50_000


def random_stream(n_events: int, sensor_hw: tuple[int, int], duration_us: int, seed: int) -> np.ndarray:
    """``n_events`` uniform random events over the sensor and ``duration_us``, sorted by t."""
    rng = np.random.default_rng(seed)
    height, width = sensor_hw
    events = np.empty(n_events, dtype=EVENT_DTYPE)
    events["x"] = rng.integers(0, width, n_events)
    events["y"] = rng.integers(0, height, n_events)
    events["t"] = np.sort(rng.integers(0, duration_us, n_events))
    events["p"] = rng.integers(0, 2, n_events)
    return events


def loop_frames(events: np.ndarray, sensor_hw: tuple[int, int]) -> list[np.ndarray]:
    """EventGPT's way: the same chunks, each drawn by the per-event Python loop."""
    return [render_events_loop(chunk, sensor_hw) for chunk in split_equal_count(events, N_CHUNKS)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=3_000_000, help="events in the 1-second stream")
    parser.add_argument("--repeats", type=int, default=5, help="runs of the vectorised path (best is kept)")
    parser.add_argument("--loop-budget-s", type=float, default=60.0, help="longest loop run before scaling")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/out/events.json"))
    args = parser.parse_args(argv)

    sensor_hw = (DSEC_HEIGHT, DSEC_WIDTH)
    events = random_stream(args.events, sensor_hw, duration_us=1_000_000, seed=args.seed)

    vector_runs_s = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        frames = render_event_frames(events, sensor_hw, N_CHUNKS)
        vector_runs_s.append(time.perf_counter() - start)
    vector_s = min(vector_runs_s)

    # Estimate the loop's cost on a small prefix, then run it on the whole stream if affordable.
    start = time.perf_counter()
    render_events_loop(events[:PROBE_EVENTS], sensor_hw)
    probe_s_per_event = (time.perf_counter() - start) / min(PROBE_EVENTS, args.events)
    loop_events = args.events
    if probe_s_per_event * args.events > args.loop_budget_s:
        loop_events = max(int(args.loop_budget_s / 2 / probe_s_per_event), PROBE_EVENTS)
    loop_stream = events[:loop_events]
    start = time.perf_counter()
    reference = loop_frames(loop_stream, sensor_hw)
    loop_measured_s = time.perf_counter() - start
    loop_s = loop_measured_s * args.events / loop_events
    scaled = loop_events < args.events

    compared = frames if not scaled else render_event_frames(loop_stream, sensor_hw, N_CHUNKS)
    identical = all(np.array_equal(a, b) for a, b in zip(compared, reference, strict=True))
    speedup = loop_s / vector_s

    result = {
        "n_events": args.events,
        "sensor_hw": list(sensor_hw),
        "n_chunks": N_CHUNKS,
        "vectorised_s": vector_s,
        "vectorised_runs_s": vector_runs_s,
        "vectorised_events_per_s": args.events / vector_s,
        "loop_s": loop_s,
        "loop_measured_s": loop_measured_s,
        "loop_measured_events": loop_events,
        "loop_scaled_linearly": scaled,
        "loop_events_per_s": args.events / loop_s,
        "speedup": speedup,
        "target_speedup": TARGET_SPEEDUP,
        "meets_target": bool(speedup >= TARGET_SPEEDUP),
        "pixels_identical": bool(identical),
        "pixels_compared_on_events": loop_events,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
    }

    loop_note = f" (timed on {loop_events:,} events, scaled linearly)" if scaled else ""
    print(f"events-to-frames: {args.events:,} events, {sensor_hw[1]}x{sensor_hw[0]}, {N_CHUNKS} chunks")
    print(f"{'path':<12} {'time_s':>10} {'events_per_s':>15}")
    print(f"{'vectorised':<12} {vector_s:>10.4f} {args.events / vector_s:>15,.0f}   best of {args.repeats}")
    print(f"{'loop':<12} {loop_s:>10.4f} {args.events / loop_s:>15,.0f}   once{loop_note}")
    verdict = "meets" if speedup >= TARGET_SPEEDUP else "BELOW"
    print(f"speed-up {speedup:,.1f}x: {verdict} the target of >= {TARGET_SPEEDUP:.0f}x")
    print(f"pixels identical: {identical} (compared on {loop_events:,} events)")

    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(args.out, json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0 if identical else 1


if __name__ == "__main__":
    sys.exit(main())
