"""Replays issue 27's attacks (items 1-6) against a real `nn-cli serve` on 127.0.0.1.

    python bench/playground_probe.py [--seconds 15] [--cycles 16]

Each item gets a fresh `nn-cli serve --port 0` (its own process, as a user starts it), so
that the peak memory one item reports (VmHWM, from /proc) is its own. Every loop is bounded
by a count and a deadline. Prints one table: what was measured, the target, and whether it
held. Linux only (/proc). Binds and sends to 127.0.0.1 only.

1. 8 runs of the issue's maximal request (5000 points, batch 1, heat map 200 x 200, a
   256-wide layer and 74 tanh), all playing with a stream open: peak memory < 2 GB.
2. a model download waiting behind an epoch, then DELETE: answered (409) at once.
3. POST/play/DELETE cycles: 2 s after the last, no run is stopping and the server idles.
4. 30 concurrent POSTs: at most 8 runs.
5. a 1 GB chunked body: refused (413) with memory up < 50 MB.
6. `Host: evil.example` and a text/plain POST: refused.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

NN_CLI = str(Path(sys.executable).with_name("nn-cli"))
HOST = "127.0.0.1"
DEEP = "linear:out=256," + "tanh," * 74 + "linear:out=3"
MAXIMAL = {"data": "spiral", "options": "arms=3", "size": 5000, "batch": 1, "grid": 200,
           "layers": DEEP, "loss": "cross_entropy"}
SMALL = {"size": 200, "hidden": "6", "batch": 20, "grid": 20, "loss": "bce"}
MB = 2**20


class Server:
    """`nn-cli serve --port 0` in its own process, with its port and /proc figures."""

    def __init__(self):
        self.process = subprocess.Popen([NN_CLI, "serve", "--port", "0"], stdout=subprocess.PIPE,
                                        stderr=subprocess.STDOUT, text=True)
        line = self.process.stdout.readline()
        found = re.search(r"http://127\.0\.0\.1:(\d+)/", line)
        if not found:
            self.process.kill()
            raise SystemExit(f"nn-cli serve did not say where it listens: {line!r}")
        self.port = int(found.group(1))

    def memory(self, field: str) -> int:
        """VmRSS (now) or VmHWM (peak) in bytes."""
        text = Path(f"/proc/{self.process.pid}/status").read_text()
        return int(re.search(rf"{field}:\s+(\d+) kB", text).group(1)) * 1024

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def request(self, method: str, path: str, body: dict | bytes | None = None, *,
                headers: dict | None = None, timeout: float = 120) -> tuple[int, dict]:
        connection = http.client.HTTPConnection(HOST, self.port, timeout=timeout)
        if isinstance(body, dict):
            body = json.dumps(body).encode()
        given = {"Content-Type": "application/json"} if method in ("POST", "DELETE") else {}
        connection.request(method, path, body, {**given, **(headers or {})})
        response = connection.getresponse()
        raw = response.read()
        connection.close()
        try:
            return response.status, json.loads(raw)
        except ValueError:
            return response.status, {"text": raw.decode(errors="replace")}

    def start(self, config: dict) -> str:
        code, answer = self.request("POST", "/api/sessions", config)
        if code != 201:
            raise SystemExit(f"POST /api/sessions answered {code}: {answer}")
        return answer["id"]

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def stream_for(server: Server, key: str, seconds: float, frames: list) -> None:
    """Read a run's event stream for `seconds`, counting frames; closing it stops the run."""
    connection = http.client.HTTPConnection(HOST, server.port, timeout=seconds + 60)
    connection.request("GET", f"/api/sessions/{key}/events")
    response = connection.getresponse()
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        line = response.fp.readline()
        if not line:
            break
        if line.startswith(b"event: frame"):
            frames.append(time.monotonic())
    connection.close()


def item1(seconds: float) -> list[tuple]:
    server = Server()
    try:
        start = time.monotonic()
        keys = [server.start(MAXIMAL) for _ in range(8)]
        built = time.monotonic() - start
        frames: list = []
        readers = [threading.Thread(target=stream_for, args=(server, k, seconds, frames)) for k in keys]
        for reader in readers:
            reader.start()
        time.sleep(0.5)
        for key in keys:
            server.request("POST", f"/api/sessions/{key}/control", {"action": "play"})
        for reader in readers:
            reader.join(seconds + 120)
        peak = server.memory("VmHWM")
        refused, answer = server.request("POST", "/api/sessions", {**MAXIMAL, "batch": 2500})
    finally:
        server.stop()
    return [
        ("1", f"peak memory, 8 maximal runs playing {seconds:g} s (built in {built:.0f} s, "
              f"{len(frames)} frames)", f"{peak / MB:.0f} MB", "< 2048 MB", peak < 2048 * MB),
        ("1", "the same with batch 2500 (holds ~GBs)", f"{refused}", "400", refused == 400),
    ]


