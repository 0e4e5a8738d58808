"""The demo suite. ``existing_suite/`` is a suite of its own, run with its own ini file
(``pytest examples/existing_suite``): it shows ``--cgmem-all`` over tests nobody marked."""

collect_ignore = ["existing_suite"]
