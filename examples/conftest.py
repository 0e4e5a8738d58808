"""The demo suite. ``existing_suite/`` and ``baselined_suite/`` are suites of their own, each
run with its own ini file: ``pytest examples/existing_suite`` shows ``--cgmem-all`` over tests
nobody marked, ``pytest examples/baselined_suite`` a figure held to the last run's baseline."""

collect_ignore = ["existing_suite", "baselined_suite"]
