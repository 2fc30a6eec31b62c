"""The fleet benchmark's parts: the Redis tier it starts, the three paths it times, cleanup and reporting."""
