"""The result of a video: its schema, assembly from chunks, smoothing, the JSON and NPZ writers and readers, exports."""
