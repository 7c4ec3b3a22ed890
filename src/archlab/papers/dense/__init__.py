"""Dense prediction: encoder-decoders that predict per pixel or voxel (segmentation, counting, restoration)."""
