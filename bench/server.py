"""`python -m bench.server --port PORT --storage-path DIR`: SecantusDB in a process of its own.

The benchmark starts it so that its figures measure a client talking to a server over loopback,
as against a real deployment, not an engine sharing the client's interpreter and its lock.
`SecantusDBServer` rather than the `secantusd-py` daemon: the daemon has no setting for the
transaction lifetime, and the naive baseline's one transaction of 10,000 updates can outlast
its 60 s default on a busy machine. Stopped with SIGTERM (by its PID).
"""

from __future__ import annotations

import argparse
import signal
import threading

from secantus import SecantusDBServer


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.server")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--storage-path", required=True)
    parser.add_argument("--transaction-lifetime", type=float, default=600.0)
    args = parser.parse_args()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    server = SecantusDBServer(host="127.0.0.1", port=args.port, storage_path=args.storage_path,
                              transaction_lifetime_seconds=args.transaction_lifetime)
    server.start()
    try:
        stop.wait()
    finally:
        server.stop()


if __name__ == "__main__":
    main()
