"""The sans-I/O LISP protocol core.

No sockets, no threads, no clock reads: time comes in as an argument. Every other layer of the
lab (daemons, topologies, captures) builds on this package; it imports nothing else of the
project.
"""
