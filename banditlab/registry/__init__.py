"""The objective registry: batches, advantages, losses, the named objectives and their references."""
