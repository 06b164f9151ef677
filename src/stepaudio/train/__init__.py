"""Training: corpus synthesis and import, datasets, and one recipe per trained component."""
