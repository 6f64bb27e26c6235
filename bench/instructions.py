#!/usr/bin/env python3
"""Instructions per request: the tasks service and the framework-free baseline, each run
under valgrind's callgrind while one connection sends the same requests.

Throughput on a shared 2-core machine moves by ±10% between runs; instruction counts do
not (callgrind counts them, whatever else the machine does), so this is how one change's
effect on the per-request cost is measured. All threads of the process count (the log
writer too); the client's and the database server's instructions do not.

    cargo build --profile production -p taproom-server -p taproom-bench
    python3 bench/instructions.py [--target target/production] [--requests 2000]

The services log at `info` unless LOG_LEVEL says otherwise; TELEMETRY=false turns metrics
and tracing off, as for `server`.

Prints, per operation, instructions per request for tasks and the baseline and their
ratio. SQLite, so the database's work (the same queries on both sides) counts too.
"""

import argparse
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time


KEEP = None


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(port, path, timeout=120):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            c.request("GET", path)
            if c.getresponse().status < 500:
                return
        except OSError:
            pass
        time.sleep(0.2)
    sys.exit(f"nothing answered on port {port}")


def call(conn, method, path, body=None, token=None, expect=200):
    headers = {}
    if token:
        headers["authorization"] = f"Bearer {token}"
    if body is not None:
        headers["content-type"] = "application/json"
        body = json.dumps(body)
    conn.request(method, path, body=body, headers=headers)
    response = conn.getresponse()
    data = response.read()
    if response.status != expect:
        sys.exit(f"{method} {path}: {response.status} {data[:200]!r}")
    return json.loads(data) if data else None


def count(cmd, env, port, ready_path, case, token, requests, tmp, label):
    """Instructions per request of one case: a fresh process under callgrind, its
    counters zeroed after a warm-up and dumped after `requests` requests."""
    name, method, path, body, expect = case
    out = os.path.join(tmp, f"{label}.{name}.cg")
    proc = subprocess.Popen(
        ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}"] + cmd,
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_ready(port, ready_path)
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        for _ in range(50):  # warm-up: connections, caches, first-time paths
            call(conn, method, path(), body, token, expect)
        subprocess.run(["callgrind_control", "-z", str(proc.pid)], check=True,
                       stdout=subprocess.DEVNULL)
        for _ in range(requests):
            call(conn, method, path(), body, token, expect)
        subprocess.run(["callgrind_control", "-d", name, str(proc.pid)], check=True,
                       stdout=subprocess.DEVNULL)
        conn.close()
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            # The counts were dumped above; a process slow to exit under valgrind (the
            # baseline) is not waited for long.
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    # The dump taken right after the requests (part 1), not the one at exit.
    dump = out + ".1"
    m = re.search(r"^summary: (\d+)", open(dump, errors="replace").read(), re.M)
    if not m:
        sys.exit(f"no callgrind totals for {label} {name}")
    if KEEP:
        shutil.copy(dump, os.path.join(KEEP, os.path.basename(out)))
    return int(m.group(1)) / requests


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--target", default=os.environ.get("CARGO_TARGET_DIR", "target") + "/production")
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--keep", help="copy the callgrind dumps here (for callgrind_annotate)")
    args = ap.parse_args()
    global KEEP
    KEEP = args.keep
    if not shutil.which("valgrind"):
        sys.exit("valgrind is needed (Debian package valgrind)")
    server = os.path.join(args.target, "server")
    baseline = os.path.join(args.target, "baseline")
    tmp = tempfile.mkdtemp(prefix="taproom-instructions-")
    procs = []
    try:
        # info, one JSON line per request, as in production; LOG_LEVEL=warning in the
        # environment measures a request without its log line.
        env = dict(os.environ, DATA_DIR=tmp, LOG_FORMAT="json",
                   LOG_LEVEL=os.environ.get("LOG_LEVEL", "info"))
        users_port = free_port()
        procs.append(subprocess.Popen([server, "users"], env=dict(env, USERS_PORT=str(users_port)),
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        wait_ready(users_port, "/readyz")
        users = http.client.HTTPConnection("127.0.0.1", users_port, timeout=60)
        call(users, "POST", "/v1/users", {"username": "counter", "email": "c@example.com",
                                          "password": "counting password"}, expect=201)
        token = call(users, "POST", "/v1/auth/token",
                     {"username": "counter", "password": "counting password"})["access_token"]
        x = call(users, "GET", "/.well-known/jwks.json")["keys"][0]["x"]

        tasks_port, base_port = free_port(), free_port()
        tasks_cmd = ([server, "tasks"], dict(env, TASKS_PORT=str(tasks_port),
                                             USERS_URL=f"http://127.0.0.1:{users_port}"),
                     tasks_port, "/readyz")
        # The service's own database, made by its migrations.
        base_cmd = ([baseline], dict(env, BASELINE_PORT=str(base_port), BASELINE_POOL="10",
                                     BASELINE_PUBLIC_KEY=x,
                                     BASELINE_DATABASE_URL=f"sqlite://{tmp}/tasks.db?mode=rwc"),
                    base_port, "/ping")
        seeder = subprocess.Popen(tasks_cmd[0], env=tasks_cmd[1], stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL)
        procs.append(seeder)
        wait_ready(tasks_port, "/readyz")
        conn = http.client.HTTPConnection("127.0.0.1", tasks_port, timeout=60)
        task = call(conn, "POST", "/v1/tasks", {"title": "read me"}, token, expect=201)
        conn.close()
        seeder.send_signal(signal.SIGINT)
        seeder.wait(timeout=30)
        cases = [
            ("ping", "GET", lambda: "/ping", None, 200),
            ("get_task", "GET", lambda: f"/v1/tasks/{task['id']}", None, 200),
            ("create_task", "POST", lambda: "/v1/tasks", {"title": "counted"}, 201),
        ]
        results = {"tasks": {}, "baseline": {}}
        for case in cases:
            for label, (cmd, cenv, port, ready) in (("tasks", tasks_cmd), ("baseline", base_cmd)):
                results[label][case[0]] = count(cmd, cenv, port, ready, case, token,
                                                args.requests, tmp, label)
        print(f"instructions per request, {args.requests} requests per case, one connection, SQLite")
        print("| operation | tasks | baseline | tasks / baseline |")
        print("|---|---:|---:|---:|")
        for name in results["tasks"]:
            t, b = results["tasks"][name], results["baseline"][name]
            print(f"| {name} | {t:,.0f} | {b:,.0f} | {t / b:.2f} |")
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
