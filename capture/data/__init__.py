"""Datasets: the built-in synthetic scene and the EventGPT DSEC layout."""
