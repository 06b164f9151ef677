"""Training recipes and their data: corpus synthesis, datasets, one recipe per component."""
