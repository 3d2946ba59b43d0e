"""Training citypatrol's own detectors: dataset building, training, the `citypatrol train` command."""
