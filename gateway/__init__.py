"""tag-gateway: a first-party server-side tag gateway (pixel hits in, Conversions API out)."""

__version__ = "0.1.0"
