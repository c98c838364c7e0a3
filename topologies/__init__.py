"""Mininet topologies of the lab, each described once."""
