"""stagetrace capture: run a VLM's ordinary generate() under torch.profiler with stage labels."""

__version__ = "0.1.0"