def item2() -> list[tuple]:
    server = Server()
    try:
        key = server.start({**MAXIMAL, "grid": 20})
        server.request("POST", f"/api/sessions/{key}/control", {"action": "play"})
        time.sleep(0.3)  # mid-epoch: an epoch of 2500 steps through 76 layers takes seconds
        answer: dict = {}

        def download():
            answer["code"], _ = server.request("GET", f"/api/sessions/{key}/model", timeout=60)
            answer["at"] = time.monotonic()

        waiting = threading.Thread(target=download)
        waiting.start()
        time.sleep(0.2)
        pending = waiting.is_alive()  # queued behind the epoch
        deleted = time.monotonic()
        server.request("DELETE", f"/api/sessions/{key}")
        waiting.join(60)
        waited = answer.get("at", float("inf")) - deleted
    finally:
        server.stop()
    return [("2", f"model download {'queued behind an epoch' if pending else 'NOT pending'}, "
                  f"then DELETE: answered after", f"{waited:.2f} s ({answer.get('code')})",
             "< 2 s (409)", pending and waited < 2 and answer.get("code") == 409)]


def item3(cycles: int) -> list[tuple]:
    server = Server()
    try:
        deadline = time.monotonic() + 120
        done = 0
        for _ in range(cycles):
            if time.monotonic() > deadline:
                break
            key = server.start({**MAXIMAL, "grid": 20})
            server.request("POST", f"/api/sessions/{key}/control", {"action": "play"})
            time.sleep(0.5)
            server.request("DELETE", f"/api/sessions/{key}")
            done += 1
        time.sleep(2.0)
        _, status = server.request("GET", "/api/status")
        before = server.cpu_seconds()
        time.sleep(1.0)
        busy = server.cpu_seconds() - before
    finally:
        server.stop()
    return [("3", f"{done} POST/play/DELETE cycles, 2 s later: runs + stopping",
             f"{status['runs'] + status['stopping']}", "0", status["runs"] + status["stopping"] == 0),
            ("3", "server CPU in the next second", f"{busy:.2f} s", "< 0.1 s", busy < 0.1)]


def item4() -> list[tuple]:
    server = Server()
    try:
        with ThreadPoolExecutor(30) as pool:
            codes = list(pool.map(lambda _: server.request("POST", "/api/sessions",
                                                           {**SMALL, "grid": 200, "size": 2000})[0],
                                  range(30)))
        _, status = server.request("GET", "/api/status")
    finally:
        server.stop()
    return [("4", "30 concurrent POSTs: 201s / runs", f"{codes.count(201)} / {status['runs']}",
             "<= 8", codes.count(201) <= 8 and status["runs"] <= 8)]


def item5(total: int) -> list[tuple]:
    server = Server()
    try:
        time.sleep(0.5)
        before = server.memory("VmHWM")
        connection = http.client.HTTPConnection(HOST, server.port, timeout=60)
        connection.putrequest("POST", "/api/sessions")
        connection.putheader("Content-Type", "application/json")
        connection.putheader("Transfer-Encoding", "chunked")
        connection.endheaders()
        chunk, sent, deadline = b" " * MB, 0, time.monotonic() + 120
        try:
            while sent < total and time.monotonic() < deadline:
                connection.send(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                sent += len(chunk)
            connection.send(b"0\r\n\r\n")
        except OSError:  # the server refused and closed the connection
            pass
        code = connection.getresponse().status
        connection.close()
        rise = server.memory("VmHWM") - before
    finally:
        server.stop()
    return [("5", f"{total / 2**30:g} GB chunked body: answer, bytes the client got to send",
             f"{code}, {sent / MB:.0f} MB", "413", code == 413),
            ("5", "peak memory rise", f"{rise / MB:.1f} MB", "< 50 MB", rise < 50 * MB)]


def item6() -> list[tuple]:
    server = Server()
    try:
        evil, _ = server.request("GET", "/api/status", headers={"Host": "evil.example"})
        plain, _ = server.request("POST", "/api/sessions", SMALL, headers={"Content-Type": "text/plain"})
        form, _ = server.request("POST", "/api/sessions", b"a=1",
                                 headers={"Content-Type": "application/x-www-form-urlencoded"})
        _, status = server.request("GET", "/api/status")
    finally:
        server.stop()
    return [("6", "Host: evil.example", f"{evil}", "400", evil == 400),
            ("6", "text/plain POST / form POST / runs after", f"{plain} / {form} / {status['runs']}",
             "415 / 415 / 0", plain == form == 415 and status["runs"] == 0)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=15.0, help="item 1's playing time")
    parser.add_argument("--cycles", type=int, default=16, help="item 3's cycles")
    parser.add_argument("--body-gb", type=float, default=1.0, help="item 5's body size")
    args = parser.parse_args()
    rows = [*item6(), *item5(int(args.body_gb * 2**30)), *item4(), *item3(args.cycles), *item2(),
            *item1(args.seconds)]
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"nn-cli serve on {HOST}; {os.cpu_count()} CPUs, load average {load}")
    width = max(len(r[1]) for r in rows)
    print(f"{'item':4}  {'check':{width}}  {'measured':>18}  {'target':>14}  ok")
    for item, check, measured, target, ok in rows:
        print(f"{item:4}  {check:{width}}  {measured:>18}  {target:>14}  {'yes' if ok else 'NO'}")
    if not all(r[4] for r in rows):
        sys.exit(1)


if __name__ == "__main__":
    main()
