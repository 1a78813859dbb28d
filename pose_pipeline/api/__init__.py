"""The HTTP API: the application, its request and response models, the job service behind it, uploads and tokens."""
