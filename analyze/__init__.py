"""stagetrace analyze: parse Kineto traces, attribute work to stages, write tables and reports.

Never imports torch, so it starts fast and runs where torch is absent.
"""

__version__ = "0.1.0"
