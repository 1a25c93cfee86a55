"""What every request passes through, in order: the connection's limits (`connections`), the
middleware (`middleware`: request id, body deadline, rate-limit headers, access log, usage
record), and the gate (`gate`): authentication (`auth`, `auth_cache`, `key_checks`,
`throttle`) and the rate limit (`limits`, `leases`, `batching`). Served requests leave as usage
events (`usage_events`); key events keep the auth cache true (`cache_invalidation`)."""
