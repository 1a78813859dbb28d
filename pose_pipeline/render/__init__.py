"""Drawing a result onto video: the overlay MP4, the painter of one frame, the palette, and numpy rasterising."""
