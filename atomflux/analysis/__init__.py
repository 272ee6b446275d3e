"""Trajectory analysis: Green–Kubo heat transport, diffusion and ionic conductivity."""
