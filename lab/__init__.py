"""The lisp-lab command: demos, scenarios, inspection and clean-up."""
