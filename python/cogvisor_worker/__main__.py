"""``python3 -m cogvisor_worker``: the worker process the cogvisor supervisor starts."""

from cogvisor_worker.worker import main

if __name__ == "__main__":
    main()
