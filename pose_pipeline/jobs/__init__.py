"""Running a job: the runner's chunk loop, each stage's work, the messages between them, and the job store."""
