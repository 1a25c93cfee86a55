"""The keys service: accounts and API keys as an event log, answering auth checks over NATS."""
