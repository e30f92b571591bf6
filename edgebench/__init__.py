"""edgebench: compress neural networks for edge devices and measure what it costs."""

__version__ = "0.1.0"
