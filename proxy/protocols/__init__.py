"""The front doors: one adapter per wire protocol, each plugged into ``proxy.pipeline``."""
