"""The benchmark: `python -m bench --size tiny|full` (figures in docs/benchmarks.md).

    counting.py  commands per name, write conflicts and retries (a pymongo CommandListener)
    proxy.py     a loopback TCP proxy adding a round trip of latency
    engine.py    the server: an in-process SecantusDB, or MONGODB_URI
    seed.py      orgs and conversations, and the totals they must invoice to
    naive.py     the baseline: one command per conversation
    creation.py  case 1   throughput.py  case 2   contention.py  case 3   bounded.py  case 5
    reconcile.py case 4: seeds (reconcile_seed.py), runs a dry-run reconciliation in its own
                 process (reconcile_child.py) and explains the queries it sent (plans.py)
    cases.py     sizes and the case registry
    report.py    the printed table and the markdown page
"""
