"""Local packages: indexing a channel folder, and admitting files from drop folders."""
