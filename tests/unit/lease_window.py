"""The minute every unit test of leases happens in (tests/unit/test_lease*.py)."""

T0 = 1_800_000_000.0  # a minute boundary
RESET = int(T0) + 60
LIMIT = 1000
