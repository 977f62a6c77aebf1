"""``python -m sessionspec``: the same as the ``sessionspec`` command (for when scripts are not on PATH).

This folder holds only this file: ``sessionspec`` stays a namespace whose subpackages
(``sessionspec.conformance``, ``.reference``, ``.loadtests``) are mapped from their own folders.
"""

from sessionspec.conformance.cli import main

if __name__ == "__main__":
    main(prog_name="sessionspec")
