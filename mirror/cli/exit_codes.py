"""The exit codes every `mirror` command uses (the README lists the same)."""

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_LOCKED = 3
EXIT_INTERRUPTED = 130

EXIT_CODES_HELP = """\
exit codes:
  0    everything asked for is done (or was already up to date)
  1    some work failed (files that could not be mirrored, an upstream error,
       the mass-deletion guard, an unmet dependency, a failed solvability check,
       a refused bundle); what is published is still consistent
  2    configuration or usage error
  3    another mirror process holds the tree's writer lock
  130  stopped by a signal before finishing
"""
