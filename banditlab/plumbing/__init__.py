"""Run plumbing: run folders and their one protocol, safe reading and writing, progress, threads."""
