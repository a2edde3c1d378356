"""The health of a published tree: verify, repair, status."""
