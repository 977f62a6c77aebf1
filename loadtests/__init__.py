"""sessionspec.loadtests: Locust profiles, shapes and SLO gates for session stores and their services.

Run them with ``sessionspec load`` (docs/load-testing.md). Importing this package does
not import Locust (which monkey-patches the process with gevent); only the locustfile does.
"""
