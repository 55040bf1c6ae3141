"""In-memory model of Cloud Tasks and Cloud Scheduler, shared by the pytest plugin and the
local emulator."""
