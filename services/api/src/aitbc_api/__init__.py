"""The AITBC edge: authenticates keys, limits rates, forwards to the Coordinator."""
