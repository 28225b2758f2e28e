"""``python -m torsion`` is the ``torsion`` command."""

from torsion.application._cli import console_main

console_main()
