"""Example networks shipped with ogdash, importable from the install (never from the current folder).

``ogdash.examples.own_network:backbone`` and ``:classifier`` are the factories the README's
"Your own network" uses; the dashboard always allows this package (``dashboard/schema.py``).
"""
