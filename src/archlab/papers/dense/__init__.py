"""Dense prediction: encoder-decoders that predict per pixel or voxel.

Segmentation, counting, inpainting and restoration papers.
"""
