"""Vision papers: image classifiers, detectors and their analyses."""
