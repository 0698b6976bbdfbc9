"""bfx-bridge: Bitfinex WebSocket v2 market data, normalised, onto Redis Streams."""

__version__ = "0.1.0"

__all__ = ["__version__"]
