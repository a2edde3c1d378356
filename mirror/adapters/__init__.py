"""Each module or package wraps one outside thing (http, SQLite, the tree, archives, ...)."""
