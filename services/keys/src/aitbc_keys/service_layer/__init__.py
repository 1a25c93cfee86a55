"""The keys service layer: one function per command (handlers) over a unit of work."""
