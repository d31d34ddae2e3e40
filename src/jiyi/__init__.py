"""jiyi (记忆): form, transfer, inspect, extend, shrink and serve an encoder's memory."""

__version__ = "0.1.0"
