"""LISP nodes: the protocol core (nodes.lisp) and, later, the daemons that run it."""
