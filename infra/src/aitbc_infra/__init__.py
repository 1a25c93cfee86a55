"""Local infrastructure: the embedded nats-server and the process runner behind `just up`."""
