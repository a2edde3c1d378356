"""The index files of a subdir and of a channel, written in the order that keeps clients safe."""
