"""Tools for measuring and testing edgepose, shared by `edgepose bench --e2e`, the
integration tests (tests/integration/conftest.py) and tools/ (soak.py and the
measurement scripts); nothing in the daemon's own path uses them.

    broker.py    Broker: a private mosquitto on a loopback port (start, stop, restart, freeze, kill)
    procstat.py  read_proc: a process's CPU time and memory from /proc
    faults.py    EDGEPOSE_FAULT: the faults a test asks `edgepose run` to suffer
"""
