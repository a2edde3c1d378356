"""One sync of mirrored channels: context, subdir run, downloads, closure, lockfiles, check."""
