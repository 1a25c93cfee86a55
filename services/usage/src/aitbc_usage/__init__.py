"""The usage service: the counting authority for its partitions, and the usage aggregates."""
