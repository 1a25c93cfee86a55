"""Message contracts shared by every AITBC service: events, messages, subjects, the key format.

This package imports nothing of ours; services import it and never each other.
"""
