"""Forwarding: every other `/v1/...` request goes to the Coordinator (`forward`) and its answer
comes back as it arrives (`relay`)."""
