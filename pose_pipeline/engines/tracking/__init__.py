"""Track ids from per-frame detections, shared by the CPU engines: a Kalman filter per track, Hungarian assignment."""
