"""The long-running service: the daemon, its per-channel workers, metrics, the status page."""
