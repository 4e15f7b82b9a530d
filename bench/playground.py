"""The playground's stream rate and training speed against `nn-cli train`, same settings.

    python bench/playground.py [--repeats 3] [--seconds 8] [--case diagram no-diagram report | all]

Starts `nn-cli serve --port 0` as its own process, as a user would, and for each case and
repeat: opens a run (tanh, bce, Adam at lr 0.04, batch 200, 1000 training and 1000 test
points on the disk task) with a 100 x 100 heat map, presses play and reads the event stream
for `--seconds`, counting frames and the epochs they report; then times `nn-cli train` on
the same settings (`--schedule constant`, as the playground trains) at two epoch counts, so
that the difference cancels the process start-up. Sides alternate; medians over repeats.
The cases: "diagram", a 2-8-8-1 network with the network diagram on (every unit's heat map
and the weights in each frame, and the per-layer gradient statistics: issue 25), "no-diagram",
the same with the diagram off (what drawing it costs), and "report", the report's
2-25-25-25-1 with the diagram off (issue 16's case). The targets: at
least 10 frames a second, and the server's epochs a second at least 80 % of `nn-cli train`'s.
Measures the server and its stream, not a browser's drawing (tests/test_playground_browser.py
watches the page itself draw).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

NN_CLI = str(Path(sys.executable).with_name("nn-cli"))
BASE = {"data": "disk", "noise": 0, "size": 2000, "ratio": 0.5, "act": "tanh", "loss": "bce",
        "optimizer": "adam", "lr": 0.04, "batch": 200, "seed": 0, "grid": 100}
TRAIN = ["--act", "tanh", "--loss", "bce", "--optimizer", "adam", "--lr", "0.04",
         "--batch-size", "200", "--schedule", "constant", "--seed", "0"]
CASES = {  # name: (the page's configuration, nn-cli train's --hidden)
    "diagram": ({**BASE, "hidden": "8,8", "diagram": True}, "8,8"),
    "no-diagram": ({**BASE, "hidden": "8,8", "diagram": False}, "8,8"),  # what the diagram costs
    "report": ({**BASE, "hidden": "25,25,25", "diagram": False}, "25,25,25"),
}


def start_server() -> tuple[subprocess.Popen, str]:
    server = subprocess.Popen([NN_CLI, "serve", "--port", "0"], stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
    line = server.stdout.readline()
    found = re.search(r"(http://\S+/)", line)
    if not found:
        server.kill()
        raise SystemExit(f"nn-cli serve did not say where it listens: {line!r}")
    return server, found.group(1)


def post(url: str, body: dict) -> dict:
    request = urllib.request.Request(url, json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.load(response)


def stream(base: str, config: dict, seconds: float) -> tuple[float, float]:
    """(frames a second, epochs a second) of one run, read from its event stream."""
    key = post(base + "api/sessions", config)["id"]
    frames = []  # (arrival time, epoch)
    with urllib.request.urlopen(base + f"api/sessions/{key}/events", timeout=60) as events:
        post(base + f"api/sessions/{key}/control", {"action": "play"})
        end = None
        event = None
        for raw in events:
            line = raw.decode().rstrip("\n")
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: ") and event == "frame":
                frame = json.loads(line[6:])
                if frame["playing"] and frame["epoch"] > 0:
                    assert ("diagram" in frame) == config["diagram"], "the diagram is not as asked"
                    now = time.perf_counter()
                    frames.append((now, frame["epoch"]))
                    end = end or now + seconds
                    if now >= end:
                        break
    # Leaving the with-block closes the stream: the server stops the run.
    (t0, e0), (t1, e1) = frames[0], frames[-1]
    return (len(frames) - 1) / (t1 - t0), (e1 - e0) / (t1 - t0)


def train_seconds(hidden: str, epochs: int) -> float:
    start = time.perf_counter()
    subprocess.run([NN_CLI, "train", *TRAIN, "--hidden", hidden, "--epochs", str(epochs)], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def measure(base: str, case: str, repeats: int, seconds: float, epochs: int) -> None:
    config, hidden = CASES[case]
    fps, server_eps, cli_eps = [], [], []
    for _ in range(repeats):
        f, e = stream(base, config, seconds)
        fps.append(f)
        server_eps.append(e)
        short, long = train_seconds(hidden, 10), train_seconds(hidden, epochs)
        cli_eps.append((epochs - 10) / (long - short))
    ratio = statistics.median(server_eps) / statistics.median(cli_eps)
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    shape = "2-" + hidden.replace(",", "-") + "-1"
    print(f"{case}: {shape}, diagram {'on' if config['diagram'] else 'off'}, 100 x 100 heat map; "
          f"medians of {repeats} repeats ({seconds:g} s of stream each); {os.cpu_count()} CPUs, "
          f"load average {load}")
    print(f"  stream: {statistics.median(fps):.1f} frames/s (target >= 10)   "
          f"[{', '.join(f'{x:.1f}' for x in fps)}]")
    print(f"  server training: {statistics.median(server_eps):.0f} epochs/s   "
          f"[{', '.join(f'{x:.0f}' for x in server_eps)}]")
    print(f"  nn-cli train:    {statistics.median(cli_eps):.0f} epochs/s   "
          f"[{', '.join(f'{x:.0f}' for x in cli_eps)}]")
    print(f"  server / nn-cli train: {ratio:.2f} (target >= 0.80)", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--epochs", type=int, default=2000,
                        help="epochs of the longer nn-cli train run (the shorter has 10)")
    parser.add_argument("--case", choices=[*CASES, "all"], nargs="+", default=["all"])
    args = parser.parse_args()
    server, base = start_server()
    try:
        for case in CASES if "all" in args.case else args.case:
            measure(base, case, args.repeats, args.seconds, args.epochs)
    finally:
        server.terminate()
        server.wait(30)


if __name__ == "__main__":
    main()
