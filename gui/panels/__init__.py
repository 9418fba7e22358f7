"""The window's panels (Qt): live signals, hypnogram + hypnodensity + quality strip, the epoch
(image, relevance, probabilities), signal quality and sleep statistics tables."""
