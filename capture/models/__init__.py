"""Model adapters: each knows its model's submodules, prompt and inputs."""
