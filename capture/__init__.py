"""stagetrace capture: run a VLM's ordinary generate() under torch.profiler with stage labels."""
