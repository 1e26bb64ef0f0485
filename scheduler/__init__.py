"""The long-running process: configuration, wiring, scheduled jobs, signals and the CLI."""
