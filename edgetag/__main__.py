"""Allow `python -m edgetag`."""

from edgetag.cli import main

raise SystemExit(main())
