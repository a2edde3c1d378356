"""mirror: keeps a private conda channel tree up to date for offline sites."""

__version__ = "0.1.0"
