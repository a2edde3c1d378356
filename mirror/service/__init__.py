"""The long-running service: the daemon's HTTP listener and its status page."""
