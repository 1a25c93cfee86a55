"""The AITBC edge: authenticates API keys, forwards to the Coordinator, answers with error bodies."""
