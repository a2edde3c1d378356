"""Pure computation: records and their gate, filters, plans, closures, shards, lockfile parsing."""
