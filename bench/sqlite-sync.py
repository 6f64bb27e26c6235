"""What a durable SQLite commit costs on this disk: one row per committed transaction in
WAL mode (as a create does), with synchronous=NORMAL and FULL, alternating.

    python3 bench/sqlite-sync.py [COMMITS]
"""
import os, sqlite3, sys, tempfile, time

n = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
with tempfile.TemporaryDirectory(dir=os.environ.get("TMPDIR", "/var/tmp")) as tmp:
    for run, mode in enumerate(["NORMAL", "FULL", "NORMAL", "FULL"]):
        db = sqlite3.connect(os.path.join(tmp, f"{run}.db"), isolation_level=None)
        db.execute("PRAGMA journal_mode = WAL")
        db.execute(f"PRAGMA synchronous = {mode}")
        db.execute("CREATE TABLE t (id TEXT PRIMARY KEY, title TEXT)")
        start = time.perf_counter()
        for i in range(n):
            db.execute("BEGIN")
            db.execute("INSERT INTO t VALUES (?, ?)", (f"{i:08}", "x" * 40))
            db.execute("COMMIT")
        took = time.perf_counter() - start
        db.close()
        print(f"{mode:6} {n} commits: {n / took:8.0f} commits/s, {took / n * 1e6:7.1f} us each")
