"""Teleoperation devices: one small `Teleop` interface, many devices."""
